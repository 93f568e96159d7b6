//! The controller end to end: the real `cloudmigrate controller` process, the real API server,
//! kubectl, and real PostgreSQL databases, with the in-process runner.

use crate::api_server::{Kubectl, TestNamespace};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with tests/run.sh, which starts the databases")
    })
}

/// The test PostgreSQL server's URL without a database, and its password.
pub(crate) fn pg() -> (String, String) {
    let url = env("CLOUDMIGRATE_TEST_PG_URL");
    let base = url.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap();
    (base, env("CLOUDMIGRATE_TEST_DB_PASSWORD"))
}

/// The CA that signed the test servers' certificates, which the test script writes.
pub(crate) fn test_ca_file() -> String {
    env("CLOUDMIGRATE_TEST_CA_FILE")
}

/// Runs SQL with psql in a database of the test server.
pub(crate) fn psql(db: &str, sql: &str) -> String {
    try_psql(db, sql).unwrap_or_else(|e| panic!("psql failed: {e}"))
}

/// Runs SQL with psql; the error is psql's message.
fn try_psql(db: &str, sql: &str) -> Result<String, String> {
    let (base, password) = pg();
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("{base}/{db}"))
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", password)
        .output()
        .expect("psql must be on PATH");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A fresh database on the test server; its URL carries no password.
pub(crate) fn database(label: &str) -> String {
    let name = format!(
        "{label}_{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            & 0xffff_ffff
    );
    psql("postgres", &format!("CREATE DATABASE {name}"));
    name
}

/// A schedule name of its own, for tests whose schedule makes a login role: roles belong to the
/// server, so a second run of the tests on one server must find no role of the first.
pub(crate) fn role_safe_name(label: &str) -> String {
    format!(
        "{label}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
            & 0xff_ffff
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `cloudmigrate controller` process watching one namespace. The database password reaches
/// it and its workers only from the Secret `pg` in that namespace, which `start` creates, as a
/// schedule's `passwordSecretRef` names it: the process has no PGPASSWORD.
pub(crate) struct Controller {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

/// The Secret `pg` with the test server's password under `password`, and the CA that signed
/// the test servers' certificates under `ca.crt`.
fn password_secret(ns: &str) {
    let ca = std::fs::read_to_string(test_ca_file()).expect("the test CA file");
    let secret = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "pg", "namespace": ns},
        "stringData": {"password": pg().1, "ca.crt": ca},
    })
    .to_string();
    crate::api_server::kubectl(&["apply", "-f", "-"], Some(&secret))
        .expect_ok("creating the password Secret");
}

impl Controller {
    pub(crate) fn start(ns: &str) -> Self {
        Self::start_with(ns, &[], "a")
    }

    pub(crate) fn start_with(ns: &str, extra: &[&str], identity: &str) -> Self {
        Self::start_as(
            ns,
            extra,
            identity,
            &std::env::var("KUBECONFIG").unwrap_or_default(),
        )
    }

    /// A controller that reaches the API server as the client of `kubeconfig`.
    fn start_as(ns: &str, extra: &[&str], identity: &str, kubeconfig: &str) -> Self {
        let port = free_port();
        password_secret(ns);
        let log = std::env::temp_dir().join(format!("cloudmigrate-controller-{ns}-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
            .args(["controller", "--namespace", ns, "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            // The operator lets the test's tenant run in-process, unless the test says where.
            .args(if extra.contains(&"--in-process-namespaces") {
                vec![]
            } else {
                vec!["--in-process-namespaces", ns]
            })
            .args(extra)
            .env("POD_NAME", identity)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("PGPASSWORD")
            .env("RUST_LOG", "info,sqlx=error")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, port, log }
    }

    fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                return out;
            }
            assert!(Instant::now() < deadline, "the controller serves no {path}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
        // A failed test keeps the controller's log for reading; a passed one leaves no file.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Polls `jsonpath` of an object until `done` accepts it; a timeout shows the controller's log.
pub(crate) fn wait_for(
    ns: &TestNamespace,
    object: &str,
    jsonpath: &str,
    done: impl Fn(&str) -> bool,
    controller: &Controller,
) -> String {
    ns.wait_until(object, jsonpath, done, || {
        format!("controller log:\n{}", controller.log())
    })
}

pub(crate) fn schedule_yaml(name: &str, src: &str, dst: &str, cron: &str) -> String {
    let (base, _) = pg();
    format!(
        "apiVersion: cloudmigrate.io/v1alpha1\n\
         kind: MigrationSchedule\n\
         metadata: {{name: {name}}}\n\
         spec:\n\
         \x20 source: {{url: \"{base}/{src}\", passwordSecretRef: {{name: pg}}, tls: {{caSecretRef: {{name: pg}}}}}}\n\
         \x20 target: {{url: \"{base}/{dst}\", passwordSecretRef: {{name: pg}}, tls: {{caSecretRef: {{name: pg}}}}, createMissingTables: true}}\n\
         \x20 schedule: \"{cron}\"\n\
         \x20 timeZone: Europe/Berlin\n\
         \x20 runtime: {{runner: InProcess}}\n"
    )
}

/// SQL that makes `count` ledger tables of `rows` rows each: `CRONUS$Ledger 0`, ...
pub(crate) fn ledgers(count: usize, rows: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "CREATE TABLE \"CRONUS$Ledger {i}\" (\"Entry No_\" int PRIMARY KEY, \"Text\" text);\n\
                 INSERT INTO \"CRONUS$Ledger {i}\" SELECT g, repeat('x', 40) || g FROM generate_series(1, {rows}) g;\n"
            )
        })
        .collect()
}

/// Waits until the schedule's active run has a worker at work, and names that run.
pub(crate) fn running(ns: &TestNamespace, schedule: &str, controller: &Controller) -> String {
    let run = wait_for(
        ns,
        &format!("msched/{schedule}"),
        "{.status.activeRun}",
        |s| !s.is_empty(),
        controller,
    );
    wait_for(
        ns,
        &format!("mrun/{run}"),
        "{.status.workers[0].phase}",
        |s| s == "Running",
        controller,
    );
    run
}

/// Run Migration Now: a new `spec.runRequest` token.
pub(crate) fn request_run(ns: &TestNamespace, schedule: &str, token: &str) {
    let patch = format!(r#"{{"spec":{{"runRequest":"{token}"}}}}"#);
    ok(
        ns.kubectl(
            &["patch", "msched", schedule, "--type=merge", "-p", &patch],
            None,
        ),
        "requesting a run",
    );
}

pub(crate) fn runs(ns: &TestNamespace) -> Vec<String> {
    ns.kubectl(&["get", "mrun", "-o", "name"], None)
        .expect_ok("listing runs")
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asks a run to stop: its `spec.stop`.
pub(crate) fn stop_run(ns: &TestNamespace, run: &str) {
    ok(
        ns.kubectl(
            &[
                "patch",
                "mrun",
                run,
                "--type=merge",
                "-p",
                r#"{"spec":{"stop":true}}"#,
            ],
            None,
        ),
        "stopping the run",
    );
}

pub(crate) fn ok(out: Kubectl, what: &str) -> String {
    out.expect_ok(what)
}

#[test]
fn a_run_request_runs_and_every_table_shows_in_kubectl() {
    let ns = TestNamespace::new("ctl-run");
    let (src, dst) = (database("ctl_src"), database("ctl_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" varchar(30) PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" varchar(20) PRIMARY KEY, \"Description\" varchar(100));\n\
         INSERT INTO \"CRONUS$Item\" SELECT i::text, 'item ' || i FROM generate_series(1, 1000) i;\n\
         CREATE TABLE \"CRONUS$Customer\" (\"No_\" varchar(20) PRIMARY KEY, \"Name\" varchar(200));\n\
         INSERT INTO \"CRONUS$Customer\" VALUES ('C1', repeat('x', 150));\n\
         CREATE TABLE \"CRONUS$Access Control\" (\"User\" varchar(50) PRIMARY KEY)",
    );
    // The cloud has its schema, with one column narrower than on-premises.
    psql(
        &dst,
        "CREATE TABLE \"Company\" (\"Name\" varchar(30) PRIMARY KEY);\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" varchar(20) PRIMARY KEY, \"Description\" varchar(100));\n\
         CREATE TABLE \"CRONUS$Customer\" (\"No_\" varchar(20) PRIMARY KEY, \"Name\" varchar(50))",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            // Keep one run that did not fully succeed: the second run prunes the first.
            Some(&(schedule_yaml("erp", &src, &dst, "0 2 * * *") + "  history: {failed: 1}\n")),
        ),
        "applying the schedule",
    );
    // Ready, with the next run in the schedule's zone, and no run yet.
    wait_for(
        &ns,
        "msched/erp",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    let next = wait_for(
        &ns,
        "msched/erp",
        "{.status.nextRunTime}",
        |s| !s.is_empty(),
        &controller,
    );
    assert!(
        next.ends_with("T02:00:00+01:00") || next.ends_with("T02:00:00+02:00"),
        "{next}"
    );
    assert!(runs(&ns).is_empty());

    // Run Migration Now.
    request_run(&ns, "erp", "now-1");
    let result = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.result}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(result, "PartiallySucceeded");
    let names = runs(&ns);
    assert_eq!(names.len(), 1, "{names:?}");
    let run = names[0]
        .trim_start_matches("migrationrun.cloudmigrate.io/")
        .to_string();
    assert!(run.starts_with("erp-"), "{run}");
    assert_eq!(
        wait_for(
            &ns,
            "msched/erp",
            "{.status.lastHandledRunRequest}",
            |s| !s.is_empty(),
            &controller
        ),
        "now-1"
    );

    // kubectl get shows the results and the counts.
    let get_runs = ok(ns.kubectl(&["get", "mrun"], None), "kubectl get mrun");
    assert!(get_runs.contains("PartiallySucceeded"), "{get_runs}");
    assert!(get_runs.contains("4/4"), "{get_runs}");
    let get_sched = ok(ns.kubectl(&["get", "msched"], None), "kubectl get msched");
    let row: Vec<&str> = get_sched
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    // NAME, SCHEDULE (5 words), SUSPENDED, LAST RUN, RESULT, MIGRATED, FAILED, NEXT RUN, AGE
    assert_eq!(
        &row[6..11],
        &["false", run.as_str(), "PartiallySucceeded", "2", "1"],
        "{get_sched}"
    );

    // -o yaml shows every table, and the failing one says why and what to do.
    let yaml = ok(
        ns.kubectl(&["get", "mrun", &run, "-o", "yaml"], None),
        "kubectl get -o yaml",
    );
    for table in [
        "table: Item",
        "table: Company",
        "table: Customer",
        "table: Access Control",
    ] {
        assert!(yaml.contains(table), "{table} missing:\n{yaml}");
    }
    let failed = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.status.tables[?(@.result==\"Failed\")]}",
            ],
            None,
        ),
        "the failed table",
    );
    assert!(failed.contains("value too long for column"), "{failed}");
    assert!(failed.contains("widen the cloud column"), "{failed}");
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "1000");

    // The complete table log, from the target.
    let show = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args(["runs", "show", &format!("{}/{run}", ns.name)])
        .env("CLOUDMIGRATE_TARGET_PASSWORD", pg().1)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&show.stderr)
    );
    for needle in [
        "Item",
        "Company",
        "Access Control",
        "value too long",
        "PartiallySucceeded (4 tables",
    ] {
        assert!(out.contains(needle), "{needle} missing:\n{out}");
    }

    // A second request: the next run copies only what changed.
    psql(
        &src,
        "UPDATE \"CRONUS$Item\" SET \"Description\" = 'changed' WHERE \"No_\" = '7'",
    );
    request_run(&ns, "erp", "now-2");
    wait_for(
        &ns,
        "msched/erp",
        "{.status.lastHandledRunRequest}",
        |s| s == "now-2",
        &controller,
    );
    let second = wait_for(
        &ns,
        "msched/erp",
        "{.status.lastRun.name}",
        |s| s != run,
        &controller,
    );
    wait_for(
        &ns,
        &format!("mrun/{second}"),
        "{.status.result}",
        |s| !s.is_empty(),
        &controller,
    );
    let item = ok(
        ns.kubectl(
            &["get", "mrun", &second, "-o", "jsonpath={.status.tables[?(@.table==\"Item\")].mode} {.status.tables[?(@.table==\"Item\")].updated}"],
            None,
        ),
        "the second run's Item",
    );
    assert_eq!(item, "Incremental 1");
    // History: both runs PartiallySucceeded, and only one such run is kept.
    let deadline = Instant::now() + Duration::from_secs(60);
    while runs(&ns).len() > 1 {
        assert!(Instant::now() < deadline, "the first run was never pruned");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        runs(&ns),
        vec![format!("migrationrun.cloudmigrate.io/{second}")]
    );

    // Metrics and health.
    let metrics = controller.get("/metrics");
    assert!(
        metrics.contains("cloudmigrate_runs_total{result=\"PartiallySucceeded\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cloudmigrate_reconciles_total{kind=\"MigrationRun\"}"),
        "{metrics}"
    );
    assert!(
        controller.get("/healthz").starts_with("HTTP/1.0 200")
            || controller.get("/healthz").starts_with("HTTP/1.1 200")
    );
    assert!(controller.get("/readyz").contains("ready"));
    // The password is nowhere in what the controller wrote.
    let password = pg().1;
    assert!(!controller.log().contains(&password));
    assert!(!yaml.contains(&password));
}

#[test]
fn an_invalid_cron_shows_ready_false_with_the_fix() {
    let ns = TestNamespace::new("ctl-cron");
    let (src, dst) = (database("cr_src"), database("cr_dst"));
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("bad", &src, &dst, "0 2 * *")),
        ),
        "applying the schedule",
    );
    let reason = wait_for(
        &ns,
        "msched/bad",
        "{.status.conditions[?(@.type==\"Ready\")].reason}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(reason, "InvalidSchedule");
    let message = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                "bad",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
            ],
            None,
        ),
        "the Ready message",
    );
    assert!(message.contains("it needs 5"), "{message}");
    assert!(message.contains("0 2 * * *"), "{message}");
    // Fixing it makes the schedule ready.
    ok(
        ns.kubectl(
            &[
                "patch",
                "msched",
                "bad",
                "--type=merge",
                "-p",
                r#"{"spec":{"schedule":"0 2 * * *"}}"#,
            ],
            None,
        ),
        "fixing the cron",
    );
    wait_for(
        &ns,
        "msched/bad",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
}

#[test]
fn a_controller_killed_mid_run_neither_duplicates_nor_loses_the_run() {
    let ns = TestNamespace::new("ctl-kill");
    let (src, dst) = (database("kill_src"), database("kill_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$G_L Entry\" (\"Entry No_\" bigint PRIMARY KEY, \"Description\" text, \"Amount\" numeric(38,20));\n\
         INSERT INTO \"CRONUS$G_L Entry\" SELECT i, repeat('entry ', 20) || i, i / 7.0 FROM generate_series(1, 600000) i",
    );
    let mut controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("big", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    request_run(&ns, "big", "go");
    let run = running(&ns, "big", &controller);
    controller.kill();
    let killed_log = controller.log();
    assert!(
        !killed_log.contains("worker finished"),
        "the run ended before the kill:\n{killed_log}"
    );

    let controller = Controller::start(&ns.name);
    let result = wait_for(
        &ns,
        &format!("mrun/{run}"),
        "{.status.result}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(result, "Succeeded", "{}", controller.log());
    let attempts = ok(
        ns.kubectl(
            &["get", "mrun", &run, "-o", "jsonpath={.status.attempts}"],
            None,
        ),
        "attempts",
    );
    assert_eq!(attempts, "2");
    assert_eq!(runs(&ns).len(), 1, "a duplicate run was created");
    assert_eq!(
        psql(
            &dst,
            "SELECT count(*), sum(\"Amount\") FROM \"CRONUS$G_L Entry\""
        ),
        psql(
            &src,
            "SELECT count(*), sum(\"Amount\") FROM \"CRONUS$G_L Entry\""
        )
    );
}

/// The Job runner, end to end: the controller creates an indexed Job of two workers; the test
/// API server's Job executor runs each as a `cloudmigrate replicate` process, with the pod's
/// environment; they share the tables (each copied exactly once), and their status writes (two
/// field managers, server-side apply) merge instead of overwriting each other.
#[test]
fn a_job_of_two_workers_shares_a_run_and_both_show_in_its_status() {
    let ns = TestNamespace::new("ctl-workers");
    let (src, dst) = (database("wk_src"), database("wk_dst"));
    let mut sql = String::new();
    for i in 0..8 {
        sql.push_str(&format!(
            "CREATE TABLE \"CRONUS$Table {i}\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
             INSERT INTO \"CRONUS$Table {i}\" SELECT g, 'row ' || g FROM generate_series(1, {}) g;\n",
            1000 * (i + 1)
        ));
    }
    psql(&src, &sql);
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("shared", &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: Job, workers: 2");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: by-hand}\n\
                 spec: {scheduleRef: {name: shared}}\n",
            ),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, "by-hand", &controller), "Succeeded");
    let jobs = ok(ns.kubectl(&["get", "jobs"], None), "kubectl get jobs");
    assert!(
        jobs.contains("by-hand-1") && jobs.contains("Complete") && jobs.contains("2/2"),
        "{jobs}"
    );
    assert_eq!(
        ok(
            ns.kubectl(
                &[
                    "get",
                    "job",
                    "by-hand-1",
                    "-o",
                    "jsonpath={.status.completedIndexes}"
                ],
                None
            ),
            "the Job's indexes"
        ),
        "0-1"
    );
    // Each table was claimed by one worker, and both workers took some. (A `#worker-N` row
    // marks a worker that joined.)
    assert_eq!(
        psql(
            &dst,
            "SELECT count(*), count(DISTINCT table_name), count(DISTINCT worker) \
             FROM cloudmigrate_run_claims WHERE table_name NOT LIKE '#%'"
        ),
        "8|8|2"
    );
    let phases = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "by-hand",
                "-o",
                "jsonpath={.status.workers[*].phase}",
            ],
            None,
        ),
        "the workers",
    );
    assert_eq!(phases, "Finished Finished");
    let totals = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "by-hand",
                "-o",
                "jsonpath={.status.workers[*].tablesDone}",
            ],
            None,
        ),
        "the shares",
    );
    let shares: Vec<i64> = totals
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(shares.iter().sum::<i64>(), 8, "{totals}");
    assert!(
        shares.iter().all(|n| *n >= 3),
        "an unbalanced split: {totals}"
    );
    let results = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "by-hand",
                "-o",
                "jsonpath={.status.tables[*].result}",
            ],
            None,
        ),
        "the tables",
    );
    // Created in the cloud from the on-premises definition: a warning each.
    let warnings = results
        .split_whitespace()
        .filter(|r| *r == "Warning")
        .count();
    assert_eq!(warnings, 8, "{results}");
    for i in 0..8 {
        assert_eq!(
            psql(&dst, &format!("SELECT count(*) FROM \"CRONUS$Table {i}\"")),
            (1000 * (i + 1)).to_string()
        );
    }
    // The Job as the controller sent it and the executor completed it: a valid batch/v1 Job.
    let job: serde_json::Value = serde_json::from_str(&ok(
        ns.kubectl(&["get", "job", "by-hand-1", "-o", "json"], None),
        "the Job",
    ))
    .unwrap();
    crate::api_server::validate_strictly(&[job]).unwrap_or_else(|e| panic!("the Job: {e}"));

    // The run is the person's: deleting the schedule leaves it, with its Job (which the run
    // owns); deleting the run deletes the Job.
    ok(
        ns.kubectl(&["delete", "msched", "shared"], None),
        "deleting the schedule",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        ok(
            ns.kubectl(&["get", "mrun,jobs", "-o", "name"], None),
            "what is left"
        )
        .trim(),
        "migrationrun.cloudmigrate.io/by-hand\njob.batch/by-hand-1"
    );
    ok(
        ns.kubectl(&["delete", "mrun", "by-hand"], None),
        "deleting the run",
    );
    wait_for(
        &ns,
        "mrun,jobs",
        "{.items[*].metadata.name}",
        |s| s.is_empty(),
        &controller,
    );
}

/// The pid of a process whose command line holds `args`, in order.
fn process_with(args: &[&str]) -> Option<u32> {
    let wanted = args.join("\0");
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&wanted)
            .then_some(pid)
    })
}

/// A Job's worker killed mid-run is replaced, as a Job replaces a failed pod, up to the Job's
/// backoffLimit; then the Job fails, and the run ends Failed with the Job's reason.
#[test]
fn a_job_whose_worker_is_killed_is_retried_then_fails_the_run_with_the_reason() {
    let ns = TestNamespace::new("ctl-killed");
    let (src, dst) = (database("kw_src"), database("kw_dst"));
    psql(&src, &ledgers(2, 50_000));
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("killed", &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: Job, backoffLimit: 1");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    request_run(&ns, "killed", "1");
    let run = wait_for(
        &ns,
        "msched/killed",
        "{.status.activeRun}",
        |s| !s.is_empty(),
        &controller,
    );
    let target = format!("{}/{run}", ns.name);
    let mut killed = vec![];
    for _ in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(60);
        let pid = loop {
            match process_with(&["replicate", "--run", &target]) {
                Some(pid) if !killed.contains(&pid) => break pid,
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "no worker of {target} ran:\n{}",
                controller.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        killed.push(pid);
    }
    assert_eq!(ended(&ns, &run, &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|\
                 {.status.conditions[?(@.type==\"Succeeded\")].message}|{.status.attempts}",
            ],
            None,
        ),
        "the run's reason",
    );
    assert!(why.starts_with("RunnerFailed|"), "{why}");
    assert!(
        why.contains(&format!("Job {run}-1 failed (BackoffLimitExceeded)")),
        "{why}"
    );
    // The Job had its retries: no second attempt of the run.
    assert!(why.ends_with("|1"), "{why}");
    assert_eq!(
        ok(
            ns.kubectl(
                &[
                    "get",
                    "job",
                    &format!("{run}-1"),
                    "-o",
                    "jsonpath={.status.failed}"
                ],
                None
            ),
            "the Job's failures"
        ),
        "2"
    );
}

/// A run whose Job the API server refuses (here: a run name too long for the labels of the
/// Job's pods) says why on the run, goes again up to its limit, and ends Failed with the reason.
#[test]
fn a_run_whose_job_is_refused_says_why_and_fails() {
    let ns = TestNamespace::new("ctl-refused");
    let (src, dst) = (database("rf_src"), database("rf_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY)",
    );
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("refused", &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: Job, backoffLimit: 1");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let name = "a-run-whose-name-is-far-too-long-for-the-pod-labels-of-its-job";
    assert!(name.len() > 61);
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {{name: {name}}}\n\
                 spec: {{scheduleRef: {{name: refused}}}}\n"
            )),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, name, &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|\
                 {.status.conditions[?(@.type==\"Succeeded\")].message}|{.status.attempts}",
            ],
            None,
        ),
        "the run's reason",
    );
    assert!(why.starts_with("RunnerRefused|"), "{why}");
    assert!(why.contains("must be no more than 63"), "{why}");
    assert!(why.contains("a name of at most 61 characters"), "{why}");
    assert!(why.ends_with("|2"), "{why}");
    let jobs = ns.kubectl(&["get", "jobs", "-o", "name"], None);
    assert_eq!(jobs.stdout.trim(), "", "{}", jobs.stderr);
    let events = ok(ns.kubectl(&["get", "events"], None), "kubectl get events");
    assert!(events.contains("RunnerRefused"), "{events}");
    drop(controller);

    // A controller that may not create Jobs, as RBAC could leave it: the local API server's
    // kubeconfig-no-jobs is such a client.
    let kubeconfig = std::path::Path::new(&env("KUBECONFIG")).with_file_name("kubeconfig-no-jobs");
    assert!(
        kubeconfig.exists(),
        "{} is missing: this part needs the local API server (tests/run.sh without KUBECONFIG)",
        kubeconfig.display()
    );
    let controller = Controller::start_as(&ns.name, &[], "no-jobs", kubeconfig.to_str().unwrap());
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: forbidden}\n\
                 spec: {scheduleRef: {name: refused}}\n",
            ),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, "forbidden", &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "forbidden",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|\
                 {.status.conditions[?(@.type==\"Succeeded\")].message}",
            ],
            None,
        ),
        "the run's reason",
    );
    assert!(why.starts_with("RunnerRefused|"), "{why}");
    assert!(
        why.contains("(403)") && why.contains("cannot create resource \"jobs\""),
        "{why}"
    );
    assert!(why.contains("service account create on jobs"), "{why}");
}

/// Passwords come only from the Secret that passwordSecretRef names: a missing Secret, or a
/// missing key, fails the run with a condition that names it, and no value shows anywhere.
/// (A Job's pods get their passwords through their env and may not read Secrets here: the Job
/// tests cover that path, and `runner::passwords` the message of a key missing in a pod.)
#[test]
fn a_missing_password_secret_or_key_is_named_in_the_runs_condition() {
    let ns = TestNamespace::new("ctl-secret");
    let (src, dst) = (database("ps_src"), database("ps_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY)",
    );
    let controller = Controller::start(&ns.name);
    let mut previous = String::new();
    for (token, secret_ref, expected) in [
        (
            "1",
            "{name: nowhere}",
            format!(
                "Secret \\\"nowhere\\\" does not exist in namespace \\\"{}\\\"",
                ns.name
            ),
        ),
        (
            "2",
            "{name: pg, key: other}",
            "Secret \\\"pg\\\" has no key \\\"other\\\"".to_string(),
        ),
    ] {
        let yaml = schedule_yaml("secret", &src, &dst, "0 2 * * *").replacen(
            "passwordSecretRef: {name: pg}",
            &format!("passwordSecretRef: {secret_ref}"),
            1,
        );
        ok(
            ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
            "applying the schedule",
        );
        request_run(&ns, "secret", token);
        let run = wait_for(
            &ns,
            "msched/secret",
            "{.status.lastHandledRunRequest}|{.status.lastRun.name}",
            |s| s.starts_with(&format!("{token}|")) && !s.ends_with(&format!("|{previous}")),
            &controller,
        );
        let run = run.split_once('|').unwrap().1.to_string();
        previous = run.clone();
        assert_eq!(ended(&ns, &run, &controller), "Failed");
        let status = ok(
            ns.kubectl(&["get", "mrun", &run, "-o", "json"], None),
            "the run",
        );
        assert!(status.contains(&expected), "{expected} not in {status}");
        assert!(
            !status.contains(&pg().1),
            "the password is in the run's status"
        );
    }
    assert!(
        !controller.log().contains(&pg().1),
        "the password is in the log"
    );
}

/// A CompanySelection of two of three companies: the run the schedule creates names them in
/// its spec, and copies their tables and the per-database tables, and nothing of the third.
/// A selection of none stops the schedule, saying why.
#[test]
fn a_run_copies_only_the_selected_companies_and_the_per_database_tables() {
    let ns = TestNamespace::new("ctl-companies");
    let (src, dst) = (database("co_src"), database("co_dst"));
    let mut sql = String::from(
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS'), ('FABRIKAM'), ('ADATUM');\n\
         CREATE TABLE \"Media\" (\"Id\" int PRIMARY KEY); INSERT INTO \"Media\" VALUES (1);\n",
    );
    for company in ["CRONUS", "FABRIKAM", "ADATUM"] {
        sql.push_str(&format!(
            "CREATE TABLE \"{company}$Item\" (\"No_\" int PRIMARY KEY);\n\
             INSERT INTO \"{company}$Item\" VALUES (1), (2);\n"
        ));
    }
    psql(&src, &sql);
    let controller = Controller::start(&ns.name);
    let selection = |migrate_adatum: &str, migrate_others: &str| {
        format!(
            "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {{name: pick}}\n\
             spec:\n  scheduleRef: {{name: picked}}\n  companies:\n\
             \x20 - {{name: CRONUS, migrate: {migrate_others}, initialization: Initialize}}\n\
             \x20 - {{name: FABRIKAM, migrate: {migrate_others}}}\n\
             \x20 - {{name: ADATUM, migrate: {migrate_adatum}}}\n"
        )
    };
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&selection("false", "true"))),
        "applying the selection",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("picked", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    request_run(&ns, "picked", "1");
    let run = wait_for(
        &ns,
        "msched/picked",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    assert_eq!(
        ok(
            ns.kubectl(
                &["get", "mrun", &run, "-o", "jsonpath={.spec.companies[*]}"],
                None
            ),
            "the run's companies"
        ),
        "CRONUS FABRIKAM"
    );
    let copied = psql(
        &dst,
        "SELECT string_agg(table_name, ',' ORDER BY table_name COLLATE \"C\") FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_name NOT LIKE 'cloudmigrate%'",
    );
    assert_eq!(copied, "CRONUS$Item,Company,FABRIKAM$Item,Media");

    // The selection's status: every company of the source with its size, the selected ones
    // with the run that migrated them, at a glance in kubectl get.
    let glance = ns.wait_until(
        "csel/pick",
        "{.status.companiesFound}|{.status.companiesSelected}|\
         {.status.conditions[?(@.type==\"Ready\")].status}|\
         {.status.companies[?(@.name==\"CRONUS\")].lastMigratedRun}",
        |s| s.ends_with(&format!("|{run}")),
        || controller.log(),
    );
    assert_eq!(glance, format!("3|2|True|{run}"));
    // CRONUS asked for its initialization: the controller runs it in-process.
    let cronus = ns.wait_until(
        "csel/pick",
        "{.status.companies[?(@.name==\"CRONUS\")].initialization}|\
         {.status.companies[?(@.name==\"CRONUS\")].validation.tablesMatching}|\
         {.status.companiesInitialized}",
        |s| s.starts_with("Initialized|"),
        || controller.log(),
    );
    assert_eq!(cronus, "Initialized|1|1");
    let sizes = ok(
        ns.kubectl(
            &[
                "get",
                "csel",
                "pick",
                "-o",
                "jsonpath={.status.companies[*].estimatedSize}",
            ],
            None,
        ),
        "the sizes",
    );
    assert_eq!(sizes.matches(" KiB").count(), 3, "{sizes}");
    let table = ok(ns.kubectl(&["get", "csel"], None), "kubectl get csel");
    assert!(
        table.contains("FOUND") && table.contains("SELECTED"),
        "{table}"
    );

    // The tiles count each table once: ADATUM's table apart, as its company is not selected.
    // The first run created every table in the cloud, which is a warning.
    let tiles = "{.status.migration.tablesMigrated}|{.status.migration.tablesWithWarnings}|\
                 {.status.migration.tablesOfUnselectedCompanies}|\
                 {.status.migration.tablesNotMigrated}";
    wait_for(&ns, "msched/picked", tiles, |s| s == "0|4|1|0", &controller);
    // A run made by hand for FABRIKAM alone: its table and the per-database tables migrate
    // cleanly now, and CRONUS's table keeps its warning instead of dropping out of the tiles.
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: fabrikam}\n\
                 spec: {scheduleRef: {name: picked}, companies: [FABRIKAM]}\n",
            ),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, "fabrikam", &controller), "Succeeded");
    let after = wait_for(&ns, "msched/picked", tiles, |s| s != "0|4|1|0", &controller);
    assert_eq!(after, "3|1|1|0", "migrated|warnings|unselected|by design");
    // A run made by hand for a company the source lacks fails, saying where to correct it.
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: nope}\n\
                 spec: {scheduleRef: {name: picked}, companies: [NOPE]}\n",
            ),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, "nope", &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "nope",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|\
                 {.status.conditions[?(@.type==\"Succeeded\")].message}|{.status.attempts}",
            ],
            None,
        ),
        "the failed run",
    );
    assert!(
        why.starts_with("UnknownCompany|nothing was copied: unknown companies [\"NOPE\"]")
            && why.contains("correct the company names in the run's spec.companies")
            && why.ends_with("|1"),
        "{why}"
    );

    // A name the source does not have: Ready=False, naming it and the closest one.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&selection("false", "true").replace("name: FABRIKAM,", "name: Fabrikam Inc,")),
        ),
        "selecting an unknown company",
    );
    let why = ns.wait_until(
        "csel/pick",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("UnknownCompany|"),
        || controller.log(),
    );
    assert!(
        why.contains("\"Fabrikam Inc\" (did you mean \"FABRIKAM\"?)"),
        "{why}"
    );
    // The schedule checks its selection before a run, not by failing one: Ready=False with
    // the same names, and a run request waits instead of starting a run that would fail.
    let why = wait_for(
        &ns,
        "msched/picked",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("UnknownCompany|"),
        &controller,
    );
    assert!(why.contains("did you mean \"FABRIKAM\""), "{why}");
    request_run(&ns, "picked", "misspelt");
    wait_for(
        &ns,
        "msched/picked",
        "{.status.pendingRunRequest.token}|{.status.pendingRunRequest.reason}",
        |s| s == "misspelt|UnknownCompany",
        &controller,
    );
    assert_eq!(runs(&ns).len(), 3, "a run started for a misspelt company");

    // Nothing selected: the schedule starts nothing and says why.
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&selection("false", "false"))),
        "selecting no company",
    );
    let why = wait_for(
        &ns,
        "msched/picked",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.starts_with("NoCompanySelected|"),
        &controller,
    );
    assert!(
        why.contains("CompanySelection pick selects no company"),
        "{why}"
    );
    request_run(&ns, "picked", "2");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(runs(&ns).len(), 3, "a run started with no company selected");
}

/// Company initialization with the Job runner: one company marked, one initialized by a Job
/// that validates its data and runs a step. While its initialization waits, a run skips that
/// company and a change of its choice is refused; the validation then catches the row the run
/// skipped and fails naming its key; the next run migrates it and the initialization goes
/// again by itself. `kubectl get csel` counts the initialized companies.
#[test]
fn companies_are_initialized_by_a_job_and_runs_skip_them_meanwhile() {
    let ns = TestNamespace::new("ctl-init");
    let (src, dst) = (database("in_src"), database("in_dst"));
    let mut sql = String::from(
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY);\n\
         INSERT INTO \"Company\" VALUES ('CRONUS'), ('FABRIKAM'), ('ADATUM');\n",
    );
    for company in ["CRONUS", "FABRIKAM", "ADATUM"] {
        sql.push_str(&format!(
            "CREATE TABLE \"{company}$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
             INSERT INTO \"{company}$Item\" VALUES (1, 'one'), (2, 'two');\n\
             CREATE TABLE \"{company}$Setup\" (\"Key\" int PRIMARY KEY, \"Owner\" text);\n\
             INSERT INTO \"{company}$Setup\" VALUES (1, 'on premises');\n"
        ));
    }
    psql(&src, &sql);
    let controller = Controller::start(&ns.name);
    let schedule =
        schedule_yaml("init", &src, &dst, "0 2 * * *").replace("runner: InProcess", "runner: Job");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&schedule)),
        "applying the schedule",
    );
    let selection = |adatum: &str, fabrikam: &str| {
        format!(
            "apiVersion: cloudmigrate.io/v1alpha1\nkind: CompanySelection\nmetadata: {{name: pick}}\n\
             spec:\n  scheduleRef: {{name: init}}\n  companies:\n\
             \x20 - {{name: CRONUS}}\n\
             \x20 - {{name: FABRIKAM, initialization: {fabrikam}}}\n\
             \x20 - {{name: ADATUM, {adatum}}}\n\
             \x20 initializationSteps:\n\
             \x20 - name: owner\n\
             \x20   sql: 'UPDATE {{{{table:Setup}}}} SET \"Owner\" = {{{{company}}}}'\n"
        )
    };
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&selection("initialization: None", "None")),
        ),
        "applying the selection",
    );
    request_run(&ns, "init", "1");
    let run1 = wait_for(
        &ns,
        "msched/init",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run1, &controller), "Succeeded");
    let states = "{.status.companies[*].initialization}";
    ns.wait_until(
        "csel/pick",
        states,
        |s| s == "NotInitialized NotInitialized NotInitialized",
        || controller.log(),
    );

    // A run that seems to be writing to the target holds the initialization at Scheduled.
    psql(
        &dst,
        "INSERT INTO cloudmigrate_runs (run_id, run_type, state, started_at) \
         VALUES ('stuck', 'Auto', 'Running', '2026-01-01T00:00:00Z')",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&selection("initialization: Initialize", "MarkInitialized")),
        ),
        "asking for the initializations",
    );
    let adatum = "{.status.companies[?(@.name==\"ADATUM\")].initialization}|\
                  {.status.companies[?(@.name==\"ADATUM\")].message}";
    let waiting = ns.wait_until(
        "csel/pick",
        adatum,
        |s| s.contains("waiting for run stuck"),
        || controller.log(),
    );
    assert!(waiting.starts_with("Scheduled|"), "{waiting}");
    let fabrikam = ok(
        ns.kubectl(
            &[
                "get",
                "csel",
                "pick",
                "-o",
                "jsonpath={.status.companies[?(@.name==\"FABRIKAM\")].initialization}",
            ],
            None,
        ),
        "FABRIKAM",
    );
    assert_eq!(fabrikam, "Initialized");
    let jobs = ok(ns.kubectl(&["get", "jobs", "-o", "name"], None), "the Jobs");
    assert!(jobs.contains("job.batch/pick-init-"), "{jobs}");

    // A change of ADATUM's choice waits for the initialization to end.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&selection(
                "migrate: false, initialization: Initialize",
                "MarkInitialized",
            )),
        ),
        "changing ADATUM",
    );
    let refused = ns.wait_until(
        "csel/pick",
        "{.status.conditions[?(@.type==\"ChangeRefused\")].status}|{.status.conditions[?(@.type==\"ChangeRefused\")].message}",
        |s| s.starts_with("True|"),
        || controller.log(),
    );
    assert!(refused.contains("\"ADATUM\" (migrate: false)"), "{refused}");
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&selection("initialization: Initialize", "MarkInitialized")),
        ),
        "changing ADATUM back",
    );

    // A run now skips ADATUM, so its new row stays behind; and a row is written in the cloud.
    psql(&src, "INSERT INTO \"ADATUM$Item\" VALUES (3, 'three')");
    psql(
        &dst,
        "INSERT INTO \"ADATUM$Item\" VALUES (9, 'made in the cloud')",
    );
    request_run(&ns, "init", "2");
    let run2 = next_run(&ns, "init", &run1, &controller);
    assert_eq!(ended(&ns, &run2, &controller), "Succeeded");
    let skipped = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run2,
                "-o",
                "jsonpath={.status.tables[?(@.result==\"Skipped\")].company}|\
                 {.status.tables[?(@.result==\"Skipped\")].table}|\
                 {.status.tables[?(@.result==\"Skipped\")].message}",
            ],
            None,
        ),
        "the tables the run skipped",
    );
    assert!(
        skipped.starts_with("ADATUM ADATUM|Item Setup|") && skipped.contains("being initialized"),
        "{skipped}"
    );
    // The validation names the cloud's row; the source's new row changed since the run (its
    // change log says so), so it is counted, not compared. Nothing of the steps ran.
    let failed = ns.wait_until(
        "csel/pick",
        adatum,
        |s| s.starts_with("Failed|"),
        || controller.log(),
    );
    assert!(
        failed.contains("ADATUM$Item") && failed.contains("No_=9 OnlyInTarget"),
        "{failed}"
    );
    assert!(!failed.contains("No_=3"), "{failed}");
    assert!(failed.contains("full run"), "{failed}");
    let mismatch = ok(
        ns.kubectl(&["get", "csel", "pick", "-o", "jsonpath={.status.companies[?(@.name==\"ADATUM\")].validation.mismatches[0].firstKeys[0]}|{.status.companies[?(@.name==\"ADATUM\")].validation.keysChangedSinceRun}"], None),
        "the mismatch",
    );
    assert_eq!(mismatch, "No_=9: OnlyInTarget|1");
    psql(&dst, "DELETE FROM \"ADATUM$Item\" WHERE \"No_\" = 9");
    assert_eq!(
        psql(&dst, "SELECT \"Owner\" FROM \"ADATUM$Setup\""),
        "on premises"
    );

    // The next run copies the row; the initialization goes again and succeeds.
    request_run(&ns, "init", "3");
    let run3 = next_run(&ns, "init", &run2, &controller);
    assert_eq!(ended(&ns, &run3, &controller), "Succeeded");
    let done = ns.wait_until(
        "csel/pick",
        adatum,
        |s| s.starts_with("Initialized|"),
        || controller.log(),
    );
    assert!(done.contains("2 tables validated (4 rows)"), "{done}");
    assert_eq!(
        psql(&dst, "SELECT \"Owner\" FROM \"ADATUM$Setup\""),
        "ADATUM"
    );
    assert_eq!(
        psql(&dst, "SELECT \"Owner\" FROM \"CRONUS$Setup\""),
        "on premises"
    );
    let table = ok(
        ns.kubectl(&["get", "csel", "pick"], None),
        "kubectl get csel",
    );
    let row: Vec<&str> = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row[..5], ["pick", "init", "3", "3", "2"], "{table}");
    assert!(table.contains("INITIALIZED"), "{table}");
}

/// A CloudReset empties the tables runs wrote and nothing else, once: `kubectl wait` sees it
/// succeed, the next run copies everything in full with the reason Reset, and applying the
/// reset again does nothing.
#[test]
fn a_cloud_reset_clears_the_migrated_tables_once_and_the_next_run_is_full() {
    let ns = TestNamespace::new("ctl-reset");
    let (src, dst) = (database("rs_src"), database("rs_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY); INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'item ' || g FROM generate_series(1, 50) g;",
    );
    psql(
        &dst,
        "CREATE TABLE \"Cloud Setup\" (\"Key\" int PRIMARY KEY, \"Value\" text);\n\
         INSERT INTO \"Cloud Setup\" VALUES (1, 'kept');",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("rs", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    request_run(&ns, "rs", "1");
    let run1 = wait_for(
        &ns,
        "msched/rs",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run1, &controller), "Succeeded");
    // The probe of the databases: both answer, and the run installed change tracking.
    let probed = wait_for(
        &ns,
        "msched/rs",
        "{.status.conditions[?(@.type==\"Ready\")].message}|\
         {.status.conditions[?(@.type==\"ChangeTracking\")].reason}",
        |s| s.ends_with("|Installed"),
        &controller,
    );
    assert!(
        probed.starts_with("the schedule is valid and both databases answer|"),
        "{probed}"
    );
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "50");

    let reset = "apiVersion: cloudmigrate.io/v1alpha1\nkind: CloudReset\nmetadata: {name: again}\n\
                 spec:\n  scheduleRef: {name: rs}\n  confirm: rs\n";
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(reset)),
        "applying the reset",
    );
    ok(
        ns.kubectl(
            &[
                "wait",
                "creset/again",
                "--for=condition=Succeeded",
                "--timeout=60s",
            ],
            None,
        ),
        "kubectl wait for the reset",
    );
    let outcome = ok(
        ns.kubectl(
            &[
                "get",
                "creset",
                "again",
                "-o",
                "jsonpath={.status.tablesCleared}|{.status.completionTime}",
            ],
            None,
        ),
        "the reset's outcome",
    );
    assert!(outcome.starts_with("2|"), "{outcome}");
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "0");
    assert_eq!(psql(&dst, "SELECT \"Value\" FROM \"Cloud Setup\""), "kept");

    // The next run copies every table in full, because of the reset.
    request_run(&ns, "rs", "2");
    let run2 = next_run(&ns, "rs", &run1, &controller);
    assert_eq!(ended(&ns, &run2, &controller), "Succeeded");
    let reason = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run2,
                "-o",
                "jsonpath={.status.tables[?(@.table==\"Item\")].fullReason}",
            ],
            None,
        ),
        "the run's reason",
    );
    assert_eq!(reason, "Reset");
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "50");

    // Applied again, the finished reset does nothing.
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(reset)),
        "applying the reset again",
    );
    std::thread::sleep(Duration::from_secs(3));
    let again = ok(
        ns.kubectl(
            &[
                "get",
                "creset",
                "again",
                "-o",
                "jsonpath={.status.tablesCleared}|{.status.completionTime}",
            ],
            None,
        ),
        "the reset's outcome",
    );
    assert_eq!(again, outcome);
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "50");
    let table = ok(ns.kubectl(&["get", "creset"], None), "kubectl get creset");
    assert!(table.contains("True") && table.contains("Reset"), "{table}");

    // Deleted and applied again from git, without its status: the target's ledger knows it
    // ran, so it clears nothing and says when it ran.
    ok(
        ns.kubectl(&["delete", "creset", "again", "--wait"], None),
        "deleting the reset",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(reset)),
        "applying the same reset again",
    );
    ok(
        ns.kubectl(
            &[
                "wait",
                "creset/again",
                "--for=condition=Succeeded",
                "--timeout=60s",
            ],
            None,
        ),
        "kubectl wait for the reset seen again",
    );
    let seen_again = ok(
        ns.kubectl(
            &[
                "get",
                "creset",
                "again",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}|{.status.completionTime}",
            ],
            None,
        ),
        "the reset seen again",
    );
    let (reason, ran) = seen_again.split_once('|').unwrap_or_default();
    assert_eq!(reason, "AlreadyDone", "{seen_again}");
    // When it ran: the ledger's time of the clear, within a moment of the first status.
    let time =
        |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    let first = time(outcome.split('|').nth(1).unwrap_or_default());
    assert!(
        (time(ran) - first).num_seconds().abs() <= 2,
        "{seen_again} against {outcome}"
    );
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "50");

    // A reset with a new name clears.
    let second = reset.replace("name: again", "name: again-2");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&second)),
        "applying a new reset",
    );
    ok(
        ns.kubectl(
            &[
                "wait",
                "creset/again-2",
                "--for=condition=Succeeded",
                "--timeout=60s",
            ],
            None,
        ),
        "kubectl wait for the new reset",
    );
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "0");
}

/// A database that does not answer makes the schedule not Ready, naming it with the error
/// and the fix.
#[test]
fn ready_names_the_database_that_does_not_answer() {
    let ns = TestNamespace::new("ctl-reach");
    let src = database("re_src");
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("reach", &src, "nowhere", "0 2 * * *").replace(
        &format!("{}/nowhere", pg().0),
        "postgres://cloudmigrate@127.0.0.1:1/nowhere",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/reach",
        "{.status.conditions[?(@.type==\"Ready\")].reason}|\
         {.status.conditions[?(@.type==\"Ready\")].message}|\
         {.status.conditions[?(@.type==\"ChangeTracking\")].reason}",
        |s| s.starts_with("TargetUnreachable|"),
        &controller,
    );
    assert!(
        ready.contains("127.0.0.1:1") && ready.contains("Fix: check the URL"),
        "{ready}"
    );
    assert!(ready.ends_with("|NotInstalled"), "{ready}");
    assert!(!ready.contains(&pg().1), "the password is in the status");
}

/// A UserMapping: it waits for a migrated company, then renames the cloud user (found by its
/// authentication email) to the on-premises name; a set with a bad mapping writes nothing and
/// names the offending users; `kubectl get umap` shows the counts. A mapping removed gives the
/// cloud user its name back; a mapping changed renames from the user's own name.
#[test]
fn a_user_mapping_renames_the_cloud_user_refuses_bad_mappings_whole_and_can_be_undone() {
    let ns = TestNamespace::new("ctl-users");
    let (src, dst) = (database("um_src"), database("um_dst"));
    psql(
        &src,
        "CREATE TABLE \"User\" (\"User Security ID\" text PRIMARY KEY, \"User Name\" varchar(50));\n\
         INSERT INTO \"User\" VALUES ('s1', 'CONTOSO\\JSMITH'), ('s2', 'CONTOSO\\ALEE');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1);",
    );
    psql(
        &dst,
        "CREATE TABLE \"User\" (\"User Security ID\" text PRIMARY KEY, \"User Name\" varchar(50), \
         \"Authentication Email\" varchar(250));\n\
         INSERT INTO \"User\" VALUES ('c1', 'JOHN', 'jsmith@contoso.com'), ('c2', 'ANNA', 'alee@contoso.com');",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("users", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    let mapping = |entries: &str| {
        format!(
            "apiVersion: cloudmigrate.io/v1alpha1\nkind: UserMapping\nmetadata: {{name: people}}\n\
             spec:\n  scheduleRef: {{name: users}}\n  mappings:\n{entries}"
        )
    };
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&mapping(
                "  - {sourceUser: 'CONTOSO\\JSMITH', cloudUser: jsmith@contoso.com}\n",
            )),
        ),
        "applying the mapping",
    );
    let ready = "{.status.conditions[?(@.type==\"Ready\")].reason}|\
                 {.status.conditions[?(@.type==\"Ready\")].message}";
    ns.wait_until(
        "umap/people",
        ready,
        |s| s.starts_with("WaitingForMigration|"),
        || controller.log(),
    );
    request_run(&ns, "users", "1");
    let run = wait_for(
        &ns,
        "msched/users",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    ns.wait_until(
        "umap/people",
        ready,
        |s| s.starts_with("Applied|"),
        || controller.log(),
    );
    assert_eq!(
        psql(
            &dst,
            "SELECT \"User Name\" FROM \"User\" ORDER BY \"User Security ID\""
        ),
        "CONTOSO\\JSMITH\nANNA"
    );
    let table = ok(
        ns.kubectl(&["get", "umap", "people"], None),
        "kubectl get umap",
    );
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..4] == ["people", "users", "1", "0"],
        "{table}"
    );

    // Two on-premises users on one cloud user, and an unknown one: refused whole.
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&mapping(
                "  - {sourceUser: 'CONTOSO\\JSMITH', cloudUser: jsmith@contoso.com}\n\
                 \x20 - {sourceUser: 'CONTOSO\\ALEE', cloudUser: ANNA}\n\
                 \x20 - {sourceUser: 'CONTOSO\\NOBODY', cloudUser: ANNA}\n",
            )),
        ),
        "applying bad mappings",
    );
    let why = ns.wait_until(
        "umap/people",
        ready,
        |s| s.starts_with("InvalidMappings|"),
        || controller.log(),
    );
    assert!(
        why.contains("CONTOSO\\NOBODY -> ANNA (UnknownSourceUser)"),
        "{why}"
    );
    assert!(why.contains("CONTOSO\\ALEE -> ANNA (Conflict)"), "{why}");
    assert_eq!(
        psql(
            &dst,
            "SELECT \"User Name\" FROM \"User\" ORDER BY \"User Security ID\""
        ),
        "CONTOSO\\JSMITH\nANNA",
        "a refused set wrote something"
    );

    // Corrected: JSMITH's mapping removed, ALEE's added. JOHN gets his own name back.
    let names = || {
        psql(
            &dst,
            "SELECT \"User Name\" FROM \"User\" ORDER BY \"User Security ID\"",
        )
    };
    let applied = |entries: &str, what: &str| {
        ok(
            ns.kubectl(&["apply", "-f", "-"], Some(&mapping(entries))),
            what,
        );
        ns.wait_until(
            "umap/people",
            "{.metadata.generation}|{.status.observedGeneration}|{.status.conditions[?(@.type==\"Ready\")].reason}",
            |s| {
                let f: Vec<&str> = s.split('|').collect();
                f.len() == 3 && f[0] == f[1] && f[2] == "Applied"
            },
            || controller.log(),
        );
    };
    applied(
        "  - {sourceUser: 'CONTOSO\\ALEE', cloudUser: ANNA}\n",
        "removing a mapping",
    );
    assert_eq!(names(), "JOHN\nCONTOSO\\ALEE", "JOHN's name is not back");
    // ALEE's mapping changed to John's cloud user: ANNA's name comes back, JOHN is renamed.
    applied(
        "  - {sourceUser: 'CONTOSO\\ALEE', cloudUser: jsmith@contoso.com}\n",
        "changing a mapping",
    );
    assert_eq!(names(), "CONTOSO\\ALEE\nANNA");
    // Every mapping removed: every name is back.
    applied("    []\n", "removing every mapping");
    assert_eq!(names(), "JOHN\nANNA");
}

/// A run made with `kubectl create` runs as one of the schedule's, and stays the person's: no
/// owner reference, spec as written; a second schedule on the same source database gets
/// Conflict and starts nothing.
#[test]
fn a_hand_made_run_runs_untouched_and_a_second_schedule_on_the_source_conflicts() {
    let ns = TestNamespace::new("ctl-adopt");
    let (src, dst, other) = (database("ad_src"), database("ad_dst"), database("ad_other"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1), (2)",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("first", &src, &dst, "0 2 * * *")),
        ),
        "applying the first schedule",
    );
    wait_for(
        &ns,
        "msched/first",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| s == "True",
        &controller,
    );
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some("apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: mine}\nspec: {scheduleRef: {name: first}, type: Full}\n"),
        ),
        "creating a run by hand",
    );
    let result = wait_for(
        &ns,
        "mrun/mine",
        "{.status.result}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(result, "Succeeded");
    let trigger = ok(
        ns.kubectl(
            &["get", "mrun", "mine", "-o", "jsonpath={.status.trigger}"],
            None,
        ),
        "trigger",
    );
    assert_eq!(trigger, "Manual");
    // Its spec and annotations are as the person wrote them.
    let spec = ok(
        ns.kubectl(&["get", "mrun", "mine", "-o", "jsonpath={.spec}"], None),
        "spec",
    );
    assert!(!spec.contains("stop\":true"), "{spec}");
    let owners = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "mine",
                "-o",
                "jsonpath={.metadata.ownerReferences}",
            ],
            None,
        ),
        "owners",
    );
    assert_eq!(
        owners, "",
        "the controller wrote an owner reference onto a person's run"
    );

    // The same source, another target.
    let second = schedule_yaml("second", &src, &other, "0 3 * * *").replace(
        "schedule: \"0 3 * * *\"",
        "schedule: \"0 3 * * *\"\n  runRequest: \"go\"",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&second)),
        "applying the second schedule",
    );
    let conflict = wait_for(
        &ns,
        "msched/second",
        "{.status.conditions[?(@.type==\"Conflict\")].status}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(conflict, "True");
    let message = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                "second",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}",
            ],
            None,
        ),
        "the Ready message",
    );
    assert!(
        message.contains("\"first\" already migrates the same source database"),
        "{message}"
    );
    // Its run request waits, kept, and no run exists for it.
    wait_for(
        &ns,
        "msched/second",
        "{.status.pendingRunRequest.token}|{.status.pendingRunRequest.reason}",
        |s| s == "go|Conflict",
        &controller,
    );
    let all = runs(&ns);
    assert_eq!(all.len(), 1, "{all:?}");
    // A run made by hand for the conflicted schedule never starts: it waits, naming why.
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some("apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: theirs}\nspec: {scheduleRef: {name: second}}\n"),
        ),
        "creating a run by hand for the conflicted schedule",
    );
    let waiting = wait_for(
        &ns,
        "mrun/theirs",
        "{.status.conditions[?(@.type==\"Running\")].reason}|{.status.startTime}",
        |s| !s.is_empty() && s != "|",
        &controller,
    );
    assert_eq!(waiting, "ScheduleInConflict|", "{}", controller.log());
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        psql(
            &other,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'CRONUS%'"
        ),
        "0",
        "the conflicted schedule's run wrote its target"
    );
    // The first schedule is not in conflict: it came first.
    let first = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                "first",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Conflict\")].status}",
            ],
            None,
        ),
        "the first schedule's Conflict",
    );
    assert_eq!(first, "False");
}

/// A controller, and the schedule "slow": six ledgers of 150,000 rows copied one table at a
/// time, long enough to act on a run while it goes. `extra` is more of the schedule's spec.
/// Returns the controller and the target database.
pub(crate) fn slow_schedule(ns: &TestNamespace, label: &str, extra: &str) -> (Controller, String) {
    slow_schedule_named(ns, "slow", label, extra)
}

/// `slow_schedule`, under the schedule name `name`: a test that rotates the runtime key needs
/// a name (so a login role) of its own.
pub(crate) fn slow_schedule_named(
    ns: &TestNamespace,
    name: &str,
    label: &str,
    extra: &str,
) -> (Controller, String) {
    let (src, dst) = (
        database(&format!("{label}_src")),
        database(&format!("{label}_dst")),
    );
    psql(&src, &ledgers(6, 150_000));
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml(name, &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: InProcess, parallelism: 1")
        + extra;
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    (controller, dst)
}

/// Waits until the run has ended, and gives its result.
pub(crate) fn ended(ns: &TestNamespace, run: &str, controller: &Controller) -> String {
    wait_for(
        ns,
        &format!("mrun/{run}"),
        "{.status.result}",
        |s| !s.is_empty(),
        controller,
    )
}

/// Waits until the schedule's last run is another than `after`, and names it.
pub(crate) fn next_run(
    ns: &TestNamespace,
    schedule: &str,
    after: &str,
    controller: &Controller,
) -> String {
    wait_for(
        ns,
        &format!("msched/{schedule}"),
        "{.status.lastRun.name}",
        |s| !s.is_empty() && s != after,
        controller,
    )
}

/// `spec.stop` finishes the table in progress and ends the run Stopped; the next run does the
/// rest.
#[test]
fn stop_ends_a_run_after_the_table_in_progress() {
    let ns = TestNamespace::new("ctl-stop");
    let (controller, dst) = slow_schedule(&ns, "st", "");
    request_run(&ns, "slow", "1");
    let run = running(&ns, "slow", &controller);
    stop_run(&ns, &run);
    let result = ended(&ns, &run, &controller);
    assert_eq!(result, "Stopped", "{}", controller.log());
    let not_started = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.status.tables[?(@.result==\"NotStarted\")].table}",
            ],
            None,
        ),
        "the tables not started",
    );
    assert!(
        !not_started.is_empty(),
        "every table ran: the stop came too late"
    );

    request_run(&ns, "slow", "2");
    let next = next_run(&ns, "slow", &run, &controller);
    let result = ended(&ns, &next, &controller);
    assert_eq!(result, "Succeeded");
    for i in 0..6 {
        assert_eq!(
            psql(&dst, &format!("SELECT count(*) FROM \"CRONUS$Ledger {i}\"")),
            "150000"
        );
    }
}

/// `concurrencyPolicy: Replace`: a run request while a run is active stops that run through
/// its status (its spec stays as written), and the requested run starts once it has ended.
#[test]
fn replace_stops_the_active_run_without_touching_its_spec_then_starts_the_next() {
    let ns = TestNamespace::new("ctl-replace");
    let (controller, _dst) = slow_schedule(&ns, "rp", "  concurrencyPolicy: Replace\n");
    request_run(&ns, "slow", "1");
    let first = running(&ns, "slow", &controller);
    request_run(&ns, "slow", "2");
    let result = ended(&ns, &first, &controller);
    assert_eq!(result, "Stopped", "{}", controller.log());
    let stop = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &first,
                "-o",
                "jsonpath={.spec.stop}|{.status.stopRequested}",
            ],
            None,
        ),
        "reading the stopped run",
    );
    let (spec_stop, why) = stop.split_once('|').unwrap();
    assert!(
        spec_stop.is_empty() || spec_stop == "false",
        "spec.stop was written: {stop}"
    );
    assert!(why.contains("Replace"), "{stop}");
    let next = next_run(&ns, "slow", &first, &controller);
    let result = ended(&ns, &next, &controller);
    assert_eq!(result, "Succeeded", "{}", controller.log());
    assert_eq!(
        ok(
            ns.kubectl(
                &[
                    "get",
                    "msched",
                    "slow",
                    "-o",
                    "jsonpath={.status.lastHandledRunRequest}"
                ],
                None
            ),
            "reading the schedule"
        ),
        "2"
    );
}

/// Two replicas with leader election: one acts, the other waits. Runs leave events.
#[test]
fn leader_election_lets_one_replica_act_and_events_mark_the_run() {
    let ns = TestNamespace::new("ctl-leader");
    let (src, dst) = (database("le_src"), database("le_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1)",
    );
    let lease = format!("{}/cloudmigrate-test", ns.name);
    let args = ["--leader-elect", "--leader-lease", lease.as_str()];
    let mut a = Controller::start_with(&ns.name, &args, "replica-a");
    let ready = |c: &Controller| c.get("/readyz").contains("200 OK");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&a) {
        assert!(
            Instant::now() < deadline,
            "replica a never led:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let b = Controller::start_with(&ns.name, &args, "replica-b");
    std::thread::sleep(Duration::from_secs(3));
    assert!(!ready(&b), "two replicas lead at once:\n{}", b.log());
    let holder = ok(
        ns.kubectl(
            &[
                "get",
                "leases.coordination.k8s.io",
                "cloudmigrate-test",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        ),
        "the lease holder",
    );
    assert_eq!(holder, "replica-a");

    let yaml = schedule_yaml("led", &src, &dst, "0 2 * * *").replace(
        "schedule: \"0 2 * * *\"",
        "schedule: \"0 2 * * *\"\n  runRequest: \"once\"",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let run = wait_for(
        &ns,
        "msched/led",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &a,
    );
    assert_eq!(
        wait_for(
            &ns,
            &format!("mrun/{run}"),
            "{.status.result}",
            |s| !s.is_empty(),
            &a
        ),
        "Succeeded"
    );
    assert_eq!(runs(&ns).len(), 1);
    let reasons = wait_for(
        &ns,
        "events.v1.events.k8s.io",
        "{.items[*].reason}",
        |s| s.contains("RunFinished"),
        &a,
    );
    for r in ["RunCreated", "RunStarted", "RunFinished"] {
        assert!(reasons.contains(r), "{r} missing: {reasons}");
    }
    assert!(
        !b.log().contains("RunStarted"),
        "the waiting replica acted:\n{}",
        b.log()
    );

    // What the controller sent of these kinds is valid, by the published schemas.
    let mut sent = vec![];
    for kind in ["lease/cloudmigrate-test", "events.v1.events.k8s.io"] {
        let json = ok(ns.kubectl(&["get", kind, "-o", "json"], None), kind);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        match v["items"].as_array() {
            Some(items) => sent.extend(items.iter().cloned()),
            None => sent.push(v),
        }
    }
    crate::api_server::validate_strictly(&sent).unwrap_or_else(|e| panic!("{e}"));

    // The same events through the core v1 API, as `kubectl get events` lists them.
    let listed = ok(ns.kubectl(&["get", "events"], None), "kubectl get events");
    assert!(
        listed.contains("RunFinished") && listed.contains(&format!("MigrationRun/{run}")),
        "{listed}"
    );

    // The leader dies without a word: the other replica takes the lease over once it expires
    // (15 s), through the strategic merge patches of the built-in Lease API.
    a.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&b) {
        assert!(
            Instant::now() < deadline,
            "replica b never took over:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let holder = ok(
        ns.kubectl(
            &[
                "get",
                "lease",
                "cloudmigrate-test",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
            None,
        ),
        "the new lease holder",
    );
    assert_eq!(holder, "replica-b");
}

/// Past 2,000 tables, the run's status keeps only the tables that did not migrate cleanly and
/// the counts; `cloudmigrate runs show` prints every one from the target's run log.
#[test]
fn past_two_thousand_tables_the_status_keeps_the_problems() {
    let ns = TestNamespace::new("ctl-many");
    let (src, dst) = (database("many_src"), database("many_dst"));
    let make = "DO $$ BEGIN FOR i IN 1..2100 LOOP \
                EXECUTE format('CREATE TABLE %I (\"No_\" int PRIMARY KEY, \"Name\" varchar(30))', 'CRONUS$T' || i); \
                EXECUTE format('INSERT INTO %I VALUES (1, ''x'')', 'CRONUS$T' || i); \
                END LOOP; END $$";
    psql(&src, make);
    psql(
        &dst,
        &make.replace(
            "EXECUTE format('INSERT INTO %I VALUES (1, ''x'')', 'CRONUS$T' || i); ",
            "",
        ),
    );
    // One table the cloud cannot take: a narrower column.
    psql(&src, "UPDATE \"CRONUS$T7\" SET \"Name\" = repeat('y', 30)");
    psql(
        &dst,
        "ALTER TABLE \"CRONUS$T7\" ALTER COLUMN \"Name\" TYPE varchar(10)",
    );
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("many", &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: InProcess, parallelism: 8")
        .replace(
            "schedule: \"0 2 * * *\"",
            "schedule: \"0 2 * * *\"\n  runRequest: \"all\"",
        );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let run = wait_for(
        &ns,
        "msched/many",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    let result = loop {
        let r = ns.kubectl(
            &["get", "mrun", &run, "-o", "jsonpath={.status.result}"],
            None,
        );
        if r.ok && !r.stdout.is_empty() {
            break r.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "the run did not end:\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert_eq!(result, "PartiallySucceeded");
    let get = |path: &str| {
        ok(
            ns.kubectl(
                &["get", "mrun", &run, "-o", &format!("jsonpath={path}")],
                None,
            ),
            path,
        )
    };
    assert_eq!(get("{.status.progress.tables}"), "2100/2100");
    assert_eq!(get("{.status.progress.tablesMigrated}"), "2099");
    // No Company table in this source, so the names stay whole.
    assert_eq!(get("{.status.tables[*].table}"), "CRONUS$T7");
    assert_eq!(get("{.status.tablesOmitted}"), "2099");
    let size = ok(
        ns.kubectl(&["get", "mrun", &run, "-o", "json"], None),
        "the run",
    )
    .len();
    assert!(size < 20_000, "the status is {size} bytes");

    let show = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args(["runs", "show", &format!("{}/{run}", ns.name)])
        .env("CLOUDMIGRATE_TARGET_PASSWORD", pg().1)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    assert!(
        out.contains("(2100 tables in the log)"),
        "{}",
        out.lines().last().unwrap_or_default()
    );
    assert!(out.contains("CRONUS$T2100"));
}

/// When the cron expression comes due, a run named after the due minute starts by itself.
#[test]
fn a_due_time_starts_a_run_named_after_it() {
    let ns = TestNamespace::new("ctl-cron-due");
    let (src, dst) = (database("due_src"), database("due_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1)",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("tick", &src, &dst, "* * * * *")),
        ),
        "applying the schedule",
    );
    let next = wait_for(
        &ns,
        "msched/tick",
        "{.status.nextRunTime}",
        |s| !s.is_empty(),
        &controller,
    );
    // Every minute, in Berlin time: the next start is at a whole minute with Berlin's offset.
    assert!(
        next.ends_with(":00+01:00") || next.ends_with(":00+02:00"),
        "{next}"
    );
    let run = wait_for(
        &ns,
        "msched/tick",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    let scheduled = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.metadata.annotations.cloudmigrate\\.io/scheduled-time}",
            ],
            None,
        ),
        "the scheduled time",
    );
    let at = chrono::DateTime::parse_from_rfc3339(&scheduled)
        .unwrap()
        .to_utc();
    assert_eq!(run, format!("tick-{}", at.format("%Y%m%d%H%M")));
    let result = wait_for(
        &ns,
        &format!("mrun/{run}"),
        "{.status.result}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(result, "Succeeded");
    let trigger = ok(
        ns.kubectl(
            &["get", "mrun", &run, "-o", "jsonpath={.status.trigger}"],
            None,
        ),
        "trigger",
    );
    assert_eq!(trigger, "Scheduled");
}

/// Deleting a run in progress stops its worker after the table in progress.
#[test]
fn deleting_a_run_stops_it() {
    let ns = TestNamespace::new("ctl-delete");
    let (src, dst) = (database("del_src"), database("del_dst"));
    // Enough tables that the run outlasts the worker's next status write (every 2 s).
    psql(&src, &ledgers(24, 150_000));
    let controller = Controller::start(&ns.name);
    let yaml = schedule_yaml("gone", &src, &dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: InProcess, parallelism: 1")
        .replace(
            "schedule: \"0 2 * * *\"",
            "schedule: \"0 2 * * *\"\n  runRequest: \"1\"",
        );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "applying the schedule",
    );
    let run = running(&ns, "gone", &controller);
    ok(
        ns.kubectl(&["delete", "mrun", &run], None),
        "deleting the run",
    );
    // The target's own record of the run says how it ended.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // The state tables appear when the worker's engine gets there.
        let state = try_psql(
            &dst,
            &format!(
                "SELECT state || ' ' || coalesce(result, '') FROM cloudmigrate_runs WHERE run_id = '{run}'"
            ),
        )
        .unwrap_or_default();
        if state.starts_with("Completed") {
            assert_eq!(state, "Completed Stopped", "{}", controller.log());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted run went on: {state}\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(
        controller.log().contains("the run was deleted"),
        "{}",
        controller.log()
    );
}

/// Logs in to a database of the test server as `user` with `password`, and runs `sql`.
fn psql_as(db: &str, user: &str, password: &str, sql: &str) -> Result<String, String> {
    let (base, _) = pg();
    let url = base.replacen("cloudmigrate@", &format!("{user}@"), 1);
    let out = Command::new("psql")
        .args(["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"])
        .arg(format!("{url}/{db}"))
        .arg("-c")
        .arg(sql)
        .env("PGPASSWORD", password)
        .output()
        .expect("psql must be on PATH");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// One key of a Secret, decoded.
fn secret_field(ns: &TestNamespace, secret: &str, field: &str) -> String {
    use base64::Engine;
    let encoded = ok(
        ns.kubectl(
            &[
                "get",
                "secret",
                secret,
                "-o",
                &format!("jsonpath={{.data.{field}}}"),
            ],
            None,
        ),
        "reading the key Secret",
    );
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap(),
    )
    .unwrap()
}

/// The runtime key: the schedule keeps it in a basic-auth Secret and runs write as its login
/// role, which may not touch the cloud's own tables; a RuntimeKeyRotation replaces it in
/// stages, after which the old key is refused, the new one logs in and the next run uses it.
/// The key shows nowhere else: not in the statuses, the events or the controller's log.
#[test]
fn runs_write_as_the_runtime_role_and_a_rotation_retires_the_old_key() {
    let ns = TestNamespace::new("ctl-key");
    let (src, dst) = (database("rk_src"), database("rk_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY); INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'item ' || g FROM generate_series(1, 20) g;",
    );
    psql(
        &dst,
        "CREATE TABLE \"Cloud Setup\" (\"Key\" int PRIMARY KEY, \"Value\" text);\n\
         INSERT INTO \"Cloud Setup\" VALUES (1, 'kept');",
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("keyed", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    let role = cloudmigrate::engine::access::role_name(
        &ns.name,
        "keyed",
        cloudmigrate::db::Dialect::Postgres,
    );
    let role = role.as_str();
    let state = wait_for(
        &ns,
        "msched/keyed",
        "{.status.conditions[?(@.type==\"RuntimeKey\")].reason}|{.status.runtime.keySecretName}|\
         {.status.runtime.keyRole}|{.status.runtime.keyFingerprint}",
        |s| s.starts_with("InEffect|"),
        &controller,
    );
    let secret_type = ok(
        ns.kubectl(
            &[
                "get",
                "secret",
                "keyed-runtime-key",
                "-o",
                "jsonpath={.type}",
            ],
            None,
        ),
        "the Secret's type",
    );
    assert_eq!(secret_type, "kubernetes.io/basic-auth");
    assert_eq!(secret_field(&ns, "keyed-runtime-key", "username"), role);
    let first = secret_field(&ns, "keyed-runtime-key", "password");
    let fingerprint = cloudmigrate::engine::access::fingerprint(first.as_bytes());
    assert_eq!(
        state,
        format!("InEffect|keyed-runtime-key|{role}|{fingerprint}")
    );

    request_run(&ns, "keyed", "1");
    let run1 = wait_for(
        &ns,
        "msched/keyed",
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run1, &controller), "Succeeded");
    // The controller created the missing table as the admin before the run; the role only
    // writes it, and may create nothing.
    assert_eq!(
        psql(
            &dst,
            "SELECT tableowner FROM pg_tables WHERE tablename = 'CRONUS$Item'"
        ),
        "cloudmigrate"
    );
    let created = psql_as(&dst, role, &first, "CREATE TABLE \"Mine\" (id int)");
    assert!(
        created.is_err(),
        "the runtime role could create a table: {created:?}"
    );
    assert_eq!(
        psql_as(&dst, role, &first, "SELECT count(*) FROM \"CRONUS$Item\"").unwrap(),
        "20"
    );
    // The cloud's own table is out of the role's reach.
    let refused = psql_as(&dst, role, &first, "DELETE FROM \"Cloud Setup\"").unwrap_err();
    assert!(refused.contains("permission denied"), "{refused}");

    // Reset Runtime Service Key.
    let rotation = "apiVersion: cloudmigrate.io/v1alpha1\nkind: RuntimeKeyRotation\n\
                    metadata: {name: rotate-1}\nspec:\n  scheduleRef: {name: keyed}\n";
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(rotation)),
        "applying the rotation",
    );
    ok(
        ns.kubectl(
            &[
                "wait",
                "rkr/rotate-1",
                "--for=condition=Succeeded",
                "--timeout=60s",
            ],
            None,
        ),
        "kubectl wait for the rotation",
    );
    let outcome = ok(
        ns.kubectl(
            &[
                "get",
                "rkr",
                "rotate-1",
                "-o",
                "jsonpath={.status.stage}|{.status.keyFingerprint}|{.status.secretName}|\
                 {.status.completionTime}",
            ],
            None,
        ),
        "the rotation's outcome",
    );
    let second = secret_field(&ns, "keyed-runtime-key", "password");
    assert_ne!(second, first);
    let new_fingerprint = cloudmigrate::engine::access::fingerprint(second.as_bytes());
    assert!(
        outcome.starts_with(&format!(
            "OldKeyRevoked|{new_fingerprint}|keyed-runtime-key|"
        )),
        "{outcome}"
    );
    let old_login = psql_as(&dst, role, &first, "SELECT 1").unwrap_err();
    assert!(
        old_login.contains("password authentication failed"),
        "{old_login}"
    );
    assert_eq!(psql_as(&dst, role, &second, "SELECT 1").unwrap(), "1");
    let previous = ok(
        ns.kubectl(
            &[
                "get",
                "secret",
                "keyed-runtime-key",
                "-o",
                "jsonpath={.data.previous-password}",
            ],
            None,
        ),
        "the Secret after the rotation",
    );
    assert_eq!(previous, "", "the old key stayed in the Secret");
    wait_for(
        &ns,
        "msched/keyed",
        "{.status.runtime.keyFingerprint}",
        |s| s == new_fingerprint,
        &controller,
    );

    // The next run writes with the new key.
    psql(
        &src,
        "UPDATE \"CRONUS$Item\" SET \"Text\" = 'changed' WHERE \"No_\" = 3",
    );
    request_run(&ns, "keyed", "2");
    let run2 = next_run(&ns, "keyed", &run1, &controller);
    assert_eq!(ended(&ns, &run2, &controller), "Succeeded");
    assert_eq!(
        psql(
            &dst,
            "SELECT \"Text\" FROM \"CRONUS$Item\" WHERE \"No_\" = 3"
        ),
        "changed"
    );

    // Applied again, the finished rotation does nothing.
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(rotation)),
        "applying the rotation again",
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(secret_field(&ns, "keyed-runtime-key", "password"), second);
    // Deleted and applied again without its status: the target's ledger knows it ran.
    ok(
        ns.kubectl(&["delete", "rkr", "rotate-1", "--wait"], None),
        "deleting the rotation",
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(rotation)),
        "applying the same rotation again",
    );
    ok(
        ns.kubectl(
            &[
                "wait",
                "rkr/rotate-1",
                "--for=condition=Succeeded",
                "--timeout=60s",
            ],
            None,
        ),
        "kubectl wait for the rotation seen again",
    );
    let seen_again = ok(
        ns.kubectl(
            &[
                "get",
                "rkr",
                "rotate-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].reason}",
            ],
            None,
        ),
        "the rotation seen again",
    );
    assert_eq!(seen_again, "AlreadyDone");
    assert_eq!(secret_field(&ns, "keyed-runtime-key", "password"), second);

    // The key shows nowhere but in its Secret.
    let everything = [
        ok(
            ns.kubectl(&["get", "msched,mrun,rkr", "-o", "yaml"], None),
            "the objects",
        ),
        ok(
            ns.kubectl(&["get", "events", "-o", "yaml"], None),
            "the events",
        ),
        controller.log(),
    ]
    .join("\n");
    for key in [&first, &second] {
        assert!(!everything.contains(key.as_str()), "a key leaked");
    }

    // Deleting the schedule drops its role. A target that refuses the admin login holds the
    // deleted schedule, saying why, and the role is dropped once the login works again.
    let finalizers = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                "keyed",
                "-o",
                "jsonpath={.metadata.finalizers}",
            ],
            None,
        ),
        "the schedule's finalizers",
    );
    assert!(
        finalizers.contains("cloudmigrate.io/runtime-role"),
        "{finalizers}"
    );
    let role_count = || {
        psql(
            &dst,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'"),
        )
    };
    let wrong = r#"{"stringData":{"password":"not-the-password"}}"#;
    ok(
        ns.kubectl(&["patch", "secret", "pg", "-p", wrong], None),
        "breaking the admin password",
    );
    ok(
        ns.kubectl(&["delete", "msched", "keyed", "--wait=false"], None),
        "deleting the schedule",
    );
    let held = wait_for(
        &ns,
        "msched/keyed",
        "{.status.conditions[?(@.type==\"RuntimeKey\")].reason}|\
         {.status.conditions[?(@.type==\"RuntimeKey\")].message}",
        |s| s.starts_with("RoleNotDropped|"),
        &controller,
    );
    assert!(held.contains("password authentication failed"), "{held}");
    assert!(held.contains(&format!("DROP ROLE \"{role}\"")), "{held}");
    assert_eq!(role_count(), "1", "the role went while the login failed");
    password_secret(&ns.name);
    ok(
        ns.kubectl(
            &["wait", "msched/keyed", "--for=delete", "--timeout=90s"],
            None,
        ),
        "waiting for the schedule to go",
    );
    assert_eq!(role_count(), "0", "the role stayed after the schedule went");
    // The table the role had created stays, with its rows, now the admin user's.
    assert_eq!(
        psql(
            &dst,
            "SELECT tableowner || ' ' || (SELECT count(*) FROM \"CRONUS$Item\") \
             FROM pg_tables WHERE tablename = 'CRONUS$Item'"
        ),
        "cloudmigrate 20"
    );
    let reasons = ok(
        ns.kubectl(
            &["get", "events", "-o", "jsonpath={.items[*].reason}"],
            None,
        ),
        "the events",
    );
    assert!(reasons.contains("RuntimeRoleNotDropped"), "{reasons}");
    assert!(reasons.contains("RuntimeRoleDropped"), "{reasons}");
}

/// Disable Cloud Migration: the checklist lists what is left per company; disabling removes
/// change tracking from the source and revokes the runtime key, each step marked done; enabling
/// again makes a new key, and the next run copies in full, saying why.
#[test]
fn disabling_removes_tracking_and_the_key_and_enabling_again_copies_in_full() {
    let ns = TestNamespace::new("ctl-off");
    let (src, dst) = (database("off_src"), database("off_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY); INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'item ' || g FROM generate_series(1, 10) g;\n\
         CREATE TABLE \"CRONUS$Access Control\" (\"User\" text PRIMARY KEY);",
    );
    // Login roles belong to the server: a name of its own, so that a second run of the tests on
    // one server finds no role of the first.
    let name = role_safe_name("retired");
    let object = format!("msched/{name}");
    let role = cloudmigrate::engine::access::role_name(
        &ns.name,
        &name,
        cloudmigrate::db::Dialect::Postgres,
    );
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml(&name, &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    request_run(&ns, &name, "1");
    let run1 = wait_for(
        &ns,
        &object,
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run1, &controller), "Succeeded");
    let step =
        |name: &str, field: &str| format!("{{.status.checklist[?(@.name==\"{name}\")].{field}}}");
    // The checklist, from the target's run log: the table not migrated by design.
    let tables = wait_for(
        &ns,
        &object,
        &step("SetUpTablesNotMigrated", "description"),
        |s| s.contains("Access Control"),
        &controller,
    );
    assert!(
        tables.contains("Access Control (not migrated by design)"),
        "{tables}"
    );
    let open = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                &name,
                "-o",
                &format!(
                    "jsonpath={}|{}|{}|{}",
                    step("SetUpTablesNotMigrated", "company"),
                    step("InitializeCompany", "done"),
                    step("MapUsers", "done"),
                    step("DisableCloudMigration", "done")
                ),
            ],
            None,
        ),
        "the checklist",
    );
    assert_eq!(open, "CRONUS|false|false|false");
    // The table set up in the cloud by hand, and said so in git: the step is done.
    ok(
        ns.kubectl(
            &[
                "patch",
                &object,
                "--type=merge",
                "-p",
                r#"{"spec":{"tables":{"setUpByHand":["Access Control"]}}}"#,
            ],
            None,
        ),
        "acknowledging the table",
    );
    let done = wait_for(
        &ns,
        &object,
        &format!(
            "{}|{}",
            step("SetUpTablesNotMigrated", "done"),
            step("SetUpTablesNotMigrated", "description")
        ),
        |s| s.starts_with("true|"),
        &controller,
    );
    assert!(
        done.contains("set up by hand (spec.tables.setUpByHand: 1)"),
        "{done}"
    );
    let triggers: i32 = psql(
        &src,
        "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal",
    )
    .parse()
    .unwrap();
    assert!(triggers > 0, "the run installed no change tracking");

    // Disable Cloud Migration.
    ok(
        ns.kubectl(
            &[
                "patch",
                "msched",
                &name,
                "--type=merge",
                "-p",
                r#"{"spec":{"disabled":true}}"#,
            ],
            None,
        ),
        "disabling",
    );
    let done = wait_for(
        &ns,
        &object,
        &format!(
            "{}|{}|{}|{}",
            step("DisableCloudMigration", "done"),
            step("LetActiveRunFinish", "done"),
            step("RemoveChangeTracking", "done"),
            step("RevokeRuntimeKey", "done")
        ),
        |s| s == "true|true|true|true",
        &controller,
    );
    assert_eq!(done, "true|true|true|true");
    assert_eq!(
        psql(
            &src,
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &src,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'cloudmigrate%'"
        ),
        "0"
    );
    assert_eq!(
        psql(
            &dst,
            &format!("SELECT count(*) FROM pg_roles WHERE rolname = '{role}'")
        ),
        "0"
    );
    let secret = ns.kubectl(&["get", "secret", &format!("{name}-runtime-key")], None);
    assert!(secret.stderr.contains("NotFound"), "{}", secret.stderr);
    let key = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                &name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"RuntimeKey\")].reason}",
            ],
            None,
        ),
        "the key condition",
    );
    assert_eq!(key, "Revoked");
    // No role is left to drop: nothing holds the schedule on deletion any more.
    let finalizers = |when: &str| {
        ok(
            ns.kubectl(
                &[
                    "get",
                    "msched",
                    &name,
                    "-o",
                    "jsonpath={.metadata.finalizers}",
                ],
                None,
            ),
            when,
        )
    };
    assert_eq!(finalizers("the finalizers once disabled"), "");
    // The cloud keeps its data.
    assert_eq!(psql(&dst, "SELECT count(*) FROM \"CRONUS$Item\""), "10");

    // Enabled again: a new key, and the next run copies every table in full.
    ok(
        ns.kubectl(
            &[
                "patch",
                "msched",
                &name,
                "--type=merge",
                "-p",
                r#"{"spec":{"disabled":false}}"#,
            ],
            None,
        ),
        "enabling again",
    );
    wait_for(
        &ns,
        &object,
        "{.status.conditions[?(@.type==\"RuntimeKey\")].reason}",
        |s| s == "InEffect",
        &controller,
    );
    assert!(
        finalizers("the finalizers once enabled again").contains("cloudmigrate.io/runtime-role")
    );
    request_run(&ns, &name, "2");
    let run2 = next_run(&ns, &name, &run1, &controller);
    assert_eq!(ended(&ns, &run2, &controller), "Succeeded");
    let reason = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run2,
                "-o",
                "jsonpath={.status.tables[?(@.table==\"Item\")].fullReason}",
            ],
            None,
        ),
        "the run's reason",
    );
    assert_eq!(reason, "ReEnabled");
}

/// Runs the binary as the kubectl plugin `kubectl cloudmigrate`, found through PATH as kubectl
/// finds plugins.
pub(crate) fn plugin(args: &[&str]) -> (bool, String) {
    let dir = std::env::temp_dir().join(format!("cloudmigrate-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("kubectl-cloudmigrate");
    if !link.exists() {
        let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_cloudmigrate"), &link);
    }
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .arg("cloudmigrate")
        .args(args)
        .env("PATH", path)
        .output()
        .expect("kubectl must be on PATH");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The operations CLI as a kubectl plugin, against the real controller: check waits for it,
/// run starts a run and names it, status shows the schedule on one screen, stop and report
/// work, and the support bundle holds no secret.
#[test]
fn the_operations_cli_works_as_a_kubectl_plugin() {
    let ns = TestNamespace::new("ctl-cli");
    let (src, dst) = (database("cli_src"), database("cli_dst"));
    psql(
        &src,
        "CREATE TABLE \"Company\" (\"Name\" text PRIMARY KEY); INSERT INTO \"Company\" VALUES ('CRONUS');\n\
         CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'item ' || g FROM generate_series(1, 5) g;",
    );
    let lease = format!("{}/cloudmigrate-controller", ns.name);
    let controller = Controller::start_with(
        &ns.name,
        &["--leader-elect", "--leader-lease", &lease],
        "cli-1",
    );
    let (ready, said) = plugin(&["check", "--wait", "60", "--lease", &lease, "-n", &ns.name]);
    assert!(ready, "{said}");
    assert!(
        said.contains("leads (Lease") && said.ends_with("ready\n"),
        "{said}"
    );
    // No Lease there, and the local API server serves no pods: not ready, and it says why.
    let missing = format!("{}/nobody", ns.name);
    let (ready, said) = plugin(&["check", "--lease", &missing, "-n", &ns.name]);
    assert!(!ready, "{said}");
    assert!(said.contains("not ready"), "{said}");

    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml("cli", &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    let (ok_run, said) = plugin(&["run", "cli", "-n", &ns.name]);
    assert!(ok_run, "{said}");
    let run = said
        .strip_prefix("run ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run named: {said}"))
        .to_string();
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");

    let (ok_status, screen) = plugin(&["status", "cli", "-n", &ns.name]);
    assert!(ok_status, "{screen}");
    let header = format!("MigrationSchedule {}/cli", ns.name);
    for expected in [
        header.as_str(),
        "Ready",
        run.as_str(),
        "Succeeded",
        "Setup checklist",
        "DisableCloudMigration",
        "Recent events",
    ] {
        assert!(screen.contains(expected), "{expected:?} missing:\n{screen}");
    }
    assert!(!screen.contains(&pg().1), "the status shows a password");

    let (_, said) = plugin(&["stop", &run, "-n", &ns.name]);
    assert!(said.contains("has ended already"), "{said}");
    let (stopped, said) = plugin(&["stop", "no-such-run", "-n", &ns.name]);
    assert!(!stopped && said.contains("not found"), "{said}");

    let dir = std::env::temp_dir().join(format!("cloudmigrate-report-{}", ns.name));
    let (reported, said) = plugin(&[
        "report",
        "-n",
        &ns.name,
        "--controller-namespace",
        &ns.name,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(reported, "{said}");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(read("migrationschedules.yaml").contains("name: cli"));
    assert!(read("migrationruns.yaml").contains(&run));
    let secrets = read("secrets-redacted.yaml");
    assert!(
        secrets.contains("cli-runtime-key") && secrets.contains("<redacted:"),
        "{secrets}"
    );
    let key = secret_field(&ns, "cli-runtime-key", "password");
    for file in std::fs::read_dir(&dir).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        assert!(
            !text.contains(&key) && !text.contains(&pg().1),
            "a secret in the bundle"
        );
    }
    // What could not be read is said, not skipped.
    assert!(
        read("README.txt").contains("Not in the bundle"),
        "{}",
        read("README.txt")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Deleting a schedule removes change tracking from its source, as Disable does: the
/// finalizer holds the schedule until the triggers, functions and change tables are gone, and
/// an event says so. The ERP's tables take writes as before.
#[test]
fn deleting_a_schedule_removes_change_tracking_from_its_source() {
    let ns = TestNamespace::new("ctl-gone");
    let (src, dst) = (database("gone_src"), database("gone_dst"));
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY, \"Text\" text);\n\
         INSERT INTO \"CRONUS$Item\" SELECT g, 'item ' || g FROM generate_series(1, 10) g;",
    );
    // Login roles belong to the server: a name of its own, so that no other test's schedule
    // shares its role.
    let name = role_safe_name("untracked");
    let object = format!("msched/{name}");
    let controller = Controller::start(&ns.name);
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&schedule_yaml(&name, &src, &dst, "0 2 * * *")),
        ),
        "applying the schedule",
    );
    request_run(&ns, &name, "1");
    let run1 = wait_for(
        &ns,
        &object,
        "{.status.lastRun.name}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ended(&ns, &run1, &controller), "Succeeded");
    let ours = "SELECT count(*) FROM pg_trigger WHERE tgname LIKE 'cloudmigrate_ct_%'";
    assert_ne!(
        psql(&src, ours),
        "0",
        "the run installed no change tracking"
    );
    let finalizers = wait_for(
        &ns,
        &object,
        "{.metadata.finalizers}",
        |s| s.contains("cloudmigrate.io/runtime-role"),
        &controller,
    );
    assert!(
        finalizers.contains("cloudmigrate.io/runtime-role"),
        "{finalizers}"
    );
    let deleted = ns.kubectl(
        &["delete", "msched", &name, "--wait", "--timeout=90s"],
        None,
    );
    assert!(
        deleted.ok,
        "deleting the schedule: {}\n{}",
        deleted.stderr,
        controller.log()
    );
    assert_eq!(psql(&src, ours), "0", "triggers stayed on the source");
    assert_eq!(
        psql(
            &src,
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'cloudmigrate_ct%'"
        ),
        "0"
    );
    psql(&src, "INSERT INTO \"CRONUS$Item\" VALUES (11, 'after')");
    let events = ok(
        ns.kubectl(
            &["get", "events", "-o", "jsonpath={.items[*].reason}"],
            None,
        ),
        "the events",
    );
    assert!(events.contains("ChangeTrackingRemoved"), "{events}");
}
