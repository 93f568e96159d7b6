//! Dynamics GP into a database target: the system database into the target's, and each
//! selected company's database (`SY01500`'s `INTERID`) into the database of the same name on
//! the target's server, its tables keeping their names. The source is PostgreSQL and the
//! target MariaDB: two servers, so that a company's database has one name on both.

use super::databases::{Server, TestDb, config, run, table};
use cloudmigrate::db::Value;
use cloudmigrate::engine::Quiet;
use cloudmigrate::engine::report::{CopyMode, TableResult};
use std::sync::Arc;

pub(super) const GP_COMPANY: &str = r#"CREATE TABLE "GL00100" ("ACTINDX" integer PRIMARY KEY, "ACTNUMBR_1" char(9) NOT NULL,
  "ACTNUMBR_2" char(9) NOT NULL, "ACTDESCR" char(51) NOT NULL, "ACCTTYPE" smallint NOT NULL,
  "ACTIVE" smallint NOT NULL, "CREATDDT" timestamp NOT NULL, "DEX_ROW_ID" integer NOT NULL);
INSERT INTO "GL00100" VALUES (1, '000', '1100', 'Cash - Operating Account', 1, 1, '2017-01-01 00:00:00', 1),
  (2, '000', '1200', 'Accounts Receivable', 1, 1, '2017-01-01 00:00:00', 2),
  (3, '000', '4100', 'Sales - Café Équipement', 1, 1, '2017-03-15 00:00:00', 3);
CREATE TABLE "RM00101" ("CUSTNMBR" char(15) PRIMARY KEY, "CUSTNAME" char(65) NOT NULL,
  "CUSTCLAS" char(15) NOT NULL, "CRLMTAMT" numeric(19,5) NOT NULL, "CREATDDT" timestamp NOT NULL,
  "DEX_ROW_ID" integer NOT NULL);
INSERT INTO "RM00101" VALUES ('AARONFIT0001', 'Aaron Fitz Electrical', 'USA-ILMO-T1', 25000.5, '2017-04-12 00:00:00', 1),
  ('ADAMPARK0001', 'Adam Park Resort', 'USA-ULMO-T1', 0, '2017-04-12 00:00:00', 2);
CREATE TABLE "PM00200" ("VENDORID" char(15) PRIMARY KEY, "VENDNAME" char(65) NOT NULL,
  "VNDCLSID" char(11) NOT NULL, "CREATDDT" timestamp NOT NULL, "DEX_ROW_ID" integer NOT NULL);
INSERT INTO "PM00200" VALUES ('ACETRAVE0001', 'A Travel Company', 'USA-US-C', '2017-02-01 00:00:00', 1);
CREATE TABLE "IV00101" ("ITEMNMBR" char(31) PRIMARY KEY, "ITEMDESC" char(101) NOT NULL,
  "CURRCOST" numeric(19,5) NOT NULL, "STNDCOST" numeric(19,5) NOT NULL, "ITEMTYPE" smallint NOT NULL,
  "DEX_ROW_ID" integer NOT NULL);
INSERT INTO "IV00101" VALUES ('100XLG', 'Green Phone', 38.90000, 40.00000, 1, 1),
  ('128 SDRAM', 'SDRAM 128 MB', 12.12345, 0, 1, 2);
CREATE TABLE "SY00300" ("PYMTRMID" char(21) PRIMARY KEY, "DUEDTDS" smallint NOT NULL);
INSERT INTO "SY00300" VALUES ('Net 30', 30);
CREATE TABLE "XYZ10100" ("ID" integer PRIMARY KEY, "NOTE" char(31) NOT NULL);
INSERT INTO "XYZ10100" VALUES (1, 'an ISV add-on table')"#;

pub(super) fn gp_sql(server: Server, sql: &str) -> String {
    match server {
        Server::MariaDb => sql.replace('"', "`").replace("timestamp", "datetime"),
        _ => sql.to_string(),
    }
}

/// A GP company database's name of this test: GP's `INTERID` is a char(5).
fn company_database(letter: char) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("G{:03X}{letter}", (n ^ std::process::id()) % 0xFFF)
}

#[tokio::test]
async fn gp_companies_land_in_their_own_databases_on_the_target_server() {
    let (fabrikam, contoso) = (company_database('A'), company_database('B'));
    let system = TestDb::new(Server::Postgres, "gp_db_sys").await;
    system
        .exec(&format!(
            r#"CREATE TABLE "SY01500" ("CMPANYID" smallint PRIMARY KEY, "CMPNYNAM" char(65) NOT NULL,
  "INTERID" char(5) NOT NULL);
INSERT INTO "SY01500" VALUES (-1, 'Fabrikam, Inc.', '{fabrikam}'), (2, 'Contoso GP', '{contoso}');
CREATE TABLE "SY01400" ("USERID" char(15) PRIMARY KEY, "USERNAME" char(31) NOT NULL);
INSERT INTO "SY01400" VALUES ('sa', 'System Administrator')"#
        ))
        .await;
    let mut sources = vec![];
    for name in [&fabrikam, &contoso] {
        let db = TestDb::named(Server::Postgres, name).await;
        db.exec(GP_COMPANY).await;
        sources.push(db);
    }
    // The cloud has the system database and Fabrikam's; Contoso's is not made yet.
    let target = TestDb::new(Server::MariaDb, "gp_db_dst").await;
    let fabrikam_cloud = TestDb::named(Server::MariaDb, &fabrikam).await;
    let mut cfg = config(&system, &target, true);
    cfg.plan.product = cloudmigrate::vocabulary::Product::Gp;
    cfg.plan.companies = Some(vec!["Fabrikam, Inc.".into()]);
    let report = run(&cfg).await;
    // Every table copied: created in the cloud from GP's definition, which is a warning.
    for t in report
        .tables
        .iter()
        .filter(|t| t.result != TableResult::Excluded)
    {
        assert_eq!(
            t.result,
            TableResult::Warning,
            "{}: {:?}",
            t.source_name,
            t.message
        );
        assert!(
            t.message
                .as_deref()
                .unwrap_or_default()
                .contains("was created")
        );
    }
    // The system database's tables in the target's, users left behind by design.
    assert_eq!(target.count("SY01500").await, 2);
    assert_eq!(table(&report, "SY01500").company, "");
    assert_eq!(table(&report, "SY01400").result, TableResult::Excluded);
    // Fabrikam's tables in its own database, named as in GP, carrying the company's name.
    for (name, rows) in [
        ("GL00100", 3),
        ("RM00101", 2),
        ("IV00101", 2),
        ("XYZ10100", 1),
    ] {
        assert_eq!(fabrikam_cloud.count(name).await, rows, "{name}");
        assert_eq!(table(&report, name).company, "Fabrikam, Inc.");
    }
    assert_eq!(
        fabrikam_cloud.rows("IV00101").await,
        sources[0].rows("IV00101").await
    );
    // Contoso is not selected: nothing of it is read.
    assert!(!report.tables.iter().any(|t| t.company == "Contoso GP"));

    // A change in Fabrikam's database: the next run copies just it.
    sources[0]
        .exec(r#"UPDATE "GL00100" SET "ACTDESCR" = 'Cash' WHERE "ACTINDX" = 1"#)
        .await;
    let again = run(&cfg).await;
    let gl = table(&again, "GL00100");
    assert_eq!(
        (gl.mode, gl.changes),
        (CopyMode::Incremental, Some((0, 1, 0)))
    );
    assert!(
        fabrikam_cloud
            .rows("GL00100")
            .await
            .iter()
            .any(|r| r.contains(&Value::Text("Cash".into())))
    );

    // Contoso selected while the cloud has no database of its name: the error names the
    // company and what the target needs.
    cfg.plan.companies = Some(vec!["Contoso GP".into()]);
    let e = cloudmigrate::engine::run(&cfg, &Quiet, Arc::new(Default::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"Contoso GP\"") && e.contains(&contoso) && e.contains("must exist"),
        "{e}"
    );
    // A company SY01500 does not list is named with those it does.
    cfg.plan.companies = Some(vec!["Fabrikam Inc".into()]);
    let e = cloudmigrate::engine::run(&cfg, &Quiet, Arc::new(Default::default()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("\"Fabrikam Inc\"") && e.contains("\"Fabrikam, Inc.\""),
        "{e}"
    );
}
