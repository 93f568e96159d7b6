//! Database access through sqlx, per dialect: connections, identifier quoting, the catalog,
//! reading rows and writing them. The engine above sees one interface for all three.

pub mod mysql;
mod nodelay;
pub mod postgres;
pub mod sqlite;
mod value;

pub use value::{Kind, Value, float_text, hex};

use std::fmt;

/// The SQL dialects cloudmigrate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
        })
    }
}

impl Dialect {
    /// The dialect of a database URL, from its scheme.
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(DbError::Config(format!(
                "unsupported database URL scheme {scheme:?} in {}: use postgres://, mysql:// (also for \
                 MariaDB) or sqlite://",
                redact_url(url)
            ))),
        }
    }

    /// Quotes an identifier: every table, column and company name goes through here.
    pub fn quote(self, ident: &str) -> String {
        let q = if self == Dialect::MySql { '`' } else { '"' };
        let mut out = String::with_capacity(ident.len() + 2);
        out.push(q);
        for c in ident.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }

    /// Longest identifier the dialect keeps, in bytes (PostgreSQL) or characters (MySQL).
    pub fn max_identifier(self) -> Option<usize> {
        match self {
            Dialect::Postgres => Some(63),
            Dialect::MySql => Some(64),
            Dialect::Sqlite => None,
        }
    }
}

/// A URL with any password replaced by `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(_) => url.to_string(),
        // Unparseable: keep the scheme and host part only when it holds no credentials.
        Err(_) => match url.split_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => url.to_string(),
        },
    }
}

/// Opens one connection and closes it again, so that a wrong address or password is reported
/// at once and clearly, rather than as a pool timeout later.
pub(crate) async fn check_connect<C: sqlx::Connection>(
    options: &<C as sqlx::Connection>::Options,
    redacted: &str,
) -> Result<(), DbError> {
    match tokio::time::timeout(CONNECT_LIMIT, C::connect_with(options)).await {
        Err(_) => Err(connect_error(redacted, no_answer())),
        Ok(Err(e)) => Err(connect_error(redacted, describe(&e))),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
    }
}

/// How long opening a connection may take before the run gives up on the server.
const CONNECT_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

fn no_answer() -> String {
    format!("no answer within {} s", CONNECT_LIMIT.as_secs())
}

fn connect_error(redacted: &str, message: String) -> DbError {
    DbError::Connect {
        url: redacted.to_string(),
        message,
    }
}

/// Makes a pool for a database server and opens its first connection, which checks the
/// address and the login: a wrong password or database name fails it at once, with the
/// server's words. A refused or silent address the pool would keep trying; if the connection is
/// not there within a second, one direct attempt says why (`check_connect`). The connection
/// stays in the pool for the run's first steps, so that a run logs in only as often as it
/// needs connections: each login costs the server a process and a password hash.
pub(crate) async fn open_server_pool<DB: sqlx::Database>(
    pool_options: sqlx::pool::PoolOptions<DB>,
    options: <DB::Connection as sqlx::Connection>::Options,
    redacted: &str,
) -> Result<sqlx::Pool<DB>, DbError> {
    let pool = pool_options.connect_lazy_with(options.clone());
    let first = pool.acquire();
    tokio::pin!(first);
    let first = tokio::select! {
        first = &mut first => first,
        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {
            check_connect::<DB::Connection>(&options, redacted).await?;
            // The server answers now: the pool's own attempt follows.
            match tokio::time::timeout(CONNECT_LIMIT, first).await {
                Ok(first) => first,
                Err(_) => return Err(connect_error(redacted, no_answer())),
            }
        }
    };
    drop(first.map_err(|e| connect_error(redacted, describe(&e)))?);
    Ok(pool)
}

/// Errors of the database layer. Messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection settings are wrong.
    #[error("{0}")]
    Config(String),
    /// The database could not be reached or refused the login.
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// A statement failed.
    #[error("{0}")]
    Sql(String),
    /// A value does not fit the target column.
    #[error("{0}")]
    Data(String),
    /// Statement `index` (from 0) of a transaction failed; the transaction was rolled back.
    #[error("statement failed: {message}")]
    InTransaction { index: usize, message: String },
}

impl DbError {
    /// A failed statement, worded without its parameters.
    pub fn sql(context: &str, e: sqlx::Error) -> Self {
        DbError::Sql(format!("{context}: {}", describe(&e)))
    }
}

/// A sqlx error as one line, with the database's own message where there is one.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut s = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(column) = pg.column() {
                    s.push_str(&format!(" (column {column})"));
                }
                if let Some(w) = pg.r#where() {
                    s.push_str(&format!(" ({w})"));
                }
                if let Some(detail) = pg.detail() {
                    s.push_str(&format!(" ({detail})"));
                }
            }
            s
        }
        other => other.to_string(),
    }
}

/// A column as the catalog reports it.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug, PartialEq)]
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

/// What flows from a source reader to a target loader: rows, or raw bytes of PostgreSQL's
/// binary COPY format when both sides have the same column types.
pub enum Chunk {
    Rows(Vec<Vec<Value>>),
    Raw(bytes::Bytes),
    /// The reader reached the end of the table. A loader commits only after it.
    End,
}

/// The loader's error when its reader stopped without reaching the end (the reader's own error
/// says why).
pub(crate) fn ended_early() -> DbError {
    DbError::Sql("the read from the source stopped before the end of the table".into())
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
fn integer_list(type_name: &str, keys: &[Vec<Option<String>>]) -> Option<Vec<Option<i64>>> {
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
    fn batches(&self, d: Dialect) -> std::slice::Chunks<'_, Vec<Option<String>>> {
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
    fn add(&self, rows: u64, bytes: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows.fetch_add(rows, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }
}

/// A column of the target, as the loader needs it.
#[derive(Clone, Debug)]
pub struct LoadColumn {
    pub name: String,
    pub kind: Kind,
    pub max_chars: Option<i64>,
}

/// The statements that clear what a load replaces: the whole table, or the rows of some keys.
pub(crate) fn clear_statements(d: Dialect, spec: &LoadSpec) -> Vec<(String, Vec<Value>)> {
    let table = d.quote(&spec.table);
    match &spec.replace {
        None => vec![(format!("DELETE FROM {table}"), vec![])],
        Some(filter) => filter
            .batches(d)
            .map(|batch| {
                let (cond, params) = filter.condition(d, batch);
                (format!("DELETE FROM {table} WHERE {cond}"), params)
            })
            .collect(),
    }
}

/// The SELECT statements a reader runs: the whole table, or the rows of some keys in batches.
pub(crate) fn select_statements(
    d: Dialect,
    spec: &ReadSpec,
    exprs: &[String],
) -> Vec<(String, Vec<Value>)> {
    let base = format!("SELECT {} FROM {}", exprs.join(", "), d.quote(&spec.table));
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

/// How to load one table.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub table: String,
    pub columns: Vec<LoadColumn>,
    /// Positions of the primary key columns in `columns`, to name a row in messages.
    pub key: Vec<usize>,
    /// The data arrives in PostgreSQL's binary COPY format.
    pub raw: bool,
    /// Which rows to remove before loading: None clears the table (a full copy); a key filter
    /// removes only those rows (an incremental run: changed rows are replaced, deleted ones go).
    pub replace: Option<KeyFilter>,
}

/// The statements a load runs in its transaction before it commits, given what it wrote.
pub type Finish<'a> = dyn Fn(&LoadStats) -> Vec<Statement> + Send + Sync + 'a;

/// A statement with its parameters.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
}

/// What a load wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadStats {
    pub rows: u64,
    pub bytes: u64,
}

/// Checks a row against the target's column lengths. The error names the column, the row's key
/// and the fix.
pub fn check_row(spec: &LoadSpec, row: &[Value]) -> Result<(), DbError> {
    for (col, value) in spec.columns.iter().zip(row) {
        if let (Some(max), Value::Text(s)) = (col.max_chars, value) {
            let len = s.chars().count() as i64;
            if len > max {
                let key: Vec<String> = spec
                    .key
                    .iter()
                    .map(|&i| format!("{}={}", spec.columns[i].name, row[i]))
                    .collect();
                let key = if key.is_empty() {
                    "a row without primary key".into()
                } else {
                    key.join(", ")
                };
                return Err(DbError::Data(format!(
                    "value too long for column {:?}: {len} characters, the cloud column holds {max} \
                     (first offending row: {key})",
                    col.name
                )));
            }
        }
    }
    Ok(())
}

/// A database of any dialect, through a connection pool.
#[derive(Clone, Debug)]
pub enum Database {
    Postgres(sqlx::PgPool),
    MySql(sqlx::MySqlPool),
    Sqlite(sqlx::SqlitePool),
}

/// How to open a database.
#[derive(Clone, Debug)]
pub struct ConnectSpec {
    pub url: String,
    /// The password, kept out of the URL.
    pub password: Option<String>,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Create a missing SQLite file (targets only).
    pub create: bool,
}

impl Database {
    pub async fn connect(spec: &ConnectSpec) -> Result<Self, DbError> {
        match Dialect::of_url(&spec.url)? {
            Dialect::Postgres => postgres::connect(spec).await.map(Database::Postgres),
            Dialect::MySql => mysql::connect(spec).await.map(Database::MySql),
            Dialect::Sqlite => sqlite::connect(spec, false).await.map(Database::Sqlite),
        }
    }

    /// Connects only to look: a SQLite file is opened read-only, with its journal mode left
    /// as it is. PostgreSQL and MySQL connect as `connect` does.
    pub async fn connect_to_look(spec: &ConnectSpec) -> Result<Self, DbError> {
        match Dialect::of_url(&spec.url)? {
            Dialect::Sqlite => sqlite::connect(spec, true).await.map(Database::Sqlite),
            _ => Self::connect(spec).await,
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Database::Postgres(_) => Dialect::Postgres,
            Database::MySql(_) => Dialect::MySql,
            Database::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Every table with its columns, key and size estimates: one query per kind of fact.
    pub async fn tables(&self) -> Result<Vec<TableDef>, DbError> {
        let mut tables = match self {
            Database::Postgres(p) => postgres::tables(p).await?,
            Database::MySql(p) => mysql::tables(p).await?,
            Database::Sqlite(p) => sqlite::tables(p).await?,
        };
        tables.retain(|t| !t.name.starts_with(OWN_PREFIX));
        tables.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tables)
    }

    /// Whether a table of this name exists (in the current schema or database): one catalog
    /// query.
    pub async fn has_table(&self, name: &str) -> Result<bool, DbError> {
        let sql = match self.dialect() {
            Dialect::Postgres => {
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = \
                 current_schema() AND table_name = ?"
            }
            Dialect::MySql => {
                "SELECT CAST(table_name AS CHAR) FROM information_schema.tables WHERE \
                 table_schema = DATABASE() AND table_name = ?"
            }
            Dialect::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
        };
        Ok(!self
            .query_text_set(&Statement {
                sql: sql.into(),
                params: vec![Value::Text(name.to_string())],
            })
            .await?
            .is_empty())
    }

    /// Runs a statement outside any transaction (DDL, bookkeeping).
    pub async fn execute(&self, stmt: &Statement) -> Result<u64, DbError> {
        match self {
            Database::Postgres(p) => postgres::execute(p, stmt).await,
            Database::MySql(p) => mysql::execute(p, stmt).await,
            Database::Sqlite(p) => sqlite::execute(p, stmt).await,
        }
    }

    /// Runs statements in one transaction, at READ COMMITTED: rows that other transactions
    /// have written but not committed are neither seen nor waited for.
    pub async fn in_transaction(&self, stmts: &[Statement]) -> Result<(), DbError> {
        match self {
            Database::Postgres(p) => postgres::in_transaction(p, stmts).await,
            Database::MySql(p) => mysql::in_transaction(p, stmts).await,
            Database::Sqlite(p) => sqlite::in_transaction(p, stmts).await,
        }
    }

    /// Runs a query and returns its rows as values.
    pub async fn query(
        &self,
        stmt: &Statement,
        kinds: &[Kind],
    ) -> Result<Vec<Vec<Value>>, DbError> {
        match self {
            Database::Postgres(p) => postgres::query(p, stmt, kinds).await,
            Database::MySql(p) => mysql::query(p, stmt, kinds).await,
            Database::Sqlite(p) => sqlite::query(p, stmt, kinds).await,
        }
    }

    /// The first column of a query's rows, as a set of texts.
    pub async fn query_text_set(
        &self,
        stmt: &Statement,
    ) -> Result<std::collections::HashSet<String>, DbError> {
        Ok(self
            .query(stmt, &[Kind::Text])
            .await?
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Value::Text(t)) => Some(t),
                _ => None,
            })
            .collect())
    }

    /// Reads a table within one snapshot and sends it in chunks. Returns the rows read.
    pub async fn read_table(
        &self,
        spec: &ReadSpec,
        out: tokio::sync::mpsc::Sender<Chunk>,
    ) -> Result<u64, DbError> {
        match self {
            Database::Postgres(p) => postgres::read_table(p, spec, out).await,
            Database::MySql(p) => mysql::read_table(p, spec, out).await,
            Database::Sqlite(p) => sqlite::read_table(p, spec, out).await,
        }
    }

    /// Every row of a table, read the way a copy reads it. For checks and tests on small
    /// tables: it holds the whole table in memory.
    pub async fn read_all(&self, table: &TableDef) -> Result<Vec<Vec<Value>>, DbError> {
        let spec = ReadSpec {
            table: table.name.clone(),
            columns: table.columns.clone(),
            raw: false,
            snapshot: None,
            progress: Default::default(),
            keys: None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        let reader = self.read_table(&spec, tx);
        let collect = async {
            let mut rows = Vec::new();
            while let Some(chunk) = rx.recv().await {
                if let Chunk::Rows(r) = chunk {
                    rows.extend(r);
                }
            }
            rows
        };
        let (read, rows) = tokio::join!(reader, collect);
        read.map(|_| rows)
    }

    /// Replaces a table's content with the chunks received, then runs `finish`, all in one
    /// transaction: on any error the table keeps its old content.
    pub async fn load_table(
        &self,
        spec: &LoadSpec,
        input: tokio::sync::mpsc::Receiver<Chunk>,
        finish: &Finish<'_>,
    ) -> Result<LoadStats, DbError> {
        match self {
            Database::Postgres(p) => postgres::load_table(p, spec, input, finish).await,
            Database::MySql(p) => {
                load_by_inserts(p, Dialect::MySql, &mysql::LOADER, spec, input, finish).await
            }
            Database::Sqlite(p) => {
                load_by_inserts(p, Dialect::Sqlite, &sqlite::LOADER, spec, input, finish).await
            }
        }
    }

    /// Exports a snapshot that other connections can read in (PostgreSQL only). The returned
    /// guard keeps it alive.
    pub async fn export_snapshot(&self) -> Result<Option<postgres::SnapshotGuard>, DbError> {
        match self {
            Database::Postgres(p) => postgres::export_snapshot(p).await.map(Some),
            _ => Ok(None),
        }
    }

    pub async fn close(&self) {
        match self {
            Database::Postgres(p) => p.close().await,
            Database::MySql(p) => p.close().await,
            Database::Sqlite(p) => p.close().await,
        }
    }
}

/// The part of a load by multi-row INSERTs that MySQL and SQLite share: takes the reader's
/// chunks, checks each row, counts what goes in, and gives each group of rows its INSERT. The
/// dialect binds and runs it.
pub(crate) struct InsertBatches<'a> {
    dialect: Dialect,
    spec: &'a LoadSpec,
    /// Rows per INSERT, as many as the parameter limit allows.
    pub per_insert: usize,
    full_sql: String,
    pub stats: LoadStats,
}

impl<'a> InsertBatches<'a> {
    pub fn new(dialect: Dialect, spec: &'a LoadSpec, max_params: usize) -> Self {
        let per_insert = insert_batch_rows(max_params, spec.columns.len());
        let full_sql = insert_sql(dialect, spec, per_insert);
        Self {
            dialect,
            spec,
            per_insert,
            full_sql,
            stats: LoadStats::default(),
        }
    }

    /// The next rows from the reader; None once it has read the whole table.
    pub async fn next_rows(
        &self,
        input: &mut tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<Option<Vec<Vec<Value>>>, DbError> {
        match input.recv().await.ok_or_else(ended_early)? {
            Chunk::End => Ok(None),
            Chunk::Rows(rows) => Ok(Some(rows)),
            Chunk::Raw(_) => Err(DbError::Sql(format!(
                "binary COPY data cannot be loaded into {}",
                self.dialect
            ))),
        }
    }

    /// The INSERT for a group of at most `per_insert` rows, once each row fits its columns.
    pub fn insert_for(&mut self, group: &[Vec<Value>]) -> Result<String, DbError> {
        for row in group {
            check_row(self.spec, row)?;
            self.stats.bytes += row.iter().map(|v| v.size() as u64).sum::<u64>();
        }
        self.stats.rows += group.len() as u64;
        Ok(if group.len() == self.per_insert {
            self.full_sql.clone()
        } else {
            insert_sql(self.dialect, self.spec, group.len())
        })
    }
}

/// How a dialect that loads by INSERTs binds values: one value into a statement's arguments,
/// and a statement's parameters as its arguments.
pub(crate) struct Binder<DB: sqlx::Database> {
    /// The most parameters one statement may bind.
    pub max_params: usize,
    pub bind: fn(&mut DB::Arguments, &Value, Kind) -> Result<(), DbError>,
    pub arguments: fn(&[Value]) -> Result<DB::Arguments, DbError>,
}

/// A load by multi-row INSERTs (MySQL, SQLite), in the transaction `tx`: the old rows go
/// (DELETE, not TRUNCATE: TRUNCATE would commit on its own, and the old rows must survive a
/// failed load), the new ones go in, the replication state is written, and one commit makes
/// it all visible at once.
pub(crate) async fn load_by_inserts<DB>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
    binder: &Binder<DB>,
    spec: &LoadSpec,
    mut input: tokio::sync::mpsc::Receiver<Chunk>,
    finish: &Finish<'_>,
) -> Result<LoadStats, DbError>
where
    DB: sqlx::Database,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    use sqlx::AssertSqlSafe;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::sql("starting the load transaction", e))?;
    for (sql, params) in clear_statements(dialect, spec) {
        sqlx::query_with(AssertSqlSafe(sql), (binder.arguments)(&params)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
    }
    let mut batches = InsertBatches::new(dialect, spec, binder.max_params);
    while let Some(rows) = batches.next_rows(&mut input).await? {
        for group in rows.chunks(batches.per_insert) {
            let sql = batches.insert_for(group)?;
            let mut args = DB::Arguments::default();
            for row in group {
                for (v, c) in row.iter().zip(&spec.columns) {
                    (binder.bind)(&mut args, v, c.kind)?;
                }
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(|e| DbError::sql("loading", e))?;
        }
    }
    let stats = batches.stats;
    for stmt in finish(&stats) {
        sqlx::query_with(
            AssertSqlSafe(stmt.sql.clone()),
            (binder.arguments)(&stmt.params)?,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::sql("recording the replication state", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::sql("committing", e))?;
    Ok(stats)
}

/// The SQL of a multi-row INSERT with `rows` rows of `columns` placeholders.
pub(crate) fn insert_sql(dialect: Dialect, spec: &LoadSpec, rows: usize) -> String {
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| dialect.quote(&c.name))
        .collect();
    let one = format!("({})", vec!["?"; spec.columns.len()].join(","));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        dialect.quote(&spec.table),
        cols.join(",")
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql
}

/// Rows per multi-row INSERT: as many as the dialect's parameter limit allows, up to 500.
pub(crate) fn insert_batch_rows(limit: usize, columns: usize) -> usize {
    (limit / columns.max(1)).clamp(1, 500)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_with_their_quote_doubled() {
        assert_eq!(
            Dialect::Postgres.quote(r#"CRONUS$Cust "Ledger". Entry"#),
            r#""CRONUS$Cust ""Ledger"". Entry""#
        );
        assert_eq!(
            Dialect::MySql.quote("a`b; DROP TABLE x"),
            "`a``b; DROP TABLE x`"
        );
        assert_eq!(Dialect::Sqlite.quote("Café [x]"), "\"Café [x]\"");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:s3cret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
        assert!(
            Dialect::of_url("mssql://h/db")
                .unwrap_err()
                .to_string()
                .contains("use postgres://")
        );
    }

    #[test]
    fn integer_keys_go_as_one_binary_array_and_others_as_text() {
        let filter = |ty: &str| KeyFilter {
            columns: vec![("Entry No_".into(), ty.into())],
            keys: vec![],
        };
        let keys = |list: &[&str]| -> Vec<Vec<Option<String>>> {
            list.iter().map(|k| vec![Some(k.to_string())]).collect()
        };
        let (sql, params) = filter("bigint").condition(Dialect::Postgres, &keys(&["7", "-2"]));
        assert_eq!(
            sql,
            r#""Entry No_" = ANY(CAST((SELECT CAST(? AS bigint[])) AS bigint[]))"#
        );
        assert_eq!(params, vec![Value::IntList(vec![Some(7), Some(-2)])]);
        // A key that does not read as an integer keeps the whole list as text.
        let (_, params) = filter("integer").condition(Dialect::Postgres, &keys(&["7", "x"]));
        assert!(matches!(&params[0], Value::TextList(l) if l.len() == 2));
        let (_, params) = filter("varchar(20)").condition(Dialect::Postgres, &keys(&["10"]));
        assert!(matches!(&params[0], Value::TextList(_)));
    }

    #[test]
    fn placeholders_fill_the_parameter_limit() {
        assert_eq!(insert_batch_rows(32_766, 200), 163);
        assert_eq!(insert_batch_rows(65_535, 3), 500);
    }
}
