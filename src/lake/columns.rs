//! A source table's columns as a lake table has them: the Delta type of each (exact: decimals
//! keep their precision and scale, timestamps are UTC to the microsecond), the name it has in
//! the Parquet files, and the Arrow batches rows become. Pure.

use super::log::DeltaType;
use crate::db::{ColumnDef, Dialect, Kind, TableDef, Value};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Delta's widest exact decimal.
const MAX_PRECISION: i32 = 38;

/// The scale a decimal column without a declared one gets (PostgreSQL's bare `numeric`).
const DEFAULT_SCALE: i32 = 18;

/// One column of a lake table.
#[derive(Clone, Debug, PartialEq)]
pub struct LakeColumn {
    /// The name the source gives it, which readers see.
    pub name: String,
    /// The name in the Parquet files: the same, or `col-N` under column mapping.
    pub physical: String,
    pub delta: DeltaType,
    pub kind: Kind,
    pub nullable: bool,
}

/// The characters Delta refuses in a column name unless the table maps its columns by name
/// (Spark, and so Fabric, Synapse and Databricks, check this).
const PLAIN_NAME_REFUSES: &[char] = &[' ', ',', ';', '{', '}', '(', ')', '\n', '\t', '='];

/// Whether a table with these columns needs column mapping: an ERP's column names have spaces.
pub fn needs_mapping(def: &TableDef) -> bool {
    def.columns
        .iter()
        .any(|c| c.name.contains(PLAIN_NAME_REFUSES))
}

/// The lake columns of a source table, read from `dialect`.
pub fn columns(def: &TableDef, dialect: Dialect) -> Vec<LakeColumn> {
    let mapped = needs_mapping(def);
    def.columns
        .iter()
        .enumerate()
        .map(|(i, c)| LakeColumn {
            name: c.name.clone(),
            physical: if mapped {
                format!("col-{}", i + 1)
            } else {
                c.name.clone()
            },
            delta: delta_type(c, dialect),
            kind: c.kind,
            nullable: c.nullable,
        })
        .collect()
}

/// A column's Delta type: integers as wide as the source's, decimals with their precision and
/// scale (wider than Delta's 38 digits: text, so that no digit is lost), GUIDs and times of day
/// as text.
pub fn delta_type(c: &ColumnDef, dialect: Dialect) -> DeltaType {
    let ty = c.type_name.to_ascii_lowercase();
    match c.kind {
        Kind::Bool => DeltaType::Boolean,
        Kind::Int => match dialect {
            Dialect::Sqlite => DeltaType::Long,
            _ if ty.contains("unsigned") && !ty.starts_with("tinyint") => DeltaType::Long,
            _ if ty.starts_with("smallint") || ty.starts_with("tinyint") || ty == "int2" => {
                DeltaType::Short
            }
            _ if ty.starts_with("bigint") || ty == "int8" => DeltaType::Long,
            _ if ty.starts_with("year") => DeltaType::Short,
            _ => DeltaType::Integer,
        },
        Kind::Float => DeltaType::Double,
        Kind::Decimal => {
            let precision = c.precision.unwrap_or(MAX_PRECISION);
            let scale = c
                .scale
                .unwrap_or(DEFAULT_SCALE)
                .clamp(0, precision.min(MAX_PRECISION));
            if !(1..=MAX_PRECISION).contains(&precision) {
                DeltaType::String
            } else if c.precision.is_none() {
                DeltaType::Decimal(MAX_PRECISION as u8, scale as i8)
            } else {
                DeltaType::Decimal(precision as u8, scale as i8)
            }
        }
        Kind::Text | Kind::Uuid | Kind::Time => DeltaType::String,
        Kind::Bytes => DeltaType::Binary,
        Kind::Date => DeltaType::Date,
        Kind::Timestamp | Kind::TimestampTz => DeltaType::Timestamp,
    }
}

fn arrow_type(t: &DeltaType) -> DataType {
    match t {
        DeltaType::Long => DataType::Int64,
        DeltaType::Integer => DataType::Int32,
        DeltaType::Short => DataType::Int16,
        DeltaType::Boolean => DataType::Boolean,
        DeltaType::Double => DataType::Float64,
        DeltaType::Float => DataType::Float32,
        DeltaType::Decimal(p, s) => DataType::Decimal128(*p, *s),
        DeltaType::String => DataType::Utf8,
        DeltaType::Binary => DataType::Binary,
        DeltaType::Date => DataType::Date32,
        DeltaType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The Arrow schema of the Parquet files: physical names, and under column mapping each
/// field's id (Parquet's field id), as Delta readers match them.
pub fn arrow_schema(columns: &[LakeColumn]) -> SchemaRef {
    let mapped = columns.iter().any(|c| c.physical != c.name);
    Arc::new(Schema::new(
        columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let field = Field::new(&c.physical, arrow_type(&c.delta), c.nullable);
                if mapped {
                    field.with_metadata(HashMap::from([(
                        "PARQUET:field_id".to_string(),
                        (i + 1).to_string(),
                    )]))
                } else {
                    field
                }
            })
            .collect::<Vec<_>>(),
    ))
}

/// A value that its column's type cannot hold exactly.
fn unfit(c: &LakeColumn, v: &Value, why: &str) -> String {
    format!(
        "column {:?}: the value {v} {why}; the lake keeps values exactly, so the table is not \
         written",
        c.name
    )
}

/// A decimal's text as the integer of its scaled value: `12.5` at scale 2 is 1250. None when
/// it has more digits than the scale keeps, or more than 38 in all.
pub fn scaled_decimal(text: &str, scale: i8) -> Option<i128> {
    let t = text.trim();
    let (negative, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (whole, fraction) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let fraction = fraction.trim_end_matches('0');
    let scale = usize::try_from(scale).ok()?;
    if fraction.len() > scale {
        return None;
    }
    // Digit by digit, without an allocation: this runs for every decimal of every row.
    let mut n: i128 = 0;
    let mut significant = 0usize;
    for b in whole.bytes().chain(fraction.bytes()) {
        if !b.is_ascii_digit() {
            return None;
        }
        if n > 0 || b != b'0' {
            significant += 1;
        }
        if significant > MAX_PRECISION as usize {
            return None;
        }
        n = n * 10 + i128::from(b - b'0');
    }
    for _ in fraction.len()..scale {
        if n > 0 {
            significant += 1;
        }
        if significant > MAX_PRECISION as usize {
            return None;
        }
        n *= 10;
    }
    Some(if negative { -n } else { n })
}

/// The rows of one batch as Arrow columns, in the order of `columns`.
pub fn record_batch(
    columns: &[LakeColumn],
    schema: &SchemaRef,
    rows: &[Vec<Value>],
) -> Result<RecordBatch, String> {
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        arrays.push(column_array(c, rows.iter().map(|r| &r[i]), rows.len())?);
    }
    RecordBatch::try_new(schema.clone(), arrays).map_err(|e| e.to_string())
}

/// A value as its column's kind has it: SQLite hands dates, timestamps and some numbers over
/// as text, which is read here as the column says.
fn typed<'a>(c: &LakeColumn, v: &'a Value) -> Cow<'a, Value> {
    let read = match (v, c.kind) {
        (Value::Text(t), Kind::Date) => super::keys::parse_value(Kind::Date, t).or_else(|| {
            match super::keys::parse_value(Kind::Timestamp, t) {
                Some(Value::Timestamp(ts)) => Some(Value::Date(ts.date())),
                _ => None,
            }
        }),
        (Value::Text(t), Kind::Timestamp | Kind::TimestampTz) => {
            super::keys::parse_value(Kind::Timestamp, t)
                .or_else(|| super::keys::parse_value(Kind::TimestampTz, t))
                .or_else(|| match super::keys::parse_value(Kind::Date, t) {
                    Some(Value::Date(d)) => Some(Value::Timestamp(d.and_time(Default::default()))),
                    _ => None,
                })
        }
        (Value::Text(t), Kind::Int | Kind::Decimal | Kind::Bool) => {
            super::keys::parse_value(c.kind, t.trim())
        }
        (Value::Float(f), Kind::Decimal) if f.is_finite() => Some(Value::Decimal(format!("{f}"))),
        _ => None,
    };
    match read {
        Some(value) => Cow::Owned(value),
        None => Cow::Borrowed(v),
    }
}

fn column_array<'a>(
    c: &LakeColumn,
    values: impl Iterator<Item = &'a Value>,
    len: usize,
) -> Result<ArrayRef, String> {
    macro_rules! build {
        ($builder:expr, |$v:ident| $convert:expr) => {{
            let mut b = $builder;
            for value in values {
                let typed = typed(c, value);
                let $v: &Value = &typed;
                if matches!($v, Value::Null) {
                    b.append_null();
                } else {
                    b.append_value($convert);
                }
            }
            Ok(Arc::new(b.finish()) as ArrayRef)
        }};
    }
    let int = |v: &Value| match v {
        Value::Int(n) => Ok(*n),
        Value::Bool(b) => Ok(i64::from(*b)),
        other => Err(unfit(c, other, "is not an integer")),
    };
    match &c.delta {
        DeltaType::Long => build!(Int64Builder::with_capacity(len), |v| int(v)?),
        DeltaType::Integer => build!(Int32Builder::with_capacity(len), |v| {
            i32::try_from(int(v)?).map_err(|_| unfit(c, v, "does not fit 32 bits"))?
        }),
        DeltaType::Short => build!(Int16Builder::with_capacity(len), |v| {
            i16::try_from(int(v)?).map_err(|_| unfit(c, v, "does not fit 16 bits"))?
        }),
        DeltaType::Boolean => build!(BooleanBuilder::with_capacity(len), |v| match v {
            Value::Bool(b) => *b,
            Value::Int(n) => *n != 0,
            other => return Err(unfit(c, other, "is not a boolean")),
        }),
        DeltaType::Double | DeltaType::Float => {
            build!(Float64Builder::with_capacity(len), |v| match v {
                Value::Float(f) => *f,
                Value::Int(n) => *n as f64,
                other => return Err(unfit(c, other, "is not a number")),
            })
        }
        DeltaType::Decimal(p, s) => {
            let b = Decimal128Builder::with_capacity(len)
                .with_precision_and_scale(*p, *s)
                .map_err(|e| e.to_string())?;
            build!(b, |v| {
                let text = match v {
                    Value::Decimal(t) => t.clone(),
                    Value::Int(n) => n.to_string(),
                    other => return Err(unfit(c, other, "is not a decimal")),
                };
                scaled_decimal(&text, *s).ok_or_else(|| {
                    unfit(
                        c,
                        v,
                        &format!("has more digits than decimal({p},{s}) holds"),
                    )
                })?
            })
        }
        DeltaType::String => build!(StringBuilder::with_capacity(len, len * 16), |v| match v {
            Value::Text(t) | Value::Decimal(t) => Cow::Borrowed(t.as_str()),
            other => Cow::Owned(other.to_text().unwrap_or_default()),
        }),
        DeltaType::Binary => build!(BinaryBuilder::with_capacity(len, len * 16), |v| match v {
            Value::Bytes(b) => b.as_slice(),
            other => return Err(unfit(c, other, "is not binary")),
        }),
        DeltaType::Date => build!(Date32Builder::with_capacity(len), |v| match v {
            Value::Date(d) => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
                i32::try_from((*d - epoch).num_days())
                    .map_err(|_| unfit(c, v, "is out of range"))?
            }
            other => return Err(unfit(c, other, "is not a date")),
        }),
        DeltaType::Timestamp => {
            let b = TimestampMicrosecondBuilder::with_capacity(len).with_timezone("UTC");
            build!(b, |v| match v {
                // A timestamp without a zone is UTC, as Business Central stores them.
                Value::Timestamp(t) => t.and_utc().timestamp_micros(),
                Value::TimestampTz(t) => t.timestamp_micros(),
                other => return Err(unfit(c, other, "is not a timestamp")),
            })
        }
    }
}

/// Rows in a batch before it goes to the Parquet writer.
pub const BATCH_ROWS: usize = 8_192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_keep_every_digit_or_are_refused() {
        assert_eq!(scaled_decimal("12.5", 2), Some(1250));
        assert_eq!(scaled_decimal("-0.00000000000000000001", 20), Some(-1));
        assert_eq!(scaled_decimal("12.50000", 2), Some(1250));
        assert_eq!(scaled_decimal("12.505", 2), None);
        assert_eq!(scaled_decimal("0", 20), Some(0));
        assert_eq!(
            scaled_decimal("123456789012345678.12345678901234567890", 20),
            Some(12345678901234567812345678901234567890)
        );
        assert_eq!(scaled_decimal("1e5", 2), None);
    }

    fn col(name: &str, kind: Kind, ty: &str, p: Option<i32>, s: Option<i32>) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            kind,
            type_name: ty.into(),
            nullable: true,
            max_chars: None,
            precision: p,
            scale: s,
        }
    }

    #[test]
    fn types_are_as_exact_as_the_source() {
        let pg = Dialect::Postgres;
        let d = |c| delta_type(&c, pg);
        assert_eq!(
            d(col("a", Kind::Int, "integer", None, None)),
            DeltaType::Integer
        );
        assert_eq!(
            d(col("a", Kind::Int, "bigint", None, None)),
            DeltaType::Long
        );
        assert_eq!(
            d(col("a", Kind::Int, "smallint", None, None)),
            DeltaType::Short
        );
        assert_eq!(
            d(col(
                "a",
                Kind::Decimal,
                "numeric(38,20)",
                Some(38),
                Some(20)
            )),
            DeltaType::Decimal(38, 20)
        );
        assert_eq!(
            d(col("a", Kind::Decimal, "numeric", None, None)),
            DeltaType::Decimal(38, 18)
        );
        assert_eq!(
            delta_type(
                &col("a", Kind::Decimal, "decimal(65,30)", Some(65), Some(30)),
                Dialect::MySql
            ),
            DeltaType::String
        );
        assert_eq!(
            delta_type(&col("a", Kind::Int, "INTEGER", None, None), Dialect::Sqlite),
            DeltaType::Long
        );
    }

    #[test]
    fn a_batch_refuses_a_value_its_column_cannot_hold() {
        let def = TableDef {
            name: "t".into(),
            columns: vec![
                col("Entry No_", Kind::Int, "integer", None, None),
                col("Amount", Kind::Decimal, "numeric(10,2)", Some(10), Some(2)),
            ],
            primary_key: vec!["Entry No_".into()],
            est_rows: 0,
            est_bytes: 0,
        };
        assert!(needs_mapping(&def));
        let cols = columns(&def, Dialect::Postgres);
        assert_eq!(cols[0].physical, "col-1");
        let schema = arrow_schema(&cols);
        let ok = vec![
            vec![Value::Int(1), Value::Decimal("1.50".into())],
            vec![Value::Int(2), Value::Null],
        ];
        let batch = record_batch(&cols, &schema, &ok).unwrap();
        assert_eq!(batch.num_rows(), 2);
        let bad = vec![vec![Value::Int(1), Value::Decimal("1.505".into())]];
        let e = record_batch(&cols, &schema, &bad).unwrap_err();
        assert!(
            e.contains("\"Amount\"") && e.contains("decimal(10,2)"),
            "{e}"
        );
        let wide = vec![vec![Value::Int(1 << 40), Value::Null]];
        assert!(
            record_batch(&cols, &schema, &wide)
                .unwrap_err()
                .contains("32 bits")
        );
    }
}
