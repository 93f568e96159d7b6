//! PostgreSQL: catalog, snapshot reads (rows or binary COPY) and COPY loads.

use super::field;
use super::{
    CHUNK_BYTES, Chunk, ColumnDef, ConnectSpec, DbError, Dialect, Finish, Kind, LoadSpec,
    LoadStats, ReadSpec, Statement, TableDef, Value, check_row, describe, redact_url,
};
use bytes::BytesMut;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{Arguments, AssertSqlSafe, Connection, PgPool, Row};
use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;
use tokio::sync::mpsc;

const Q: Dialect = Dialect::Postgres;

pub async fn connect(spec: &ConnectSpec) -> Result<PgPool, DbError> {
    let redacted = redact_url(&spec.url);
    let mut options = PgConnectOptions::from_str(&spec.url).map_err(|e| {
        DbError::Config(format!(
            "invalid PostgreSQL URL {redacted}: {}",
            describe(&e)
        ))
    })?;
    if let Some(pw) = &spec.password {
        options = options.password(pw);
    }
    options = options.application_name("cloudmigrate");
    if let Some(tls) = &spec.tls {
        options = super::tls::postgres(options, tls);
        if tls.mode == super::tls::TlsMode::Disable && spec.password.is_some() {
            super::tls::refuse_clear_text_login(&options)
                .await
                .map_err(|m| super::connect_error(&redacted, m))?;
        }
    }
    let pool = PgPoolOptions::new()
        // Every new connection: see `nodelay`; and the session's search_path pinned to the one
        // schema that is current at login, so that every name of the session resolves there
        // (after pg_catalog, which comes first when it is not named) and nowhere else.
        .after_connect(|conn, _| {
            Box::pin(async move {
                super::nodelay::apply();
                sqlx::query(PIN_SEARCH_PATH).execute(conn).await?;
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

/// Sets the session's search_path to one schema alone: the first existing schema of the
/// login's path that is not a temporary one (a `pg_temp` first on the path would otherwise be
/// the current schema). Empty when there is none, which later statements report as "no
/// current schema".
const PIN_SEARCH_PATH: &str = "SELECT pg_catalog.set_config('search_path', coalesce(( \
     SELECT pg_catalog.quote_ident(p.s) \
     FROM pg_catalog.unnest(pg_catalog.current_schemas(false)) WITH ORDINALITY AS p(s, i) \
     WHERE p.s !~ '^pg_(toast_)?temp_' ORDER BY p.i LIMIT 1), ''), false)";

fn kind_of(typname: &str) -> Kind {
    match typname {
        "bool" => Kind::Bool,
        "int2" | "int4" | "int8" | "oid" => Kind::Int,
        "float4" | "float8" => Kind::Float,
        "numeric" | "money" => Kind::Decimal,
        "bytea" => Kind::Bytes,
        "uuid" => Kind::Uuid,
        "date" => Kind::Date,
        "time" => Kind::Time,
        "timestamp" => Kind::Timestamp,
        "timestamptz" => Kind::TimestampTz,
        _ => Kind::Text,
    }
}

pub async fn tables(pool: &PgPool) -> Result<Vec<TableDef>, DbError> {
    let sizes = sqlx::query(
        // The planner's estimate: the density the last ANALYZE saw, times the pages there
        // are now. `reltuples` alone can be as old as the table's first hundred rows.
        "SELECT c.relname,
                (CASE WHEN c.relpages > 0 THEN c.reltuples::float8 / c.relpages
                      * (pg_catalog.pg_relation_size(c.oid)
                         / pg_catalog.current_setting('block_size')::int8)
                      ELSE c.reltuples::float8 END)::int8,
                pg_catalog.pg_total_relation_size(c.oid)::int8
         FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = pg_catalog.current_schema() AND c.relkind IN ('r', 'p')",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading table sizes", e))?;
    let mut tables: HashMap<String, TableDef> = HashMap::new();
    for row in sizes {
        let name: String = field(&row, 0, "reading table sizes")?;
        let rows: i64 = field(&row, 1, "reading table sizes")?;
        tables.insert(
            name.clone(),
            TableDef {
                name,
                columns: vec![],
                primary_key: vec![],
                est_rows: rows.max(0),
                est_bytes: field(&row, 2, "reading table sizes")?,
            },
        );
    }
    let columns = sqlx::query(
        "SELECT c.relname, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), t.typname, a.attnotnull,
                CASE WHEN t.typname IN ('varchar', 'bpchar') AND a.atttypmod > 4
                     THEN (a.atttypmod - 4)::int8 END,
                CASE WHEN t.typname = 'numeric' AND a.atttypmod > 4
                     THEN (((a.atttypmod - 4) >> 16) & 65535)::int4 END,
                CASE WHEN t.typname = 'numeric' AND a.atttypmod > 4
                     THEN ((a.atttypmod - 4) & 65535)::int4 END
         FROM pg_catalog.pg_class c
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
         JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
         WHERE n.nspname = pg_catalog.current_schema() AND c.relkind IN ('r', 'p')
           AND a.attnum > 0 AND NOT a.attisdropped
         ORDER BY c.relname, a.attnum",
    )
    .fetch_all(pool)
    .await
    .map_err(|e| DbError::sql("reading columns", e))?;
    for row in columns {
        let table: String = field(&row, 0, "reading columns")?;
        let typname: String = field(&row, 3, "reading columns")?;
        if let Some(t) = tables.get_mut(&table) {
            t.columns.push(ColumnDef {
                name: field(&row, 1, "reading columns")?,
                kind: kind_of(&typname),
                type_name: field(&row, 2, "reading columns")?,
                nullable: !field::<_, bool>(&row, 4, "reading columns")?,
                max_chars: field(&row, 5, "reading columns")?,
                precision: field(&row, 6, "reading columns")?,
                scale: field(&row, 7, "reading columns")?,
            });
        }
    }
    let keys = sqlx::query(
        "SELECT c.relname, a.attname
         FROM pg_catalog.pg_index i
         JOIN pg_catalog.pg_class c ON c.oid = i.indrelid
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
         JOIN LATERAL pg_catalog.unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
         WHERE i.indisprimary AND n.nspname = pg_catalog.current_schema()
         ORDER BY c.relname, k.ord",
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

fn bind(args: &mut PgArguments, v: &Value) -> Result<(), DbError> {
    let r = match v {
        Value::Null => args.add(None::<String>),
        Value::Bool(b) => args.add(*b),
        Value::Int(i) => args.add(*i),
        Value::Float(f) => args.add(*f),
        Value::Decimal(s) | Value::Text(s) => args.add(s.as_str()),
        Value::Bytes(b) => args.add(b.as_slice()),
        Value::Uuid(u) => args.add(*u),
        Value::Date(d) => args.add(*d),
        Value::Time(t) => args.add(*t),
        Value::Timestamp(t) => args.add(*t),
        Value::TimestampTz(t) => args.add(*t),
        Value::TextList(l) => args.add(l.as_slice()),
        Value::IntList(l) => args.add(l.as_slice()),
    };
    r.map_err(|e| DbError::Sql(format!("binding a parameter: {e}")))
}

/// PostgreSQL numbers its parameters: `?` placeholders become `$1`, `$2`, ... A NULL becomes
/// the literal `NULL`, which takes the column's type; a typed NULL parameter would not.
fn prepare(sql: &str, params: &[Value]) -> Result<(String, PgArguments), DbError> {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut args = PgArguments::default();
    let mut params = params.iter();
    let mut n = 0;
    let mut in_quote: Option<char> = None;
    for c in sql.chars() {
        match (c, in_quote) {
            ('\'' | '"', None) => in_quote = Some(c),
            (q, Some(open)) if q == open => in_quote = None,
            ('?', None) => {
                match params.next() {
                    Some(Value::Null) => out.push_str("NULL"),
                    Some(v) => {
                        n += 1;
                        out.push_str(&format!("${n}"));
                        bind(&mut args, v)?;
                    }
                    None => return Err(DbError::Sql("more placeholders than parameters".into())),
                }
                continue;
            }
            _ => {}
        }
        out.push(c);
    }
    Ok((out, args))
}

pub async fn execute(pool: &PgPool, stmt: &Statement) -> Result<u64, DbError> {
    let (sql, args) = prepare(&stmt.sql, &stmt.params)?;
    sqlx::query_with(AssertSqlSafe(sql), args)
        .execute(pool)
        .await
        .map(|r| r.rows_affected())
        .map_err(|e| DbError::sql("statement failed", e))
}

pub async fn in_transaction(pool: &PgPool, stmts: &[Statement]) -> Result<(), DbError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::sql("starting a transaction", e))?;
    for (i, stmt) in stmts.iter().enumerate() {
        let (sql, args) = prepare(&stmt.sql, &stmt.params)?;
        sqlx::query_with(AssertSqlSafe(sql), args)
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
    pool: &PgPool,
    stmt: &Statement,
    kinds: &[Kind],
    out: &mpsc::Sender<Chunk>,
) -> Result<u64, DbError> {
    let (sql, args) = prepare(&stmt.sql, &stmt.params)?;
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
    pool: &PgPool,
    stmt: &Statement,
    kinds: &[Kind],
) -> Result<Vec<Vec<Value>>, DbError> {
    let (sql, args) = prepare(&stmt.sql, &stmt.params)?;
    let rows = sqlx::query_with(AssertSqlSafe(sql), args)
        .fetch_all(pool)
        .await
        .map_err(|e| DbError::sql("query failed", e))?;
    rows.iter().map(|r| decode_row(r, kinds)).collect()
}

/// The expression that reads a column in a form `decode` takes.
fn select_expr(c: &ColumnDef) -> String {
    let q = Q.quote(&c.name);
    match c.kind {
        Kind::Int => format!("{q}::int8"),
        Kind::Float => format!("{q}::float8"),
        Kind::Decimal | Kind::Text => format!("{q}::text"),
        _ => q,
    }
}

fn decode_row(row: &PgRow, kinds: &[Kind]) -> Result<Vec<Value>, DbError> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, k)| decode(row, i, *k))
        .collect()
}

fn decode(row: &PgRow, i: usize, kind: Kind) -> Result<Value, DbError> {
    fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
        row: &'r PgRow,
        i: usize,
    ) -> Result<Option<T>, DbError> {
        row.try_get::<Option<T>, _>(i)
            .map_err(|e| DbError::Sql(format!("decoding column {i}: {e}")))
    }
    Ok(match kind {
        Kind::Bool => get::<bool>(row, i)?.map(Value::Bool),
        Kind::Int => get::<i64>(row, i)?.map(Value::Int),
        Kind::Float => get::<f64>(row, i)?.map(Value::Float),
        Kind::Decimal => get::<String>(row, i)?.map(Value::Decimal),
        Kind::Text => get::<String>(row, i)?.map(Value::Text),
        Kind::Bytes => get::<Vec<u8>>(row, i)?.map(Value::Bytes),
        Kind::Uuid => get::<uuid::Uuid>(row, i)?.map(Value::Uuid),
        Kind::Date => get::<chrono::NaiveDate>(row, i)?.map(Value::Date),
        Kind::Time => get::<chrono::NaiveTime>(row, i)?.map(Value::Time),
        Kind::Timestamp => get::<chrono::NaiveDateTime>(row, i)?.map(Value::Timestamp),
        Kind::TimestampTz => get::<chrono::DateTime<chrono::Utc>>(row, i)?.map(Value::TimestampTz),
    }
    .unwrap_or(Value::Null))
}

/// A transaction that exported its snapshot; other connections read in it while this lives.
pub struct SnapshotGuard {
    pub id: String,
    _conn: sqlx::pool::PoolConnection<sqlx::Postgres>,
}

pub async fn export_snapshot(pool: &PgPool) -> Result<SnapshotGuard, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(|e| DbError::sql("starting the snapshot transaction", e))?;
    let id: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbError::sql("exporting the snapshot", e))?;
    Ok(SnapshotGuard { id, _conn: conn })
}

pub async fn read_table(
    pool: &PgPool,
    spec: &ReadSpec,
    out: mpsc::Sender<Chunk>,
) -> Result<u64, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| DbError::sql("starting the read transaction", e))?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::sql("setting the isolation level", e))?;
    if let Some(id) = &spec.snapshot {
        // A snapshot id is hex digits and dashes; anything else is refused, never spliced.
        if !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(DbError::Sql(format!("invalid snapshot id {id:?}")));
        }
        sqlx::query(AssertSqlSafe(format!("SET TRANSACTION SNAPSHOT '{id}'")))
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::sql("joining the run's snapshot", e))?;
    }
    let table = Q.quote(&spec.table);
    let mut rows_read = 0u64;
    if spec.raw {
        let cols: Vec<String> = spec.columns.iter().map(|c| Q.quote(&c.name)).collect();
        let filter = match &spec.keys {
            Some(keys) => format!(" WHERE {}", keys.postgres_literal_condition()),
            None => String::new(),
        };
        let sql = format!(
            "COPY (SELECT {} FROM {table}{filter}) TO STDOUT (FORMAT binary)",
            cols.join(", ")
        );
        let mut stream = tx
            .copy_out_raw(&sql)
            .await
            .map_err(|e| DbError::sql("reading", e))?;
        let mut buf = BytesMut::with_capacity(CHUNK_BYTES + 64 * 1024);
        while let Some(bytes) = stream
            .try_next()
            .await
            .map_err(|e| DbError::sql("reading", e))?
        {
            buf.extend_from_slice(&bytes);
            spec.progress.add(0, bytes.len() as u64);
            if buf.len() >= CHUNK_BYTES {
                let chunk = buf.split().freeze();
                if out.send(Chunk::Raw(chunk)).await.is_err() {
                    return Ok(rows_read);
                }
            }
        }
        drop(stream);
        if (!buf.is_empty() && out.send(Chunk::Raw(buf.freeze())).await.is_err())
            || out.send(Chunk::End).await.is_err()
        {
            return Ok(rows_read);
        }
        // The loader learns the row count from COPY; the bytes here are not parsed into rows.
    } else {
        let exprs: Vec<String> = spec.columns.iter().map(select_expr).collect();
        let kinds: Vec<Kind> = spec.columns.iter().map(|c| c.kind).collect();
        for (sql, params) in super::select_statements(Q, spec, &exprs) {
            let (sql, args) = prepare(&sql, &params)?;
            let stream = sqlx::query_with(AssertSqlSafe(sql), args).fetch(&mut *tx);
            rows_read +=
                super::pump_rows(stream, |row| decode_row(row, &kinds), &out, &spec.progress)
                    .await?;
        }
        if out.send(Chunk::End).await.is_err() {
            return Ok(rows_read);
        }
    }
    tx.rollback()
        .await
        .map_err(|e| DbError::sql("ending the read transaction", e))?;
    Ok(rows_read)
}

/// Appends a value in COPY text format, shaped for the target column's kind.
fn copy_text(buf: &mut Vec<u8>, v: &Value, target: Kind) {
    match (v, target) {
        (Value::Null, _) => buf.extend_from_slice(b"\\N"),
        (Value::Bool(b), Kind::Int | Kind::Decimal | Kind::Float) => {
            buf.push(if *b { b'1' } else { b'0' })
        }
        (Value::Bool(b), _) => buf.push(if *b { b't' } else { b'f' }),
        (Value::Int(i), Kind::Bool) => buf.push(if *i != 0 { b't' } else { b'f' }),
        (Value::Bytes(b), Kind::Uuid) if b.len() == 16 => {
            let u = uuid::Uuid::from_slice(b).unwrap_or_default();
            buf.extend_from_slice(u.hyphenated().to_string().as_bytes());
        }
        (Value::Bytes(b), _) => {
            buf.extend_from_slice(b"\\\\x");
            buf.extend_from_slice(super::value::hex(b).as_bytes());
        }
        (Value::Text(s), _) | (Value::Decimal(s), _) => escape_into(buf, s),
        (other, _) => {
            if let Some(s) = other.to_text() {
                escape_into(buf, &s);
            }
        }
    }
}

fn escape_into(buf: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'\\' => buf.extend_from_slice(b"\\\\"),
            b'\n' => buf.extend_from_slice(b"\\n"),
            b'\r' => buf.extend_from_slice(b"\\r"),
            b'\t' => buf.extend_from_slice(b"\\t"),
            _ => buf.push(b),
        }
    }
}

/// Empties a table with TRUNCATE inside a savepoint, waiting at most a few seconds for its lock.
/// False when TRUNCATE was refused; the transaction goes on as before it was tried.
async fn truncate(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
) -> Result<bool, DbError> {
    let step = |sql: &'static str| sqlx::query(sql);
    step("SAVEPOINT cloudmigrate_truncate")
        .execute(&mut **tx)
        .await
        .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
    step("SET LOCAL lock_timeout = '5s'")
        .execute(&mut **tx)
        .await
        .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
    let truncated = sqlx::query(AssertSqlSafe(format!("TRUNCATE {table}")))
        .execute(&mut **tx)
        .await;
    let end = if truncated.is_ok() {
        "RELEASE SAVEPOINT cloudmigrate_truncate"
    } else {
        "ROLLBACK TO SAVEPOINT cloudmigrate_truncate"
    };
    step(end)
        .execute(&mut **tx)
        .await
        .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
    if let Err(e) = &truncated {
        tracing::debug!(table, error = %e, "TRUNCATE refused; clearing with DELETE");
    }
    Ok(truncated.is_ok())
}

/// Sends `first` and the chunks after it into one COPY, up to the first chunk that is not
/// data (the end, or the next batch's keys); finishes the COPY and returns the rows it took and
/// that chunk. On an error the COPY is aborted.
async fn copy_chunks(
    mut copy: sqlx::postgres::PgCopyIn<&mut sqlx::PgConnection>,
    first: Chunk,
    input: &mut mpsc::Receiver<Chunk>,
    spec: &LoadSpec,
    stats: &mut LoadStats,
) -> Result<(u64, Chunk), DbError> {
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK_BYTES + 64 * 1024);
    let mut chunk = first;
    let result: Result<Chunk, DbError> = async {
        loop {
            match chunk {
                Chunk::Raw(bytes) => {
                    stats.bytes += bytes.len() as u64;
                    copy.send(bytes)
                        .await
                        .map_err(|e| DbError::sql("loading", e))?;
                }
                Chunk::Rows(rows) => {
                    for row in &rows {
                        check_row(spec, row)?;
                        for (i, (v, c)) in row.iter().zip(&spec.columns).enumerate() {
                            if i > 0 {
                                buf.push(b'\t');
                            }
                            copy_text(&mut buf, v, c.kind);
                        }
                        buf.push(b'\n');
                    }
                    stats.bytes += buf.len() as u64;
                    copy.send(buf.as_slice())
                        .await
                        .map_err(|e| DbError::sql("loading", e))?;
                    buf.clear();
                }
                other => return Ok(other),
            }
            chunk = input.recv().await.ok_or_else(super::ended_early)?;
        }
    }
    .await;
    match result {
        Ok(after) => {
            let copied = copy
                .finish()
                .await
                .map_err(|e| DbError::sql("loading", e))?;
            Ok((copied, after))
        }
        Err(e) => {
            let _ = copy.abort("cloudmigrate stopped the load").await;
            Err(e)
        }
    }
}

pub async fn load_table(
    pool: &PgPool,
    spec: &LoadSpec,
    mut input: mpsc::Receiver<Chunk>,
    finish: &Finish<'_>,
) -> Result<LoadStats, DbError> {
    let mut conn = pool
        .acquire()
        .await
        .map_err(|e| DbError::sql("acquiring a connection", e))?;
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| DbError::sql("starting the load transaction", e))?;
    let table = Q.quote(&spec.table);
    // A full copy empties the table with TRUNCATE where it can, which lets COPY write the rows
    // frozen: no dead rows from the old content, and no later pass of VACUUM or of the first
    // reader over two million fresh rows. TRUNCATE needs its own privilege and an exclusive
    // lock, and fails when a foreign key points at the table; then DELETE does the job.
    let frozen = spec.replace.is_none() && truncate(&mut tx, &table).await?;
    if !frozen {
        for (sql, params) in super::clear_statements(Q, spec) {
            let (sql, args) = prepare(&sql, &params)?;
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
        }
    }
    let cols: Vec<String> = spec.columns.iter().map(|c| Q.quote(&c.name)).collect();
    let format = if spec.raw { "binary" } else { "text" };
    let freeze = if frozen { ", FREEZE" } else { "" };
    let sql = format!(
        "COPY {table} ({}) FROM STDIN (FORMAT {format}{freeze})",
        cols.join(", ")
    );
    let mut stats = LoadStats::default();
    // One COPY for a full copy. An incremental copy sends its changed keys in batches: each
    // batch's rows go first (DELETE), then its rows come in a COPY of their own.
    let mut next = input.recv().await.ok_or_else(super::ended_early)?;
    loop {
        match next {
            Chunk::End => break,
            Chunk::Keys(keys) => {
                for (sql, params) in super::delete_statements(Q, spec, &keys) {
                    let (sql, args) = prepare(&sql, &params)?;
                    sqlx::query_with(AssertSqlSafe(sql), args)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| DbError::sql("removing the changed rows", e))?;
                }
                next = input.recv().await.ok_or_else(super::ended_early)?;
            }
            data => {
                let copy = tx
                    .copy_in_raw(&sql)
                    .await
                    .map_err(|e| DbError::sql("starting COPY", e))?;
                let (copied, after) = copy_chunks(copy, data, &mut input, spec, &mut stats).await?;
                stats.rows += copied;
                next = after;
            }
        }
    }
    for stmt in finish(&stats) {
        let (sql, args) = prepare(&stmt.sql, &stmt.params)?;
        sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::sql("recording the replication state", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::sql("committing", e))?;
    Ok(stats)
}
