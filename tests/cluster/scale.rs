//! The controller with a few hundred schedules, watching every namespace of an API server of
//! its own (so that it never meets the other tests' objects). Correctness only: timing and
//! memory belong to `benches/controller_scale.py`.

use crate::api_server::{Kubectl, kubectl_at, repo};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An etcd and API server started for one test by `tests/apiserver/start.sh`, stopped on drop.
struct PrivateApiServer {
    state: PathBuf,
    kubeconfig: String,
}

impl PrivateApiServer {
    fn start(label: &str) -> Self {
        let state = std::env::temp_dir().join(format!(
            "cloudmigrate-{label}-{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let out = Command::new(repo().join("tests/apiserver/start.sh"))
            .arg(&state)
            .output()
            .expect("tests/apiserver/start.sh must run");
        assert!(
            out.status.success(),
            "starting a private API server failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let kubeconfig = state.join("kubeconfig").to_string_lossy().into_owned();
        let server = Self { state, kubeconfig };
        let mut all = String::new();
        for crd in cloudmigrate::api::crds() {
            all.push_str(&cloudmigrate::api::crd_yaml(&crd).unwrap());
        }
        server
            .kubectl(&["apply", "--server-side", "-f", "-"], Some(&all))
            .expect_ok("installing the CRDs");
        server
            .kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    "crd",
                    "--all",
                ],
                None,
            )
            .expect_ok("waiting for the CRDs");
        server
    }

    fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        kubectl_at(&self.kubeconfig, args, stdin)
    }
}

impl Drop for PrivateApiServer {
    fn drop(&mut self) {
        if let Ok(pids) = std::fs::read_to_string(self.state.join("pids")) {
            for pid in pids.split_whitespace() {
                let _ = Command::new("kill").arg(pid).status();
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

struct ClusterController {
    child: Child,
    log: PathBuf,
}

impl ClusterController {
    /// A controller of every namespace of `server`, which runs in-process in `in_process`
    /// (a namespace, or `*`) on SQLite files under `files`, and logs to a file there.
    fn start(server: &PrivateApiServer, files: &std::path::Path, in_process: &str) -> Self {
        let log = files.join("controller.log");
        let child = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
            .args(["controller", "--listen", "127.0.0.1:0"])
            .args(["--in-process-namespaces", in_process, "--sqlite-dir"])
            .arg(files)
            .env("KUBECONFIG", &server.kubeconfig)
            .env("RUST_LOG", "info,sqlx=error")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Self { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ClusterController {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn schedule(ns: &str, name: &str, source: &str, target: &str, cron: Option<&str>) -> String {
    let cron = cron
        .map(|c| format!("  schedule: \"{c}\"\n"))
        .unwrap_or_default();
    format!(
        "---\napiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\n\
         metadata: {{name: {name}, namespace: {ns}}}\nspec:\n\
         \x20 source: {{url: \"sqlite://{source}\"}}\n\
         \x20 target: {{url: \"sqlite://{target}\", createMissingTables: true}}\n\
         {cron}\x20 runtime: {{runner: InProcess}}\n"
    )
}

/// A small ERP-like SQLite source: one company table and one per-database table.
fn sqlite_source(path: &std::path::Path) {
    let url = format!("sqlite://{}?mode=rwc", path.display());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        for sql in [
            "CREATE TABLE \"CRONUS$Item\" (\"No_\" TEXT PRIMARY KEY, \"Description\" TEXT)",
            "INSERT INTO \"CRONUS$Item\" VALUES ('1000', 'Bicycle'), ('1001', 'Touring Bicycle')",
            "CREATE TABLE \"Company\" (\"Name\" TEXT PRIMARY KEY)",
            "INSERT INTO \"Company\" VALUES ('CRONUS')",
        ] {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        pool.close().await;
    });
}

#[test]
fn hundreds_of_schedules_are_scheduled_conflicts_cross_namespaces_and_requests_still_run() {
    const SCHEDULES: usize = 300;
    let server = PrivateApiServer::start("scale");
    let files = tempdir("scale-files");

    // Two tenants on one source database, in two namespaces: the older keeps it, once it has
    // shown that it can open its databases (so they exist).
    let shared = files.join("shared-source.db").display().to_string();
    sqlite_source(&files.join("shared-source.db"));
    std::fs::File::create(files.join("b-target.db")).unwrap();
    let older = schedule(
        "tenant-b",
        "erp",
        &shared,
        &files.join("b-target.db").display().to_string(),
        Some("0 3 * * *"),
    );
    server
        .kubectl(&["create", "-f", "-"], Some(&older))
        .expect_ok("creating the older tenant's schedule");
    // Creation times have whole seconds.
    std::thread::sleep(Duration::from_millis(1100));
    let newer = schedule(
        "tenant-c",
        "erp",
        &shared,
        &files.join("c-target.db").display().to_string(),
        Some("0 3 * * *"),
    );
    server
        .kubectl(&["create", "-f", "-"], Some(&newer))
        .expect_ok("creating the newer tenant's schedule");

    let mut many = String::new();
    for i in 0..SCHEDULES {
        many.push_str(&schedule(
            "tenant-a",
            &format!("s{i:03}"),
            &files.join(format!("s{i}-source.db")).display().to_string(),
            &files.join(format!("s{i}-target.db")).display().to_string(),
            Some("0 2 * * *"),
        ));
    }
    server
        .kubectl(&["create", "-f", "-"], Some(&many))
        .expect_ok("creating the schedules");

    // The operator lets every namespace run in-process, on files of this folder only.
    let controller = ClusterController::start(&server, &files, "*");

    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = server
            .kubectl(
                &[
                    "get",
                    "msched",
                    "-n",
                    "tenant-a",
                    "-o",
                    "jsonpath={range .items[*]}{.status.nextRunTime}{\"\\n\"}{end}",
                ],
                None,
            )
            .expect_ok("reading the schedules");
        let scheduled = out.lines().filter(|l| !l.trim().is_empty()).count();
        if scheduled == SCHEDULES {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {scheduled} of {SCHEDULES} schedules got a nextRunTime\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let condition = |ns: &str, t: &str, field: &str| {
        server
            .kubectl(
                &[
                    "get",
                    "msched/erp",
                    "-n",
                    ns,
                    "-o",
                    &format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].{field}}}"),
                ],
                None,
            )
            .expect_ok("reading a condition")
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while condition("tenant-c", "Conflict", "status") != "True" {
        assert!(
            Instant::now() < deadline,
            "the newer tenant's schedule shows no conflict\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let message = condition("tenant-c", "Conflict", "message");
    // The other tenant's schedule is not named.
    assert!(
        !message.contains("tenant-b") && message.contains("(in another namespace)"),
        "{message}"
    );
    assert!(message.contains("same source"), "{message}");
    assert_eq!(condition("tenant-b", "Conflict", "status"), "False");
    assert_eq!(condition("tenant-c", "Ready", "reason"), "Conflict");

    // A run request among them all is still handled, and its run ends.
    let source = files.join("manual-source.db");
    sqlite_source(&source);
    let manual = schedule(
        "tenant-a",
        "manual",
        &source.display().to_string(),
        &files.join("manual-target.db").display().to_string(),
        None,
    )
    .replace("  runtime:", "  runRequest: first\n  runtime:");
    server
        .kubectl(&["create", "-f", "-"], Some(&manual))
        .expect_ok("creating the schedule with a run request");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = server.kubectl(
            &[
                "get",
                "msched/manual",
                "-n",
                "tenant-a",
                "-o",
                "jsonpath={.status.lastHandledRunRequest} {.status.lastRun.result}",
            ],
            None,
        );
        if out.ok && out.stdout.trim() == "first Succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the run request was not handled to the end: {:?}\n{}",
            out.stdout,
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let _ = std::fs::remove_dir_all(&files);
}

/// A new folder under the temp directory, named after `label` and the time.
pub(crate) fn tempdir(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cloudmigrate-{label}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One tenant whose target database takes its connections and never answers cannot hold the
/// controller's reconciles: more of its schedules than there are reconcile slots each wait for
/// that database, and another tenant's run request is still handled to the end at once.
#[test]
fn a_tenant_whose_database_never_answers_holds_only_its_share() {
    const SLOW: usize = 12;
    let server = PrivateApiServer::start("fair");
    let files = tempdir("fair-files");
    // A "database" that accepts connections and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    let secret = "---\napiVersion: v1\nkind: Secret\nmetadata: {name: pg, namespace: slow}\n\
                  stringData: {password: not-used}\n";
    let mut slow = secret.to_string();
    for i in 0..SLOW {
        slow.push_str(&format!(
            "---\napiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\n\
             metadata: {{name: s{i:02}, namespace: slow}}\nspec:\n\
             \x20 source: {{url: \"postgres://erp@127.0.0.1:{port}/nav{i}\", passwordSecretRef: {{name: pg}}}}\n\
             \x20 target: {{url: \"postgres://admin@127.0.0.1:{port}/bc{i}\", passwordSecretRef: {{name: pg}}}}\n"
        ));
    }
    server
        .kubectl(&["create", "-f", "-"], Some(&slow))
        .expect_ok("creating the slow tenant's schedules");

    let controller = ClusterController::start(&server, &files, "quick");
    // The slow tenant's schedules are at work on their database (their runtime keys wait for
    // the target) before the other tenant comes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = server
            .kubectl(&["get", "secrets", "-n", "slow", "-o", "name"], None)
            .expect_ok("listing the slow tenant's Secrets");
        if out.lines().any(|l| l.contains("runtime-key")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no schedule of the slow tenant reached its database\n{}",
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let source = files.join("quick-source.db");
    sqlite_source(&source);
    let quick = schedule(
        "quick",
        "erp",
        &source.display().to_string(),
        &files.join("quick-target.db").display().to_string(),
        None,
    )
    .replace("  runtime:", "  runRequest: now\n  runtime:");
    let asked = Instant::now();
    server
        .kubectl(&["create", "-f", "-"], Some(&quick))
        .expect_ok("creating the other tenant's schedule");
    // Without shares, the slow tenant's schedules would fill every reconcile slot for the
    // 30 s of a connection attempt; with them, the run ends within seconds.
    let deadline = asked + Duration::from_secs(20);
    loop {
        let out = server.kubectl(
            &[
                "get",
                "msched/erp",
                "-n",
                "quick",
                "-o",
                "jsonpath={.status.lastRun.result}",
            ],
            None,
        );
        if out.ok && out.stdout.trim() == "Succeeded" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the other tenant's run did not end while the slow tenant waited: {:?}\n{}",
            out.stdout,
            controller.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::fs::remove_dir_all(&files);
}
