//! Reset Cloud Data on real databases: every table a run wrote is emptied, a table the
//! migration never wrote stays byte for byte, the replication state and the companies'
//! initialization are cleared, and the next run copies every table in full, saying `Reset`.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::api::companies::InitializationState;
use cloudmigrate::engine::ledger;
use cloudmigrate::engine::report::TableResult;

async fn reset_clears_only_what_the_migration_wrote(source: Server, target: Server) {
    let src = TestDb::new(source, "reset_src").await;
    let dst = TestDb::new(target, "reset_dst").await;
    let (sd, d) = (src.dialect, dst.dialect);
    let mut sql = format!(
        "CREATE TABLE {c} ({n} VARCHAR(30) NOT NULL PRIMARY KEY);\n\
         INSERT INTO {c} VALUES ('CRONUS')",
        c = sd.quote("Company"),
        n = sd.quote("Name"),
    );
    for t in ["CRONUS$Item", "CRONUS$Vendor"] {
        sql.push_str(&format!(
            ";\nCREATE TABLE {t} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(50));\n\
             INSERT INTO {t} VALUES (1, 'a'), (2, 'b'), (3, 'c')",
            t = sd.quote(t),
            id = sd.quote("Id"),
            x = sd.quote("Text"),
        ));
    }
    src.exec(&sql).await;
    // A table of the cloud's own, which no run writes: it must survive untouched.
    dst.exec(&format!(
        "CREATE TABLE {t} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(50));\n\
         INSERT INTO {t} VALUES (1, 'cloud only'), (2, 'Grüße \"quoted\" $x')",
        t = d.quote("Cloud Setup"),
        id = d.quote("Id"),
        x = d.quote("Text"),
    ))
    .await;
    let before = dst.rows("Cloud Setup").await;
    run(&config(&src, &dst, true)).await;
    let t = dst.connect().await;
    ledger::companies::record(
        &t,
        "CRONUS",
        InitializationState::Initialized,
        "a1",
        None,
        None,
    )
    .await
    .unwrap();

    let cleared = cloudmigrate::engine::reset::clear(&t).await.unwrap();
    // Company, CRONUS$Item, CRONUS$Vendor.
    assert_eq!((cleared.tables, cleared.companies), (3, 1));
    assert_eq!(dst.count("CRONUS$Item").await, 0);
    assert_eq!(dst.count("Company").await, 0);
    assert_eq!(dst.rows("Cloud Setup").await, before);
    assert!(ledger::companies::read(&t).await.unwrap().is_empty());
    assert_eq!(dst.int("SELECT COUNT(*) FROM cloudmigrate_runs").await, 0);

    // The next run copies everything in full, because of the reset.
    let report = run(&config(&src, &dst, true)).await;
    let item = table(&report, "CRONUS$Item");
    assert_eq!(item.result, TableResult::Migrated);
    assert_eq!(item.full_reason.as_deref(), Some("Reset"));
    assert_eq!(dst.count("CRONUS$Item").await, 3);
    // And the one after goes back to changes only.
    let report = run(&config(&src, &dst, true)).await;
    assert_ne!(
        table(&report, "CRONUS$Item").full_reason.as_deref(),
        Some("Reset")
    );
    assert_eq!(dst.rows("Cloud Setup").await, before);
    t.close().await;
}

#[tokio::test]
async fn reset_in_postgres() {
    reset_clears_only_what_the_migration_wrote(Server::Sqlite, Server::Postgres).await;
}

#[tokio::test]
async fn reset_in_mariadb() {
    reset_clears_only_what_the_migration_wrote(Server::Postgres, Server::MariaDb).await;
}

#[tokio::test]
async fn reset_in_sqlite() {
    reset_clears_only_what_the_migration_wrote(Server::MariaDb, Server::Sqlite).await;
}
