//! No crash loses or duplicates a row: runs killed with SIGKILL at random moments, and writers
//! changing the source while runs go on. After one complete run the target equals the source.

use crate::databases::{Server, TestDb, config, run};
use cloudmigrate::db::{Dialect, Kind, Statement, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIG: &str = "CRONUS$G_L Entry";

/// A small deterministic random source.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

fn small(i: usize) -> String {
    format!("CRONUS$Setup {i}")
}

async fn fill(src: &TestDb, rows: i64) {
    let d = src.dialect;
    let text = if d == Dialect::Sqlite {
        "TEXT"
    } else {
        "VARCHAR(100)"
    };
    let mut ddl = vec![format!(
        "CREATE TABLE {} ({} BIGINT NOT NULL PRIMARY KEY, {} {text}, {} BIGINT)",
        d.quote(BIG),
        d.quote("Entry No_"),
        d.quote("Description"),
        d.quote("Amount")
    )];
    for i in 0..12 {
        ddl.push(format!(
            "CREATE TABLE {} (id BIGINT NOT NULL PRIMARY KEY, v {text})",
            d.quote(&small(i))
        ));
    }
    src.exec(&ddl.join(";\n")).await;
    let db = src.connect().await;
    let mut start = 1;
    while start <= rows {
        let end = (start + 999).min(rows);
        let values: Vec<String> = (start..=end)
            .map(|i| format!("({i}, 'entry {i}', {})", i * 7))
            .collect();
        exec(
            &db,
            &format!("INSERT INTO {} VALUES {}", d.quote(BIG), values.join(", ")),
        )
        .await;
        start = end + 1;
    }
    for i in 0..12 {
        let values: Vec<String> = (1..=20).map(|k| format!("({k}, 'v{k}')")).collect();
        exec(
            &db,
            &format!(
                "INSERT INTO {} VALUES {}",
                d.quote(&small(i)),
                values.join(", ")
            ),
        )
        .await;
    }
    db.close().await;
}

async fn exec(db: &cloudmigrate::db::Database, sql: &str) {
    db.execute(&Statement {
        sql: sql.to_string(),
        params: vec![],
    })
    .await
    .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Random inserts, updates and deletes on the source, as the ERP would make them.
async fn mutate(src: &TestDb, rng: &mut Lcg, n: usize, next_id: &mut i64) {
    let d = src.dialect;
    let (t, no, desc) = (d.quote(BIG), d.quote("Entry No_"), d.quote("Description"));
    let db = src.connect().await;
    for _ in 0..n {
        let sql = match rng.next(3) {
            0 => {
                *next_id += 1;
                format!("INSERT INTO {t} VALUES ({next_id}, 'new {next_id}', 1)")
            }
            1 => format!(
                "UPDATE {t} SET {desc} = 'changed {}' WHERE {no} = {}",
                rng.next(1000),
                rng.next(*next_id as u64) + 1
            ),
            _ => format!(
                "DELETE FROM {t} WHERE {no} = {}",
                rng.next(*next_id as u64) + 1
            ),
        };
        exec(&db, &sql).await;
    }
    let i = rng.next(12) as usize;
    exec(
        &db,
        &format!(
            "UPDATE {} SET v = 'touched {}' WHERE id = {}",
            d.quote(&small(i)),
            rng.next(99),
            rng.next(20) + 1
        ),
    )
    .await;
    db.close().await;
}

/// Every table of the source equals its copy in the target, row for row.
async fn assert_equal(src: &TestDb, dst: &TestDb, context: &str) {
    // One connection per side: logins are slow in a debug build (SCRAM hashing).
    let all_rows = async |db: &TestDb| {
        let conn = db.connect().await;
        let tables = conn.tables().await.unwrap();
        let mut out = Vec::new();
        for name in std::iter::once(BIG.to_string()).chain((0..12).map(small)) {
            let def = tables
                .iter()
                .find(|t| t.name == name)
                .unwrap_or_else(|| panic!("{context}: no table {name}"));
            let mut rows: Vec<Vec<String>> = conn
                .read_all(def)
                .await
                .unwrap()
                .into_iter()
                .map(|r| {
                    r.iter()
                        .map(|v| v.to_text().unwrap_or_else(|| "NULL".into()))
                        .collect()
                })
                .collect();
            rows.sort_by_key(|r| r[0].parse::<i64>().unwrap_or(i64::MAX));
            out.push((name, rows));
        }
        conn.close().await;
        out
    };
    for ((name, a), (_, b)) in all_rows(src).await.into_iter().zip(all_rows(dst).await) {
        assert_eq!(
            a.len(),
            b.len(),
            "{context}: {name}: {} rows in the source, {} in the target",
            a.len(),
            b.len()
        );
        assert!(a == b, "{context}: {name}: the rows differ");
    }
}

fn manifest(src: &TestDb, dst: &TestDb, dir: &std::path::Path) -> std::path::PathBuf {
    let secret = |db: &TestDb| {
        if db.password.is_some() {
            ", passwordSecretRef: {name: x}"
        } else {
            ""
        }
    };
    let text = format!(
        "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata: {{name: trial}}\nspec:\n  \
         source: {{url: '{}'{}}}\n  target: {{url: '{}'{}, createMissingTables: true}}\n  runtime: {{parallelism: 3}}\n",
        src.url,
        secret(src),
        dst.url,
        secret(dst)
    );
    let path = dir.join("schedule.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn cli(file: &std::path::Path, password: &str, run_type: &str) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"));
    c.args([
        "run",
        "-f",
        &file.to_string_lossy(),
        "--only-problems",
        "--type",
        run_type,
    ])
    .env("CLOUDMIGRATE_SOURCE_PASSWORD", password)
    .env("CLOUDMIGRATE_TARGET_PASSWORD", password)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    c
}

async fn kill_trials(source: Server, target: Server, trials: u64) {
    let src = TestDb::new(source, "kill_src").await;
    let dst = TestDb::new(target, "kill_dst").await;
    fill(&src, 30_000).await;
    let dir = std::env::temp_dir().join(format!("cm-kill-{}-{:?}", std::process::id(), source));
    std::fs::create_dir_all(&dir).unwrap();
    let file = manifest(&src, &dst, &dir);
    let password = src
        .password
        .clone()
        .or(dst.password.clone())
        .unwrap_or_default();
    let mut rng = Lcg(source as u64 * 31 + target as u64);
    let mut next_id = 30_000;
    // How long a full and an incremental run take here, to aim the kills inside them.
    let timed = |run_type: &str| {
        let started = Instant::now();
        let out = cli(&file, &password, run_type).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        started.elapsed().as_millis() as u64
    };
    let full_span = timed("full");
    mutate(&src, &mut rng, 40, &mut next_id).await;
    let incremental_span = timed("auto");
    assert_equal(&src, &dst, "first runs").await;
    // Trials go on until `trials` kills have landed inside a run. A kill that came too late
    // (the run had ended) aims earlier next time: timing varies with the machine's load.
    let (mut full_span, mut incremental_span) = (full_span, incremental_span);
    let mut interrupted = 0;
    let mut trial = 0;
    while interrupted < trials {
        assert!(
            trial < trials * 4,
            "only {interrupted} of {trial} kills landed inside a run"
        );
        mutate(&src, &mut rng, 40, &mut next_id).await;
        // Every other trial kills a full run, the others an incremental one.
        let (run_type, span) = if trial % 2 == 0 {
            ("full", &mut full_span)
        } else {
            ("auto", &mut incremental_span)
        };
        let mut child = cli(&file, &password, run_type).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.next(*span)));
        if child.try_wait().unwrap().is_none() {
            interrupted += 1;
        } else {
            *span = (*span * 3 / 4).max(5);
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if trial % 3 == 0 {
            mutate(&src, &mut rng, 10, &mut next_id).await;
        }
        let out = cli(&file, &password, "auto").output().unwrap();
        assert!(
            out.status.success(),
            "trial {trial}: the run after the kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_equal(&src, &dst, &format!("{source:?}->{target:?} trial {trial}")).await;
        trial += 1;
    }
    // Runs killed after they started are recorded as interrupted by the run after them.
    let db = dst.connect().await;
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT COUNT(*) FROM {} WHERE state = 'Interrupted'",
                    dst.dialect.quote("cloudmigrate_runs")
                ),
                params: vec![],
            },
            &[Kind::Int],
        )
        .await
        .unwrap();
    db.close().await;
    assert!(
        matches!(rows[0][0], Value::Int(n) if n > 0),
        "no run was recorded as interrupted: {rows:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_runs_never_lose_or_duplicate_rows_pg_to_pg() {
    kill_trials(Server::Postgres, Server::Postgres, 17).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_runs_never_lose_or_duplicate_rows_mysql_to_pg() {
    kill_trials(Server::MariaDb, Server::Postgres, 17).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_runs_never_lose_or_duplicate_rows_sqlite_to_sqlite() {
    kill_trials(Server::Sqlite, Server::Sqlite, 17).await;
}

async fn concurrent_writer(source: Server, target: Server) {
    let src = TestDb::new(source, "writer_src").await;
    let dst = TestDb::new(target, "writer_dst").await;
    fill(&src, 5_000).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let src = TestDb {
            url: src.url.clone(),
            password: src.password.clone(),
            dialect: src.dialect,
            _dir: None,
        };
        tokio::spawn(async move {
            let mut rng = Lcg(7);
            let mut next_id = 5_000;
            let mut rounds = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                mutate(&src, &mut rng, 20, &mut next_id).await;
                rounds += 1;
            }
            rounds
        })
    };
    for _ in 0..4 {
        let report = run(&config(&src, &dst, true)).await;
        assert_eq!(
            report.result(),
            "Succeeded",
            "{:#?}",
            report
                .tables
                .iter()
                .filter(|t| t.message.is_some())
                .collect::<Vec<_>>()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(rounds > 2, "the writer hardly ran ({rounds} rounds)");
    run(&config(&src, &dst, true)).await;
    assert_equal(
        &src,
        &dst,
        &format!("{source:?}->{target:?} after concurrent writes"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_end_equal_pg_to_pg() {
    concurrent_writer(Server::Postgres, Server::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writes_end_equal_mysql_to_sqlite() {
    concurrent_writer(Server::MariaDb, Server::Sqlite).await;
}

/// The source's server restarts in the middle of a run: the tables in flight fail with a clear
/// message, the others complete, and the next run heals everything. The test runs its own
/// PostgreSQL, since it restarts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_source_restart_fails_the_tables_in_flight_and_the_next_run_heals() {
    let dir = std::env::temp_dir().join(format!("cm-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let start = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/databases/start.sh");
    let status = Command::new(start).arg(&dir).status().unwrap();
    assert!(status.success(), "starting a private PostgreSQL failed");
    let pg_bin = std::fs::read_dir("/usr/lib/postgresql")
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("bin/pg_ctl");
    let _servers = PrivateServers {
        dir: dir.clone(),
        pg_ctl: pg_bin.clone(),
    };
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap()
            .to_string()
    };
    let admin = var("CLOUDMIGRATE_TEST_PG_URL");
    let password = var("CLOUDMIGRATE_TEST_DB_PASSWORD");
    let base = admin.rsplit_once('/').unwrap().0.to_string();
    let spec = |db: &str| cloudmigrate::db::ConnectSpec {
        url: format!("{base}/{db}"),
        password: Some(password.clone()),
        tls: None,
        max_connections: 2,
        create: false,
    };
    let admin_db = cloudmigrate::db::Database::connect(&spec("postgres"))
        .await
        .unwrap();
    exec(&admin_db, "CREATE DATABASE src").await;
    admin_db.close().await;
    let src = TestDb {
        url: format!("{base}/src"),
        password: Some(password.clone()),
        dialect: Dialect::Postgres,
        _dir: None,
    };
    fill(&src, 400_000).await;
    let dst = TestDb::new(Server::Sqlite, "restart_dst").await;

    let cfg = config(&src, &dst, true);
    let progress = std::sync::Arc::new(cloudmigrate::db::ReadProgress::default());
    let running = tokio::spawn({
        let progress = progress.clone();
        async move { cloudmigrate::engine::run(&cfg, &cloudmigrate::engine::Quiet, progress).await }
    });
    // The restart lands while rows are being read, whatever the phases before took.
    let started = std::time::Instant::now();
    while progress.rows.load(std::sync::atomic::Ordering::Relaxed) == 0
        && started.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let restart = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(&pg_bin)
        .args(["restart", "-m", "fast", "-w", "-D"])
        .arg(dir.join("pg/data"))
        .arg("-l")
        .arg(dir.join("pg/restart.log"))
        .output()
        .unwrap();
    assert!(
        restart.status.success(),
        "{}",
        String::from_utf8_lossy(&restart.stderr)
    );
    let report = running.await.unwrap();
    match &report {
        Ok(r) => {
            let failed: Vec<_> = r
                .tables
                .iter()
                .filter(|t| t.result == cloudmigrate::engine::report::TableResult::Failed)
                .collect();
            assert!(!failed.is_empty(), "the restart hit no table");
            for t in &failed {
                let m = t.message.as_deref().unwrap();
                assert!(m.contains("on-premises") || m.contains("cloud"), "{m}");
            }
        }
        // The restart may also land before any table started: then the whole run stops cleanly.
        Err(e) => assert!(e.to_string().contains("source database"), "{e}"),
    }
    let healed = run(&config(&src, &dst, true)).await;
    assert_eq!(
        healed.result(),
        "Succeeded",
        "{:#?}",
        healed
            .tables
            .iter()
            .filter(|t| t.message.is_some())
            .collect::<Vec<_>>()
    );
    assert_equal(&src, &dst, "after the restart").await;
}

/// Servers of one test, stopped however the test ends.
struct PrivateServers {
    dir: std::path::PathBuf,
    pg_ctl: std::path::PathBuf,
}

impl Drop for PrivateServers {
    fn drop(&mut self) {
        // The postmaster's pid changed with the restart: stop it by its data directory.
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(&self.pg_ctl)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("pg/data"))
            .output();
        let pids = std::fs::read_to_string(self.dir.join("pids")).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = Command::new("kill").arg(pid).status();
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Many small tables loaded in parallel record their state side by side: into MariaDB that
/// must not deadlock (InnoDB's gap locks once did, on the run log), and into any target every
/// table ends with one log line.
#[tokio::test]
async fn many_small_tables_load_in_parallel_without_deadlocks() {
    for target in [Server::MariaDb, Server::Postgres] {
        let src = TestDb::new(Server::Postgres, "many_src").await;
        let dst = TestDb::new(target, "many_dst").await;
        let sql: String = (0..60)
            .map(|i| {
                format!(
                    "CREATE TABLE \"CRONUS$Setup {i}\" (\"Code\" varchar(20) PRIMARY KEY, \"Value\" int);\n\
                     INSERT INTO \"CRONUS$Setup {i}\" SELECT g::text, g FROM generate_series(1, 20) g;\n"
                )
            })
            .collect();
        src.exec(&sql).await;
        let mut cfg = config(&src, &dst, true);
        cfg.parallelism = 8;
        for round in 0..2 {
            let report = run(&cfg).await;
            let failed: Vec<_> = report
                .tables
                .iter()
                .filter(|t| t.result == cloudmigrate::engine::report::TableResult::Failed)
                .map(|t| (t.table.clone(), t.message.clone()))
                .collect();
            assert!(failed.is_empty(), "{target:?}, round {round}: {failed:?}");
            assert_eq!(report.tables.len(), 60);
        }
    }
}
