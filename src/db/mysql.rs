//! MySQL and MariaDB: catalog, consistent-snapshot reads and multi-row INSERT loads.

use super::field;
use super::{
    Chunk, ColumnDef, ConnectSpec, DbError, Dialect, Kind, ReadSpec, Statement, TableDef, Value,
    describe, redact_url,
};
use sqlx::mysql::{MySqlArguments, MySqlConnectOptions, MySqlPoolOptions, MySqlRow};
use sqlx::{Arguments, AssertSqlSafe, MySqlPool, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

const Q: Dialect = Dialect::MySql;
/// MySQL's limit of parameters per prepared statement.
const MAX_PARAMS: usize = 65_535;

pub async fn connect(spec: &ConnectSpec) -> Result<MySqlPool, DbError> {
    let redacted = redact_url(&spec.url);
    let url = spec.url.replacen("mariadb://", "mysql://", 1);
    let mut options = MySqlConnectOptions::from_str(&url)
        .map_err(|e| DbError::Config(format!("invalid MySQL URL {redacted}: {}", describe(&e))))?
        .timezone(Some("+00:00".into()))
        .charset("utf8mb4");
    if let Some(pw) = &spec.password {
        options = options.password(pw);
    }
    if let Some(tls) = &spec.tls {
        options = super::tls::mysql(options, tls);
    }
    let pool = MySqlPoolOptions::new()
        // Every new connection: see `nodelay`.
        .after_connect(|_, _| {
            Box::pin(async {
                super::nodelay::apply();
                Ok(())
            })
        })
        .max_connections(spec.max_connections.max(1))
        // Every connection opens at the start and is kept for the pool's life: a run goes on
        // with the connections it holds when its runtime key is rotated.
        .min_connections(spec.max_connections.max(1))
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(3600));
    super::open_server_pool(pool, options, &redacted).await
}

fn kind_of(data_type: &str, column_type: &str) -> Kind {
    match data_type {
        "tinyint" if column_type.starts_with("tinyint(1)") => Kind::Bool,
        "bool" | "boolean" => Kind::Bool,
        "bigint" if column_type.contains("unsigned") => Kind::Decimal,
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint" | "year" => Kind::Int,
        "float" | "double" | "real" => Kind::Float,
        "decimal" | "numeric" => Kind::Decimal,
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" | "bit" => {
            Kind::Bytes
        }
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        "time" => Kind::Time,
        "datetime" => Kind::Timestamp,
        "timestamp" => Kind::TimestampTz,
        _ => Kind::Text,
    }
}

pub async fn tables(pool: &MySqlPool) -> Result<Vec<TableDef>, DbError> {
    let sizes = sqlx::query(
        "SELECT CAST(table_name AS CHAR), CAST(COALESCE(table_rows, 0) AS SIGNED),
                CAST(COALESCE(data_length, 0) + COALESCE(index_length, 0) AS SIGNED)
         FROM information_schema.tables
         WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE'",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading table sizes", e))?;
    let mut tables: HashMap<String, TableDef> = HashMap::new();
    for row in sizes {
        let name: String = field(&row, 0, "reading table sizes")?;
        tables.insert(
            name.clone(),
            TableDef {
                name,
                columns: vec![],
                primary_key: vec![],
                est_rows: field(&row, 1, "reading table sizes")?,
                est_bytes: field(&row, 2, "reading table sizes")?,
            },
        );
    }
    let columns = sqlx::query(
        "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR), CAST(data_type AS CHAR),
                CAST(column_type AS CHAR), CAST(is_nullable AS CHAR),
                CAST(character_maximum_length AS SIGNED), CAST(numeric_precision AS SIGNED),
                CAST(numeric_scale AS SIGNED)
         FROM information_schema.columns
         WHERE table_schema = DATABASE()
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading columns", e))?;
    for row in columns {
        let table: String = field(&row, 0, "reading columns")?;
        let data_type: String = field(&row, 2, "reading columns")?;
        let column_type: String = field(&row, 3, "reading columns")?;
        let kind = kind_of(
            &data_type.to_ascii_lowercase(),
            &column_type.to_ascii_lowercase(),
        );
        if let Some(t) = tables.get_mut(&table) {
            let max: Option<i64> = field(&row, 5, "reading columns")?;
            let precision: Option<i64> = field(&row, 6, "reading columns")?;
            let scale: Option<i64> = field(&row, 7, "reading columns")?;
            t.columns.push(ColumnDef {
                name: field(&row, 1, "reading columns")?,
                kind,
                type_name: column_type,
                nullable: field::<_, String>(&row, 4, "reading columns")? == "YES",
                max_chars: if kind == Kind::Text && matches!(data_type.as_str(), "char" | "varchar")
                {
                    max
                } else {
                    None
                },
                precision: if kind == Kind::Decimal {
                    precision.map(|p| p as i32)
                } else {
                    None
                },
                scale: if kind == Kind::Decimal {
                    scale.map(|s| s as i32)
                } else {
                    None
                },
            });
        }
    }
    let keys = sqlx::query(
        "SELECT CAST(table_name AS CHAR), CAST(column_name AS CHAR)
         FROM information_schema.statistics
         WHERE table_schema = DATABASE() AND index_name = 'PRIMARY'
         ORDER BY table_name, seq_in_index",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading primary keys", e))?;
    for row in keys {
        let table: String = field(&row, 0, "reading primary keys")?;
        if let Some(t) = tables.get_mut(&table) {
            t.primary_key.push(field(&row, 1, "reading primary keys")?);
        }
    }
    Ok(tables.into_values().collect())
}

fn bind(args: &mut MySqlArguments, v: &Value, target: Kind) -> Result<(), DbError> {
    let r = match v {
        Value::Null => args.add(None::<String>),
        Value::Bool(b) => args.add(*b),
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
        Value::Uuid(u) => args.add(u.hyphenated().to_string()),
        Value::Date(d) => args.add(*d),
        Value::Time(t) => args.add(*t),
        Value::Timestamp(t) => args.add(*t),
        Value::TimestampTz(t) => args.add(t.naive_utc()),
        Value::TextList(_) | Value::IntList(_) => {
            return Err(DbError::Sql(
                "list parameters are for PostgreSQL only".into(),
            ));
        }
    };
    r.map_err(|e| DbError::Sql(format!("binding a parameter: {e}")))
}

fn arguments(params: &[Value]) -> Result<MySqlArguments, DbError> {
    let mut args = MySqlArguments::default();
    for p in params {
        bind(&mut args, p, Kind::Text)?;
    }
    Ok(args)
}

pub async fn execute(pool: &MySqlPool, stmt: &Statement) -> Result<u64, DbError> {
    // Trigger definitions are not allowed as prepared statements: without parameters, the text
    // protocol runs the statement as it is.
    if stmt.params.is_empty() {
        return sqlx::raw_sql(AssertSqlSafe(stmt.sql.clone()))
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
            .map_err(|e| DbError::sql("statement failed", e));
    }
    sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), arguments(&stmt.params)?)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| DbError::sql("statement failed", e))
}

pub async fn in_transaction(pool: &MySqlPool, stmts: &[Statement]) -> Result<(), DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::sql("setting the isolation level", e))?;
    let mut tx = sqlx::Connection::begin(&mut *conn)
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
    pool: &MySqlPool,
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
    pool: &MySqlPool,
    stmt: &Statement,
    kinds: &[Kind],
) -> Result<Vec<Vec<Value>>, DbError> {
    let rows = sqlx::query_with(AssertSqlSafe(stmt.sql.clone()), arguments(&stmt.params)?)
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::sql("query failed", e))?;
    rows.iter().map(|r| decode_row(r, kinds)).collect()
}

/// The expression that reads a column in a form `decode` takes.
fn select_expr(c: &ColumnDef) -> String {
    let q = Q.quote(&c.name);
    match c.kind {
        Kind::Int => format!("CAST({q} AS SIGNED)"),
        Kind::Bool => format!("({q} <> 0)"),
        Kind::Decimal | Kind::Uuid => format!("CAST({q} AS CHAR)"),
        Kind::Text => format!("CAST({q} AS CHAR CHARACTER SET utf8mb4)"),
        Kind::Float => format!("CAST({q} AS DOUBLE)"),
        Kind::TimestampTz => format!("CAST({q} AS DATETIME(6))"),
        _ => q,
    }
}

fn decode_row(row: &MySqlRow, kinds: &[Kind]) -> Result<Vec<Value>, DbError> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| decode(row, i, *k))
        .collect()
}

fn decode(row: &MySqlRow, i: usize, kind: Kind) -> Result<Value, DbError> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::MySql> + sqlx::Type<sqlx::MySql>>(
        row: &'r MySqlRow,
        i: usize,
    ) -> Result<Option<T>, DbError> {
        row.try_get_unchecked::<Option<T>, _>(i)
            .map_err(|e| DbError::Sql(format!("decoding column {i}: {e}")))
    }
    Ok(match kind {
        Kind::Bool => get::<i64>(row, i)?.map(|n| Value::Bool(n != 0)),
        Kind::Int => get::<i64>(row, i)?.map(Value::Int),
        Kind::Float => get::<f64>(row, i)?.map(Value::Float),
        Kind::Decimal => get::<String>(row, i)?.map(Value::Decimal),
        Kind::Text => get::<String>(row, i)?.map(Value::Text),
        Kind::Bytes => get::<Vec<u8>>(row, i)?.map(Value::Bytes),
        Kind::Uuid => get::<String>(row, i)?.map(|s| match uuid::Uuid::parse_str(&s) {
            Ok(u) => Value::Uuid(u),
            Err(_) => Value::Text(s),
        }),
        Kind::Date => get::<chrono::NaiveDate>(row, i)?.map(Value::Date),
        Kind::Time => get::<chrono::NaiveTime>(row, i)?.map(Value::Time),
        Kind::Timestamp => get::<chrono::NaiveDateTime>(row, i)?.map(Value::Timestamp),
        Kind::TimestampTz => {
            get::<chrono::NaiveDateTime>(row, i)?.map(|t| Value::TimestampTz(t.and_utc()))
        }
    }
    .unwrap_or(Value::Null))
}

pub async fn read_table(
    pool: &MySqlPool,
    spec: &ReadSpec,
    out: mpsc::Sender<Chunk>,
) -> Result<u64, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    sqlx::query("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::sql("setting the isolation level", e))?;
    sqlx::query("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::sql("starting the read transaction", e))?;
    let exprs: Vec<String> = spec.columns.iter().map(select_expr).collect();
    let kinds: Vec<Kind> = spec.columns.iter().map(|c| c.kind).collect();
    let mut result = Ok(0);
    for (sql, params) in super::select_statements(Q, spec, &exprs) {
        let args = match arguments(&params) {
            Ok(a) => a,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let stream = sqlx::query_with(AssertSqlSafe(sql), args).fetch(&mut *conn);
        match super::pump_rows(stream, |row| decode_row(row, &kinds), &out, &spec.progress).await {
            Ok(n) => result = result.map(|total| total + n),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    if result.is_ok() {
        let _ = out.send(Chunk::End).await;
    }
    result
}

/// How this dialect loads a table: batched INSERTs in one transaction
/// (`super::load_by_inserts`), as many rows per INSERT as its parameter limit allows.
pub(crate) const LOADER: super::Binder<sqlx::MySql> = super::Binder {
    max_params: MAX_PARAMS,
    bind,
    arguments,
};
