//! Company discovery and size estimates, as the CompanySelection status shows them: the
//! companies from the `Company` table, matched to the table names, each with the sizes that the
//! database's own size functions give for its tables.

use crate::databases::{Server, TestDb};
use cloudmigrate::engine::catalog::Catalog;

/// Two companies, one whose name is the start of the other's, a per-database table, and rows.
async fn source(server: Server) -> TestDb {
    let db = TestDb::new(server, "companies").await;
    let d = db.dialect;
    let mut sql = format!(
        "CREATE TABLE {c} ({n} VARCHAR(30) NOT NULL PRIMARY KEY);\n\
         INSERT INTO {c} VALUES ('CRONUS');\n\
         INSERT INTO {c} VALUES ('CRONUS Canada, Inc.');\n\
         CREATE TABLE {m} ({id} INTEGER PRIMARY KEY)",
        c = d.quote("Company"),
        n = d.quote("Name"),
        m = d.quote("Media"),
        id = d.quote("Id"),
    );
    for (table, rows) in [
        ("CRONUS$Item", 2000),
        ("CRONUS$Customer", 500),
        ("CRONUS Canada, Inc_$Item", 100),
    ] {
        sql.push_str(&format!(
            ";\nCREATE TABLE {t} ({id} INTEGER PRIMARY KEY, {x} VARCHAR(200))",
            t = d.quote(table),
            id = d.quote("Id"),
            x = d.quote("Text"),
        ));
        let values: Vec<String> = (0..rows)
            .map(|i| format!("({i}, '{}')", "x".repeat(150)))
            .collect();
        for chunk in values.chunks(200) {
            sql.push_str(&format!(
                ";\nINSERT INTO {} VALUES {}",
                d.quote(table),
                chunk.join(", ")
            ));
        }
    }
    db.exec(&sql).await;
    if d == cloudmigrate::db::Dialect::Postgres {
        // Autovacuum adds a free-space or visibility map to a table once enough rows have gone
        // in, a page at a time, at a moment of its own choosing. Vacuuming here makes those
        // forks now, so the two reads of the sizes below see the same files.
        let tables = [
            "Company",
            "Media",
            "CRONUS$Item",
            "CRONUS$Customer",
            "CRONUS Canada, Inc_$Item",
        ];
        let list: Vec<String> = tables.iter().map(|t| d.quote(t)).collect();
        db.exec(&format!("VACUUM {}", list.join(", "))).await;
    }
    db
}

/// What the database itself says the tables of a company take, in bytes.
async fn size_of(db: &TestDb, tables: &[&str]) -> i64 {
    let list = tables
        .iter()
        .map(|t| format!("'{}'", t.replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = match db.dialect {
        cloudmigrate::db::Dialect::Postgres => format!(
            "SELECT CAST(SUM(pg_total_relation_size(c.oid)) AS BIGINT) FROM pg_class c \
             JOIN pg_namespace s ON s.oid = c.relnamespace \
             WHERE s.nspname = current_schema() AND c.relname IN ({list})"
        ),
        _ => format!(
            "SELECT CAST(SUM(data_length + index_length) AS SIGNED) FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name IN ({list})"
        ),
    };
    db.int(&sql).await
}

async fn sizes_match_the_database(server: Server) {
    let db = source(server).await;
    let conn = db.connect().await;
    let sizes = Catalog::read(&conn).await.unwrap().company_sizes();
    conn.close().await;
    let names: Vec<&str> = sizes.keys().map(String::as_str).collect();
    assert_eq!(names, ["CRONUS", "CRONUS Canada, Inc."]);
    // "CRONUS Canada, Inc_$Item" belongs to the longer name, never to CRONUS.
    assert_eq!(sizes["CRONUS"].tables, 2);
    assert_eq!(sizes["CRONUS Canada, Inc."].tables, 1);
    assert_eq!(
        sizes["CRONUS"].bytes,
        size_of(&db, &["CRONUS$Item", "CRONUS$Customer"]).await
    );
    assert_eq!(
        sizes["CRONUS Canada, Inc."].bytes,
        size_of(&db, &["CRONUS Canada, Inc_$Item"]).await
    );
    assert!(sizes["CRONUS"].bytes > sizes["CRONUS Canada, Inc."].bytes);
}

#[tokio::test]
async fn company_sizes_match_the_database_pg() {
    sizes_match_the_database(Server::Postgres).await;
}

#[tokio::test]
async fn company_sizes_match_the_database_mariadb() {
    sizes_match_the_database(Server::MariaDb).await;
}

/// SQLite keeps no size statistics: a run's catalog has no sizes, and the CompanySelection's
/// read takes them from `dbstat`, page by page, matching what the file holds.
#[tokio::test]
async fn sqlite_sizes_come_from_its_pages() {
    let db = source(Server::Sqlite).await;
    let conn = db.connect().await;
    let plain = Catalog::read(&conn).await.unwrap().company_sizes();
    assert_eq!(plain["CRONUS"].bytes, 0);
    let sizes = Catalog::read_with_sizes(&conn)
        .await
        .unwrap()
        .company_sizes();
    assert_eq!(sizes["CRONUS"].tables, 2);
    assert_eq!(sizes["CRONUS Canada, Inc."].tables, 1);
    let pages = |t: &str| format!("SELECT SUM(pgsize) FROM dbstat WHERE name = '{t}'");
    let cronus = db.int(&pages("CRONUS$Item")).await + db.int(&pages("CRONUS$Customer")).await;
    assert_eq!(sizes["CRONUS"].bytes, cronus);
    // 2,500 rows of 150 characters: at least that many bytes.
    assert!(cronus > 2500 * 150, "{cronus}");
    conn.close().await;
}

/// A PostgreSQL login whose settings put a schema of look-alike functions before
/// `pg_catalog` (`pg_total_relation_size` returning text, `format_type` returning an integer):
/// the catalog is read as usual, with the true sizes, never through those functions.
#[tokio::test]
async fn look_alike_functions_on_the_path_are_never_called() {
    let db = TestDb::new(Server::Postgres, "shadow").await;
    let name = db.url.rsplit('/').next().unwrap().to_string();
    db.exec(&format!(
        "CREATE SCHEMA shadow;\n\
         CREATE FUNCTION shadow.pg_total_relation_size(regclass) RETURNS text \
         LANGUAGE sql AS $$ SELECT 'huge'::text $$;\n\
         CREATE FUNCTION shadow.format_type(oid, integer) RETURNS integer \
         LANGUAGE sql AS $$ SELECT 42 $$;\n\
         CREATE FUNCTION shadow.quote_ident(text) RETURNS integer \
         LANGUAGE sql AS $$ SELECT 42 $$;\n\
         ALTER DATABASE \"{name}\" SET search_path = shadow, pg_catalog, public"
    ))
    .await;
    // New sessions take the setting: the tables go to the login's first schema, "shadow".
    db.exec(
        "CREATE TABLE \"Company\" (\"Name\" varchar(30) PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" varchar(50));\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'x' FROM generate_series(1, 500) g",
    )
    .await;
    let conn = db.connect().await;
    let catalog = Catalog::read(&conn).await.unwrap();
    conn.close().await;
    let item = catalog
        .tables
        .iter()
        .find(|t| t.def.name == "CRONUS$Item")
        .expect("the table in the login's schema is found");
    assert!(
        item.def.columns.iter().any(|c| c.name == "Text"),
        "{:?}",
        item.def
    );
    let sizes = catalog.company_sizes();
    assert_eq!(sizes["CRONUS"].tables, 1);
    assert_eq!(
        sizes["CRONUS"].bytes,
        db.int(
            "SELECT CAST(pg_catalog.pg_total_relation_size('shadow.\"CRONUS$Item\"') AS BIGINT)"
        )
        .await
    );
}
