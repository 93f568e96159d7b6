//! A fresh, empty database per test, on the servers `tests/run.sh` started.

use cloudmigrate::db::{ConnectSpec, Database, Dialect, Kind, ReadProgress, Statement, Value};
use cloudmigrate::engine::plan::PlanOptions;
use cloudmigrate::engine::report::{RunReport, TableReport};
use cloudmigrate::engine::{self, Quiet, RunConfig};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Postgres,
    MariaDb,
    Sqlite,
}

/// One database made for one test.
pub struct TestDb {
    pub url: String,
    pub password: Option<String>,
    pub dialect: Dialect,
    pub _dir: Option<tempdir::Dir>,
}

pub mod tempdir {
    /// A directory removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set. Run the tests with tests/run.sh: it starts PostgreSQL and MariaDB and sets it.")
    })
}

pub fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{label}_{}_{nanos:x}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl TestDb {
    pub async fn new(server: Server, label: &str) -> Self {
        Self::named(server, &unique(label)).await
    }

    /// A database with this name, which must be new on the server.
    pub async fn named(server: Server, name: &str) -> Self {
        let name = name.to_string();
        match server {
            Server::Sqlite => {
                let dir = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&dir).unwrap();
                TestDb {
                    url: format!("sqlite://{}/db.sqlite", dir.display()),
                    password: None,
                    dialect: Dialect::Sqlite,
                    _dir: Some(tempdir::Dir(dir)),
                }
            }
            Server::Postgres | Server::MariaDb => {
                let (var, dialect) = if server == Server::Postgres {
                    ("CLOUDMIGRATE_TEST_PG_URL", Dialect::Postgres)
                } else {
                    ("CLOUDMIGRATE_TEST_MYSQL_URL", Dialect::MySql)
                };
                let admin_url = env(var);
                let password = Some(env("CLOUDMIGRATE_TEST_DB_PASSWORD"));
                let admin = Database::connect(&ConnectSpec {
                    url: admin_url.clone(),
                    password: password.clone(),
                    tls: None,
                    max_connections: 1,
                    create: false,
                })
                .await
                .unwrap();
                exec(&admin, &format!("CREATE DATABASE {}", dialect.quote(&name))).await;
                admin.close().await;
                let base = admin_url.rsplit_once('/').unwrap().0;
                TestDb {
                    url: format!("{base}/{name}"),
                    password,
                    dialect,
                    _dir: None,
                }
            }
        }
    }

    pub fn spec(&self) -> ConnectSpec {
        ConnectSpec {
            url: self.url.clone(),
            password: self.password.clone(),
            tls: None,
            max_connections: 4,
            create: true,
        }
    }

    pub async fn connect(&self) -> Database {
        Database::connect(&self.spec()).await.unwrap()
    }

    /// Runs statements, separated by `;\n`.
    pub async fn exec(&self, sql: &str) {
        let db = self.connect().await;
        for stmt in sql.split(";\n").map(str::trim).filter(|s| !s.is_empty()) {
            exec(&db, stmt).await;
        }
        db.close().await;
    }

    pub async fn insert(&self, table: &str, rows: Vec<Vec<Value>>) {
        let db = self.connect().await;
        for row in rows {
            let marks = vec!["?"; row.len()].join(", ");
            let sql = format!("INSERT INTO {} VALUES ({marks})", self.dialect.quote(table));
            db.execute(&Statement { sql, params: row }).await.unwrap();
        }
        db.close().await;
    }

    /// Every row of a table, ordered by its first column (an integer key).
    pub async fn rows(&self, table: &str) -> Vec<Vec<Value>> {
        let db = self.connect().await;
        let tables = db.tables().await.unwrap();
        let def = tables.iter().find(|t| t.name == table).unwrap_or_else(|| {
            panic!(
                "no table {table:?} in {:?}",
                tables.iter().map(|t| &t.name).collect::<Vec<_>>()
            )
        });
        let mut rows = db.read_all(def).await.unwrap();
        db.close().await;
        rows.sort_by_key(|r| match r[0] {
            Value::Int(i) => i,
            _ => i64::MAX,
        });
        rows
    }

    pub async fn count(&self, table: &str) -> i64 {
        self.int(&format!(
            "SELECT COUNT(*) FROM {}",
            self.dialect.quote(table)
        ))
        .await
    }

    /// The one integer that a query returns.
    pub async fn int(&self, sql: &str) -> i64 {
        let db = self.connect().await;
        let rows = db
            .query(
                &Statement {
                    sql: sql.to_string(),
                    params: vec![],
                },
                &[Kind::Int],
            )
            .await
            .unwrap();
        db.close().await;
        match rows[0][0] {
            Value::Int(n) => n,
            ref v => panic!("{sql}: {v:?}"),
        }
    }
}

pub async fn exec(db: &Database, sql: &str) {
    db.execute(&Statement {
        sql: sql.to_string(),
        params: vec![],
    })
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A run configuration from one test database to another.
pub fn config(source: &TestDb, target: &TestDb, create_missing_tables: bool) -> RunConfig {
    let mut source_spec = source.spec();
    source_spec.create = false;
    RunConfig {
        run_id: unique("run"),
        source: source_spec,
        target: target.spec(),
        plan: PlanOptions::default(),
        create_missing_tables,
        parallelism: 3,
        run_type: cloudmigrate::engine::RunType::Auto,
        retention: cloudmigrate::engine::tracking::DEFAULT_RETENTION,
        stop: Default::default(),
        share: None,
    }
}

pub async fn run(config: &RunConfig) -> RunReport {
    engine::run(config, &Quiet, Arc::new(ReadProgress::default()))
        .await
        .unwrap()
}

/// The report of one table, by its name in the source.
pub fn table<'a>(report: &'a RunReport, source_name: &str) -> &'a TableReport {
    report
        .tables
        .iter()
        .find(|t| t.source_name == source_name)
        .unwrap_or_else(|| panic!("no report for {source_name:?}: {:#?}", report.tables))
}
