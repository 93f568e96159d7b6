//! Runs into a data lake, read back by readers cloudmigrate did not write: DuckDB with its
//! delta extension and the deltalake package (`tests/lake/read.py`), against the source's own
//! rows. Lakes are local folders, Azurite (`az://`) and SeaweedFS (`s3://`), all started by
//! `tests/run.sh`.

use super::databases::{Server, TestDb, unique};
use super::gp::{GP_COMPANY, gp_sql};
use cloudmigrate::db::{Database, Value};
use cloudmigrate::engine::plan::PlanOptions;
use cloudmigrate::engine::report::{CopyMode, RunReport, TableReport, TableResult};
use cloudmigrate::engine::{Quiet, RunType};
use cloudmigrate::lake::run::LakeRunConfig;
use cloudmigrate::lake::store::LakeTarget;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set. Run the tests with tests/run.sh: it installs and starts what the lake tests need.")
    })
}

/// A folder for one test's lake, removed when dropped.
pub(super) struct Folder(PathBuf);

impl Folder {
    pub(super) fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(unique(label));
        std::fs::create_dir_all(&dir).unwrap();
        Folder(dir)
    }

    pub(super) fn url(&self) -> String {
        format!("file://{}", self.0.display())
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(source: &TestDb, lake: LakeTarget) -> LakeRunConfig {
    let mut spec = source.spec();
    spec.create = false;
    LakeRunConfig {
        run_id: unique("lake"),
        source: spec,
        lake,
        plan: PlanOptions::default(),
        parallelism: 2,
        run_type: RunType::Auto,
        retention: cloudmigrate::engine::tracking::DEFAULT_RETENTION,
        stop: Default::default(),
        rows_per_file: 1000,
    }
}

pub(super) fn local(folder: &Folder) -> LakeTarget {
    LakeTarget {
        url: folder.url(),
        ..Default::default()
    }
}

async fn run(config: &LakeRunConfig) -> RunReport {
    cloudmigrate::lake::run::run(config, &Quiet, Arc::new(Default::default()))
        .await
        .unwrap_or_else(|e| panic!("lake run: {e}"))
}

fn table<'a>(report: &'a RunReport, name: &str) -> &'a TableReport {
    report
        .tables
        .iter()
        .find(|t| t.source_name == name)
        .unwrap_or_else(|| panic!("no table {name} in the report"))
}

/// What the two readers see of a Delta table, as `read.py` prints it.
pub(super) struct Read {
    pub(super) columns: Vec<String>,
    /// Rows by reader, each sorted.
    pub(super) readers: BTreeMap<String, Vec<Vec<serde_json::Value>>>,
    pub(super) version: u64,
}

pub(super) fn read(url: &str, options: &serde_json::Value) -> Read {
    let python = format!("{}/bin/python", env("CLOUDMIGRATE_VENV"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lake/read.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(url)
        .arg(options.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "read.py {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let columns = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let mut readers = BTreeMap::new();
    for reader in ["duckdb", "deltalake"] {
        if let Some(rows) = v.get(reader).and_then(|r| r.as_array()) {
            let mut rows: Vec<Vec<serde_json::Value>> =
                rows.iter().map(|r| r.as_array().unwrap().clone()).collect();
            rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
            readers.insert(reader.to_string(), rows);
        }
    }
    Read {
        columns,
        readers,
        version: v["version"].as_u64().unwrap(),
    }
}

/// A source value in `read.py`'s canonical form.
fn canonical(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    let decimal = |t: &str| {
        let mut t = t.to_string();
        if t.contains('.') {
            t = t.trim_end_matches('0').trim_end_matches('.').to_string();
        }
        if t == "-0" || t.is_empty() {
            t = "0".into();
        }
        t
    };
    match v {
        Value::Null => J::Null,
        Value::Float(f) => serde_json::json!(f),
        Value::Decimal(t) => J::String(decimal(t)),
        Value::Timestamp(t) => J::String(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        Value::TimestampTz(t) => J::String(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
        other => J::String(other.to_text().unwrap_or_default()),
    }
}

/// Every row of a source table in the canonical form, sorted as `read` sorts.
async fn source_rows(db: &TestDb, table: &str) -> (Vec<String>, Vec<Vec<serde_json::Value>>) {
    let conn: Database = db.connect().await;
    let def = conn
        .tables()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == table)
        .unwrap();
    let mut rows: Vec<Vec<serde_json::Value>> = conn
        .read_all(&def)
        .await
        .unwrap()
        .iter()
        .map(|r| r.iter().map(canonical).collect())
        .collect();
    conn.close().await;
    rows.sort_by_key(|r| serde_json::to_string(r).unwrap());
    (def.columns.into_iter().map(|c| c.name).collect(), rows)
}

/// Both readers see exactly the source table.
async fn assert_same(db: &TestDb, table: &str, url: &str, options: &serde_json::Value) -> Read {
    let (columns, expected) = source_rows(db, table).await;
    let read = read(url, options);
    assert_eq!(read.columns, columns, "{url}");
    assert!(!read.readers.is_empty());
    for (reader, rows) in &read.readers {
        assert_eq!(rows.len(), expected.len(), "{reader} reads {url}");
        for (got, want) in rows.iter().zip(&expected) {
            assert_eq!(got, want, "{reader} reads {url}");
        }
    }
    read
}

fn table_url(report: &RunReport, name: &str) -> String {
    table(report, name).lake.as_ref().unwrap().location.clone()
}

const TYPES_PG: &str = r#"CREATE TABLE "Company" ("Name" varchar(30) PRIMARY KEY);
INSERT INTO "Company" VALUES ('CRONUS');
CREATE TABLE "CRONUS$Type Test" ("Entry No_" integer PRIMARY KEY, "Big" bigint, "Small" smallint,
  "Amount" numeric(38,20), "Price" numeric(10,2), "Name" varchar(50), "Note" text, "Blob" bytea,
  "Guid" uuid, "Posting Date" date, "Created At" timestamp(6), "Changed At" timestamptz,
  "Blocked" boolean, "Ratio" double precision);
INSERT INTO "CRONUS$Type Test" VALUES
  (1, 9223372036854775807, -32768, '-123456789012345678.12345678901234567890', '0.01',
   'Café $1 "quoted"', E'ü日本\nline two', '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
   '2024-02-29', '2024-02-29 23:59:59.123456', '2024-02-29 23:59:59.654321+02', true, 0.1),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (-2147483648, -1, 0, '0', '-0.50', '', '', '', '00000000-0000-0000-0000-000000000000',
   '1753-01-01', '1753-01-01 00:00:00', '1970-01-01 00:00:00+00', false, -1e300),
  (2147483647, 0, 32767, '999999999999999999.99999999999999999999', '99999999.99', 'z', 'z',
   '\xff', 'ffffffff-ffff-ffff-ffff-ffffffffffff', '9999-12-31', '9999-12-31 23:59:59.999999',
   '2038-01-19 03:14:07.5+00', true, 1.7976931348623157e308)"#;

const TYPES_MARIADB: &str = r#"CREATE TABLE `Company` (`Name` varchar(30) PRIMARY KEY);
INSERT INTO `Company` VALUES ('CRONUS');
CREATE TABLE `CRONUS$Type Test` (`Entry No_` int PRIMARY KEY, `Big` bigint, `Small` smallint,
  `Amount` decimal(38,20), `Price` decimal(10,2), `Name` varchar(50), `Note` text, `Blob` longblob,
  `Posting Date` date, `Created At` datetime(6), `Blocked` tinyint(1), `Ratio` double);
INSERT INTO `CRONUS$Type Test` VALUES
  (1, 9223372036854775807, -32768, '-123456789012345678.12345678901234567890', '0.01',
   'Café $1 "quoted"', 'ü日本\nline two', X'00ff10', '2024-02-29', '2024-02-29 23:59:59.123456',
   1, 0.1),
  (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
  (-2147483648, -1, 0, '0', '-0.50', '', '', X'', '1753-01-01', '1753-01-01 00:00:00', 0, -1e300),
  (2147483647, 0, 32767, '999999999999999999.99999999999999999999', '99999999.99', 'z', 'z',
   X'ff', '9999-12-31', '9999-12-31 23:59:59.999999', 1, 1.7976931348623157e308)"#;

async fn types_round_trip(server: Server, ddl: &str) {
    let source = TestDb::new(server, "lake_types").await;
    source.exec(ddl).await;
    let folder = Folder::new("lake_types");
    let report = run(&config(&source, local(&folder))).await;
    let t = table(&report, "CRONUS$Type Test");
    assert_eq!(t.result, TableResult::Migrated, "{:?}", t.message);
    assert_eq!(t.mode, CopyMode::Full);
    let lake = t.lake.as_ref().unwrap();
    assert_eq!((lake.version, lake.files, lake.rows), (Some(0), 1, 4));
    assert!(
        lake.location.ends_with("/companies/CRONUS/Type Test"),
        "{}",
        lake.location
    );
    let read = assert_same(
        &source,
        "CRONUS$Type Test",
        &lake.location,
        &serde_json::json!({}),
    )
    .await;
    assert_eq!(read.readers.len(), 2, "both readers read a file:// table");
}

#[tokio::test]
async fn every_type_round_trips_exactly_from_postgres() {
    types_round_trip(Server::Postgres, TYPES_PG).await;
}

#[tokio::test]
async fn every_type_round_trips_exactly_from_mariadb() {
    types_round_trip(Server::MariaDb, TYPES_MARIADB).await;
}

/// Every file under a folder, with its bytes, and when it was last written.
fn files(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                out.insert(rel, (std::fs::read(&p).unwrap(), modified));
            }
        }
    }
    out
}

const LEDGER: &str = r#"CREATE TABLE "Company" ("Name" varchar(30) PRIMARY KEY);
INSERT INTO "Company" VALUES ('CRONUS');
CREATE TABLE "CRONUS$G_L Entry" ("Entry No_" integer PRIMARY KEY, "Description" text,
  "Amount" numeric(20,2));
INSERT INTO "CRONUS$G_L Entry" SELECT i, 'Posting ' || i, i * 1.25 FROM generate_series(1, 10000) i"#;

#[tokio::test]
async fn an_incremental_run_rewrites_only_the_ranges_that_changed() {
    let source = TestDb::new(Server::Postgres, "lake_incremental").await;
    source.exec(LEDGER).await;
    let folder = Folder::new("lake_incremental");
    let cfg = config(&source, local(&folder));
    let name = "CRONUS$G_L Entry";
    let first = run(&cfg).await;
    let t = table(&first, name).lake.clone().unwrap();
    assert_eq!((t.version, t.files, t.rows), (Some(0), 10, 10_000));
    let url = table_url(&first, name);

    // An update in the second file's range, deletes in the sixth's, inserts after the last key.
    source
        .exec(
            r#"UPDATE "CRONUS$G_L Entry" SET "Amount" = -1, "Description" = 'changed' WHERE "Entry No_" = 1500;
DELETE FROM "CRONUS$G_L Entry" WHERE "Entry No_" BETWEEN 5001 AND 5010;
INSERT INTO "CRONUS$G_L Entry" SELECT i, 'New ' || i, 0.01 FROM generate_series(10001, 10050) i"#,
        )
        .await;
    let second = run(&cfg).await;
    let r = table(&second, name);
    assert_eq!(r.result, TableResult::Migrated, "{:?}", r.message);
    assert_eq!(r.mode, CopyMode::Incremental, "{:?}", r.full_reason);
    assert_eq!(r.changes, Some((50, 1, 10)));
    let lake = r.lake.clone().unwrap();
    assert_eq!(lake.version, Some(1), "one commit");
    // Three ranges read again: the second's and the sixth's files are replaced; the last
    // range's 1,050 rows make its file again, unchanged, and one new file after it.
    assert_eq!((lake.removed, lake.added), (2, 3));
    assert_eq!((lake.files, lake.rows), (11, 10_040));
    let read = assert_same(&source, name, &url, &serde_json::json!({})).await;
    assert_eq!(read.version, 1);

    // The same window again: nothing is read, written or committed, even when the server's
    // transactions moved PostgreSQL's clock on meanwhile (a database made is one).
    let _tick = TestDb::new(Server::Postgres, "lake_tick").await;
    let before = files(&folder.0);
    let third = run(&cfg).await;
    let r = table(&third, name);
    assert_eq!(r.lake.as_ref().unwrap().version, Some(1));
    assert_eq!(r.rows, 0);
    assert_eq!(files(&folder.0), before, "a second run writes nothing");

    // A full run of unchanged data writes no file either: the files it makes are the ones there.
    let mut full = cfg.clone();
    full.run_type = RunType::Full;
    let fourth = run(&full).await;
    let r = table(&fourth, name);
    assert_eq!(r.mode, CopyMode::Full);
    let lake = r.lake.clone().unwrap();
    // Full runs cut files every 1,000 rows from the first key: the ranges after the deletes and
    // inserts move, so the files differ from the incremental run's; the table is the same.
    assert_eq!(lake.version, Some(2));
    assert_same(&source, name, &url, &serde_json::json!({})).await;
    let before = files(&folder.0);
    let _tick = TestDb::new(Server::Postgres, "lake_tick").await;
    let fifth = run(&full).await;
    assert_eq!(table(&fifth, name).lake.as_ref().unwrap().version, Some(2));
    assert_eq!(
        files(&folder.0),
        before,
        "a full run of the same rows writes nothing"
    );
}

/// Every tenth version of a table has a checkpoint of its log: with the commits before it
/// deleted (as log cleanup does), both readers and the next run still see the whole table.
#[tokio::test]
async fn a_checkpoint_every_ten_versions_stands_for_the_commits_before_it() {
    let source = TestDb::new(Server::Postgres, "lake_checkpoint").await;
    source.exec(LEDGER).await;
    let folder = Folder::new("lake_checkpoint");
    let cfg = config(&source, local(&folder));
    let name = "CRONUS$G_L Entry";
    let url = table_url(&run(&cfg).await, name);
    for i in 1..=10 {
        source
            .exec(&format!(
                r#"UPDATE "CRONUS$G_L Entry" SET "Description" = 'change {i}' WHERE "Entry No_" = {}"#,
                i * 900
            ))
            .await;
        let r = run(&cfg).await;
        assert_eq!(table(&r, name).lake.as_ref().unwrap().version, Some(i));
    }
    let log = PathBuf::from(url.trim_start_matches("file://")).join("_delta_log");
    let checkpoint = log.join("00000000000000000010.checkpoint.parquet");
    assert!(checkpoint.exists(), "version 10 has a checkpoint");
    assert_eq!(
        std::fs::read_to_string(log.join("_last_checkpoint")).unwrap(),
        r#"{"version":10,"size":12}"#
    );
    for v in 0..10 {
        std::fs::remove_file(log.join(format!("{v:020}.json"))).unwrap();
    }
    let read = assert_same(&source, name, &url, &serde_json::json!({})).await;
    assert_eq!((read.version, read.readers.len()), (10, 2));
    // The next run starts from the checkpoint, and its commit is version 11.
    source
        .exec(r#"DELETE FROM "CRONUS$G_L Entry" WHERE "Entry No_" = 1"#)
        .await;
    let r = run(&cfg).await;
    let lake = table(&r, name).lake.clone().unwrap();
    assert_eq!((lake.version, lake.rows), (Some(11), 9_999));
    assert_same(&source, name, &url, &serde_json::json!({})).await;
}

/// The data files and the log of every table under a lake folder (the watermark files, which
/// hold the change tracking versions of the run that wrote them, left out).
fn tables_content(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    files(dir)
        .into_iter()
        .filter(|(p, _)| !p.contains("_cloudmigrate"))
        .map(|(p, (bytes, _))| (p, bytes))
        .collect()
}

#[tokio::test]
async fn a_killed_run_ends_as_an_uninterrupted_one_byte_for_byte() {
    let source = TestDb::new(Server::Sqlite, "lake_kill").await;
    source
        .exec(
            r#"CREATE TABLE "Company" ("Name" TEXT PRIMARY KEY);
INSERT INTO "Company" VALUES ('CRONUS');
CREATE TABLE "CRONUS$G_L Entry" ("Entry No_" INTEGER PRIMARY KEY, "Description" TEXT, "Amount" DECIMAL(20,2));
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 150000)
INSERT INTO "CRONUS$G_L Entry" SELECT i, 'Posting ' || i, i * 1.25 FROM n"#,
        )
        .await;
    let manifest = |folder: &Folder| {
        format!(
            "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata:\n  name: kill\n\
             spec:\n  source:\n    url: {}\n  target:\n    url: {}\n",
            source.url,
            folder.url()
        )
    };
    let cli = |folder: &Folder| {
        let file = folder.0.with_extension("yaml");
        std::fs::write(&file, manifest(folder)).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cloudmigrate"));
        cmd.args(["run", "-f"]).arg(&file);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    let whole = Folder::new("lake_whole");
    assert!(cli(&whole).status().unwrap().success());
    let table_dir = whole.0.join("companies/CRONUS/G_L Entry");
    let parts = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .ends_with(".parquet")
                })
                .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(parts(&table_dir), 3, "150,000 rows make three files");

    // Killed once its first file is written, before its commit.
    let killed = Folder::new("lake_killed");
    let mut child = cli(&killed).spawn().unwrap();
    let dir = killed.0.join("companies/CRONUS/G_L Entry");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while parts(&dir) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no data file after 120 s"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !dir.join("_delta_log").exists(),
        "the run was killed before its commit"
    );
    assert!(cli(&killed).status().unwrap().success());
    assert_eq!(tables_content(&killed.0), tables_content(&whole.0));
}

#[tokio::test]
async fn azurite_and_seaweedfs_hold_the_same_tables_and_refuse_a_wrong_key() {
    let source = TestDb::new(Server::Postgres, "lake_remote").await;
    source.exec(LEDGER).await;
    let folder = Folder::new("lake_remote_local");
    let reference = run(&config(&source, local(&folder))).await;
    let prefix = unique("t");
    let azure = LakeTarget {
        url: format!("az://lake/{prefix}"),
        account: Some(env("CLOUDMIGRATE_TEST_AZURITE_ACCOUNT")),
        endpoint: Some(env("CLOUDMIGRATE_TEST_AZURITE_ENDPOINT")),
        secret: Some(env("CLOUDMIGRATE_TEST_AZURITE_KEY")),
        ..Default::default()
    };
    let s3 = LakeTarget {
        url: format!("s3://lake/{prefix}"),
        access_key_id: Some(env("CLOUDMIGRATE_TEST_S3_KEY_ID")),
        endpoint: Some(env("CLOUDMIGRATE_TEST_S3_ENDPOINT")),
        secret: Some(env("CLOUDMIGRATE_TEST_S3_SECRET")),
        ..Default::default()
    };
    let options = |t: &LakeTarget| {
        if t.url.starts_with("az://") {
            serde_json::json!({"account_name": t.account, "account_key": t.secret,
                "endpoint": t.endpoint, "allow_http": "true"})
        } else {
            serde_json::json!({"access_key_id": t.access_key_id, "secret_access_key": t.secret,
                "endpoint": t.endpoint, "allow_http": "true", "region": "us-east-1"})
        }
    };
    let name = "CRONUS$G_L Entry";
    for target in [azure, s3] {
        // A wrong key: refused before anything is written, with the fix.
        let mut wrong = target.clone();
        wrong.secret = Some("d3Jvbmcga2V5".into());
        let e = cloudmigrate::lake::run::run(
            &config(&source, wrong.clone()),
            &Quiet,
            Arc::new(Default::default()),
        )
        .await
        .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("refused the credentials") && text.contains("password Secret"),
            "{}: {text}",
            target.url
        );
        assert!(!text.contains("d3Jvbmcga2V5"), "the key is never shown");
        let store = cloudmigrate::lake::store::open(&target).unwrap();
        {
            use futures_util::StreamExt;
            let written: Vec<_> = store.store.list(Some(&store.root)).collect().await;
            assert!(written.is_empty(), "a wrong key wrote {written:?}");
        }
        let report = run(&config(&source, target.clone())).await;
        let t = table(&report, name);
        assert_eq!(t.result, TableResult::Migrated, "{:?}", t.message);
        let location = t.lake.as_ref().unwrap().location.clone();
        assert_eq!(
            location,
            format!("{}/companies/CRONUS/G_L Entry", target.url)
        );
        assert_eq!(
            t.lake.as_ref().unwrap().files,
            table(&reference, name).lake.as_ref().unwrap().files
        );
        let read = assert_same(&source, name, &location, &options(&target)).await;
        assert_eq!(read.version, 0);
        // The same log, byte for byte, as the local lake's.
        let log = store.path(&[
            "companies",
            "CRONUS",
            "G_L Entry",
            "_delta_log",
            "00000000000000000000.json",
        ]);
        use object_store::ObjectStoreExt;
        let remote = store.store.get(&log).await.unwrap().bytes().await.unwrap();
        let here = std::fs::read(
            folder
                .0
                .join("companies/CRONUS/G_L Entry/_delta_log/00000000000000000000.json"),
        )
        .unwrap();
        assert_eq!(remote.as_ref(), here.as_slice(), "{}", target.url);
    }
}

#[tokio::test]
async fn the_lake_example_writes_the_demo_as_the_readme_says() {
    let dir = Folder::new("lake_example");
    cloudmigrate::demo::create(&dir.0).await.unwrap();
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/local/lake.yaml"
    ))
    .unwrap()
    .replace("//cloudmigrate-demo/", &format!("//{}/", dir.0.display()));
    let file = dir.0.join("lake.yaml");
    std::fs::write(&file, manifest).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run(&["run", "-f", &file.to_string_lossy(), "--only-problems"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("Tables failed                     0"), "{out}");
    // The README's DuckDB query, through read.py.
    let ledger = dir
        .0
        .join("lake/companies/CRONUS International Ltd./G_L Entry");
    let read = read(
        &format!("file://{}", ledger.display()),
        &serde_json::json!({}),
    );
    let source = TestDb {
        url: format!("sqlite://{}", dir.0.join("onprem.db").display()),
        password: None,
        dialect: cloudmigrate::db::Dialect::Sqlite,
        _dir: None,
    };
    let count = source.count("CRONUS International Ltd_$G_L Entry").await;
    for (reader, rows) in &read.readers {
        assert_eq!(rows.len() as i64, count, "{reader}");
    }
    assert_eq!(read.readers.len(), 2);
    // Run again: nothing is written.
    let before = files(&dir.0.join("lake"));
    let (code, out) = run(&["run", "-f", &file.to_string_lossy(), "--only-problems"]);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(files(&dir.0.join("lake")), before);
}

/// A Dynamics GP company database: GP's own table names and shapes (fixed-width `char`
/// codes, `numeric(19,5)` amounts, `smallint` flags, `DEX_ROW_ID`), in PostgreSQL's quoting;
/// `gp_sql` turns it into MariaDB's.
async fn gp_layout(server: Server) {
    // INTERID is GP's char(5): the company databases get short names of their own.
    let tag = {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        format!("{:03X}", (n ^ std::process::id()) % 0xFFF)
    };
    let (two, fab) = (format!("T{tag}A"), format!("T{tag}B"));
    let system = TestDb::new(server, "gp_dynamics").await;
    system
        .exec(&gp_sql(
            server,
            &format!(
                r#"CREATE TABLE "SY01500" ("CMPANYID" smallint PRIMARY KEY, "CMPNYNAM" char(65) NOT NULL,
  "INTERID" char(5) NOT NULL, "DEX_ROW_ID" integer NOT NULL);
INSERT INTO "SY01500" VALUES (-1, 'Fabrikam, Inc.', '{two}', 1), (2, 'Contoso GP', '{fab}', 2);
CREATE TABLE "SY01400" ("USERID" char(15) PRIMARY KEY, "USERNAME" char(31) NOT NULL);
INSERT INTO "SY01400" VALUES ('sa', 'System Administrator')"#
            ),
        ))
        .await;
    let mut companies = vec![];
    for name in [&two, &fab] {
        let db = TestDb::named(server, name).await;
        db.exec(&gp_sql(server, GP_COMPANY)).await;
        companies.push(db);
    }
    let folder = Folder::new("lake_gp");
    let mut cfg = config(&system, local(&folder));
    cfg.plan.product = cloudmigrate::vocabulary::Product::Gp;
    let report = run(&cfg).await;
    let by_folder: BTreeMap<String, &TableReport> = report
        .tables
        .iter()
        .filter_map(|t| {
            let location = &t.lake.as_ref()?.location;
            Some((location[folder.url().len()..].to_string(), t))
        })
        .collect();
    let system_name = cloudmigrate::engine::gp::database_of(&system.url);
    let mut expected = vec![format!("/gp-database/{system_name}/System/SY01500")];
    for db in [&two, &fab] {
        for t in [
            "Financial/GL00100",
            "Sales/RM00101",
            "Purchasing/PM00200",
            "Inventory/IV00101",
            "Company/SY00300",
            "3rd Party/XYZ10100",
        ] {
            expected.push(format!("/gp-database/{db}/{t}"));
        }
    }
    expected.sort();
    assert_eq!(by_folder.keys().cloned().collect::<Vec<_>>(), expected);
    for t in by_folder.values() {
        assert_eq!(
            t.result,
            TableResult::Migrated,
            "{}: {:?}",
            t.source_name,
            t.message
        );
    }
    // Users stay behind, by design.
    let users = table(&report, "SY01400");
    assert_eq!(users.result, TableResult::Excluded);
    // Each company's tables carry its name; the system database's none.
    let customers = &by_folder[&format!("/gp-database/{two}/Sales/RM00101")];
    assert_eq!(customers.company, "Fabrikam, Inc.");
    assert_eq!(
        by_folder[&format!("/gp-database/{system_name}/System/SY01500")].company,
        ""
    );
    // Read back through both readers, value by value, from the company's own database.
    assert_same(
        &companies[0],
        "RM00101",
        &customers.lake.as_ref().unwrap().location,
        &serde_json::json!({}),
    )
    .await;
    // A company SY01500 does not list is named with those it does.
    let mut wrong = cfg.clone();
    wrong.plan.companies = Some(vec!["Fabrikam Inc".into()]);
    let e = cloudmigrate::lake::run::run(&wrong, &Quiet, Arc::new(Default::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"Fabrikam Inc\"") && e.contains("\"Fabrikam, Inc.\""),
        "{e}"
    );
}

#[tokio::test]
async fn gp_databases_land_in_the_vendors_folders_from_postgres() {
    gp_layout(Server::Postgres).await;
}

#[tokio::test]
async fn gp_databases_land_in_the_vendors_folders_from_mariadb() {
    gp_layout(Server::MariaDb).await;
}

/// Keys of text (with accents, case and `$`) and numbers together, on MariaDB, whose collation
/// sorts text otherwise than bytes do: the ranges an incremental run rewrites are found in the
/// order the files were cut in, and the table ends exactly as the source.
#[tokio::test]
async fn text_and_composite_keys_rewrite_their_ranges_exactly_on_mariadb() {
    let source = TestDb::new(Server::MariaDb, "lake_keys").await;
    source
        .exec(
            "CREATE TABLE `Company` (`Name` varchar(30) PRIMARY KEY) COLLATE utf8mb4_general_ci;\n\
             INSERT INTO `Company` VALUES ('CRONUS');\n\
             CREATE TABLE `CRONUS$Sales Line` (`Document No_` varchar(20) NOT NULL, `Line No_` int NOT NULL,\n\
               `Description` varchar(100), PRIMARY KEY (`Document No_`, `Line No_`)) COLLATE utf8mb4_general_ci;\n\
             INSERT INTO `CRONUS$Sales Line` SELECT CONCAT(ELT(1 + seq % 6, 'a', 'B', 'é', 'Z', '$x', 'ä'), LPAD(seq DIV 6, 5, '0')),\n\
               seq % 7 * 10000, CONCAT('line ', seq) FROM seq_0_to_5999",
        )
        .await;
    let folder = Folder::new("lake_keys");
    let cfg = config(&source, local(&folder));
    let name = "CRONUS$Sales Line";
    let first = run(&cfg).await;
    let lake = table(&first, name).lake.clone().unwrap();
    assert_eq!((lake.files, lake.rows), (6, 6000));
    let url = lake.location.clone();
    source
        .exec(
            "UPDATE `CRONUS$Sales Line` SET `Description` = 'changed' WHERE `Document No_` = 'é00010';\n\
             DELETE FROM `CRONUS$Sales Line` WHERE `Document No_` = 'B00020';\n\
             INSERT INTO `CRONUS$Sales Line` VALUES ('Zz', 1, 'new'), ('ä99999', 5, 'new'), ('$', 0, 'new')",
        )
        .await;
    let second = run(&cfg).await;
    let r = table(&second, name);
    assert_eq!(r.mode, CopyMode::Incremental, "{:?}", r.full_reason);
    let lake = r.lake.clone().unwrap();
    assert!(
        lake.removed < 6,
        "only the ranges with a change are written again: {lake:?}"
    );
    assert_same(&source, name, &url, &serde_json::json!({})).await;
}

/// A column added in the source: the table is written anew with its new schema in one commit,
/// which both readers see.
#[tokio::test]
async fn a_schema_change_writes_the_table_anew_in_one_commit() {
    let source = TestDb::new(Server::Postgres, "lake_schema").await;
    source.exec(LEDGER).await;
    let folder = Folder::new("lake_schema");
    let cfg = config(&source, local(&folder));
    let name = "CRONUS$G_L Entry";
    let url = table_url(&run(&cfg).await, name);
    source
        .exec(
            r#"ALTER TABLE "CRONUS$G_L Entry" ADD COLUMN "Posting Date" date DEFAULT '2026-12-04'"#,
        )
        .await;
    let second = run(&cfg).await;
    let r = table(&second, name);
    assert_eq!(r.full_reason.as_deref(), Some("SchemaChanged"));
    assert_eq!(r.lake.as_ref().unwrap().version, Some(1));
    let read = assert_same(&source, name, &url, &serde_json::json!({})).await;
    assert_eq!(
        read.columns.last().map(String::as_str),
        Some("Posting Date")
    );
}
