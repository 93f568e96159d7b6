//! SQLite: catalog, snapshot reads and multi-row INSERT loads.

use super::field;
use super::{
    Chunk, ColumnDef, ConnectSpec, DbError, Dialect, Kind, ReadSpec, Statement, TableDef, Value,
    describe, redact_url,
};
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Arguments, AssertSqlSafe, Connection, Row, SqlitePool, TypeInfo, ValueRef};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

const Q: Dialect = Dialect::Sqlite;
/// SQLite's limit of parameters per statement.
const MAX_PARAMS: usize = 32_766;

/// Opens the file in WAL mode; `read_only` only to read it: its journal mode then stays as it
/// is, and nothing is written (a probe's look).
pub async fn connect(spec: &ConnectSpec, read_only: bool) -> Result<SqlitePool, DbError> {
    let redacted = redact_url(&spec.url);
    let options = SqliteConnectOptions::from_str(&spec.url)
        .map_err(|e| DbError::Config(format!("invalid SQLite URL {redacted}: {}", describe(&e))))?
        .create_if_missing(spec.create && !read_only)
        .busy_timeout(Duration::from_secs(600));
    let options = if read_only {
        options.read_only(true)
    } else {
        options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    };
    if !spec.create {
        let path = options.get_filename();
        if path.to_str() != Some(":memory:") && !path.exists() {
            return Err(DbError::Connect {
                url: redacted,
                message: format!("the file {} does not exist", path.display()),
            });
        }
    }
    // One writer at a time is all SQLite allows: a target gets one connection, and loads queue.
    let max = if spec.create {
        1
    } else {
        spec.max_connections.max(1)
    };
    super::check_connect::<sqlx::SqliteConnection>(&options, &redacted).await?;
    Ok(SqlitePoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(24 * 3600))
        .connect_lazy_with(options))
}

/// The kind of a declared SQLite type, by SQLite's own affinity rules plus the common names.
pub fn kind_of(declared: &str) -> Kind {
    let t = declared.to_ascii_uppercase();
    let base = t.split('(').next().unwrap_or("").trim();
    match base {
        "BOOLEAN" | "BOOL" => Kind::Bool,
        "UUID" | "UNIQUEIDENTIFIER" => Kind::Uuid,
        "DATE" => Kind::Date,
        "TIME" => Kind::Time,
        "DATETIME" | "TIMESTAMP" => Kind::Timestamp,
        "TIMESTAMPTZ" => Kind::TimestampTz,
        "DECIMAL" | "NUMERIC" | "MONEY" => Kind::Decimal,
        _ if t.contains("INT") => Kind::Int,
        _ if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") => Kind::Text,
        _ if t.contains("BLOB") || t.is_empty() => Kind::Bytes,
        _ if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") => Kind::Float,
        _ => Kind::Decimal,
    }
}

/// `(n)` or `(p,s)` of a declared type.
fn type_args(declared: &str) -> Vec<i64> {
    declared
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(args, _)| {
            args.split(',')
                .filter_map(|a| a.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub async fn tables(pool: &SqlitePool) -> Result<Vec<TableDef>, DbError> {
    let rows = sqlx::query(
        "SELECT m.name, p.name, p.type, p.\"notnull\", p.pk
         FROM sqlite_schema m JOIN pragma_table_info(m.name) p
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY m.name, p.cid",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading columns", e))?;
    let mut tables: HashMap<String, (TableDef, Vec<(i64, String)>)> = HashMap::new();
    for row in rows {
        let table: String = field(&row, 0, "reading columns")?;
        let declared: String = field(&row, 2, "reading columns")?;
        let kind = kind_of(&declared);
        let args = type_args(&declared);
        let entry = tables.entry(table.clone()).or_insert_with(|| {
            (
                TableDef {
                    name: table,
                    columns: vec![],
                    primary_key: vec![],
                    est_rows: 0,
                    est_bytes: 0,
                },
                vec![],
            )
        });
        let name: String = field(&row, 1, "reading columns")?;
        let pk: i64 = field(&row, 4, "reading columns")?;
        if pk > 0 {
            entry.1.push((pk, name.clone()));
        }
        entry.0.columns.push(ColumnDef {
            name,
            kind,
            type_name: declared,
            nullable: field::<_, i64>(&row, 3, "reading columns")? == 0,
            max_chars: if kind == Kind::Text {
                args.first().copied()
            } else {
                None
            },
            precision: if kind == Kind::Decimal {
                args.first().map(|&p| p as i32)
            } else {
                None
            },
            scale: if kind == Kind::Decimal {
                args.get(1).map(|&s| s as i32)
            } else {
                None
            },
        });
    }
    // Row estimates: ANALYZE's statistics where they exist.
    let has_stats: Option<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_schema WHERE name = 'sqlite_stat1'")
            .fetch_optional(pool)
            .await
            .map_err(|e| DbError::sql("reading statistics", e))?;
    let mut estimates: HashMap<String, i64> = HashMap::new();
    if has_stats.is_some() {
        let stats = sqlx::query(
            // SQLite stores any type in any column: read the statistics as text, whatever a
            // crafted file holds.
            "SELECT CAST(tbl AS TEXT), COALESCE(CAST(stat AS TEXT), '') FROM sqlite_stat1 \
             WHERE tbl IS NOT NULL",
        )
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::sql("reading statistics", e))?;
        for row in stats {
            let stat: String = field(&row, 1, "reading statistics")?;
            let n = stat
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let e = estimates
                .entry(field(&row, 0, "reading statistics")?)
                .or_insert(0);
            *e = (*e).max(n);
        }
    }
    Ok(tables
        .into_values()
        .map(|(mut t, mut pk)| {
            pk.sort();
            t.primary_key = pk.into_iter().map(|(_, n)| n).collect();
            t.est_rows = estimates.get(&t.name).copied().unwrap_or(0);
            t
        })
        .collect())
}

fn bind(args: &mut SqliteArguments, v: &Value, target: Kind) -> Result<(), DbError> {
    let r = match v {
        Value::Null => args.add(None::<String>),
        Value::Bool(b) => args.add(*b as i64),
        Value::Int(i) => args.add(*i),
        Value::Float(f) => args.add(*f),
        Value::Decimal(s) | Value::Text(s) => args.add(s.clone()),
        Value::Bytes(b) if target == Kind::Uuid && b.len() == 16 => args.add(
            uuid::Uuid::from_slice(b)
                .unwrap_or_default()
                .hyphenated()
                .to_string(),
        ),
        Value::Bytes(b) => args.add(b.clone()),
        Value::Uuid(u) if target == Kind::Bytes => args.add(u.as_bytes().to_vec()),
        Value::TextList(_) | Value::IntList(_) => {
            return Err(DbError::Sql(
                "list parameters are for PostgreSQL only".into(),
            ));
        }
        other => args.add(other.to_text()),
    };
    r.map_err(|e| DbError::Sql(format!("binding a parameter: {e}")))
}

fn arguments(params: &[Value]) -> Result<SqliteArguments, DbError> {
    let mut args = SqliteArguments::default();
    for p in params {
        bind(&mut args, p, Kind::Text)?;
    }
    Ok(args)
}

pub async fn execute(pool: &SqlitePool, stmt: &Statement) -> Result<u64, DbError> {
    sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), arguments(&stmt.params)?)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| DbError::sql("statement failed", e))
}

pub async fn in_transaction(pool: &SqlitePool, stmts: &[Statement]) -> Result<(), DbError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::sql("starting a transaction", e))?;
    for (i, stmt) in stmts.iter().enumerate() {
        sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), arguments(&stmt.params)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::InTransaction {
                index: i,
                message: super::describe(&e),
            })?;
    }
    tx.commit().await.map_err(|e| DbError::sql("committing", e))
}

/// Runs a query and sends its rows on in chunks as they arrive, never all at once.
pub async fn query_chunks(
    pool: &SqlitePool,
    stmt: &Statement,
    kinds: &[Kind],
    out: &mpsc::Sender<Chunk>,
) -> Result<u64, DbError> {
    let args = arguments(&stmt.params)?;
    let sql = stmt.sql.clone();
    let stream = sqlx::query_with(AssertSqlSafe(sql), args).fetch(pool);
    super::pump_rows(
        stream,
        |row| decode_row(row, kinds),
        out,
        &Default::default(),
    )
    .await
}

pub async fn query(
    pool: &SqlitePool,
    stmt: &Statement,
    kinds: &[Kind],
) -> Result<Vec<Vec<Value>>, DbError> {
    let rows = sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), arguments(&stmt.params)?)
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::sql("query failed", e))?;
    rows.iter().map(|r| decode_row(r, kinds)).collect()
}

fn decode_row(row: &SqliteRow, kinds: &[Kind]) -> Result<Vec<Value>, DbError> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| decode(row, i, *k))
        .collect()
}

/// SQLite types values, not columns: decode by the value's storage class, shaped by the
/// column's declared kind.
fn decode(row: &SqliteRow, i: usize, kind: Kind) -> Result<Value, DbError> {
    let err = |e: sqlx::Error| DbError::Sql(format!("decoding column {i}: {e}"));
    let raw = row.try_get_raw(i).map_err(err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let class = raw.type_info().name().to_string();
    Ok(match class.as_str() {
        "INTEGER" => {
            let n: i64 = row.try_get(i).map_err(err)?;
            match kind {
                Kind::Bool => Value::Bool(n != 0),
                Kind::Decimal => Value::Decimal(n.to_string()),
                Kind::Float => Value::Float(n as f64),
                _ => Value::Int(n),
            }
        }
        "REAL" => {
            let f: f64 = row.try_get(i).map_err(err)?;
            match kind {
                Kind::Decimal => Value::Decimal(super::value::float_text(f)),
                _ => Value::Float(f),
            }
        }
        "BLOB" => {
            let b: Vec<u8> = row.try_get(i).map_err(err)?;
            match kind {
                Kind::Uuid if b.len() == 16 => {
                    Value::Uuid(uuid::Uuid::from_slice(&b).unwrap_or_default())
                }
                _ => Value::Bytes(b),
            }
        }
        _ => {
            let s: String = row.try_get(i).map_err(err)?;
            match kind {
                Kind::Decimal => Value::Decimal(s),
                Kind::Uuid => match uuid::Uuid::parse_str(&s) {
                    Ok(u) => Value::Uuid(u),
                    Err(_) => Value::Text(s),
                },
                _ => Value::Text(s),
            }
        }
    })
}

pub async fn read_table(
    pool: &SqlitePool,
    spec: &ReadSpec,
    out: mpsc::Sender<Chunk>,
) -> Result<u64, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    // A read transaction sees one snapshot of the file from its first read to its end.
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| DbError::sql("starting the read transaction", e))?;
    let cols: Vec<String> = spec.columns.iter().map(|c| Q.quote(&c.name)).collect();
    let kinds: Vec<Kind> = spec.columns.iter().map(|c| c.kind).collect();
    let mut rows_read = 0;
    for (sql, params) in super::select_statements(Q, spec, &cols) {
        let stream = sqlx::query_with(AssertSqlSafe(sql), arguments(&params)?).fetch(&mut *tx);
        rows_read +=
            super::pump_rows(stream, |row| decode_row(row, &kinds), &out, &spec.progress).await?;
    }
    let _ = out.send(Chunk::End).await;
    tx.rollback()
        .await
        .map_err(|e| DbError::sql("ending the read transaction", e))?;
    Ok(rows_read)
}

/// How this dialect loads a table: batched INSERTs in one transaction
/// (`super::load_by_inserts`), as many rows per INSERT as its parameter limit allows.
pub(crate) const LOADER: super::Binder<sqlx::Sqlite> = super::Binder {
    max_params: MAX_PARAMS,
    bind,
    arguments,
};
