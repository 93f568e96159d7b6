//! Reading rows: which rows (`ReadSpec`, `KeyFilter` for the changed keys of an
//! incremental run), the SELECTs that read them, and the bounded channel of chunks that
//! carries them to a load, with the progress counters.

use super::{ColumnDef, DbError, Dialect, Value};

/// What flows from a source reader to a target loader: rows, or raw bytes of PostgreSQL's
/// binary COPY format when both sides have the same column types.
pub enum Chunk {
    Rows(Vec<Vec<Value>>),
    Raw(bytes::Bytes),
    /// The reader reached the end of the table. A loader commits only after it.
    End,
    /// An incremental copy's next batch of changed keys: the loader removes their rows from
    /// the target before it loads the rows that follow (the ones of these keys that the
    /// source still has).
    Keys(Vec<Vec<Option<String>>>),
}

/// Rows per chunk and bytes per chunk: whichever is reached first closes a chunk. With a channel
/// of a few chunks, this bounds memory per table whatever the table's size.
pub const CHUNK_ROWS: usize = 2_000;

pub const CHUNK_BYTES: usize = 4 << 20;

/// Chunks in flight between a reader and its loader.
pub const CHANNEL_CHUNKS: usize = 4;

/// How to read one table.
#[derive(Clone, Debug)]
pub struct ReadSpec {
    pub table: String,
    pub columns: Vec<ColumnDef>,
    /// Read PostgreSQL's binary COPY format instead of rows.
    pub raw: bool,
    /// A PostgreSQL snapshot to read in (from `pg_export_snapshot`).
    pub snapshot: Option<String>,
    /// Rows and bytes read so far, for progress displays.
    pub progress: std::sync::Arc<ReadProgress>,
    /// Read only the rows with these primary keys (an incremental run). None: every row.
    pub keys: Option<KeyFilter>,
    /// Read the rows of one stretch of the key, sorted by it (a data lake's files); rows only,
    /// never with `raw`. None: any order.
    pub range: Option<KeyRange>,
}

/// A stretch of a table's rows by key, read in key order: text compared by its UTF-8 bytes in
/// every dialect (whatever the column's collation), so that the order is the one Rust's own
/// comparison of the values gives (`lake::keys`).
#[derive(Clone, Debug, Default)]
pub struct KeyRange {
    /// The columns that sort the rows: the primary key, else every column.
    pub columns: Vec<ColumnDef>,
    /// From this key on; None: from the first row.
    pub from: Option<Vec<Value>>,
    /// Up to, not including, this key; None: to the last row.
    pub before: Option<Vec<Value>>,
}

impl KeyRange {
    /// Text, and a GUID outside PostgreSQL (where it is a text column), compare by bytes.
    fn compared_as_text(d: Dialect, c: &ColumnDef) -> bool {
        c.kind == super::Kind::Text || (c.kind == super::Kind::Uuid && d != Dialect::Postgres)
    }

    /// A column as it is compared and sorted.
    fn sort_expr(d: Dialect, c: &ColumnDef) -> String {
        let q = d.quote(&c.name);
        let text = Self::compared_as_text(d, c);
        match (d, text) {
            (Dialect::Postgres, true) => format!("{q} COLLATE \"C\""),
            (Dialect::MySql, true) => format!("CAST(CONVERT({q} USING utf8mb4) AS BINARY)"),
            (Dialect::Sqlite, true) => format!("{q} COLLATE BINARY"),
            _ => q,
        }
    }

    /// A parameter as it is compared with the column.
    fn param_expr(d: Dialect, c: &ColumnDef) -> String {
        let text = Self::compared_as_text(d, c);
        match d {
            // Typed as the column, so that a decimal's text compares as a number.
            Dialect::Postgres => format!("CAST(? AS {})", c.type_name),
            Dialect::MySql if text => "CAST(CONVERT(? USING utf8mb4) AS BINARY)".into(),
            _ => "?".into(),
        }
    }

    /// The `WHERE` condition (empty for the whole table), its parameters, and the `ORDER BY`.
    pub(crate) fn clauses(&self, d: Dialect) -> (String, Vec<Value>, String) {
        let sorted: Vec<String> = self.columns.iter().map(|c| Self::sort_expr(d, c)).collect();
        let params: Vec<String> = self
            .columns
            .iter()
            .map(|c| Self::param_expr(d, c))
            .collect();
        let tuple = |parts: &[String]| {
            if parts.len() == 1 {
                parts[0].clone()
            } else {
                format!("({})", parts.join(", "))
            }
        };
        let (lhs, rhs) = (tuple(&sorted), tuple(&params));
        let mut conditions = vec![];
        let mut values = vec![];
        if let Some(from) = &self.from {
            conditions.push(format!("{lhs} >= {rhs}"));
            values.extend(from.iter().cloned());
        }
        if let Some(before) = &self.before {
            conditions.push(format!("{lhs} < {rhs}"));
            values.extend(before.iter().cloned());
        }
        (conditions.join(" AND "), values, sorted.join(", "))
    }
}

/// A set of rows named by their primary key values, given as text.
#[derive(Clone, Debug, Default)]
pub struct KeyFilter {
    /// The key columns: name and type as the database spells it.
    pub columns: Vec<(String, String)>,
    /// One entry per row: the key values in column order, as text (NULL as None).
    pub keys: Vec<Vec<Option<String>>>,
}

/// A one-column key list as integers, when the column is a PostgreSQL integer type and every
/// key reads as one.
pub(crate) fn integer_list(
    type_name: &str,
    keys: &[Vec<Option<String>>],
) -> Option<Vec<Option<i64>>> {
    if !matches!(type_name, "bigint" | "integer" | "smallint") {
        return None;
    }
    keys.iter()
        .map(|k| match k.first() {
            Some(Some(v)) => v.parse().ok().map(Some),
            _ => Some(None),
        })
        .collect()
}

/// Keys per statement when reading or deleting by key.
pub const KEYS_PER_STATEMENT: usize = 500;

impl KeyFilter {
    /// The same condition for PostgreSQL with the keys spelled as array literals, for a `COPY
    /// (SELECT ...)`, which takes no parameters. Each array sits in its own sub-select, which the
    /// planner cannot see into: it plans a probe of the primary key index per key, as for a
    /// parameter, instead of weighing thousands of literal keys against a scan of the table.
    pub fn postgres_literal_condition(&self) -> String {
        let d = Dialect::Postgres;
        let array = |i: usize, ty: &str| {
            let mut lit = String::from("{");
            for (n, key) in self.keys.iter().enumerate() {
                if n > 0 {
                    lit.push(',');
                }
                match key.get(i).and_then(|v| v.as_deref()) {
                    None => lit.push_str("NULL"),
                    Some(v) => {
                        lit.push('"');
                        for c in v.chars() {
                            if c == '"' || c == '\\' {
                                lit.push('\\');
                            }
                            lit.push(c);
                        }
                        lit.push('"');
                    }
                }
            }
            lit.push('}');
            // The outer CAST makes the sub-select one array value, not a set of arrays.
            format!(
                "CAST((SELECT CAST('{}' AS {ty}[])) AS {ty}[])",
                lit.replace('\'', "''")
            )
        };
        let cols: Vec<String> = self.columns.iter().map(|(c, _)| d.quote(c)).collect();
        if let [(_, ty)] = self.columns.as_slice() {
            return format!("{} = ANY({})", cols[0], array(0, ty));
        }
        let arrays: Vec<String> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, ty))| array(i, ty))
            .collect();
        format!(
            "({}) IN (SELECT * FROM unnest({}))",
            cols.join(", "),
            arrays.join(", ")
        )
    }

    /// `WHERE` conditions for one batch of keys, with their parameters. PostgreSQL takes every
    /// key in one statement, as one array per key column: `k = ANY(...)` for one column,
    /// `(k1, k2) IN (SELECT * FROM unnest(CAST(? AS int8[]), CAST(? AS text[])))` for more.
    /// The others get `(k1, k2) IN ((?, ?), ...)` and convert the text by themselves.
    pub fn condition(&self, d: Dialect, batch: &[Vec<Option<String>>]) -> (String, Vec<Value>) {
        let cols: Vec<String> = self.columns.iter().map(|(c, _)| d.quote(c)).collect();
        let lhs = if cols.len() == 1 {
            cols[0].clone()
        } else {
            format!("({})", cols.join(", "))
        };
        if d == Dialect::Postgres && self.columns.len() == 1 {
            // `= ANY` lets the planner probe the primary key index once per key. The array sits
            // in a sub-select: given the array itself, the planner would weigh every key's
            // selectivity, milliseconds for thousands of keys, to pick the same plan.
            let ty = &self.columns[0].1;
            let first = |k: &Vec<Option<String>>| k.first().cloned().flatten();
            let list = match integer_list(ty, batch) {
                Some(ints) => Value::IntList(ints),
                None => Value::TextList(batch.iter().map(first).collect()),
            };
            return (
                format!("{lhs} = ANY(CAST((SELECT CAST(? AS {ty}[])) AS {ty}[]))"),
                vec![list],
            );
        }
        if d == Dialect::Postgres {
            let arrays: Vec<String> = self
                .columns
                .iter()
                .map(|(_, ty)| format!("CAST(? AS {ty}[])"))
                .collect();
            let params = (0..self.columns.len())
                .map(|i| {
                    Value::TextList(batch.iter().map(|k| k.get(i).cloned().flatten()).collect())
                })
                .collect();
            return (
                format!("{lhs} IN (SELECT * FROM unnest({}))", arrays.join(", ")),
                params,
            );
        }
        let one = vec!["?"; self.columns.len()].join(", ");
        let tuple = if self.columns.len() == 1 {
            one
        } else {
            format!("({one})")
        };
        let sql = format!("{lhs} IN ({})", vec![tuple; batch.len()].join(", "));
        let params = batch
            .iter()
            .flat_map(|k| {
                k.iter()
                    .map(|v| v.clone().map(Value::Text).unwrap_or(Value::Null))
            })
            .collect();
        (sql, params)
    }

    /// The batches statements take: every key at once for PostgreSQL's arrays.
    pub(crate) fn batches(&self, d: Dialect) -> std::slice::Chunks<'_, Vec<Option<String>>> {
        let size = if d == Dialect::Postgres {
            self.keys.len().max(1)
        } else {
            KEYS_PER_STATEMENT
        };
        self.keys.chunks(size)
    }
}

/// Rows and bytes a reader has sent so far.
#[derive(Debug, Default)]
pub struct ReadProgress {
    pub rows: std::sync::atomic::AtomicU64,
    pub bytes: std::sync::atomic::AtomicU64,
}

impl ReadProgress {
    pub(crate) fn add(&self, rows: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows.fetch_add(rows, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}

/// The SELECT statements a reader runs: the whole table, or the rows of some keys in batches.
pub(crate) fn select_statements(
    d: Dialect,
    spec: &ReadSpec,
    exprs: &[String],
) -> Vec<(String, Vec<Value>)> {
    let base = format!("SELECT {} FROM {}", exprs.join(", "), d.quote(&spec.table));
    if let Some(range) = &spec.range {
        let (condition, params, order) = range.clauses(d);
        let filter = if condition.is_empty() {
            String::new()
        } else {
            format!(" WHERE {condition}")
        };
        return vec![(format!("{base}{filter} ORDER BY {order}"), params)];
    }
    match &spec.keys {
        None => vec![(base, vec![])],
        Some(filter) => filter
            .batches(d)
            .map(|batch| {
                let (cond, params) = filter.condition(d, batch);
                (format!("{base} WHERE {cond}"), params)
            })
            .collect(),
    }
}

/// Decodes a stream of rows into chunks and sends them on. Stops early, without error, when
/// the loader has gone (it failed, and says why). Returns the rows read. The caller sends
/// `Chunk::End` after its last statement.
pub(crate) async fn pump_rows<R, S>(
    mut stream: S,
    decode: impl Fn(&R) -> Result<Vec<Value>, DbError>,
    out: &tokio::sync::mpsc::Sender<Chunk>,
    progress: &ReadProgress,
) -> Result<u64, DbError>
where
    S: futures_util::Stream<Item = Result<R, sqlx::Error>> + Unpin,
{
    use futures_util::TryStreamExt;
    let mut rows_read = 0u64;
    let mut batch = Vec::with_capacity(CHUNK_ROWS);
    let mut bytes = 0usize;
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| DbError::sql("reading", e))?
    {
        let values = decode(&row)?;
        bytes += values.iter().map(Value::size).sum::<usize>();
        batch.push(values);
        rows_read += 1;
        if batch.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES {
            progress.add(batch.len() as u64, bytes as u64);
            bytes = 0;
            let full = std::mem::replace(&mut batch, Vec::with_capacity(CHUNK_ROWS));
            if out.send(Chunk::Rows(full)).await.is_err() {
                return Ok(rows_read);
            }
        }
    }
    progress.add(batch.len() as u64, bytes as u64);
    if !batch.is_empty() {
        let _ = out.send(Chunk::Rows(batch)).await;
    }
    Ok(rows_read)
}
