//! Reset Cloud Data on real databases: every table a run wrote is emptied, a table the
//! migration never wrote stays byte for byte, the replication state and the companies'
//! initialization are cleared, and the next run copies every table in full, saying `Reset`.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::api::companies::InitializationState;
use cloudmigrate::engine::ledger;
use cloudmigrate::engine::ledger::requests::Request;
use cloudmigrate::engine::report::TableResult;
use cloudmigrate::engine::reset::{Outcome, clear};

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

    let request = |name| Request {
        schedule: "shop/erp",
        kind: "CloudReset",
        name,
    };
    // The runtime role may write the replication state: a name planted there that the
    // schedule does not copy is never cleared.
    dst.exec(
        "INSERT INTO cloudmigrate_table_state (table_name, company, mode, row_count, run_id, \
         updated_at) VALUES ('Cloud Setup', '', 'Full', 2, 'planted', 'now'), \
         ('cloudmigrate_requests', '', 'Full', 0, 'planted', 'now')",
    )
    .await;
    let s = src.connect().await;
    let copied = cloudmigrate::engine::reset::copied_tables(&s, &Default::default(), t.dialect())
        .await
        .unwrap();
    s.close().await;
    let Outcome::Cleared(cleared) = clear(&t, &request("reset-2026-12-01"), &copied)
        .await
        .unwrap()
    else {
        panic!("the first reset clears")
    };
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
    // The same reset seen again (deleted and applied again from git) clears nothing, and
    // says when it ran.
    let again = clear(&t, &request("reset-2026-12-01"), &copied)
        .await
        .unwrap();
    let Outcome::AlreadyDone(done) = again else {
        panic!("cleared again: {again:?}")
    };
    assert!(done.summary.contains("3 migrated tables"), "{done:?}");
    assert_eq!(dst.count("CRONUS$Item").await, 3);
    // A reset with a new name clears.
    let Outcome::Cleared(second) = clear(&t, &request("reset-2026-12-02"), &copied)
        .await
        .unwrap()
    else {
        panic!("a new name clears")
    };
    assert_eq!(second.tables, 3);
    assert_eq!(dst.count("CRONUS$Item").await, 0);
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

/// A reset that commits while a run is between reading its watermarks and copying (here: held
/// on the source's change log) must not let the run write changes into the emptied table with
/// a watermark after them: that table fails in the run, and the next run copies it in full.
#[tokio::test]
async fn a_reset_during_a_run_makes_the_next_run_copy_in_full() {
    use sqlx::Connection;
    use std::str::FromStr;
    let src = TestDb::new(Server::Postgres, "held_src").await;
    let dst = TestDb::new(Server::Postgres, "held_dst").await;
    src.exec(
        "CREATE TABLE \"CRONUS$Item\" (id INTEGER PRIMARY KEY, x TEXT);\n\
         INSERT INTO \"CRONUS$Item\" SELECT i, 'v' || i FROM generate_series(1, 100) i",
    )
    .await;
    run(&config(&src, &dst, true)).await;
    src.exec("UPDATE \"CRONUS$Item\" SET x = 'changed' WHERE id <= 10")
        .await;
    // What the schedule copies, read before the source's change log is locked below.
    let (s, t) = (src.connect().await, dst.connect().await);
    let copied = cloudmigrate::engine::reset::copied_tables(&s, &Default::default(), t.dialect())
        .await
        .unwrap();
    s.close().await;
    t.close().await;
    // Hold the run on the change log, after it has read the target's watermarks.
    let options = sqlx::postgres::PgConnectOptions::from_str(&src.url)
        .unwrap()
        .password(src.password.as_deref().unwrap());
    let mut holder = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let mut hold = holder.begin().await.unwrap();
    sqlx::query("LOCK TABLE cloudmigrate_ct_log IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *hold)
        .await
        .unwrap();
    let held = config(&src, &dst, true);
    let running = tokio::spawn(async move { run(&held).await });
    let mut waited = 0;
    while src
        .int("SELECT count(*) FROM pg_locks WHERE NOT granted")
        .await
        == 0
    {
        waited += 1;
        assert!(waited < 600, "the run never reached the change log");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let t = dst.connect().await;
    let request = Request {
        schedule: "shop/erp",
        kind: "CloudReset",
        name: "during-a-run",
    };
    assert!(matches!(
        clear(&t, &request, &copied).await.unwrap(),
        Outcome::Cleared(_)
    ));
    t.close().await;
    hold.commit().await.unwrap();
    let during = running.await.unwrap();
    let item = table(&during, "CRONUS$Item");
    assert_eq!(item.result, TableResult::Failed, "{item:#?}");
    assert!(
        item.message
            .as_deref()
            .unwrap_or_default()
            .contains("reset"),
        "{item:#?}"
    );
    let after = run(&config(&src, &dst, true)).await;
    let item = table(&after, "CRONUS$Item");
    assert_eq!(item.full_reason.as_deref(), Some("Reset"), "{item:#?}");
    assert_eq!(dst.count("CRONUS$Item").await, 100);
    assert_eq!(
        dst.int("SELECT count(*) FROM \"CRONUS$Item\" WHERE x = 'changed'")
            .await,
        10
    );
}

/// The guard at the end of every table's commit: a record that another worker of the same run
/// marked completed still lets the table commit; a later run (which marks it interrupted) and
/// a reset (which removes it) do not.
#[tokio::test]
async fn the_commit_guard_refuses_only_after_a_reset_or_a_later_run() {
    use cloudmigrate::engine::ledger::state;
    for server in [Server::Sqlite, Server::Postgres, Server::MariaDb] {
        let dst = TestDb::new(server, "guard").await;
        let t = dst.connect().await;
        ledger::ensure(&t).await.unwrap();
        let d = t.dialect();
        let guard = |run: &str| vec![state::still_running(d, run, "CRONUS$Item")];
        state::start_run(&t, "a", "Auto", true).await.unwrap();
        t.in_transaction(&guard("a")).await.unwrap();
        // The other worker of run a finished first.
        state::finish_run(&t, "a", "Succeeded").await.unwrap();
        t.in_transaction(&guard("a"))
            .await
            .unwrap_or_else(|e| panic!("{server:?}: a finished worker refused the other: {e}"));
        // Run a again, then a later run b: a is interrupted.
        state::start_run(&t, "a", "Auto", true).await.unwrap();
        state::start_run(&t, "b", "Auto", false).await.unwrap();
        assert!(t.in_transaction(&guard("a")).await.is_err(), "{server:?}");
        assert!(!state::is_running(&t, "a").await.unwrap());
        t.in_transaction(&guard("b")).await.unwrap();
        // A reset removes b's record.
        let request = Request {
            schedule: "shop/erp",
            kind: "CloudReset",
            name: "guard",
        };
        clear(&t, &request, &Default::default()).await.unwrap();
        assert!(t.in_transaction(&guard("b")).await.is_err(), "{server:?}");
        // The guard never leaves a claim behind.
        assert_eq!(
            dst.int("SELECT COUNT(*) FROM cloudmigrate_run_claims")
                .await,
            0
        );
        t.close().await;
    }
}
