//! Memory stays flat whatever the table's size: copies a SQLite table of growing size into
//! another SQLite file and reports rows per second and the process's peak memory after each.
//!
//!     cargo bench --bench memory
//!
//! Each size runs in a fresh process (this binary re-runs itself), so every peak is its own.

use cloudmigrate::db::{ConnectSpec, Database, ReadProgress, Statement, Value};
use cloudmigrate::engine::plan::PlanOptions;
use cloudmigrate::engine::{self, Quiet, RunConfig};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

const SIZES: [i64; 3] = [50_000, 500_000, 2_000_000];

/// The process's peak resident memory, in MiB (VmHWM).
fn peak_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn spec(path: &Path, create: bool) -> ConnectSpec {
    ConnectSpec {
        url: format!("sqlite://{}", path.display()),
        password: None,
        tls: None,
        max_connections: 2,
        create,
    }
}

async fn make_source(path: &Path, rows: i64) {
    let db = Database::connect(&spec(path, true)).await.unwrap();
    let exec = |sql: &str| Statement {
        sql: sql.to_string(),
        params: vec![],
    };
    db.execute(&exec(
        "CREATE TABLE \"CRONUS$G_L Entry\" (\"Entry No_\" INTEGER PRIMARY KEY, \"Description\" VARCHAR(100), \
         \"Amount\" TEXT, \"Posting Date\" DATETIME, \"Comment\" TEXT)",
    ))
    .await
    .unwrap();
    db.execute(&exec("BEGIN")).await.unwrap();
    let mut i = 0;
    while i < rows {
        let n = 500.min(rows - i);
        let marks = vec!["(?, ?, ?, ?, ?)"; n as usize].join(",");
        let params: Vec<Value> = (i..i + n)
            .flat_map(|k| {
                [
                    Value::Int(k),
                    Value::Text(format!("Posting {k} for the general ledger")),
                    Value::Decimal(format!("{}.{:020}", k % 100_000, k)),
                    Value::Text("2024-05-01 10:00:00".into()),
                    Value::Text("x".repeat(200)),
                ]
            })
            .collect();
        db.execute(&Statement {
            sql: format!("INSERT INTO \"CRONUS$G_L Entry\" VALUES {marks}"),
            params,
        })
        .await
        .unwrap();
        i += n;
    }
    db.execute(&exec("COMMIT")).await.unwrap();
    db.close().await;
}

async fn one(rows: i64) {
    let dir = std::env::temp_dir().join(format!("cm-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_source(&dir.join("src.db"), rows).await;
    let before = peak_mib();
    let config = RunConfig {
        run_id: "bench".into(),
        source: spec(&dir.join("src.db"), false),
        target: spec(&dir.join("dst.db"), true),
        plan: PlanOptions::default(),
        create_missing_tables: true,
        parallelism: 4,
        run_type: cloudmigrate::engine::RunType::Auto,
        retention: cloudmigrate::engine::tracking::DEFAULT_RETENTION,
        stop: Default::default(),
        share: None,
    };
    let started = Instant::now();
    let report = engine::run(&config, &Quiet, Arc::new(ReadProgress::default()))
        .await
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(report.rows(), rows as u64);
    println!(
        "| {rows:>9} | {:>7.0} MiB | {secs:>6.2} s | {:>9.0} rows/s | {:>6.0} MiB |",
        report.bytes() as f64 / 1048576.0,
        rows as f64 / secs,
        peak_mib().max(before)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(rows) = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
    {
        let rows: i64 = rows.parse().unwrap();
        tokio::runtime::Runtime::new().unwrap().block_on(one(rows));
        return;
    }
    if args.iter().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` asks; there is nothing to test here.
    }
    println!("SQLite -> SQLite, one table, 5 columns, parallelism 4\n");
    println!("| rows      | data        | time     | speed          | peak RSS   |");
    println!("|---|---|---|---|---|");
    for rows in SIZES {
        let status = Command::new(&args[0])
            .args(["--rows", &rows.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
