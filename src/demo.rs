//! The demo: a Business Central-like on-premises SQLite database and its "cloud" tenant
//! database, made from scratch, so that a whole migration runs with one command.

use crate::db::{ConnectSpec, Database, DbError, Dialect, Statement, Value};
use crate::engine::RunConfig;
use std::path::Path;

/// The companies of the demo database.
pub const COMPANIES: [&str; 3] = [
    "CRONUS International Ltd.",
    "CRONUS Canada, Inc.",
    "Contoso Café",
];

/// Rows of the general ledger of the first company.
pub const LEDGER_ROWS: i64 = 120_000;

/// Per-company tables: (name, rows). Their columns follow one master-data layout.
const COMPANY_TABLES: &[&str] = &[
    "Item",
    "Vendor",
    "Customer Posting Group",
    "Vendor Posting Group",
    "Inventory Posting Group",
    "Gen_ Business Posting Group",
    "Gen_ Product Posting Group",
    "General Posting Setup",
    "VAT Business Posting Group",
    "VAT Product Posting Group",
    "VAT Posting Setup",
    "G_L Account",
    "Bank Account",
    "Payment Terms",
    "Payment Method",
    "Currency",
    "Currency Exchange Rate",
    "Location",
    "Unit of Measure",
    "Item Unit of Measure",
    "Item Category",
    "Salesperson_Purchaser",
    "Shipment Method",
    "Shipping Agent",
    "Country_Region",
    "Post Code",
    "Dimension",
    "Dimension Value",
    "Default Dimension",
    "Dimension Set Entry",
    "No_ Series",
    "No_ Series Line",
    "Source Code",
    "Reason Code",
    "Gen_ Journal Template",
    "Gen_ Journal Batch",
    "Gen_ Journal Line",
    "Item Journal Template",
    "Item Journal Batch",
    "Sales Header",
    "Sales Line",
    "Purchase Header",
    "Purchase Line",
    "Sales Invoice Header",
    "Sales Invoice Line",
    "Purch_ Inv_ Header",
    "Purch_ Inv_ Line",
    "Sales Shipment Header",
    "Sales Shipment Line",
    "Purch_ Rcpt_ Header",
    "Purch_ Rcpt_ Line",
    "Cust_ Ledger Entry",
    "Vendor Ledger Entry",
    "Item Ledger Entry",
    "Value Entry",
    "Bank Account Ledger Entry",
    "VAT Entry",
    "Detailed Cust_ Ledg_ Entry",
    "Detailed Vendor Ledg_ Entry",
    "Fixed Asset",
    "FA Ledger Entry",
    "FA Posting Group",
    "Depreciation Book",
    "Resource",
    "Res_ Ledger Entry",
    "Job",
    "Job Task",
    "Job Ledger Entry",
    "Employee",
    "Contact",
    "Contact Business Relation",
    "Opportunity",
    "Interaction Log Entry",
    "Approval Entry",
    "Workflow",
    "Workflow Step",
    "Job Queue Entry",
    "Change Log Entry",
    "Item Buffer",
    "Reservation Entry",
    "Warehouse Entry",
    "Bin",
    "Zone",
    "Company Information",
    "General Ledger Setup",
    "Sales & Receivables Setup",
    "Purchases & Payables Setup",
    "Inventory Setup",
];

/// Per-database tables (no company prefix).
const DATABASE_TABLES: &[&str] = &[
    "Tenant Media",
    "Media Set",
    "Installed Application",
    "Published Application",
    "$ndo$tenantdatabaseproperty",
    "Language",
    "Windows Language",
    "Report Layout Selection",
];

/// Permission and user tables, which stay on-premises by design.
const PERMISSION_TABLES: &[&str] = &[
    "Access Control",
    "Permission",
    "Permission Set",
    "Permission Set Link",
    "User",
    "User Property",
];

/// An extension's table (`Company$Table$<app-id>`) that the cloud tenant lacks.
pub const EXTENSION_TABLE: &str =
    "Sustainability Ledger Entry$4b1d3c5e-2f6a-4e8b-9c0d-1a2b3c4d5e6f";

fn master_columns(name_chars: i64) -> String {
    format!(
        "\"No_\" VARCHAR(20) NOT NULL PRIMARY KEY, \"Name\" VARCHAR({name_chars}), \
         \"Description\" VARCHAR(250), \"Amount\" DECIMAL(38,20), \"Posting Date\" DATETIME, \
         \"Blocked\" BOOLEAN, \"Picture\" BLOB, \"$systemId\" UUID, \"$systemCreatedAt\" DATETIME"
    )
}

const LEDGER_COLUMNS: &str = "\"Entry No_\" INTEGER NOT NULL PRIMARY KEY, \"G_L Account No_\" VARCHAR(20), \
     \"Posting Date\" DATETIME, \"Document Type\" INTEGER, \"Document No_\" VARCHAR(20), \
     \"Description\" VARCHAR(100), \"Amount\" DECIMAL(38,20), \"Debit Amount\" DECIMAL(38,20), \
     \"Credit Amount\" DECIMAL(38,20), \"Dimension Set ID\" INTEGER, \"Source Code\" VARCHAR(10), \
     \"User ID\" VARCHAR(50), \"Reversed\" BOOLEAN, \"$systemId\" UUID, \"$systemCreatedAt\" DATETIME";

fn q(name: &str) -> String {
    Dialect::Sqlite.quote(name)
}

async fn exec(db: &Database, sql: String) -> Result<(), DbError> {
    db.execute(&Statement {
        sql,
        params: vec![],
    })
    .await
    .map(|_| ())
}

/// The Customer table's Name is longer on-premises than in the cloud: one company has a name
/// that does not fit, and that table fails with guidance.
const CUSTOMER_NAME_ONPREM: i64 = 150;
const CUSTOMER_NAME_CLOUD: i64 = 100;

/// Creates the schema that both databases share; `cloud` decides the cloud's differences.
async fn create_schema(db: &Database, cloud: bool) -> Result<(), DbError> {
    exec(db, "BEGIN".into()).await?;
    exec(db, format!("CREATE TABLE {} (\"Name\" VARCHAR(30) NOT NULL PRIMARY KEY, \"Display Name\" VARCHAR(250))", q("Company"))).await?;
    for t in DATABASE_TABLES.iter().chain(PERMISSION_TABLES) {
        exec(
            db,
            format!("CREATE TABLE {} ({})", q(t), master_columns(100)),
        )
        .await?;
    }
    for company in COMPANIES {
        let prefix = crate::engine::catalog::company_sql_name(company);
        for t in COMPANY_TABLES {
            exec(
                db,
                format!(
                    "CREATE TABLE {} ({})",
                    q(&format!("{prefix}${t}")),
                    master_columns(100)
                ),
            )
            .await?;
        }
        let chars = if cloud {
            CUSTOMER_NAME_CLOUD
        } else {
            CUSTOMER_NAME_ONPREM
        };
        exec(
            db,
            format!(
                "CREATE TABLE {} ({})",
                q(&format!("{prefix}$Customer")),
                master_columns(chars)
            ),
        )
        .await?;
        exec(
            db,
            format!(
                "CREATE TABLE {} ({LEDGER_COLUMNS})",
                q(&format!("{prefix}$G_L Entry"))
            ),
        )
        .await?;
        if !cloud && company == COMPANIES[0] {
            exec(
                db,
                format!(
                    "CREATE TABLE {} ({LEDGER_COLUMNS})",
                    q(&format!("{prefix}${EXTENSION_TABLE}"))
                ),
            )
            .await?;
        }
    }
    exec(db, "COMMIT".into()).await
}

/// Deterministic pseudo-random numbers, so every demo database is the same.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

async fn insert_rows(
    db: &Database,
    table: &str,
    columns: usize,
    rows: Vec<Vec<Value>>,
) -> Result<(), DbError> {
    let per = (32_766 / columns).min(500);
    for group in rows.chunks(per) {
        let one = format!("({})", vec!["?"; columns].join(","));
        let sql = format!(
            "INSERT INTO {} VALUES {}",
            q(table),
            vec![one; group.len()].join(",")
        );
        db.execute(&Statement {
            sql,
            params: group.concat(),
        })
        .await?;
    }
    Ok(())
}

fn master_row(rng: &mut Lcg, i: i64, name: String) -> Vec<Value> {
    let day = chrono::NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default()
        + chrono::Days::new(rng.next() % 700);
    vec![
        Value::Text(format!("{:05}", i * 10)),
        Value::Text(name),
        Value::Text(format!("Line {i} — «{}» ü ñ 日本", rng.next() % 1000)),
        Value::Decimal(format!(
            "{}.{:020}",
            rng.next() % 1_000_000,
            rng.next() as u128 * 7919 % 100_000_000_000_000_000_000
        )),
        Value::Text(format!("{day} 08:{:02}:00", rng.next() % 60)),
        Value::Bool(rng.next().is_multiple_of(7)),
        if i % 5 == 0 {
            Value::Bytes((0..64).map(|b| (b * i) as u8).collect())
        } else {
            Value::Null
        },
        Value::Text(
            uuid::Uuid::from_u64_pair(rng.next(), i as u64)
                .hyphenated()
                .to_string(),
        ),
        Value::Text(format!("{day} 09:00:00")),
    ]
}

fn ledger_row(rng: &mut Lcg, i: i64) -> Vec<Value> {
    let day = chrono::NaiveDate::from_ymd_opt(2023, 1, 1).unwrap_or_default()
        + chrono::Days::new((i / 200) as u64 % 1000);
    let amount = (rng.next() % 2_000_000) as i64 - 1_000_000;
    let text = format!(
        "{}.{:02}000000000000000000",
        amount / 100,
        amount.unsigned_abs() % 100
    );
    let zero = "0.00000000000000000000".to_string();
    let (debit, credit) = if amount >= 0 {
        (text.clone(), zero)
    } else {
        (zero, text.trim_start_matches('-').to_string())
    };
    vec![
        Value::Int(i),
        Value::Text(format!("{}", 1000 + rng.next() % 90 * 100)),
        Value::Text(format!("{day} 00:00:00")),
        Value::Int((rng.next() % 4) as i64),
        Value::Text(format!("G{:08}", i / 3)),
        Value::Text(format!("Posting {i}")),
        Value::Decimal(text),
        Value::Decimal(debit),
        Value::Decimal(credit),
        Value::Int((rng.next() % 500) as i64),
        Value::Text("GENJNL".into()),
        Value::Text("CONTOSO\\ADMIN".into()),
        Value::Bool(false),
        Value::Text(
            uuid::Uuid::from_u64_pair(i as u64, rng.next())
                .hyphenated()
                .to_string(),
        ),
        Value::Text(format!("{day} 12:00:00")),
    ]
}

/// Fills the on-premises database with companies, master data, ledgers and system tables.
async fn fill(db: &Database) -> Result<u64, DbError> {
    let mut rng = Lcg(42);
    let mut total = 0u64;
    exec(db, "BEGIN".into()).await?;
    let companies = COMPANIES
        .iter()
        .map(|c| vec![Value::Text(c.to_string()), Value::Text(c.to_string())])
        .collect();
    insert_rows(db, "Company", 2, companies).await?;
    for t in DATABASE_TABLES.iter().chain(PERMISSION_TABLES) {
        let rows: Vec<_> = (1..=12)
            .map(|i| master_row(&mut rng, i, format!("{t} {i}")))
            .collect();
        total += rows.len() as u64;
        insert_rows(db, t, 9, rows).await?;
    }
    for (ci, company) in COMPANIES.iter().enumerate() {
        let prefix = crate::engine::catalog::company_sql_name(company);
        for (ti, t) in COMPANY_TABLES.iter().chain(&["Customer"]).enumerate() {
            let n = 10 + ((ti * 7 + ci * 13) % 40) as i64;
            let rows: Vec<_> = (1..=n)
                .map(|i| {
                    let name = if *t == "Customer" && ci == 2 && i == 3 {
                        // Longer than the cloud's 100 characters.
                        format!(
                            "Contoso Café Gastronomie und Catering Dienstleistungen GmbH & Co. KG, \
                                 Zweigniederlassung Innsbruck-Land, Abteilung Einkauf {i}"
                        )
                    } else {
                        format!("{company} {t} {i}")
                    };
                    master_row(&mut rng, i, name)
                })
                .collect();
            total += rows.len() as u64;
            insert_rows(db, &format!("{prefix}${t}"), 9, rows).await?;
        }
        let ledger = if ci == 0 { LEDGER_ROWS } else { 5_000 };
        let rows: Vec<_> = (1..=ledger).map(|i| ledger_row(&mut rng, i)).collect();
        total += rows.len() as u64;
        insert_rows(db, &format!("{prefix}$G_L Entry"), 15, rows).await?;
        if ci == 0 {
            let rows: Vec<_> = (1..=250).map(|i| ledger_row(&mut rng, i)).collect();
            total += rows.len() as u64;
            insert_rows(db, &format!("{prefix}${EXTENSION_TABLE}"), 15, rows).await?;
        }
    }
    exec(db, "COMMIT".into()).await?;
    exec(db, "ANALYZE".into()).await?;
    Ok(total)
}

/// Makes `dir/onprem.db` and `dir/cloud.db` anew. Returns the rows written on-premises.
pub async fn create(dir: &Path) -> Result<u64, DbError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| DbError::Config(format!("creating {}: {e}", dir.display())))?;
    for name in ["onprem.db", "cloud.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(dir.join(format!("{name}{suffix}")));
        }
    }
    let onprem = Database::connect(&spec(&dir.join("onprem.db"), true)).await?;
    create_schema(&onprem, false).await?;
    let rows = fill(&onprem).await?;
    onprem.close().await;
    let cloud = Database::connect(&spec(&dir.join("cloud.db"), true)).await?;
    create_schema(&cloud, true).await?;
    exec(
        &cloud,
        "INSERT INTO \"Company\" VALUES ('CRONUS International Ltd.', 'CRONUS International Ltd.')"
            .into(),
    )
    .await?;
    cloud.close().await;
    Ok(rows)
}

fn spec(path: &Path, create: bool) -> ConnectSpec {
    ConnectSpec {
        url: format!("sqlite://{}", path.display()),
        password: None,
        tls: None,
        max_connections: 4,
        create,
    }
}

/// The schedule of `examples/local/schedule.yaml`, which `cloudmigrate run -f` takes to run
/// the demo again: the demo's run has its settings, so the two never drift apart.
const EXAMPLE: &str = include_str!("../examples/local/schedule.yaml");

/// The run the demo makes: the example schedule's settings (its exclusions, missing tables
/// created, 4 tables at a time) on the demo's files, for every company.
pub fn run_config(dir: &Path) -> RunConfig {
    let mut config =
        match crate::manifest::parse(EXAMPLE, Path::new("examples/local/schedule.yaml")) {
            Ok(m) => crate::convert::engine_config(
                &m.schedule.spec,
                None,
                (
                    spec(&dir.join("onprem.db"), false),
                    spec(&dir.join("cloud.db"), true),
                ),
                String::new(),
                crate::engine::RunType::Auto,
            ),
            // The example is part of the binary, and a test reads it: it always parses.
            Err(e) => unreachable!("the embedded example schedule does not parse: {e}"),
        };
    config.run_id = format!("demo-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_runs_with_the_example_schedules_settings() {
        let config = run_config(Path::new("/tmp/demo"));
        assert_eq!(config.plan.exclude, vec!["*Buffer", "Change Log Entry"]);
        assert!(config.create_missing_tables);
        assert_eq!(config.parallelism, 4);
        // Every company, whatever the example's CompanySelection picks.
        assert_eq!(config.plan.companies, None);
        assert!(
            config.source.url.ends_with("/tmp/demo/onprem.db"),
            "{}",
            config.source.url
        );
        assert!(
            config.target.url.ends_with("/tmp/demo/cloud.db"),
            "{}",
            config.target.url
        );
        assert!(config.run_id.starts_with("demo-"));
    }
}
