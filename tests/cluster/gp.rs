//! A Dynamics GP source in the cluster: its companies are the system database's `SY01500`, each
//! a database of its own on the same server.

use super::api_server::TestNamespace;
use super::controller::{Controller, database, ok, psql, schedule_yaml};

/// A CompanySelection of a GP schedule lists the companies of `SY01500` with the sizes of their
/// own databases, and knows a selected one.
#[test]
fn a_gp_selection_lists_the_companies_of_sy01500_with_their_sizes() {
    let ns = TestNamespace::new("ctl-gp");
    let (system, dst) = (database("gp_sys"), database("gp_dst"));
    // INTERID is GP's char(5): company databases with short names of their own.
    let tag = format!(
        "{:04x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
            & 0xffff
    );
    let (fabrikam, contoso) = (format!("a{tag}"), format!("b{tag}"));
    for (db, tables) in [(&fabrikam, 2), (&contoso, 3)] {
        psql("postgres", &format!("CREATE DATABASE {db}"));
        let mut sql = String::from(
            "CREATE TABLE \"GL00100\" (\"ACTINDX\" integer PRIMARY KEY, \"ACTDESCR\" char(51) NOT NULL);\n\
             INSERT INTO \"GL00100\" SELECT i, 'Account ' || i FROM generate_series(1, 500) i;\n\
             CREATE TABLE \"RM00101\" (\"CUSTNMBR\" char(15) PRIMARY KEY, \"CUSTNAME\" char(65) NOT NULL);\n",
        );
        if tables == 3 {
            sql.push_str(
                "CREATE TABLE \"IV00101\" (\"ITEMNMBR\" char(31) PRIMARY KEY, \"CURRCOST\" numeric(19,5) NOT NULL);\n",
            );
        }
        sql.push_str("ANALYZE;");
        psql(db, &sql);
    }
    psql(
        &system,
        &format!(
            "CREATE TABLE \"SY01500\" (\"CMPANYID\" smallint PRIMARY KEY, \"CMPNYNAM\" char(65) NOT NULL, \
             \"INTERID\" char(5) NOT NULL);\n\
             INSERT INTO \"SY01500\" VALUES (-1, 'Fabrikam, Inc.', '{fabrikam}'), (2, 'Contoso GP', '{contoso}');"
        ),
    );
    let controller = Controller::start(&ns.name);
    let schedule = schedule_yaml("gp", &system, &dst, "0 2 * * *")
        .replace("spec:\n", "spec:\n  product: GP\n");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&schedule)),
        "applying the schedule",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {name: pick}\n\
                 spec:\n  scheduleRef: {name: gp}\n  companies:\n  - {name: \"Fabrikam, Inc.\", migrate: true}\n",
            ),
        ),
        "applying the selection",
    );
    let glance = ns.wait_until(
        "csel/pick",
        "{.status.companiesFound}|{.status.companiesSelected}|\
         {.status.conditions[?(@.type==\"Ready\")].status}|\
         {.status.companies[?(@.name==\"Fabrikam, Inc.\")].tables}|\
         {.status.companies[?(@.name==\"Contoso GP\")].tables}",
        |s| s.starts_with("2|"),
        || controller.log(),
    );
    assert_eq!(glance, "2|1|True|2|3");
    let bytes = ok(
        ns.kubectl(
            &[
                "get",
                "csel/pick",
                "-o",
                "jsonpath={.status.companies[?(@.name==\"Fabrikam, Inc.\")].estimatedBytes}",
            ],
            None,
        ),
        "the size",
    );
    assert!(
        bytes.parse::<i64>().unwrap() > 0,
        "Fabrikam's database has a size: {bytes}"
    );
}
