//! A shared controller that a tenant cannot abuse: each attack a tenant can make from their own
//! namespace, tried against the real controller, and refused without touching anything past it.

use crate::api_server::TestNamespace;
use crate::controller::{Controller, ended, ok, request_run, wait_for};
use crate::scale::tempdir as folder;
use std::path::Path;

/// A SQLite file with a company and a table, made with `sql` after.
fn sqlite_file(path: &Path, sql: &[&'static str]) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let setup = [
            "CREATE TABLE \"Company\" (\"Name\" TEXT PRIMARY KEY)",
            "INSERT INTO \"Company\" VALUES ('CRONUS')",
            "CREATE TABLE \"CRONUS$Item\" (\"No_\" TEXT PRIMARY KEY, \"Description\" TEXT)",
            "INSERT INTO \"CRONUS$Item\" VALUES ('1000', 'Bicycle'), ('1001', 'Helmet')",
        ];
        for s in setup.iter().chain(sql).copied() {
            sqlx::query(s).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
}

fn sqlite_schedule(name: &str, source: &Path, target: &Path) -> String {
    format!(
        "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata: {{name: {name}}}\n\
         spec:\n  source: {{url: \"sqlite://{}\"}}\n  target: {{url: \"sqlite://{}\", \
         createMissingTables: true}}\n  runtime: {{runner: InProcess}}\n",
        source.display(),
        target.display()
    )
}

/// The controller opens no tenant's SQLite file outside the directories its operator names:
/// the schedule says so in the same words whether the file exists or not, a run copies
/// nothing, and neither file is touched or made.
#[test]
fn a_tenants_sqlite_path_outside_the_allowed_directories_is_never_opened() {
    let ns = TestNamespace::new("tenant-files");
    let (allowed, victim_dir) = (folder("allowed"), folder("victim"));
    let victim = victim_dir.join("payroll.db");
    sqlite_file(&victim, &[]);
    let before = std::fs::read(&victim).unwrap();
    let stolen = victim_dir.join("stolen.db");
    let allowed_arg = allowed.display().to_string();
    let controller = Controller::start_with(&ns.name, &["--sqlite-dir", &allowed_arg], "a");
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&sqlite_schedule("thief", &victim, &stolen)),
        ),
        "applying the schedule",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&sqlite_schedule(
                "prober",
                &victim_dir.join("missing.db"),
                &allowed.join("mine.db"),
            )),
        ),
        "applying the probing schedule",
    );
    let ready = "{.status.conditions[?(@.type==\"Ready\")].reason}|\
                 {.status.conditions[?(@.type==\"Ready\")].message}";
    let thief = wait_for(
        &ns,
        "msched/thief",
        ready,
        |s| s.starts_with("SourceUnreachable|"),
        &controller,
    );
    assert!(
        thief.contains("SQLite URL refused: the path is not under an allowed directory"),
        "{thief}"
    );
    let prober = wait_for(
        &ns,
        "msched/prober",
        ready,
        |s| s.starts_with("SourceUnreachable|"),
        &controller,
    );
    // Whether a file exists outside is not told.
    let words = |s: &str, path: &Path| s.replace(&path.display().to_string(), "PATH");
    assert_eq!(
        words(&thief, &victim),
        words(&prober, &victim_dir.join("missing.db"))
    );
    assert!(!thief.contains("exist"), "{thief}");

    // A run asked for anyway copies nothing and fails, naming the rule.
    request_run(&ns, "thief", "1");
    let run = wait_for(
        &ns,
        "msched/thief",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Failed");
    let why = ok(
        ns.kubectl(&["get", "mrun", &run, "-o", "yaml"], None),
        "the run",
    );
    assert!(why.contains("SQLite URL refused"), "{why}");
    assert_eq!(
        std::fs::read(&victim).unwrap(),
        before,
        "the victim's file changed"
    );
    for left in [
        "stolen.db",
        "payroll.db-wal",
        "payroll.db-shm",
        "missing.db",
    ] {
        assert!(!victim_dir.join(left).exists(), "{left} was made");
    }
    let _ = std::fs::remove_dir_all(&allowed);
    let _ = std::fs::remove_dir_all(&victim_dir);
}

/// Inside the allowed directory, a file whose `sqlite_stat1` holds a number where text
/// belongs (which once panicked the controller) migrates; the controller stays up.
#[test]
fn a_crafted_sqlite_statistics_table_neither_panics_nor_stops_the_controller() {
    let ns = TestNamespace::new("tenant-crafted");
    let dir = folder("crafted");
    let source = dir.join("crafted.db");
    sqlite_file(
        &source,
        &[
            "ANALYZE",
            "UPDATE sqlite_stat1 SET stat = 42",
            "INSERT INTO sqlite_stat1 VALUES (NULL, NULL, NULL)",
        ],
    );
    let dir_arg = dir.display().to_string();
    let mut controller = Controller::start_with(&ns.name, &["--sqlite-dir", &dir_arg], "a");
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&sqlite_schedule("crafted", &source, &dir.join("cloud.db"))),
        ),
        "applying the schedule",
    );
    request_run(&ns, "crafted", "1");
    let run = wait_for(
        &ns,
        "msched/crafted",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    assert!(controller.alive(), "the controller stopped");
    assert!(
        !controller.log().contains("panicked"),
        "{}",
        controller.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `runner: InProcess` runs a tenant's work inside the controller: only in the namespaces the
/// operator allows. Elsewhere the schedule says so, and a run made by hand ends before it
/// starts.
#[test]
fn the_in_process_runner_runs_only_where_the_operator_allows_it() {
    let ns = TestNamespace::new("tenant-runner");
    let dir = folder("runner");
    let source = dir.join("erp.db");
    sqlite_file(&source, &[]);
    let dir_arg = dir.display().to_string();
    let controller = Controller::start_with(
        &ns.name,
        &[
            "--sqlite-dir",
            &dir_arg,
            "--in-process-namespaces",
            "elsewhere",
        ],
        "a",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&sqlite_schedule("inside", &source, &dir.join("cloud.db"))),
        ),
        "applying the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/inside",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("RunnerNotAllowed|"),
        &controller,
    );
    assert!(ready.contains("set spec.runtime.runner: Job"), "{ready}");
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: by-hand}\n\
                 spec: {scheduleRef: {name: inside}}\n",
            ),
        ),
        "creating a run by hand",
    );
    assert_eq!(ended(&ns, "by-hand", &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "by-hand",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|{.status.startTime}",
            ],
            None,
        ),
        "the run",
    );
    assert_eq!(why, "RunnerNotAllowed|", "the run started");
    assert!(!dir.join("cloud.db").exists(), "the run wrote the target");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A CompanySelection's initialization steps run in the target as the runtime role, as runs
/// write, never as the admin: a step that tries to make a login role is refused, names the
/// database's refusal, and no role is made.
#[test]
fn initialization_steps_cannot_do_more_than_a_run() {
    use crate::controller::{database, psql, schedule_yaml};
    let ns = TestNamespace::new("tenant-steps");
    let (src, dst) = (database("st_src"), database("st_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY); INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Setup\" (\"Key\" int PRIMARY KEY, \"Owner\" text);\n\
         INSERT INTO \"CRONUS$Setup\" VALUES (1, 'on premises');",
    );
    let evil = format!(
        "evil_{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            & 0xff_ffff
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("steps", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    let selection = format!(
        "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {{name: pick}}\n\
         spec:\n  scheduleRef: {{name: steps}}\n  companies:\n\
         \x20 - {{name: CRONUS, initialization: Initialize}}\n\
         \x20 initializationSteps:\n\
         \x20 - name: owner\n\
         \x20   sql: 'UPDATE {{{{table:Setup}}}} SET \"Owner\" = {{{{company}}}}'\n\
         \x20 - name: takeover\n\
         \x20   sql: 'CREATE ROLE {evil} LOGIN'\n"
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&selection)),
        "applying the selection",
    );
    request_run(&ns, "steps", "1");
    let run = wait_for(
        &ns,
        "msched/steps",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    let failed = ns.wait_until(
        "csel/pick",
        "{.status.companies[?(@.name==\"CRONUS\")].initialization}|\
         {.status.companies[?(@.name==\"CRONUS\")].message}",
        |s| s.starts_with("Failed|"),
        || controller.log(),
    );
    assert!(
        failed.contains("takeover") && failed.contains("permission denied"),
        "{failed}"
    );
    assert_eq!(
        psql(
            &dst,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{evil}'")
        ),
        "0",
        "the step made a role"
    );
}

/// In the cluster a server's certificate is verified unless the schedule says otherwise: a
/// schedule without `tls` reaches a server with a private CA not at all, and says to give the
/// CA; the CA from a ConfigMap connects; `mode: Disable` on one side runs, with a warning that
/// names that side.
#[test]
fn a_server_certificate_is_verified_unless_the_schedule_turns_it_off_and_says_so() {
    use crate::controller::{database, next_run, pg, psql, schedule_yaml, test_ca_file};
    let ns = TestNamespace::new("tenant-tls");
    let (src, dst) = (database("tls_src"), database("tls_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1);",
    );
    let controller = Controller::start(&ns.name);
    let with_ca = schedule_yaml("tls", &src, &dst, "0 2 * * *");
    let no_tls = with_ca.replacen(", tls: {caSecretRef: {name: pg}}", "", 1);
    assert_ne!(no_tls, with_ca);
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&no_tls)),
        "applying the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/tls",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("SourceUnreachable|"),
        &controller,
    );
    assert!(
        ready.contains("not signed by a public CA (set tls.caSecretRef or tls.caConfigMapRef"),
        "{ready}"
    );
    assert!(!ready.contains(&pg().1), "the password is in the status");

    let ca = std::fs::read_to_string(test_ca_file()).unwrap();
    let config_map = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "db-ca"}, "data": {"ca.crt": ca},
    })
    .to_string();
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&config_map)),
        "the CA ConfigMap",
    );
    let yaml = with_ca
        .replacen(
            "tls: {caSecretRef: {name: pg}}",
            "tls: {caConfigMapRef: {name: db-ca}}",
            1,
        )
        .replacen("tls: {caSecretRef: {name: pg}}", "tls: {mode: Disable}", 1);
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let transport = wait_for(
        &ns,
        "msched/tls",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"TransportVerified\")].reason}|\
         {.status.conditions[?(@.type==\"TransportVerified\")].message}",
        |s| s.starts_with("Valid|"),
        &controller,
    );
    assert!(
        transport.starts_with("Valid|VerificationOff|spec.target.tls.mode is Disable:"),
        "{transport}"
    );
    assert!(!transport.contains("spec.source"), "{transport}");
    request_run(&ns, "tls", "1");
    let run = next_run(&ns, "tls", "", &controller);
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "1");
}

/// Two URLs that spell one server differently (`127.0.0.1` and `127.1`) are one target: the
/// newer schedule is in conflict once its probe has resolved the names, and both schedules
/// show the addresses in `status.endpoints`.
#[test]
fn a_target_spelled_another_way_is_the_same_target() {
    use crate::controller::{database, pg, psql, schedule_yaml};
    let ns = TestNamespace::new("tenant-alias");
    let (src_a, src_b, dst) = (
        database("alias_a"),
        database("alias_b"),
        database("alias_dst"),
    );
    psql(
        &src_a,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY);",
    );
    psql(
        &src_b,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY);",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("first", &src_a, &dst, "0 2 * * *")),
        ),
        "applying the first schedule",
    );
    let port = pg().0.rsplit(':').next().unwrap_or_default().to_string();
    let endpoint = format!("postgres://127.0.0.1:{port}/{dst}");
    wait_for(
        &ns,
        "msched/first",
        "{.status.conditions[?(@.type==\"Ready\")].status}|{.status.endpoints.target[*]}",
        |s| s.starts_with("True|") && s.contains(&endpoint),
        &controller,
    );
    let second = schedule_yaml("second", &src_b, &dst, "0 2 * * *").replacen(
        &format!("127.0.0.1:{port}/{dst}\", passwordSecretRef: {{name: pg}}, tls: {{caSecretRef"),
        &format!("127.1:{port}/{dst}\", passwordSecretRef: {{name: pg}}, tls: {{mode: VerifyCA, caSecretRef"),
        1,
    );
    assert!(second.contains("@127.1:"), "{second}");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&second)),
        "applying the second schedule",
    );
    let conflict = wait_for(
        &ns,
        "msched/second",
        "{.status.conditions[?(@.type==\"Conflict\")].status}|\
         {.status.conditions[?(@.type==\"Conflict\")].message}",
        |s| s.starts_with("True|"),
        &controller,
    );
    assert!(
        conflict.contains("\"first\" already writes to the same target database"),
        "{conflict}"
    );
    let first = ok(
        ns.kubectl(
            &[
                "get",
                "msched/first",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Conflict\")].status}",
            ],
            None,
        ),
        "the first schedule's Conflict",
    );
    assert_eq!(first, "False");
}
