//! A real ERP estate: the ERP writes with its own login, which may write its tables and
//! nothing else; the migration uses a login that is not a superuser. Change tracking must never
//! break the ERP's writes: not while it is on, not after it is removed, not after the
//! migration's login is gone, and not on a table renamed in between.

use crate::databases::{Server, TestDb, config, run};
use cloudmigrate::db::{ConnectSpec, Database, Dialect, Kind, Statement, Value};
use cloudmigrate::engine::{report::TableResult, tracking};

/// The logins of one test database: the ERP's own and the migration's.
struct Estate {
    db: TestDb,
    erp: ConnectSpec,
    migration: ConnectSpec,
    /// The migration login's name, for dropping it.
    migration_login: String,
    /// PostgreSQL: the role that owns the ERP's tables.
    owner: String,
}

fn with_user(db: &TestDb, user: &str) -> ConnectSpec {
    let (scheme, rest) = db.url.split_once("://").unwrap();
    let host = rest.split_once('@').unwrap().1;
    ConnectSpec {
        url: format!("{scheme}://{user}@{host}"),
        password: Some("erp-Pw-1".into()),
        tls: None,
        max_connections: 4,
        create: false,
    }
}

fn db_name(db: &TestDb) -> String {
    db.url.rsplit_once('/').unwrap().1.to_string()
}

/// A database with the ERP's table `CRONUS$Item`, owned (PostgreSQL) by a role of its own, an
/// ERP login with SELECT, INSERT, UPDATE and DELETE on it, and a migration login with what
/// `docs/operations.md` asks for and no more.
async fn estate(server: Server) -> Estate {
    let db = TestDb::new(server, "erp").await;
    let name = db_name(&db);
    let (erp, migration, owner) = (
        format!("{name}_erp"),
        format!("{name}_mig"),
        format!("{name}_own"),
    );
    let q = |s: &str| db.dialect.quote(s);
    match server {
        Server::Postgres => {
            db.exec(&format!(
                "CREATE ROLE {o} NOLOGIN;\n\
                 GRANT USAGE, CREATE ON SCHEMA public TO {o};\n\
                 CREATE ROLE {e} LOGIN PASSWORD 'erp-Pw-1';\n\
                 CREATE ROLE {m} LOGIN PASSWORD 'erp-Pw-1';\n\
                 GRANT {o} TO {m};\n\
                 CREATE TABLE \"CRONUS$Item\" (no text PRIMARY KEY, d text);\n\
                 ALTER TABLE \"CRONUS$Item\" OWNER TO {o};\n\
                 GRANT SELECT, INSERT, UPDATE, DELETE ON \"CRONUS$Item\" TO {e}",
                o = q(&owner),
                e = q(&erp),
                m = q(&migration)
            ))
            .await;
        }
        Server::MariaDb => {
            db.exec(&format!(
                "CREATE USER '{erp}'@'127.0.0.1' IDENTIFIED BY 'erp-Pw-1';\n\
                 CREATE USER '{migration}'@'127.0.0.1' IDENTIFIED BY 'erp-Pw-1';\n\
                 CREATE TABLE `CRONUS$Item` (no VARCHAR(20) PRIMARY KEY, d TEXT);\n\
                 GRANT SELECT, INSERT, UPDATE, DELETE ON {d}.`CRONUS$Item` TO '{erp}'@'127.0.0.1';\n\
                 GRANT SELECT, CREATE, DROP, INSERT, UPDATE, DELETE, TRIGGER ON {d}.* TO '{migration}'@'127.0.0.1';\n\
                 GRANT PROCESS ON *.* TO '{migration}'@'127.0.0.1'",
                d = q(&name)
            ))
            .await;
        }
        Server::Sqlite => unreachable!("SQLite has no logins"),
    }
    Estate {
        erp: with_user(&db, &erp),
        migration: with_user(&db, &migration),
        migration_login: migration,
        owner,
        db,
    }
}

impl Estate {
    /// One statement as the ERP's login.
    async fn erp_writes(&self, sql: &str) -> Result<u64, String> {
        let db = Database::connect(&self.erp)
            .await
            .map_err(|e| e.to_string())?;
        let sql = sql.replace('"', &self.db.dialect.quote("\"")[..1]);
        let r = db
            .execute(&Statement {
                sql,
                params: vec![],
            })
            .await
            .map_err(|e| e.to_string());
        db.close().await;
        r
    }

    /// A run from this source, as the migration login, into `target`.
    fn config(&self, target: &TestDb) -> cloudmigrate::engine::RunConfig {
        let mut c = config(&self.db, target, true);
        c.source = self.migration.clone();
        c
    }

    async fn migration(&self) -> Database {
        Database::connect(&self.migration).await.unwrap()
    }
}

async fn items(db: &TestDb) -> Vec<(String, String)> {
    let conn = db.connect().await;
    let rows = conn
        .query(
            &Statement {
                sql: format!(
                    "SELECT no, d FROM {} ORDER BY no",
                    db.dialect.quote("CRONUS$Item")
                ),
                params: vec![],
            },
            &[Kind::Text, Kind::Text],
        )
        .await
        .unwrap();
    conn.close().await;
    rows.into_iter()
        .map(|r| match (&r[0], &r[1]) {
            (Value::Text(a), Value::Text(b)) => (a.clone(), b.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

async fn erp_login_keeps_writing(server: Server) {
    let src = estate(server).await;
    let dst = TestDb::new(Server::Postgres, "erp_dst").await;
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await
        .unwrap();
    let first = run(&src.config(&dst)).await;
    assert_eq!(first.tiles().failed, 0, "{:#?}", first.tables);
    // After the first run, the triggers are on: every write of the ERP still succeeds.
    for sql in [
        "INSERT INTO \"CRONUS$Item\" VALUES ('2', 'b')",
        "UPDATE \"CRONUS$Item\" SET d = 'a2' WHERE no = '1'",
        "INSERT INTO \"CRONUS$Item\" VALUES ('3', 'c')",
        "DELETE FROM \"CRONUS$Item\" WHERE no = '3'",
    ] {
        src.erp_writes(sql)
            .await
            .unwrap_or_else(|e| panic!("{server:?}: the ERP's write failed: {sql}: {e}"));
    }
    // During a run too.
    let config = src.config(&dst);
    let (second, during) = tokio::join!(
        run(&config),
        src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('4', 'd')")
    );
    during.unwrap();
    let t = crate::databases::table(&second, "CRONUS$Item");
    assert_eq!(t.result, TableResult::Migrated, "{t:#?}");
    run(&src.config(&dst)).await;
    let expected: Vec<(String, String)> = [("1", "a2"), ("2", "b"), ("4", "d")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(
        items(&dst).await,
        expected,
        "{server:?}: every change arrives"
    );
    // Change tracking removed, the migration's login dropped: the ERP writes on.
    let mig = src.migration().await;
    assert_eq!(tracking::disable_all(&mig).await.unwrap(), 1);
    mig.close().await;
    match server {
        Server::Postgres => {
            src.db
                .exec(&format!(
                    "DROP ROLE {}",
                    Dialect::Postgres.quote(&src.migration_login)
                ))
                .await
        }
        _ => {
            src.db
                .exec(&format!("DROP USER '{}'@'127.0.0.1'", src.migration_login))
                .await
        }
    }
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('5', 'e')")
        .await
        .unwrap_or_else(|e| panic!("{server:?}: a write after the migration failed: {e}"));
}

/// The same estate into a data lake: the migration login, no superuser, installs change
/// tracking and reads; the ERP's login writes before, during and after the lake runs; each run
/// brings the lake to the source, as DuckDB and deltalake read it.
async fn erp_login_keeps_writing_into_a_lake(server: Server) {
    use crate::lake::{Folder, local, read};
    let src = estate(server).await;
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await
        .unwrap();
    src.db
        .exec(&format!(
            "CREATE TABLE {} ({} varchar(30) PRIMARY KEY)",
            src.db.dialect.quote("Company"),
            src.db.dialect.quote("Name")
        ))
        .await;
    src.db
        .exec(&format!(
            "INSERT INTO {} VALUES ('CRONUS')",
            src.db.dialect.quote("Company")
        ))
        .await;
    if server == Server::Postgres {
        src.db
            .exec(&format!(
                "ALTER TABLE {} OWNER TO {}",
                Dialect::Postgres.quote("Company"),
                Dialect::Postgres.quote(&src.owner)
            ))
            .await;
    }
    let folder = Folder::new("estate_lake");
    let config = cloudmigrate::lake::run::LakeRunConfig {
        run_id: crate::databases::unique("estate_lake"),
        source: src.migration.clone(),
        lake: local(&folder),
        plan: Default::default(),
        parallelism: 2,
        run_type: cloudmigrate::engine::RunType::Auto,
        retention: tracking::DEFAULT_RETENTION,
        stop: Default::default(),
        rows_per_file: 1000,
    };
    let lake_run = || async {
        let r = cloudmigrate::lake::run::run(
            &config,
            &cloudmigrate::engine::Quiet,
            std::sync::Arc::new(Default::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("{server:?}: lake run: {e}"));
        let t = crate::databases::table(&r, "CRONUS$Item").clone();
        assert_eq!(t.result, TableResult::Migrated, "{server:?}: {t:#?}");
        t
    };
    lake_run().await;
    let (during, erp) = tokio::join!(
        lake_run(),
        src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('2', 'b')")
    );
    erp.unwrap_or_else(|e| panic!("{server:?}: the ERP's write failed during a run: {e}"));
    assert!(during.lake.is_some());
    for sql in [
        "UPDATE \"CRONUS$Item\" SET d = 'a2' WHERE no = '1'",
        "INSERT INTO \"CRONUS$Item\" VALUES ('3', 'c')",
        "DELETE FROM \"CRONUS$Item\" WHERE no = '2'",
    ] {
        src.erp_writes(sql)
            .await
            .unwrap_or_else(|e| panic!("{server:?}: the ERP's write failed: {sql}: {e}"));
    }
    let last = lake_run().await;
    assert_eq!(
        last.mode,
        cloudmigrate::engine::report::CopyMode::Incremental
    );
    let location = last.lake.unwrap().location;
    let seen = read(&location, &serde_json::json!({}));
    let expected = vec![
        vec![serde_json::json!("1"), serde_json::json!("a2")],
        vec![serde_json::json!("3"), serde_json::json!("c")],
    ];
    for (reader, rows) in &seen.readers {
        assert_eq!(rows, &expected, "{server:?}: {reader}");
    }
    assert_eq!(seen.readers.len(), 2);
}

#[tokio::test]
async fn the_erp_login_writes_around_lake_runs_of_a_migration_login_pg() {
    erp_login_keeps_writing_into_a_lake(Server::Postgres).await;
}

#[tokio::test]
async fn the_erp_login_writes_around_lake_runs_of_a_migration_login_mariadb() {
    erp_login_keeps_writing_into_a_lake(Server::MariaDb).await;
}

#[tokio::test]
async fn the_erp_login_writes_before_during_and_after_runs_pg() {
    erp_login_keeps_writing(Server::Postgres).await;
}

#[tokio::test]
async fn the_erp_login_writes_before_during_and_after_runs_mariadb() {
    erp_login_keeps_writing(Server::MariaDb).await;
}

/// A capture function of an earlier version ran as the writer: the next run puts the triggers
/// in again, without copying the table in full.
#[tokio::test]
async fn capture_functions_of_earlier_versions_are_replaced() {
    let src = estate(Server::Postgres).await;
    let dst = TestDb::new(Server::Postgres, "erp_dst").await;
    run(&src.config(&dst)).await;
    src.db
        .exec(
            "DO $$ DECLARE f text; BEGIN FOR f IN SELECT proname FROM pg_proc WHERE proname LIKE 'cloudmigrate_ct_%' \
             AND prorettype = 'trigger'::regtype LOOP EXECUTE format('ALTER FUNCTION %I() SECURITY INVOKER', f); END LOOP; END $$",
        )
        .await;
    let refused = src
        .erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await;
    assert!(refused.unwrap_err().contains("permission denied"));
    let report = run(&src.config(&dst)).await;
    assert_eq!(report.tiles().failed, 0, "{:#?}", report.tables);
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await
        .unwrap();
    let third = run(&src.config(&dst)).await;
    let t = crate::databases::table(&third, "CRONUS$Item");
    assert_eq!(
        t.mode,
        cloudmigrate::vocabulary::CopyMode::Incremental,
        "{t:#?}"
    );
    assert_eq!(items(&dst).await.len(), 1);
}

/// A table renamed after its triggers went on keeps them; removing change tracking finds them
/// by what they are, and the renamed table takes writes afterwards.
#[tokio::test]
async fn a_renamed_table_loses_its_triggers_with_the_rest() {
    for server in [Server::Postgres, Server::MariaDb] {
        let src = estate(server).await;
        let dst = TestDb::new(Server::Sqlite, "erp_dst").await;
        run(&src.config(&dst)).await;
        let q = |s: &str| src.db.dialect.quote(s);
        src.db
            .exec(&format!(
                "ALTER TABLE {} RENAME TO {}",
                q("CRONUS$Item"),
                q("CRONUS$Item (old)")
            ))
            .await;
        let mig = src.migration().await;
        assert_eq!(tracking::disable_all(&mig).await.unwrap(), 1, "{server:?}");
        assert_eq!(tracking::objects(&mig).await.unwrap(), vec![], "{server:?}");
        mig.close().await;
        src.db
            .exec(&format!(
                "INSERT INTO {} VALUES ('9', 'z')",
                q("CRONUS$Item (old)")
            ))
            .await;
    }
}

/// Removing a trigger that the login may not remove is an error that names it and the
/// statement, and the log stays for the trigger that still writes to it.
#[tokio::test]
async fn a_failed_drop_is_reported_and_the_log_stays() {
    let src = estate(Server::Postgres).await;
    let dst = TestDb::new(Server::Sqlite, "erp_dst").await;
    run(&src.config(&dst)).await;
    // The migration login no longer belongs to the owner's role: it may not drop triggers.
    src.db
        .exec(&format!(
            "REVOKE {} FROM {}",
            Dialect::Postgres.quote(&src.owner),
            Dialect::Postgres.quote(&src.migration_login)
        ))
        .await;
    let mig = src.migration().await;
    let e = tracking::disable_all(&mig).await.unwrap_err().to_string();
    assert!(
        e.contains("CRONUS$Item") && e.contains("DROP TRIGGER"),
        "{e}"
    );
    assert!(
        tracking::installed(&mig).await.unwrap(),
        "the log was dropped: {e}"
    );
    mig.close().await;
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await
        .unwrap();
}

/// A target whose schema was copied from a tracked source with `pg_dump -s` carries our
/// triggers without their log: the run removes them before it writes, and succeeds.
#[tokio::test]
async fn a_target_copied_with_pg_dump_loses_the_copied_triggers() {
    let src = estate(Server::Postgres).await;
    let first = TestDb::new(Server::Sqlite, "erp_dst").await;
    run(&src.config(&first)).await;
    src.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('1', 'a')")
        .await
        .unwrap();
    let dst = TestDb::new(Server::Postgres, "dumped").await;
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .map(|e| e.unwrap().path().join("bin"))
        .max()
        .unwrap();
    let url = |db: &TestDb| db.url.clone();
    let password = src.db.password.clone().unwrap();
    let dump = std::process::Command::new(bin.join("pg_dump"))
        .args([
            "-s",
            "--no-owner",
            "--no-privileges",
            "-T",
            "cloudmigrate_ct_*",
            &url(&src.db),
        ])
        .env("PGPASSWORD", &password)
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let schema = String::from_utf8(dump.stdout).unwrap();
    assert!(
        schema.contains("CREATE TRIGGER cloudmigrate_ct_"),
        "{schema}"
    );
    let mut restore = std::process::Command::new(bin.join("psql"))
        .args(["-q", "-v", "ON_ERROR_STOP=1", &url(&dst)])
        .env("PGPASSWORD", &password)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    restore
        .stdin
        .take()
        .unwrap()
        .write_all(schema.as_bytes())
        .unwrap();
    assert!(restore.wait().unwrap().success());
    let report = run(&src.config(&dst)).await;
    let t = crate::databases::table(&report, "CRONUS$Item");
    assert_eq!(t.result, TableResult::Migrated, "{t:#?}");
    assert_eq!(items(&dst).await.len(), 1);
    let target = dst.connect().await;
    assert_eq!(tracking::objects(&target).await.unwrap(), vec![]);
    target.close().await;
}

/// The migration login's needs are checked: with what docs/operations.md asks for, nothing is
/// missing; without a part of it, the check names the GRANT, and so does a diagnostic run.
#[tokio::test]
async fn a_missing_privilege_is_named_with_its_grant() {
    use cloudmigrate::engine::privileges;
    for server in [Server::Postgres, Server::MariaDb] {
        let src = estate(server).await;
        let mig = src.migration().await;
        assert_eq!(
            privileges::missing(&mig).await.unwrap(),
            vec![],
            "{server:?}"
        );
        mig.close().await;
        let (revoke, grant) = match server {
            Server::Postgres => {
                let (o, m) = (
                    Dialect::Postgres.quote(&src.owner),
                    Dialect::Postgres.quote(&src.migration_login),
                );
                (format!("REVOKE {o} FROM {m}"), format!("GRANT {o} TO {m}"))
            }
            _ => {
                let name = src.db.url.rsplit_once('/').unwrap().1.to_string();
                let login = format!("'{}'@'127.0.0.1'", src.migration_login);
                (
                    format!("REVOKE TRIGGER ON `{name}`.* FROM {login}"),
                    format!("GRANT TRIGGER ON `{name}`.* TO {login}"),
                )
            }
        };
        src.db.exec(&revoke).await;
        let mig = src.migration().await;
        let missing = privileges::missing(&mig).await.unwrap();
        mig.close().await;
        // On PostgreSQL, SELECT and CREATE came through the owner's role too: all three are named.
        let grants: Vec<String> = missing.iter().map(|m| m.grant.clone()).collect();
        assert!(grants.contains(&grant), "{server:?}: {grants:?}");
        assert_eq!(
            grants.len(),
            if server == Server::Postgres { 3 } else { 1 },
            "{grants:?}"
        );
        let dst = TestDb::new(Server::Sqlite, "erp_dst").await;
        dst.exec("CREATE TABLE \"CRONUS$Item\" (no TEXT PRIMARY KEY, d TEXT)")
            .await;
        let mut diagnostic = src.config(&dst);
        diagnostic.run_type = cloudmigrate::engine::RunType::Diagnostic;
        let report = run(&diagnostic).await;
        let t = crate::databases::table(&report, "CRONUS$Item");
        let said = format!(
            "{} {}",
            t.full_reason.clone().unwrap_or_default(),
            t.message.clone().unwrap_or_default()
        );
        assert!(said.contains(&grant), "{server:?}: {said}");
    }
}

/// Validation on a live estate: the ERP's own login posts after the run, and the migration
/// login (no superuser) validates the company: the posted keys are counted from the change log,
/// not reported as differences; a row changed in the cloud still is.
#[tokio::test]
async fn validation_counts_what_the_erp_login_posted_since_the_run() {
    let e = estate(Server::Postgres).await;
    e.db.exec(&format!(
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         ALTER TABLE \"Company\" OWNER TO {};\n\
         INSERT INTO \"CRONUS$Item\" SELECT i::text, 'item' FROM generate_series(1, 200) i",
        e.db.dialect.quote(&e.owner)
    ))
    .await;
    let dst = TestDb::new(Server::Postgres, "erp_dst").await;
    run(&e.config(&dst)).await;
    for no in 1..=5 {
        e.erp_writes(&format!(
            "UPDATE \"CRONUS$Item\" SET d = 'posted' WHERE no = '{no}'"
        ))
        .await
        .unwrap();
    }
    e.erp_writes("INSERT INTO \"CRONUS$Item\" VALUES ('new', 'posted')")
        .await
        .unwrap();
    e.erp_writes("DELETE FROM \"CRONUS$Item\" WHERE no = '9'")
        .await
        .unwrap();
    let (s, t) = (e.migration().await, dst.connect().await);
    let quiet = |_: usize, _: usize, _: &str| {};
    let v = cloudmigrate::engine::initialize::validate_company(&s, &t, "CRONUS", &quiet)
        .await
        .unwrap();
    assert!(v.failed().is_empty(), "{:?}", v.failed());
    assert_eq!(v.tables[0].changed_since_run, 7);
    dst.exec("UPDATE \"CRONUS$Item\" SET d = 'cloud' WHERE no = '50'")
        .await;
    let v = cloudmigrate::engine::initialize::validate_company(&s, &t, "CRONUS", &quiet)
        .await
        .unwrap();
    let failed = v.failed();
    assert_eq!(failed.len(), 1);
    let keys: Vec<&str> = failed[0]
        .differences
        .iter()
        .map(|d| d.key.as_str())
        .collect();
    assert_eq!(keys, ["no=50"]);
    s.close().await;
    t.close().await;
}
