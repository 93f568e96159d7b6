//! Database access through sqlx, per dialect: connections, identifier quoting, the catalog,
//! reading rows and writing them. The engine above sees one interface for all three: this
//! file's `Database`, over `postgres`, `mysql` and `sqlite`.
//!
//! - `dialect`: which dialect a URL names, quoting, identifier limits, redacted URLs;
//! - `error`: the errors, never with a password in them;
//! - `schema`: tables and columns, and the DDL of a table in another dialect;
//! - `reads`: which rows to read, and the chunks that carry them;
//! - `loads`: what a load writes, row checks, and the batched INSERTs;
//! - `value`: one value of a row, and its kind.

mod dialect;
mod error;
mod loads;
pub mod mysql;
mod nodelay;
pub mod postgres;
mod reads;
mod schema;
pub mod sqlite;
pub mod tenancy;
pub mod tls;
mod value;

pub use dialect::*;
pub use error::*;
pub use loads::*;
pub use reads::*;
pub use schema::*;
pub use value::{Kind, Value, float_text, hex};

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

/// A statement with its parameters.
#[derive(Clone, Debug)]
pub struct Statement {
    pub sql: String,
    pub params: Vec<Value>,
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
    /// TLS to a server; None: as the URL says (the command line only).
    pub tls: Option<tls::Tls>,
    /// Connections in the pool.
    pub max_connections: u32,
    /// Create a missing SQLite file (targets only).
    pub create: bool,
}

impl Database {
    pub async fn connect(spec: &ConnectSpec) -> Result<Self, DbError> {
        tenancy::check(spec).map_err(DbError::Config)?;
        let db = match Dialect::of_url(&spec.url)? {
            Dialect::Postgres => postgres::connect(spec).await.map(Database::Postgres),
            Dialect::MySql => mysql::connect(spec).await.map(Database::MySql),
            Dialect::Sqlite => sqlite::connect(spec, false).await.map(Database::Sqlite),
        };
        db.map_err(|e| match e {
            DbError::Connect { url, message } => {
                let host = url::Url::parse(&spec.url)
                    .ok()
                    .and_then(|u| u.host_str().map(str::to_string))
                    .unwrap_or_default();
                DbError::Connect {
                    url,
                    message: tls::explain(message, spec.tls.as_ref(), &host),
                }
            }
            other => other,
        })
    }

    /// Connects only to look: a SQLite file is opened read-only, with its journal mode left
    /// as it is. PostgreSQL and MySQL connect as `connect` does.
    pub async fn connect_to_look(spec: &ConnectSpec) -> Result<Self, DbError> {
        match Dialect::of_url(&spec.url)? {
            Dialect::Sqlite => {
                tenancy::check(spec).map_err(DbError::Config)?;
                sqlite::connect(spec, true).await.map(Database::Sqlite)
            }
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

    /// Runs a query and sends its rows on in chunks (`Chunk::Rows`) as they arrive, so that a
    /// large result is never held whole. Returns the rows sent; sends no `Chunk::End`.
    pub async fn query_chunks(
        &self,
        stmt: &Statement,
        kinds: &[Kind],
        out: &tokio::sync::mpsc::Sender<Chunk>,
    ) -> Result<u64, DbError> {
        match self {
            Database::Postgres(p) => postgres::query_chunks(p, stmt, kinds, out).await,
            Database::MySql(p) => mysql::query_chunks(p, stmt, kinds, out).await,
            Database::Sqlite(p) => sqlite::query_chunks(p, stmt, kinds, out).await,
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
            range: None,
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
        let q = redact_url("postgres://erp@127.0.0.1:1/db?password=TopSecret123&sslmode=require");
        assert!(
            !q.contains("TopSecret123") && q.contains("sslmode=require"),
            "{q}"
        );
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
