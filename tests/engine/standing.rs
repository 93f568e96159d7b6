//! The Migration Information tiles from the target's run log (`ledger::state::standing`): each
//! table counted once, by its latest result across runs, so a run of one company leaves the
//! other companies' tables as they were.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::engine::ledger::state::{Standing, standing};
use cloudmigrate::engine::report::TableResult;

/// `tables`, each with one row, and the `Company` table listing three companies.
async fn database(server: Server, label: &str, tables: &[&str]) -> TestDb {
    let db = TestDb::new(server, label).await;
    let d = db.dialect;
    let mut sql = format!(
        "CREATE TABLE {c} ({n} VARCHAR(30) NOT NULL PRIMARY KEY);\n\
         INSERT INTO {c} VALUES ('CRONUS');\n\
         INSERT INTO {c} VALUES ('FABRIKAM');\n\
         INSERT INTO {c} VALUES ('ADATUM')",
        c = d.quote("Company"),
        n = d.quote("Name"),
    );
    for t in tables {
        sql.push_str(&format!(
            ";\nCREATE TABLE {t} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(20));\n\
             INSERT INTO {t} VALUES (1, 'one')",
            t = d.quote(t),
            id = d.quote("Id"),
            x = d.quote("Text"),
        ));
    }
    db.exec(&sql).await;
    db
}

async fn tiles(server: Server) {
    // Three companies with an item table each, a per-database table, and a table not
    // migrated by design; the cloud has the tables of the two companies the first run copies.
    let src = database(
        server,
        "standing_src",
        &[
            "CRONUS$Item",
            "FABRIKAM$Item",
            "ADATUM$Item",
            "Media",
            "Access Control",
        ],
    )
    .await;
    let dst = database(
        server,
        "standing_dst",
        &["CRONUS$Item", "FABRIKAM$Item", "Media"],
    )
    .await;
    let target = dst.connect().await;
    assert_eq!(standing(&target).await.unwrap(), None, "no run yet");

    let mut two = config(&src, &dst, false);
    two.plan.companies = Some(vec!["CRONUS".into(), "FABRIKAM".into()]);
    run(&two).await;
    assert_eq!(
        standing(&target).await.unwrap(),
        Some(Standing {
            migrated: 4, // Company, Media, CRONUS$Item, FABRIKAM$Item
            by_design: 1,
            company_not_selected: 1,
            ..Default::default()
        })
    );

    // A run of CRONUS alone, whose table is now missing in the cloud: CRONUS$Item turns to a
    // warning; FABRIKAM$Item stays migrated although this run left its company out.
    dst.exec(&format!("DROP TABLE {}", dst.dialect.quote("CRONUS$Item")))
        .await;
    let mut one = config(&src, &dst, false);
    one.plan.companies = Some(vec!["CRONUS".into()]);
    let report = run(&one).await;
    assert_eq!(
        table(&report, "FABRIKAM$Item").result,
        TableResult::Excluded
    );
    assert_eq!(table(&report, "CRONUS$Item").result, TableResult::Warning);
    assert_eq!(
        standing(&target).await.unwrap(),
        Some(Standing {
            migrated: 3, // Company, Media, FABRIKAM$Item
            with_warnings: 1,
            by_design: 1,
            company_not_selected: 1,
            ..Default::default()
        })
    );

    // The Setup Checklist's list: what is not in the cloud, and why.
    let open: Vec<(String, String, String, String)> =
        cloudmigrate::engine::ledger::state::not_migrated(&target)
            .await
            .unwrap()
            .into_iter()
            .map(|t| (t.company, t.table, t.result, t.reason))
            .collect();
    let row = |c: &str, t: &str, r: &str, why: &str| (c.into(), t.into(), r.into(), why.into());
    assert_eq!(
        open,
        [
            row("", "Access Control", "Excluded", "ByDesign"),
            row("ADATUM", "Item", "Excluded", "CompanyNotSelected"),
            row("CRONUS", "Item", "Warning", ""),
        ]
    );

    // A diagnostic run changes nothing.
    let mut diagnostic = config(&src, &dst, false);
    diagnostic.run_type = cloudmigrate::engine::RunType::Diagnostic;
    run(&diagnostic).await;
    assert_eq!(standing(&target).await.unwrap().unwrap().migrated, 3);

    // Reset Cloud Data empties the run log: every tile is zero until the next run.
    let reset = cloudmigrate::engine::ledger::requests::Request {
        schedule: "shop/erp",
        kind: "CloudReset",
        name: "reset",
    };
    let s = src.connect().await;
    let copied = cloudmigrate::engine::reset::copied_tables(&s, &Default::default(), dst.dialect)
        .await
        .unwrap();
    s.close().await;
    cloudmigrate::engine::reset::clear(&target, &reset, &copied)
        .await
        .unwrap();
    assert_eq!(standing(&target).await.unwrap(), Some(Standing::default()));
    target.close().await;
}

#[tokio::test]
async fn a_one_company_run_leaves_the_other_tables_standing_postgres() {
    tiles(Server::Postgres).await;
}

#[tokio::test]
async fn a_one_company_run_leaves_the_other_tables_standing_mariadb() {
    tiles(Server::MariaDb).await;
}

#[tokio::test]
async fn a_one_company_run_leaves_the_other_tables_standing_sqlite() {
    tiles(Server::Sqlite).await;
}
