//! Every supported pair copies every type value by value: exact decimals, timestamps, uuids,
//! bytes up to 20 MB, booleans, big integers, unicode, and empty strings apart from NULL.

use crate::databases::{Server, TestDb, config, run, table};
use chrono::{NaiveDate, TimeZone, Utc};
use cloudmigrate::db::{Dialect, Value};
use cloudmigrate::engine::report::TableResult;

const FIDELITY: &str = "CRONUS$Fidelity";
const BLOBS: &str = "CRONUS$Blob";

fn fidelity_ddl(d: Dialect) -> String {
    let t = d.quote(FIDELITY);
    let b = d.quote(BLOBS);
    match d {
        Dialect::Postgres => format!(
            "CREATE TABLE {t} (id int8 PRIMARY KEY, amount numeric(38,20), ts timestamp(6), tstz timestamptz, \
             d date, u uuid, b bytea, flag boolean, big int8, txt text, vc varchar(50), f float8);\n\
             CREATE TABLE {b} (id int8 PRIMARY KEY, data bytea)"
        ),
        Dialect::MySql => format!(
            "CREATE TABLE {t} (id BIGINT PRIMARY KEY, amount DECIMAL(38,20), ts DATETIME(6), tstz TIMESTAMP(6) NULL, \
             d DATE, u CHAR(36), b LONGBLOB, flag TINYINT(1), big BIGINT, txt LONGTEXT, vc VARCHAR(50), f DOUBLE);\n\
             CREATE TABLE {b} (id BIGINT PRIMARY KEY, data LONGBLOB)"
        ),
        Dialect::Sqlite => format!(
            "CREATE TABLE {t} (id INTEGER PRIMARY KEY, amount TEXT, ts DATETIME, tstz TIMESTAMPTZ, d DATE, \
             u UUID, b BLOB, flag BOOLEAN, big INTEGER, txt TEXT, vc VARCHAR(50), f REAL);\n\
             CREATE TABLE {b} (id INTEGER PRIMARY KEY, data BLOB)"
        ),
    }
}

/// PostgreSQL needs the parameter types spelled out.
fn insert_sql(d: Dialect, table: &str, casts: &[&str]) -> String {
    let marks: Vec<String> = casts
        .iter()
        .map(|c| {
            if d == Dialect::Postgres {
                format!("?::{c}")
            } else {
                "?".into()
            }
        })
        .collect();
    format!(
        "INSERT INTO {} VALUES ({})",
        d.quote(table),
        marks.join(", ")
    )
}

pub fn fidelity_rows() -> Vec<Vec<Value>> {
    let ts = |y, m, d, h, mi, s, us| {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap()
    };
    vec![
        vec![
            Value::Int(1),
            Value::Decimal("12345678901234567.12345678901234567890".into()),
            Value::Timestamp(ts(2024, 2, 29, 23, 59, 59, 123_456)),
            Value::TimestampTz(Utc.from_utc_datetime(&ts(2024, 3, 31, 1, 30, 0, 500_000))),
            Value::Date(NaiveDate::from_ymd_opt(1999, 12, 31).unwrap()),
            Value::Uuid(uuid::Uuid::parse_str("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0").unwrap()),
            Value::Bytes(vec![0, 1, 2, 9, 10, 13, 92, 127, 128, 255]),
            Value::Bool(true),
            Value::Int(i64::MAX),
            Value::Text(
                "Grüße — 日本語 🚀\ttab\nnewline \\ backslash 'single' \"double\" \\N".into(),
            ),
            Value::Text(String::new()),
            Value::Float(1.5e-300),
        ],
        vec![
            Value::Int(2),
            Value::Decimal("-0.00000000000000000001".into()),
            Value::Timestamp(ts(1970, 1, 1, 0, 0, 0, 0)),
            Value::TimestampTz(Utc.from_utc_datetime(&ts(2038, 1, 19, 3, 14, 7, 0))),
            Value::Date(NaiveDate::from_ymd_opt(2100, 2, 28).unwrap()),
            Value::Uuid(uuid::Uuid::nil()),
            Value::Bytes(vec![]),
            Value::Bool(false),
            Value::Int(i64::MIN),
            Value::Null,
            Value::Text("x".into()),
            Value::Float(std::f64::consts::PI),
        ],
        (0..12)
            .map(|i| if i == 0 { Value::Int(3) } else { Value::Null })
            .collect(),
    ]
}

fn blob_rows() -> Vec<Vec<Value>> {
    let big: Vec<u8> = (0..20 * 1024 * 1024)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        vec![Value::Int(1), Value::Bytes(big)],
        vec![Value::Int(2), Value::Bytes(b"small".to_vec())],
        vec![Value::Int(3), Value::Null],
    ]
}

/// One value as text that is the same whichever dialect stored it.
fn canon(v: &Value) -> String {
    let s = match v {
        Value::Null => return "NULL".into(),
        other => other.to_text().unwrap_or_default(),
    };
    let s = s.strip_suffix("+00:00").unwrap_or(&s).to_string();
    let numeric = s
        .strip_prefix('-')
        .unwrap_or(&s)
        .split_once('.')
        .is_some_and(|(a, b)| {
            !a.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if numeric && !matches!(v, Value::Float(_)) {
        let t = s.trim_end_matches('0');
        return t.strip_suffix('.').unwrap_or(t).to_string();
    }
    if let Value::Float(f) = v {
        return format!("{f:e}");
    }
    s
}

pub async fn fill_source(db: &TestDb) {
    db.exec(&fidelity_ddl(db.dialect)).await;
    let conn = db.connect().await;
    let casts = [
        "int8",
        "numeric",
        "timestamp",
        "timestamptz",
        "date",
        "uuid",
        "bytea",
        "boolean",
        "int8",
        "text",
        "varchar",
        "float8",
    ];
    for row in fidelity_rows() {
        let sql = insert_sql(db.dialect, FIDELITY, &casts);
        conn.execute(&cloudmigrate::db::Statement { sql, params: row })
            .await
            .unwrap();
    }
    for row in blob_rows() {
        let sql = insert_sql(db.dialect, BLOBS, &["int8", "bytea"]);
        conn.execute(&cloudmigrate::db::Statement { sql, params: row })
            .await
            .unwrap();
    }
    conn.close().await;
}

async fn check_pair(source: Server, target: Server, precreate_target: bool) {
    let src = TestDb::new(source, "fid_src").await;
    let dst = TestDb::new(target, "fid_dst").await;
    fill_source(&src).await;
    if precreate_target {
        dst.exec(&fidelity_ddl(dst.dialect)).await;
    }
    let report = run(&config(&src, &dst, true)).await;
    for name in [FIDELITY, BLOBS] {
        let t = table(&report, name);
        let expected = if precreate_target {
            TableResult::Migrated
        } else {
            TableResult::Warning
        };
        assert_eq!(
            t.result, expected,
            "{source:?}->{target:?} {name}: {:?} {:?}",
            t.message, t.guidance
        );
        assert_eq!(t.rows, 3, "{name}");
    }
    let kinds_of = |rows: &Vec<Vec<Value>>| {
        rows.iter()
            .map(|r| r.iter().map(canon).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let got = dst.rows(FIDELITY).await;
    let want = fidelity_rows();
    for (g, w) in kinds_of(&got).iter().zip(kinds_of(&want).iter()) {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(a, b, "{source:?}->{target:?}: row {} column {i}", g[0]);
        }
    }
    assert_eq!(got.len(), want.len());
    let blobs = dst.rows(BLOBS).await;
    assert_eq!(blobs, blob_rows(), "{source:?}->{target:?}: blobs differ");
}

#[tokio::test]
async fn pg_to_pg_into_an_existing_schema() {
    check_pair(Server::Postgres, Server::Postgres, true).await;
}

#[tokio::test]
async fn pg_to_pg_creating_tables() {
    check_pair(Server::Postgres, Server::Postgres, false).await;
}

#[tokio::test]
async fn sqlite_to_pg() {
    check_pair(Server::Sqlite, Server::Postgres, false).await;
}

#[tokio::test]
async fn mysql_to_pg() {
    check_pair(Server::MariaDb, Server::Postgres, false).await;
}

#[tokio::test]
async fn pg_to_sqlite() {
    check_pair(Server::Postgres, Server::Sqlite, false).await;
}

#[tokio::test]
async fn pg_to_mysql() {
    check_pair(Server::Postgres, Server::MariaDb, false).await;
}

#[tokio::test]
async fn mysql_to_mysql_into_an_existing_schema() {
    check_pair(Server::MariaDb, Server::MariaDb, true).await;
}

#[tokio::test]
async fn sqlite_to_sqlite() {
    check_pair(Server::Sqlite, Server::Sqlite, false).await;
}
