//! Names from the database are data: `$`, spaces, quotes, dots, brackets and unicode copy as
//! they are, and a name built to inject SQL is quoted, never run.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::db::{Dialect, Value};
use cloudmigrate::engine::catalog::company_sql_name;
use cloudmigrate::engine::report::TableResult;

const COMPANY: &str = "Café \"Zürich\" [Test] A.G.";

fn columns(d: Dialect) -> String {
    let text = if d == Dialect::Sqlite {
        "TEXT"
    } else {
        "VARCHAR(100)"
    };
    [
        "No.",
        "Name [x]",
        "Qty \"q\"",
        "$systemId",
        "Menge €",
        "it's",
    ]
    .iter()
    .enumerate()
    .map(|(i, c)| {
        let key = if i == 0 { " NOT NULL PRIMARY KEY" } else { "" };
        format!("{} {text}{key}", d.quote(c))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

async fn special_names(source: Server, target: Server) {
    let src = TestDb::new(source, "names_src").await;
    let dst = TestDb::new(target, "names_dst").await;
    let d = src.dialect;
    let sales = format!(
        "{}$Sales \"Quote\" Line.v2 — 日本",
        company_sql_name(COMPANY)
    );
    let text = if d == Dialect::Sqlite {
        "TEXT"
    } else {
        "VARCHAR(100)"
    };
    src.exec(&format!(
        "CREATE TABLE {} ({} {text} NOT NULL PRIMARY KEY);\nCREATE TABLE {} ({})",
        d.quote("Company"),
        d.quote("Name"),
        d.quote(&sales),
        columns(d)
    ))
    .await;
    src.insert("Company", vec![vec![Value::Text(COMPANY.into())]])
        .await;
    let row = |n: &str| {
        (0..6)
            .map(|i| Value::Text(format!("{n}-{i} ' \" ; --")))
            .collect::<Vec<_>>()
    };
    src.insert(&sales, vec![row("A"), row("B")]).await;

    let report = run(&config(&src, &dst, true)).await;
    let t = table(&report, &sales);
    assert_eq!(
        t.company, COMPANY,
        "the company is recognised by its SQL name"
    );
    assert_eq!(t.table, "Sales \"Quote\" Line.v2 — 日本");
    assert!(
        matches!(t.result, TableResult::Migrated | TableResult::Warning),
        "{:?}",
        t.message
    );
    assert_eq!(t.rows, 2);
    let mut got = dst.rows(&sales).await;
    got.sort_by_key(|r| r[0].to_text());
    assert_eq!(got, vec![row("A"), row("B")]);
}

#[tokio::test]
async fn special_characters_in_names_pg_to_pg() {
    special_names(Server::Postgres, Server::Postgres).await;
}

#[tokio::test]
async fn special_characters_in_names_mysql_to_pg() {
    special_names(Server::MariaDb, Server::Postgres).await;
}

#[tokio::test]
async fn special_characters_in_names_sqlite_to_mysql() {
    special_names(Server::Sqlite, Server::MariaDb).await;
}

async fn injection(source: Server, target: Server) {
    let src = TestDb::new(source, "inject_src").await;
    let dst = TestDb::new(target, "inject_dst").await;
    let d = src.dialect;
    let q = if d == Dialect::MySql { '`' } else { '"' };
    let evil_company = "O'Brien'); DROP TABLE victim; --";
    let evil_table = format!(
        "{}$x{q}; DROP TABLE victim; --",
        company_sql_name(evil_company)
    );
    let text = if d == Dialect::Sqlite {
        "TEXT"
    } else {
        "VARCHAR(100)"
    };
    for db in [&src, &dst] {
        db.exec(&format!(
            "CREATE TABLE victim (id {text} NOT NULL PRIMARY KEY)"
        ))
        .await;
        db.insert("victim", vec![vec![Value::Text("still here".into())]])
            .await;
    }
    src.exec(&format!(
        "CREATE TABLE {} ({} {text} NOT NULL PRIMARY KEY);\nCREATE TABLE {} ({} {text} NOT NULL PRIMARY KEY)",
        d.quote("Company"),
        d.quote("Name"),
        d.quote(&evil_table),
        d.quote(&format!("c{q}); DROP TABLE victim; --"))
    ))
    .await;
    src.insert("Company", vec![vec![Value::Text(evil_company.into())]])
        .await;
    src.insert(
        &evil_table,
        vec![vec![Value::Text("payload'); DROP TABLE victim; --".into())]],
    )
    .await;

    let report = run(&config(&src, &dst, true)).await;
    let t = table(&report, &evil_table);
    assert_eq!(t.company, evil_company);
    assert_eq!(t.rows, 1, "{:?}", t.message);
    for db in [&src, &dst] {
        assert_eq!(
            db.count("victim").await,
            1,
            "the victim table survived in {:?}",
            db.dialect
        );
    }
    assert_eq!(
        dst.rows(&evil_table).await,
        vec![vec![Value::Text("payload'); DROP TABLE victim; --".into())]]
    );

    // The incremental path names changed rows by their keys: those keys are quoted too.
    let evil_key = "$cm$}'\"); DROP TABLE victim; --";
    src.insert(&evil_table, vec![vec![Value::Text(evil_key.into())]])
        .await;
    let report = run(&config(&src, &dst, true)).await;
    let t = table(&report, &evil_table);
    assert_eq!(t.changes, Some((1, 0, 0)), "{:?}", t.message);
    let mut rows = dst.rows(&evil_table).await;
    rows.sort_by_key(|r| r[0].to_text());
    assert_eq!(
        rows,
        vec![
            vec![Value::Text(evil_key.into())],
            vec![Value::Text("payload'); DROP TABLE victim; --".into())]
        ]
    );
    for db in [&src, &dst] {
        assert_eq!(
            db.count("victim").await,
            1,
            "the victim table survived in {:?}",
            db.dialect
        );
    }
}

#[tokio::test]
async fn injection_in_names_is_quoted_pg_to_pg() {
    injection(Server::Postgres, Server::Postgres).await;
}

#[tokio::test]
async fn injection_in_names_is_quoted_mysql_to_sqlite() {
    injection(Server::MariaDb, Server::Sqlite).await;
}
