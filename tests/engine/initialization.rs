//! Data validation and company initialization on real databases: every type compares equal
//! after a copy between every pair of dialects (floats left out between two dialects, and
//! said so); a row changed, deleted or added in the target by hand is caught by its key; runs
//! skip a company whose initialization is scheduled; a failing step keeps nothing and is named.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::api::companies::{InitializationState, InitializationStep};
use cloudmigrate::engine::initialize::{self, validate_company};
use cloudmigrate::engine::ledger;
use cloudmigrate::engine::report::TableResult;
use cloudmigrate::engine::validate::{Difference, FLOAT_LEFT_OUT, validate_table};

const FIDELITY: &str = "CRONUS$Fidelity";

async fn every_type_validates(source: Server, target: Server) {
    let src = TestDb::new(source, "val_src").await;
    let dst = TestDb::new(target, "val_dst").await;
    crate::fidelity::fill_source(&src).await;
    let report = run(&config(&src, &dst, true)).await;
    assert_eq!(table(&report, FIDELITY).rows, 3);
    let (s, t) = (src.connect().await, dst.connect().await);
    let defs = |tables: Vec<cloudmigrate::db::TableDef>, name: &str| {
        tables.into_iter().find(|x| x.name == name).unwrap()
    };
    for name in [FIDELITY, "CRONUS$Blob"] {
        let sd = defs(s.tables().await.unwrap(), name);
        let td = defs(t.tables().await.unwrap(), name);
        let v = validate_table(&s, &t, (&sd, &td), None, 5).await;
        assert_eq!(v.error, None, "{source:?}->{target:?} {name}");
        assert!(
            v.matches,
            "{source:?}->{target:?} {name}: {:?}",
            v.differences
        );
        assert_eq!((v.source_rows, v.target_rows), (3, 3));
        if name == FIDELITY && source != target {
            assert_eq!(v.left_out, ["f"], "{source:?}->{target:?}");
            assert_eq!(v.left_out_reason.as_deref(), Some(FLOAT_LEFT_OUT));
        } else {
            assert!(v.left_out.is_empty(), "{source:?}->{target:?} {name}");
        }
    }
    // A one-character change in the unicode text is caught.
    let d = dst.dialect;
    dst.exec(&format!(
        "UPDATE {} SET {} = 'y' WHERE {} = 2",
        d.quote(FIDELITY),
        d.quote("vc"),
        d.quote("id")
    ))
    .await;
    let sd = defs(s.tables().await.unwrap(), FIDELITY);
    let td = defs(t.tables().await.unwrap(), FIDELITY);
    let v = validate_table(&s, &t, (&sd, &td), None, 5).await;
    assert!(!v.matches);
    assert_eq!(v.differences.len(), 1, "{:?}", v.differences);
    assert_eq!(v.differences[0].key, "id=2");
    assert_eq!(v.differences[0].difference, Difference::ValuesDiffer);
    s.close().await;
    t.close().await;
}

#[tokio::test]
async fn every_type_validates_from_postgres_to_mariadb() {
    every_type_validates(Server::Postgres, Server::MariaDb).await;
}

#[tokio::test]
async fn every_type_validates_from_mariadb_to_postgres() {
    every_type_validates(Server::MariaDb, Server::Postgres).await;
}

#[tokio::test]
async fn every_type_validates_from_postgres_to_sqlite() {
    every_type_validates(Server::Postgres, Server::Sqlite).await;
}

#[tokio::test]
async fn every_type_validates_from_sqlite_to_postgres() {
    every_type_validates(Server::Sqlite, Server::Postgres).await;
}

#[tokio::test]
async fn every_type_validates_from_postgres_to_postgres() {
    every_type_validates(Server::Postgres, Server::Postgres).await;
}

#[tokio::test]
async fn every_type_validates_from_sqlite_to_sqlite() {
    every_type_validates(Server::Sqlite, Server::Sqlite).await;
}

/// A source with two companies and a per-database table; `CRONUS$Item` has 300 rows.
async fn erp(server: Server) -> TestDb {
    let db = TestDb::new(server, "init_src").await;
    let d = db.dialect;
    let mut sql = format!(
        "CREATE TABLE {c} ({n} VARCHAR(30) NOT NULL PRIMARY KEY);\n\
         INSERT INTO {c} VALUES ('CRONUS');\n\
         INSERT INTO {c} VALUES ('FABRIKAM')",
        c = d.quote("Company"),
        n = d.quote("Name"),
    );
    for t in ["CRONUS$Item", "CRONUS$Sales Setup", "FABRIKAM$Item"] {
        sql.push_str(&format!(
            ";\nCREATE TABLE {} ({} INTEGER PRIMARY KEY, {} VARCHAR(100), {} DECIMAL(12,2))",
            d.quote(t),
            d.quote("No."),
            d.quote("Description"),
            d.quote("Unit Price"),
        ));
    }
    let rows: Vec<String> = (0..300)
        .map(|i| format!("({i}, 'Item {i} — Grüße', {i}.50)"))
        .collect();
    for t in ["CRONUS$Item", "FABRIKAM$Item"] {
        for chunk in rows.chunks(100) {
            sql.push_str(&format!(
                ";\nINSERT INTO {} VALUES {}",
                d.quote(t),
                chunk.join(", ")
            ));
        }
    }
    sql.push_str(&format!(
        ";\nINSERT INTO {} VALUES (1, 'S-INV', 0)",
        d.quote("CRONUS$Sales Setup")
    ));
    db.exec(&sql).await;
    db
}

async fn hand_made_changes_are_caught(source: Server, target: Server) {
    let src = erp(source).await;
    let dst = TestDb::new(target, "init_dst").await;
    run(&config(&src, &dst, true)).await;
    let (s, t) = (src.connect().await, dst.connect().await);
    let quiet = |_: usize, _: usize, _: &str| {};
    let v = validate_company(&s, &t, "CRONUS", &quiet).await.unwrap();
    assert_eq!(v.tables.len(), 2, "{v:?}");
    assert!(v.failed().is_empty(), "{:?}", v.failed());
    let d = dst.dialect;
    let item = d.quote("CRONUS$Item");
    let no = d.quote("No.");
    dst.exec(&format!(
        "UPDATE {item} SET {} = 7.51 WHERE {no} = 5;\n\
         DELETE FROM {item} WHERE {no} = 7;\n\
         INSERT INTO {item} VALUES (1000, 'made in the cloud', 1)",
        d.quote("Unit Price")
    ))
    .await;
    let v = validate_company(&s, &t, "CRONUS", &quiet).await.unwrap();
    let failed = v.failed();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].table, "CRONUS$Item");
    assert_eq!((failed[0].source_rows, failed[0].target_rows), (300, 300));
    let mut found: Vec<(String, Difference)> = failed[0]
        .differences
        .iter()
        .map(|d| (d.key.clone(), d.difference))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        found,
        [
            ("No.=1000".to_string(), Difference::OnlyInTarget),
            ("No.=5".to_string(), Difference::ValuesDiffer),
            ("No.=7".to_string(), Difference::MissingInTarget),
        ]
    );
    // FABRIKAM is untouched.
    let v = validate_company(&s, &t, "FABRIKAM", &quiet).await.unwrap();
    assert!(v.failed().is_empty());
    s.close().await;
    t.close().await;
}

#[tokio::test]
async fn hand_made_changes_are_caught_in_postgres() {
    hand_made_changes_are_caught(Server::MariaDb, Server::Postgres).await;
}

#[tokio::test]
async fn hand_made_changes_are_caught_in_mariadb() {
    hand_made_changes_are_caught(Server::Postgres, Server::MariaDb).await;
}

#[tokio::test]
async fn hand_made_changes_are_caught_in_sqlite() {
    hand_made_changes_are_caught(Server::Sqlite, Server::Sqlite).await;
}

async fn state(db: &cloudmigrate::db::Database, company: &str) -> (InitializationState, String) {
    let r = ledger::companies::read(db)
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.company == company)
        .unwrap();
    (r.state, r.message.unwrap_or_default())
}

async fn initialization_skips_and_keeps_nothing_of_a_failed_step(source: Server, target: Server) {
    let src = erp(source).await;
    let dst = TestDb::new(target, "init_dst").await;
    let t = dst.connect().await;
    // No record yet: the table does not even exist.
    assert!(ledger::companies::read(&t).await.unwrap().is_empty());
    run(&config(&src, &dst, true)).await;
    let s = src.connect().await;
    let d = dst.dialect;
    let say = |_: &str| {};

    // Scheduled: a run skips CRONUS's tables and copies the rest.
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Scheduled,
        "a1",
        Some("r1"),
        None,
    )
    .await
    .unwrap();
    let sd = src.dialect;
    src.exec(&format!(
        "UPDATE {} SET {} = 'changed' WHERE {} = 1",
        sd.quote("CRONUS$Item"),
        sd.quote("Description"),
        sd.quote("No.")
    ))
    .await;
    let report = run(&config(&src, &dst, true)).await;
    let item = table(&report, "CRONUS$Item");
    assert_eq!(item.result, TableResult::Skipped);
    assert!(
        item.message
            .as_deref()
            .unwrap()
            .contains("being initialized"),
        "{:?}",
        item.message
    );
    assert_eq!(
        table(&report, "FABRIKAM$Item").result,
        TableResult::Migrated
    );

    // The change the skipped run did not copy is in the source's change log: not compared, and
    // counted. A row changed in the cloud fails the validation, by its key.
    let item = d.quote("CRONUS$Item");
    let edit = |text: &str| {
        format!(
            "UPDATE {item} SET {} = '{text}' WHERE {} = 2",
            d.quote("Description"),
            d.quote("No.")
        )
    };
    dst.exec(&edit("edited in the cloud")).await;
    let o = initialize::initialize(&s, &t, "CRONUS", "a1", &[], &say)
        .await
        .unwrap();
    assert_eq!(o.state, InitializationState::Failed);
    assert!(o.message.contains("CRONUS$Item"), "{}", o.message);
    assert!(o.message.contains("No.=2 ValuesDiffer"), "{}", o.message);
    assert!(!o.message.contains("No.=1 "), "{}", o.message);
    assert!(
        o.message
            .contains("1 keys changed in the source since the run were not compared"),
        "{}",
        o.message
    );
    assert!(o.message.contains("full run"), "{}", o.message);
    assert_eq!(state(&t, "CRONUS").await.0, InitializationState::Failed);
    dst.exec(&edit("Item 2 — Grüße")).await;

    // The next run copies the change; a failing step keeps nothing of the steps before it.
    let report = run(&config(&src, &dst, true)).await;
    assert_eq!(table(&report, "CRONUS$Item").result, TableResult::Migrated);
    let setup = d.quote("Description");
    let steps = vec![
        InitializationStep {
            name: "number series".into(),
            sql: format!("UPDATE {{{{table:Sales Setup}}}} SET {setup} = {{{{company}}}}"),
        },
        InitializationStep {
            name: "broken".into(),
            sql: "UPDATE no_such_table SET x = 1".into(),
        },
    ];
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Scheduled,
        "a2",
        Some("r2"),
        None,
    )
    .await
    .unwrap();
    let o = initialize::initialize(&s, &t, "CRONUS", "a2", &steps, &say)
        .await
        .unwrap();
    assert_eq!(o.state, InitializationState::Failed, "{}", o.message);
    assert!(
        o.message.contains("step \"broken\" failed"),
        "{}",
        o.message
    );
    assert!(o.message.contains("no_such_table"), "{}", o.message);
    let description = format!(
        "SELECT COUNT(*) FROM {} WHERE {setup} = 'S-INV'",
        d.quote("CRONUS$Sales Setup")
    );
    assert_eq!(dst.int(&description).await, 1, "the first step was kept");

    // Without the broken step: initialized, the step done with the company's name.
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Scheduled,
        "a3",
        Some("r2"),
        None,
    )
    .await
    .unwrap();
    let o = initialize::initialize(&s, &t, "CRONUS", "a3", &steps[..1], &say)
        .await
        .unwrap();
    assert_eq!(o.state, InitializationState::Initialized, "{}", o.message);
    assert_eq!(o.validation.tables.len(), 2);
    let (st, message) = state(&t, "CRONUS").await;
    assert_eq!(st, InitializationState::Initialized);
    assert!(
        message.contains("2 tables validated (301 rows)"),
        "{message}"
    );
    let named = format!(
        "SELECT COUNT(*) FROM {} WHERE {setup} = 'CRONUS'",
        d.quote("CRONUS$Sales Setup")
    );
    assert_eq!(dst.int(&named).await, 1);
    // An attempt that another one replaced changes nothing.
    assert!(
        !ledger::companies::set_state(&t, "CRONUS", "a2", InitializationState::Failed, None, None)
            .await
            .unwrap()
    );
    assert_eq!(
        state(&t, "CRONUS").await.0,
        InitializationState::Initialized
    );
    s.close().await;
    t.close().await;
}

#[tokio::test]
async fn initialization_in_postgres() {
    initialization_skips_and_keeps_nothing_of_a_failed_step(Server::Sqlite, Server::Postgres).await;
}

#[tokio::test]
async fn initialization_in_mariadb() {
    initialization_skips_and_keeps_nothing_of_a_failed_step(Server::Postgres, Server::MariaDb)
        .await;
}

#[tokio::test]
async fn initialization_in_sqlite() {
    initialization_skips_and_keeps_nothing_of_a_failed_step(Server::MariaDb, Server::Sqlite).await;
}

/// Posts into the source until told to stop: an insert, an update and a delete per round, on
/// keys from 10,000 up (and on the existing items 100 to 299), with its own connection.
async fn keep_posting(
    db: cloudmigrate::db::Database,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> usize {
    let d = db.dialect();
    let (item, no) = (d.quote("CRONUS$Item"), d.quote("No."));
    let mut round = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) && round < 100 {
        let key = 10_000 + round;
        crate::databases::exec(
            &db,
            &format!("INSERT INTO {item} VALUES ({key}, 'posted while initializing', 1)"),
        )
        .await;
        crate::databases::exec(
            &db,
            &format!(
                "UPDATE {item} SET {} = {}.25 WHERE {no} = {}",
                d.quote("Unit Price"),
                round,
                100 + round
            ),
        )
        .await;
        crate::databases::exec(
            &db,
            &format!("DELETE FROM {item} WHERE {no} = {}", 200 + round),
        )
        .await;
        round += 1;
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    db.close().await;
    round as usize
}

/// A busy ERP: the source keeps changing after the run and while the company validates. It
/// ends Initialized, the changed keys counted; a row changed in the cloud still fails it.
async fn validation_passes_while_the_erp_posts(source: Server, target: Server) {
    let src = erp(source).await;
    let dst = TestDb::new(target, "busy_dst").await;
    run(&config(&src, &dst, true)).await;
    let (s, t) = (src.connect().await, dst.connect().await);
    let say = |_: &str| {};
    // Twelve postings between the run and the initialization.
    let sd = src.dialect;
    for no in 0..12 {
        src.exec(&format!(
            "UPDATE {} SET {} = 'posted after the run' WHERE {} = {no}",
            sd.quote("CRONUS$Item"),
            sd.quote("Description"),
            sd.quote("No.")
        ))
        .await;
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = tokio::spawn(keep_posting(src.connect().await, stop.clone()));
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Scheduled,
        "b1",
        None,
        None,
    )
    .await
    .unwrap();
    let o = initialize::initialize(&s, &t, "CRONUS", "b1", &[], &say)
        .await
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let rounds = writer.await.unwrap();
    assert!(rounds >= 1, "the ERP posted while the company initialized");
    assert_eq!(o.state, InitializationState::Initialized, "{}", o.message);
    let item = o
        .validation
        .tables
        .iter()
        .find(|v| v.table == "CRONUS$Item")
        .unwrap();
    assert!(item.matches);
    assert!(
        item.changed_since_run >= 12,
        "{} keys counted, {rounds} rounds posted",
        item.changed_since_run
    );
    assert!(
        o.message
            .contains("keys changed in the source since the run"),
        "{}",
        o.message
    );

    // The same, with one row changed in the cloud that the ERP did not touch: it fails, named.
    let d = dst.dialect;
    dst.exec(&format!(
        "UPDATE {} SET {} = 'edited in the cloud' WHERE {} = 50",
        d.quote("CRONUS$Item"),
        d.quote("Description"),
        d.quote("No.")
    ))
    .await;
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Scheduled,
        "b2",
        None,
        None,
    )
    .await
    .unwrap();
    let o = initialize::initialize(&s, &t, "CRONUS", "b2", &[], &say)
        .await
        .unwrap();
    assert_eq!(o.state, InitializationState::Failed, "{}", o.message);
    assert!(o.message.contains("No.=50 ValuesDiffer"), "{}", o.message);
    let item = o
        .validation
        .tables
        .iter()
        .find(|v| v.table == "CRONUS$Item")
        .unwrap();
    assert_eq!(item.differences.len(), 1, "{:?}", item.differences);
    s.close().await;
    t.close().await;
}

#[tokio::test]
async fn validation_passes_while_the_erp_posts_from_postgres() {
    validation_passes_while_the_erp_posts(Server::Postgres, Server::MariaDb).await;
}

#[tokio::test]
async fn validation_passes_while_the_erp_posts_from_mariadb() {
    validation_passes_while_the_erp_posts(Server::MariaDb, Server::Postgres).await;
}

#[tokio::test]
async fn validation_passes_while_the_erp_posts_from_sqlite() {
    validation_passes_while_the_erp_posts(Server::Sqlite, Server::Sqlite).await;
}
