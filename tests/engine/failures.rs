//! Each problem a table can have gives that table the right result, message and guidance, and
//! the run goes on with the other tables.

use crate::databases::{Server, TestDb, config, run, table};
use cloudmigrate::db::{ConnectSpec, Value};
use cloudmigrate::engine::report::TableResult;
use cloudmigrate::engine::{self, EngineError, Quiet};

/// A master-data table in the source's dialect, with a name column of `name_chars`.
fn ddl(db: &TestDb, table: &str, name_chars: i64, extra: &str) -> String {
    format!(
        "CREATE TABLE {} (\"No_\" VARCHAR(20) NOT NULL PRIMARY KEY, \"Name\" VARCHAR({name_chars}){extra})",
        db.dialect.quote(table)
    )
    .replace('"', if db.dialect == cloudmigrate::db::Dialect::MySql { "`" } else { "\"" })
}

fn row(no: &str, name: &str) -> Vec<Value> {
    vec![Value::Text(no.into()), Value::Text(name.into())]
}

#[tokio::test]
async fn a_table_missing_in_the_cloud_is_a_warning_and_the_run_goes_on() {
    let src = TestDb::new(Server::Postgres, "missing_src").await;
    let dst = TestDb::new(Server::Postgres, "missing_dst").await;
    src.exec(&format!(
        "{};\n{}",
        ddl(&src, "CRONUS$Item", 50, ""),
        ddl(&src, "CRONUS$Vendor", 50, "")
    ))
    .await;
    src.insert(
        "CRONUS$Item",
        vec![row("I1", "Bicycle"), row("I2", "Helmet")],
    )
    .await;
    src.insert("CRONUS$Vendor", vec![row("V1", "Fabrikam")])
        .await;
    dst.exec(&ddl(&dst, "CRONUS$Item", 50, "")).await;

    let report = run(&config(&src, &dst, false)).await;
    let item = table(&report, "CRONUS$Item");
    assert_eq!((item.result, item.rows), (TableResult::Migrated, 2));
    let vendor = table(&report, "CRONUS$Vendor");
    assert_eq!(vendor.result, TableResult::Warning);
    assert!(
        vendor
            .message
            .as_deref()
            .unwrap()
            .contains("does not exist in the cloud database")
    );
    assert!(
        vendor
            .guidance
            .as_deref()
            .unwrap()
            .contains("createMissingTables")
    );
    assert_eq!(dst.count("CRONUS$Item").await, 2);
    assert_eq!(report.result(), "Succeeded");
    // The Setup Checklist reads the missing table as not set up; the copied one as done.
    let target = dst.connect().await;
    let open = cloudmigrate::engine::ledger::state::not_migrated(&target)
        .await
        .unwrap();
    let open: Vec<(&str, &str, &str)> = open
        .iter()
        .map(|t| (t.company.as_str(), t.table.as_str(), t.result.as_str()))
        .collect();
    // (The source has no Company table, so its tables are per-database ones.)
    assert_eq!(open, [("", "CRONUS$Vendor", "Warning")]);
}

#[tokio::test]
async fn a_column_missing_in_the_cloud_fails_the_table_and_names_the_column() {
    let src = TestDb::new(Server::MariaDb, "col_src").await;
    let dst = TestDb::new(Server::Postgres, "col_dst").await;
    src.exec(&ddl(
        &src,
        "CRONUS$Item",
        50,
        ", `Search Description` VARCHAR(50)",
    ))
    .await;
    src.insert(
        "CRONUS$Item",
        vec![vec![
            Value::Text("I1".into()),
            Value::Text("Bicycle".into()),
            Value::Null,
        ]],
    )
    .await;
    src.exec(&ddl(&src, "CRONUS$Vendor", 50, "")).await;
    src.insert("CRONUS$Vendor", vec![row("V1", "Fabrikam")])
        .await;
    dst.exec(&format!(
        "{};\n{}",
        ddl(&dst, "CRONUS$Item", 50, ""),
        ddl(&dst, "CRONUS$Vendor", 50, "")
    ))
    .await;

    let report = run(&config(&src, &dst, false)).await;
    let item = table(&report, "CRONUS$Item");
    assert_eq!(item.result, TableResult::Failed);
    assert!(
        item.message
            .as_deref()
            .unwrap()
            .contains("\"Search Description\""),
        "{:?}",
        item.message
    );
    assert!(
        item.guidance
            .as_deref()
            .unwrap()
            .contains("spec.tables.exclude")
    );
    assert_eq!(
        table(&report, "CRONUS$Vendor").result,
        TableResult::Migrated
    );
    assert_eq!(report.result(), "PartiallySucceeded");
}

/// The value check names the column and the first offending row, and the cloud table keeps
/// what it had: the load is one transaction.
async fn too_long_value(source: Server, target: Server) {
    let src = TestDb::new(source, "long_src").await;
    let dst = TestDb::new(target, "long_dst").await;
    src.exec(&ddl(&src, "Contoso$Customer", 120, "")).await;
    let long = "Gastronomie und Catering Dienstleistungen GmbH & Co. KG — Zweigniederlassung Süd";
    src.insert(
        "Contoso$Customer",
        vec![row("C1", "Adatum"), row("C2", long), row("C3", "Litware")],
    )
    .await;
    dst.exec(&ddl(&dst, "Contoso$Customer", 30, "")).await;
    dst.insert(
        "Contoso$Customer",
        vec![row("OLD1", "kept"), row("OLD2", "kept too")],
    )
    .await;

    let report = run(&config(&src, &dst, false)).await;
    let t = table(&report, "Contoso$Customer");
    assert_eq!(t.result, TableResult::Failed, "{source:?}->{target:?}");
    let message = t.message.as_deref().unwrap();
    assert!(
        message.contains("value too long for column \"Name\""),
        "{message}"
    );
    assert!(message.contains("No_=\"C2\""), "{message}");
    assert!(
        t.guidance
            .as_deref()
            .unwrap()
            .contains("kept its previous content")
    );
    let kept = dst.rows("Contoso$Customer").await;
    assert_eq!(
        kept.len(),
        2,
        "the failed load changed the cloud table: {kept:?}"
    );
}

#[tokio::test]
async fn a_value_too_long_fails_the_table_and_keeps_the_cloud_content_pg() {
    too_long_value(Server::Postgres, Server::Postgres).await;
}

#[tokio::test]
async fn a_value_too_long_fails_the_table_and_keeps_the_cloud_content_sqlite_to_mysql() {
    too_long_value(Server::Sqlite, Server::MariaDb).await;
}

#[tokio::test]
async fn a_number_too_large_for_the_cloud_column_fails_with_the_database_message() {
    let src = TestDb::new(Server::Postgres, "num_src").await;
    let dst = TestDb::new(Server::Postgres, "num_dst").await;
    src.exec("CREATE TABLE \"CRONUS$Price\" (id int8 PRIMARY KEY, amount numeric(38,20))")
        .await;
    src.exec("INSERT INTO \"CRONUS$Price\" VALUES (1, 12.5), (2, 123456789012.25)")
        .await;
    dst.exec("CREATE TABLE \"CRONUS$Price\" (id int8 PRIMARY KEY, amount numeric(10,2))")
        .await;
    let report = run(&config(&src, &dst, false)).await;
    let t = table(&report, "CRONUS$Price");
    assert_eq!(t.result, TableResult::Failed);
    let message = t.message.as_deref().unwrap();
    assert!(
        message.contains("numeric field overflow") && message.contains("amount"),
        "{message}"
    );
}

#[tokio::test]
async fn names_that_collide_at_63_bytes_fail_instead_of_merging() {
    let src = TestDb::new(Server::Sqlite, "collide_src").await;
    let dst = TestDb::new(Server::Postgres, "collide_dst").await;
    let stem = format!(
        "CRONUS${}",
        "Sustainability Emission Ledger Entry Archive Detail Lines "
    );
    let (a, b) = (format!("{stem}2023 Quarter"), format!("{stem}2024 Quarter"));
    assert!(a.len() > 63);
    src.exec(&format!(
        "{};\n{};\n{}",
        ddl(&src, &a, 10, ""),
        ddl(&src, &b, 10, ""),
        ddl(&src, "CRONUS$Item", 10, "")
    ))
    .await;
    src.insert(&a, vec![row("1", "a")]).await;
    let report = run(&config(&src, &dst, true)).await;
    for name in [&a, &b] {
        let t = table(&report, name);
        assert_eq!(t.result, TableResult::Failed, "{name}");
        assert!(
            t.message.as_deref().unwrap().contains("nothing is merged"),
            "{:?}",
            t.message
        );
    }
    assert_eq!(
        table(&report, "CRONUS$Item").result,
        TableResult::Warning,
        "created, so a warning"
    );
}

#[tokio::test]
async fn an_unreachable_source_is_an_error_without_the_password() {
    let dst = TestDb::new(Server::Sqlite, "unreach_dst").await;
    let mut cfg = config(&dst, &dst, false);
    cfg.source = ConnectSpec {
        url: "postgres://erp@127.0.0.1:1/bc".into(),
        password: Some("hunter2-secret".into()),
        tls: None,
        max_connections: 1,
        create: false,
    };
    let err = engine::run(&cfg, &Quiet, Default::default())
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::Source(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("cannot connect to postgres://erp@127.0.0.1:1/bc"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_wrong_password_is_an_error_without_the_password() {
    let src = TestDb::new(Server::MariaDb, "pw_src").await;
    let dst = TestDb::new(Server::Sqlite, "pw_dst").await;
    let mut cfg = config(&src, &dst, false);
    cfg.source.password = Some("wrong-hunter2".into());
    let text = engine::run(&cfg, &Quiet, Default::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(text.contains("Access denied"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[tokio::test]
async fn a_diagnostic_run_reports_what_a_run_would_do_and_writes_nothing() {
    let src = TestDb::new(Server::Postgres, "diag_src").await;
    let dst = TestDb::new(Server::MariaDb, "diag_dst").await;
    src.exec(&format!(
        "{};\n{};\n{}",
        ddl(&src, "CRONUS$Customer", 120, ""),
        ddl(&src, "CRONUS$Item", 50, ""),
        ddl(&src, "CRONUS$Vendor", 50, "")
    ))
    .await;
    let long = "a name far longer than the thirty characters the cloud keeps";
    src.insert(
        "CRONUS$Customer",
        vec![row("C1", "Adatum"), row("C2", long)],
    )
    .await;
    src.insert("CRONUS$Item", vec![row("I1", "Bicycle")]).await;
    dst.exec(&format!(
        "{};\n{}",
        ddl(&dst, "CRONUS$Customer", 30, ""),
        ddl(&dst, "CRONUS$Item", 50, "")
    ))
    .await;
    dst.insert("CRONUS$Item", vec![row("OLD", "kept")]).await;

    let mut cfg = config(&src, &dst, false);
    cfg.run_type = cloudmigrate::engine::RunType::Diagnostic;
    let report = run(&cfg).await;
    let customer = table(&report, "CRONUS$Customer");
    assert_eq!(customer.result, TableResult::Failed);
    let message = customer.message.as_deref().unwrap();
    assert!(
        message.contains("value too long for column \"Name\"") && message.contains("No_=\"C2\""),
        "{message}"
    );
    let item = table(&report, "CRONUS$Item");
    assert_eq!(item.result, TableResult::Migrated);
    assert!(
        item.message
            .as_deref()
            .unwrap()
            .contains("would copy the table in full (FirstRun)"),
        "{:?}",
        item.message
    );
    assert_eq!(table(&report, "CRONUS$Vendor").result, TableResult::Warning);

    // Nothing was written on either side.
    assert_eq!(dst.rows("CRONUS$Item").await, vec![row("OLD", "kept")]);
    for db in [&src, &dst] {
        let names: Vec<String> = db
            .connect()
            .await
            .tables()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(
            !names.iter().any(|n| n.starts_with("cloudmigrate")),
            "{:?} got {names:?}",
            db.dialect
        );
    }
}
