//! A Dynamics GP source in the cluster: its companies are the system database's `SY01500`, each
//! a database of its own on the same server.

use super::api_server::TestNamespace;
use super::controller::{
    Controller, database, ended, ok, psql, request_run, schedule_yaml, wait_for,
};

/// Two GP companies on the test PostgreSQL server, each a database with a short name of its
/// own (GP's `INTERID` is a char(5)): Fabrikam with `GL00100` (500 rows) and `RM00101`,
/// Contoso with `IV00101` too, both listed in `system`'s `SY01500`. Gives their databases'
/// names, and the tag in them.
fn gp_companies(system: &str) -> (String, String, String) {
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
        system,
        &format!(
            "CREATE TABLE \"SY01500\" (\"CMPANYID\" smallint PRIMARY KEY, \"CMPNYNAM\" char(65) NOT NULL, \
             \"INTERID\" char(5) NOT NULL);\n\
             INSERT INTO \"SY01500\" VALUES (-1, 'Fabrikam, Inc.', '{fabrikam}'), (2, 'Contoso GP', '{contoso}');"
        ),
    );
    (fabrikam, contoso, tag)
}

/// A CompanySelection of a GP schedule lists the companies of `SY01500` with the sizes of their
/// own databases, and knows a selected one.
#[test]
fn a_gp_selection_lists_the_companies_of_sy01500_with_their_sizes() {
    let ns = TestNamespace::new("ctl-gp");
    let (system, dst) = (database("gp_sys"), database("gp_dst"));
    gp_companies(&system);
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
    // Initialization knows Business Central companies: asked of a GP one, it is refused.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {name: pick}\n\
                 spec:\n  scheduleRef: {name: gp}\n  companies:\n  - {name: \"Fabrikam, Inc.\", migrate: true, initialization: Initialize}\n",
            ),
        ),
        "asking for an initialization",
    );
    let refused = ns.wait_until(
        "csel/pick",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|{.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("NotForDynamicsGP|"),
        || controller.log(),
    );
    assert!(refused.contains("\"Fabrikam, Inc.\""), "{refused}");
}

/// Runs SQL with the MariaDB client in a database of the test MariaDB server (`None`: none).
fn mariadb(db: Option<&str>, sql: &str) -> String {
    let url =
        std::env::var("CLOUDMIGRATE_TEST_MYSQL_URL").expect("run the tests with tests/run.sh");
    let u = url::Url::parse(&url).unwrap();
    let mut cmd = std::process::Command::new("mariadb");
    cmd.args(["-N", "-B", "-h", "127.0.0.1", "-u", u.username()])
        .arg(format!("--port={}", u.port().unwrap()))
        .env("MYSQL_PWD", crate::controller::pg().1);
    if let Some(db) = db {
        cmd.arg(db);
    }
    let out = cmd.arg("-e").arg(sql).output().expect("the mariadb client");
    assert!(
        out.status.success(),
        "mariadb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A GP schedule into a MariaDB target in the cluster: the system database goes into the
/// target's, the selected company's database into the database of its name on the target's
/// server, written as the schedule's runtime role, which the controller granted its tables in
/// both; a CloudReset clears both.
#[test]
fn a_gp_run_writes_each_company_database_as_the_runtime_role_and_a_reset_clears_it() {
    let ns = TestNamespace::new("ctl-gpdb");
    let system = database("gpdb_sys");
    let (fabrikam, _, tag) = gp_companies(&system);
    // The cloud: a system database, and Fabrikam's database under its name.
    let target = format!("gpdb_dst_{tag}");
    mariadb(
        None,
        &format!("CREATE DATABASE `{target}`; CREATE DATABASE `{fabrikam}`;"),
    );
    let controller = Controller::start(&ns.name);
    let my = std::env::var("CLOUDMIGRATE_TEST_MYSQL_URL").unwrap();
    let my_base = my.rsplit_once('/').unwrap().0;
    let (pg_base, _) = crate::controller::pg();
    let name = crate::controller::role_safe_name("gpdb");
    let schedule = schedule_yaml(&name, &system, "unused", "0 2 * * *")
        .replace("spec:\n", "spec:\n  product: GP\n")
        .replace(&format!("{pg_base}/unused"), &format!("{my_base}/{target}"));
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&schedule)),
        "applying the schedule",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {{name: pick}}\n\
                 spec:\n  scheduleRef: {{name: {name}}}\n  companies:\n  - {{name: \"Fabrikam, Inc.\", migrate: true}}\n"
            )),
        ),
        "applying the selection",
    );
    wait_for(
        &ns,
        "csel/pick",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    request_run(&ns, &name, "1");
    let run = wait_for(
        &ns,
        &format!("msched/{name}"),
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    let gl = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.status.tables[?(@.table==\"GL00100\")].company}",
            ],
            None,
        ),
        "the run's tables",
    );
    let all = ok(
        ns.kubectl(
            &["get", "mrun", &run, "-o", "jsonpath={.status.tables}"],
            None,
        ),
        "the run's tables",
    );
    assert_eq!(gl, "Fabrikam, Inc.", "{all}");
    assert_eq!(
        mariadb(Some(&fabrikam), "SELECT COUNT(*) FROM `GL00100`"),
        "500"
    );
    assert_eq!(
        mariadb(Some(&target), "SELECT COUNT(*) FROM `SY01500`"),
        "2"
    );
    // The run wrote as the runtime role, which may write the company's table.
    let role = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                &name,
                "-o",
                "jsonpath={.status.runtime.keyRole}",
            ],
            None,
        ),
        "the role",
    );
    let grants = mariadb(None, &format!("SHOW GRANTS FOR '{role}'@'%'"));
    assert!(
        grants.contains(&format!("`{fabrikam}`.`GL00100`")),
        "{grants}"
    );
    // The tiles count the company database's tables beside the system database's: SY01500,
    // and Fabrikam's GL00100 and RM00101, each made in the cloud (a warning) or copied.
    wait_for(
        &ns,
        &format!("msched/{name}"),
        "{.status.migration.tablesMigrated} {.status.migration.tablesWithWarnings} \
         {.status.migration.tablesFailed}",
        |s| {
            let n: Vec<i64> = s
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            n.len() == 3 && n[0] + n[1] == 3 && n[2] == 0
        },
        &controller,
    );

    // A reset clears the company's database too.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&format!(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: CloudReset\nmetadata: {{name: again}}\n\
                 spec: {{scheduleRef: {{name: {name}}}, confirm: {name}}}\n"
            )),
        ),
        "the reset",
    );
    let reset = wait_for(
        &ns,
        "cloudreset/again",
        "{.status.conditions[?(@.type==\"Succeeded\")].reason}",
        |s| s == "Reset" || s == "Failed",
        &controller,
    );
    assert_eq!(reset, "Reset");
    assert_eq!(
        mariadb(Some(&fabrikam), "SELECT COUNT(*) FROM `GL00100`"),
        "0"
    );
    assert_eq!(
        mariadb(Some(&target), "SELECT COUNT(*) FROM `SY01500`"),
        "0"
    );
}
