//! What the database layer knows of a table (its columns, types and key), and the DDL that
//! makes a table of that shape in another dialect.

use super::{Dialect, Kind};

/// A column as the catalog reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub kind: Kind,
    /// The type as the database spells it, for example `character varying(100)`.
    pub type_name: String,
    pub nullable: bool,
    /// The declared length of a text column, in characters.
    pub max_chars: Option<i64>,
    /// Precision and scale of an exact number.
    pub precision: Option<i32>,
    pub scale: Option<i32>,
}

/// A table as the catalog reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TableDef {
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Primary key column names, in key order. Empty: the table has none.
    pub primary_key: Vec<String>,
    /// The database's own estimate of rows, 0 when unknown.
    pub est_rows: i64,
    /// The database's own estimate of bytes, 0 when unknown.
    pub est_bytes: i64,
}

impl TableDef {
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Tables whose names start with this belong to cloudmigrate itself, in the source (change
/// tracking) and the target (replication state). The catalog leaves them out.
pub const OWN_PREFIX: &str = "cloudmigrate_";

/// The type a column gets in a table created in `target`. Between two databases of one dialect
/// the source's own spelling is kept.
pub fn column_type(target: Dialect, source: Dialect, c: &ColumnDef, in_key: bool) -> String {
    if target == source {
        return c.type_name.clone();
    }
    let decimal = |max_p: i32, max_s: i32| match (c.precision, c.scale) {
        (Some(p), Some(s)) if p <= max_p && s <= max_s => format!("DECIMAL({p},{s})"),
        (Some(p), None) if p <= max_p => format!("DECIMAL({p},0)"),
        _ => format!("DECIMAL({max_p},{max_s})"),
    };
    match (target, c.kind) {
        (Dialect::Postgres, Kind::Bool) => "boolean".into(),
        (Dialect::Postgres, Kind::Int) => "bigint".into(),
        (Dialect::Postgres, Kind::Float) => "double precision".into(),
        (Dialect::Postgres, Kind::Decimal) => match (c.precision, c.scale) {
            (Some(p), s) if p <= 1000 => format!("numeric({p},{})", s.unwrap_or(0)),
            _ => "numeric".into(),
        },
        (Dialect::Postgres, Kind::Text) => match c.max_chars {
            Some(n) => format!("varchar({n})"),
            None => "text".into(),
        },
        (Dialect::Postgres, Kind::Bytes) => "bytea".into(),
        (Dialect::Postgres, Kind::Uuid) => "uuid".into(),
        (Dialect::Postgres, Kind::Date) => "date".into(),
        (Dialect::Postgres, Kind::Time) => "time".into(),
        (Dialect::Postgres, Kind::Timestamp) => "timestamp".into(),
        (Dialect::Postgres, Kind::TimestampTz) => "timestamptz".into(),
        (Dialect::MySql, Kind::Bool) => "TINYINT(1)".into(),
        (Dialect::MySql, Kind::Int) => "BIGINT".into(),
        (Dialect::MySql, Kind::Float) => "DOUBLE".into(),
        (Dialect::MySql, Kind::Decimal) => decimal(65, 30),
        (Dialect::MySql, Kind::Text) => match c.max_chars {
            Some(n) if n <= 16_000 => format!("VARCHAR({n})"),
            _ if in_key => "VARCHAR(255)".into(),
            _ => "LONGTEXT".into(),
        },
        (Dialect::MySql, Kind::Bytes) => if in_key { "VARBINARY(255)" } else { "LONGBLOB" }.into(),
        (Dialect::MySql, Kind::Uuid) => "CHAR(36)".into(),
        (Dialect::MySql, Kind::Date) => "DATE".into(),
        (Dialect::MySql, Kind::Time) => "TIME(6)".into(),
        (Dialect::MySql, Kind::Timestamp | Kind::TimestampTz) => "DATETIME(6)".into(),
        (Dialect::Sqlite, Kind::Bool) => "BOOLEAN".into(),
        (Dialect::Sqlite, Kind::Int) => "INTEGER".into(),
        (Dialect::Sqlite, Kind::Float) => "REAL".into(),
        // TEXT affinity keeps every digit; NUMERIC affinity would round to 15.
        (Dialect::Sqlite, Kind::Decimal) => "TEXT".into(),
        (Dialect::Sqlite, Kind::Text) => match c.max_chars {
            Some(n) => format!("VARCHAR({n})"),
            None => "TEXT".into(),
        },
        (Dialect::Sqlite, Kind::Bytes) => "BLOB".into(),
        (Dialect::Sqlite, Kind::Uuid) => "UUID".into(),
        (Dialect::Sqlite, Kind::Date) => "DATE".into(),
        (Dialect::Sqlite, Kind::Time) => "TIME".into(),
        (Dialect::Sqlite, Kind::Timestamp) => "DATETIME".into(),
        (Dialect::Sqlite, Kind::TimestampTz) => "TIMESTAMPTZ".into(),
    }
}

/// `CREATE TABLE` for a source table in the target's dialect, with its primary key.
pub fn create_table_sql(target: Dialect, source: Dialect, table: &TableDef, name: &str) -> String {
    let mut parts: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let in_key = table.primary_key.contains(&c.name);
            let null = if c.nullable { "" } else { " NOT NULL" };
            format!(
                "{} {}{null}",
                target.quote(&c.name),
                column_type(target, source, c, in_key)
            )
        })
        .collect();
    if !table.primary_key.is_empty() {
        let key: Vec<String> = table.primary_key.iter().map(|k| target.quote(k)).collect();
        parts.push(format!("PRIMARY KEY ({})", key.join(", ")));
    }
    format!("CREATE TABLE {} ({})", target.quote(name), parts.join(", "))
}
