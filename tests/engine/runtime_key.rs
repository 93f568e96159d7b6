//! The runtime key on real servers: runs write as the schedule's login role, which may write
//! only the migrated tables and the replication state; a new key makes the old one fail at
//! login while a connection made before keeps working; dropping the role ends every login.

use crate::databases::{Server, TestDb, config, run, unique};
use cloudmigrate::db::{Database, DbError, Statement};
use cloudmigrate::engine::access::{self, RuntimeKey};
use cloudmigrate::engine::report::TableResult;

async fn try_exec(db: &Database, sql: String) -> Result<u64, DbError> {
    db.execute(&Statement {
        sql,
        params: vec![],
    })
    .await
}

async fn runs_write_as_the_role_and_a_new_key_retires_the_old(target: Server) {
    let src = TestDb::new(Server::Sqlite, "rk_src").await;
    let dst = TestDb::new(target, "rk_dst").await;
    let (sd, d) = (src.dialect, dst.dialect);
    src.exec(&format!(
        "CREATE TABLE {c} ({n} VARCHAR(30) NOT NULL PRIMARY KEY);\n\
         INSERT INTO {c} VALUES ('CRONUS');\n\
         CREATE TABLE {i} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(50));\n\
         INSERT INTO {i} VALUES (1, 'a'), (2, 'b')",
        c = sd.quote("Company"),
        n = sd.quote("Name"),
        i = sd.quote("CRONUS$Item"),
        id = sd.quote("Id"),
        x = sd.quote("Text"),
    ))
    .await;
    // The first run, as the admin user, creates the target's tables; then the cloud's own
    // tables, which no run may write.
    run(&config(&src, &dst, true)).await;
    for own in ["Cloud Setup", "CRONUS$User"] {
        dst.exec(&format!(
            "CREATE TABLE {t} ({id} INTEGER PRIMARY KEY);\nINSERT INTO {t} VALUES (7)",
            t = d.quote(own),
            id = d.quote("Id"),
        ))
        .await;
    }
    let admin = dst.connect().await;
    let source = src.connect().await;
    let schedule = unique("s").replace('_', "-");
    let owner = format!("shop/{schedule}");
    let role = access::role_name("shop", &schedule, d);
    let first = RuntimeKey::generate().unwrap();
    access::set_key(&admin, &role, &owner, &first)
        .await
        .unwrap();
    // Another schedule's key never lands on this role.
    let e = access::set_key(&admin, &role, "rival/x", &first)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("never taken over"), "{e}");
    let options = config(&src, &dst, false).plan;
    let grants = access::grant_for_run(&source, &admin, "not-a-run", &options, &role, false)
        .await
        .unwrap();
    // Company, CRONUS$Item and the six ledger tables.
    assert_eq!(grants.granted, 8, "{grants:?}");
    // A second grant changes nothing.
    let again = access::grant_for_run(&source, &admin, "not-a-run", &options, &role, false)
        .await
        .unwrap();
    assert_eq!(again, access::Grants::default());

    // A run as the role.
    let as_role = |key: &RuntimeKey| {
        let mut c = config(&src, &dst, false);
        c.target.url = access::with_user(&dst.url, &role).unwrap();
        c.target.password = Some(key.reveal().to_string());
        c
    };
    src.exec(&format!(
        "INSERT INTO {} VALUES (3, 'c')",
        sd.quote("CRONUS$Item")
    ))
    .await;
    let report = run(&as_role(&first)).await;
    let item = report
        .tables
        .iter()
        .find(|t| t.source_name == "CRONUS$Item")
        .unwrap();
    assert_eq!(item.result, TableResult::Migrated, "{item:?}");
    assert_eq!(dst.count("CRONUS$Item").await, 3);

    // A run plans from the catalog recorded when it was granted: the source's catalog is read
    // once, and a table made in the source since (never granted) is not part of the run.
    let planned = as_role(&first);
    access::grant_for_run(&source, &admin, &planned.run_id, &options, &role, false)
        .await
        .unwrap();
    src.exec(&format!(
        "CREATE TABLE {l} ({id} INTEGER PRIMARY KEY);\nINSERT INTO {l} VALUES (1)",
        l = sd.quote("CRONUS$Late"),
        id = sd.quote("Id"),
    ))
    .await;
    let report = run(&planned).await;
    let names: Vec<&str> = report
        .tables
        .iter()
        .map(|t| t.source_name.as_str())
        .collect();
    assert!(names.contains(&"CRONUS$Item"), "{names:?}");
    assert!(!names.contains(&"CRONUS$Late"), "{names:?}");
    src.exec(&format!("DROP TABLE {}", sd.quote("CRONUS$Late")))
        .await;

    // The role cannot touch a table that no run writes.
    let role_db = Database::connect(&as_role(&first).target).await.unwrap();
    for own in ["Cloud Setup", "CRONUS$User"] {
        let refused = try_exec(&role_db, format!("DELETE FROM {}", d.quote(own))).await;
        assert!(refused.is_err(), "the role could write {own}");
        assert_eq!(dst.count(own).await, 1);
    }

    // A new key: the old one no longer logs in, the new one does, and the connection made
    // with the old key goes on.
    let second = RuntimeKey::generate().unwrap();
    access::set_key(&admin, &role, &owner, &second)
        .await
        .unwrap();
    assert!(
        !access::logs_in(&dst.url, None, &role, &first)
            .await
            .unwrap()
    );
    assert!(
        access::logs_in(&dst.url, None, &role, &second)
            .await
            .unwrap()
    );
    try_exec(
        &role_db,
        format!(
            "UPDATE {} SET {} = 'z'",
            d.quote("CRONUS$Item"),
            d.quote("Text")
        ),
    )
    .await
    .unwrap();
    role_db.close().await;
    let report = run(&as_role(&second)).await;
    assert!(
        report
            .tables
            .iter()
            .all(|t| t.result != TableResult::Failed)
    );

    // With createMissingTables, the admin creates the table the target lacks before the run,
    // and the run (as the role) fills it and says the table was made from the source.
    src.exec(&format!(
        "CREATE TABLE {v} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(50));\n\
         INSERT INTO {v} VALUES (1, 'v')",
        v = sd.quote("CRONUS$Vendor"),
        id = sd.quote("Id"),
        x = sd.quote("Text"),
    ))
    .await;
    let mut creating = as_role(&second);
    creating.create_missing_tables = true;
    let grants = access::grant_for_run(&source, &admin, &creating.run_id, &options, &role, true)
        .await
        .unwrap();
    assert_eq!(grants.created, ["CRONUS$Vendor"], "{grants:?}");
    assert!(grants.not_created.is_empty(), "{grants:?}");
    assert_eq!(dst.count("CRONUS$Vendor").await, 0);
    let report = run(&creating).await;
    let vendor = report
        .tables
        .iter()
        .find(|t| t.source_name == "CRONUS$Vendor")
        .unwrap();
    // A table made from the source's definition is a warning by design.
    assert_eq!(vendor.result, TableResult::Warning, "{vendor:?}");
    assert!(
        vendor
            .message
            .as_deref()
            .unwrap_or_default()
            .contains("created from the on-premises definition"),
        "{vendor:?}"
    );
    assert_eq!(dst.count("CRONUS$Vendor").await, 1);
    // Still nothing else.
    let role_db = Database::connect(&as_role(&second).target).await.unwrap();
    let refused = try_exec(&role_db, format!("DELETE FROM {}", d.quote("Cloud Setup"))).await;
    assert!(refused.is_err(), "the role could write Cloud Setup");

    // The role never creates anything, whatever the setting: neither a table the run copies
    // nor any other.
    src.exec(&format!(
        "CREATE TABLE {b} ({id} INTEGER PRIMARY KEY)",
        b = sd.quote("CRONUS$Bank"),
        id = sd.quote("Id"),
    ))
    .await;
    for create in [true, false] {
        let grants = access::grant_for_run(&source, &admin, "not-a-run", &options, &role, create)
            .await
            .unwrap();
        if create {
            assert_eq!(grants.created, ["CRONUS$Bank"], "{grants:?}");
            try_exec(&admin, format!("DROP TABLE {}", d.quote("CRONUS$Bank")))
                .await
                .unwrap();
        }
        for table in ["CRONUS$Bank", "Anything"] {
            let created = try_exec(
                &role_db,
                format!(
                    "CREATE TABLE {} ({} INTEGER)",
                    d.quote(table),
                    d.quote("Id")
                ),
            )
            .await;
            assert!(
                created.is_err(),
                "the role could create {table} (create={create})"
            );
        }
    }
    role_db.close().await;

    // A table the admin cannot create (a view of that name is in the way) is named with the
    // database's reason, and the run reports it Failed with the same reason.
    try_exec(
        &admin,
        format!(
            "CREATE VIEW {} AS SELECT 1 AS {}",
            d.quote("CRONUS$Bank"),
            d.quote("Id")
        ),
    )
    .await
    .unwrap();
    let mut blocked = as_role(&second);
    blocked.create_missing_tables = true;
    let grants = access::grant_for_run(&source, &admin, &blocked.run_id, &options, &role, true)
        .await
        .unwrap();
    let [(table, why)] = grants.not_created.as_slice() else {
        panic!("{grants:?}")
    };
    assert_eq!(table, "CRONUS$Bank");
    let report = run(&blocked).await;
    let bank = report
        .tables
        .iter()
        .find(|t| t.source_name == "CRONUS$Bank")
        .unwrap();
    assert_eq!(bank.result, TableResult::Failed, "{bank:?}");
    assert!(
        bank.message
            .as_deref()
            .unwrap_or_default()
            .contains("could not create it"),
        "{bank:?}"
    );
    assert!(
        bank.message
            .as_deref()
            .unwrap_or_default()
            .contains(why.as_str()),
        "{bank:?} / {why}"
    );
    try_exec(&admin, format!("DROP VIEW {}", d.quote("CRONUS$Bank")))
        .await
        .unwrap();

    // Revoked: the role is gone, and a second drop is fine.
    // Another schedule cannot drop it.
    access::drop_role(&admin, &role, "rival/x").await.unwrap();
    assert!(
        access::logs_in(&dst.url, None, &role, &second)
            .await
            .unwrap()
    );
    access::drop_role(&admin, &role, &owner).await.unwrap();
    assert!(
        !access::logs_in(&dst.url, None, &role, &second)
            .await
            .unwrap()
    );
    access::drop_role(&admin, &role, &owner).await.unwrap();
    admin.close().await;
    source.close().await;
}

#[tokio::test]
async fn runtime_key_in_postgres() {
    runs_write_as_the_role_and_a_new_key_retires_the_old(Server::Postgres).await;
}

#[tokio::test]
async fn runtime_key_in_mariadb() {
    runs_write_as_the_role_and_a_new_key_retires_the_old(Server::MariaDb).await;
}

/// A login role of the schedule's name that someone else made (another tenant, a person) is
/// never taken over: its password stays, and the schedule says why.
async fn a_role_that_is_not_ours_is_never_taken_over(server: Server) {
    let dst = TestDb::new(server, "foreign_dst").await;
    let d = dst.dialect;
    let admin = dst.connect().await;
    let schedule = unique("f").replace('_', "-");
    let role = access::role_name("shop", &schedule, d);
    let theirs = RuntimeKey::generate().unwrap();
    // Made by hand, with a password of its own.
    let made = match d {
        cloudmigrate::db::Dialect::Postgres => format!(
            "CREATE ROLE {} LOGIN PASSWORD '{}'",
            d.quote(&role),
            theirs.reveal()
        ),
        _ => format!(
            "CREATE USER '{role}'@'%' IDENTIFIED BY '{}'",
            theirs.reveal()
        ),
    };
    dst.exec(&made).await;
    if d != cloudmigrate::db::Dialect::Postgres {
        // A MySQL login reaches a database only with a grant on it.
        let database = dst.url.rsplit('/').next().unwrap_or_default().to_string();
        dst.exec(&format!("GRANT SELECT ON `{database}`.* TO '{role}'@'%'"))
            .await;
    }
    let mine = RuntimeKey::generate().unwrap();
    let e = access::set_key(&admin, &role, &format!("shop/{schedule}"), &mine)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("never taken over"), "{e}");
    assert!(
        access::logs_in(&dst.url, None, &role, &theirs)
            .await
            .unwrap()
    );
    assert!(!access::logs_in(&dst.url, None, &role, &mine).await.unwrap());
    // Nor dropped.
    access::drop_role(&admin, &role, &format!("shop/{schedule}"))
        .await
        .unwrap();
    assert!(
        access::logs_in(&dst.url, None, &role, &theirs)
            .await
            .unwrap()
    );
    let drop = match d {
        cloudmigrate::db::Dialect::Postgres => format!("DROP ROLE {}", d.quote(&role)),
        _ => format!("DROP USER '{role}'@'%'"),
    };
    dst.exec(&drop).await;
    admin.close().await;
}

#[tokio::test]
async fn a_foreign_role_is_not_taken_over_in_postgres() {
    a_role_that_is_not_ours_is_never_taken_over(Server::Postgres).await;
}

#[tokio::test]
async fn a_foreign_role_is_not_taken_over_in_mariadb() {
    a_role_that_is_not_ours_is_never_taken_over(Server::MariaDb).await;
}

/// Every PostgreSQL session resolves names in one schema: the login's current schema, pinned
/// when it connects, even where the login's own settings put more schemas on its path.
#[tokio::test]
async fn a_postgres_session_resolves_names_in_its_current_schema_alone() {
    let dst = TestDb::new(Server::Postgres, "pin").await;
    let admin = dst.connect().await;
    let role = format!("pin_{}", unique("r"));
    let key = RuntimeKey::generate().unwrap();
    access::set_key(&admin, &role, "shop/pin", &key)
        .await
        .unwrap();
    try_exec(
        &admin,
        format!(
            "ALTER ROLE {} SET search_path = pg_temp, public, \"$user\"",
            dst.dialect.quote(&role)
        ),
    )
    .await
    .unwrap();
    let mut spec = dst.spec();
    spec.url = access::with_user(&dst.url, &role).unwrap();
    spec.password = Some(key.reveal().to_string());
    let session = Database::connect(&spec).await.unwrap();
    let path = session
        .query_text_set(&Statement {
            sql: "SELECT current_setting('search_path')".into(),
            params: vec![],
        })
        .await
        .unwrap();
    assert_eq!(path, ["public".to_string()].into());
    session.close().await;
    access::drop_role(&admin, &role, "shop/pin").await.unwrap();
    admin.close().await;
}
