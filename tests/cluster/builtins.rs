//! The built-in objects that cloudmigrate uses (Secrets, Namespaces, Events, Jobs, Leases) on
//! the API server under test, the local Job executor that runs Jobs there, and the objects that
//! cloudmigrate builds, validated strictly against the published Kubernetes OpenAPI schemas.

use crate::api_server::{TestNamespace, kubectl, validate_strictly};
use cloudmigrate::api::run::MigrationRun;
use cloudmigrate::api::schedule::MigrationSchedule;
use std::time::{Duration, Instant};

/// Polls a jsonpath of an object until `done` accepts it.
fn wait(ns: &TestNamespace, object: &str, jsonpath: &str, done: impl Fn(&str) -> bool) -> String {
    ns.wait_until(object, jsonpath, done, String::new)
}

/// Whether a process whose command line holds `marker` runs.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().any(|e| {
        let Ok(e) = e else { return false };
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
    })
}

#[test]
fn kubectl_creates_and_lists_the_built_in_objects() {
    let ns = TestNamespace::new("builtin-kubectl");
    let listed = kubectl(&["get", "namespace", &ns.name, "-o", "name"], None);
    assert_eq!(
        listed.expect_ok("the test's namespace").trim(),
        format!("namespace/{}", ns.name)
    );
    ns.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "db",
            "--from-literal=password=s3cret",
        ],
        None,
    )
    .expect_ok("kubectl create secret generic");
    let data = ns
        .kubectl(
            &["get", "secret", "db", "-o", "jsonpath={.data.password}"],
            None,
        )
        .expect_ok("reading the Secret");
    assert_eq!(data, "czNjcmV0"); // base64 of s3cret
    // A basic-auth Secret needs a username or a password, as on a real server.
    let refused = ns.kubectl(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: Secret\nmetadata: {name: key}\ntype: kubernetes.io/basic-auth\nstringData: {other: x}\n"),
    );
    assert!(
        !refused.ok && refused.stderr.contains("username"),
        "{}",
        refused.stderr
    );
    for kind in ["jobs", "events", "leases", "configmaps", "serviceaccounts"] {
        ns.kubectl(&["get", kind], None)
            .expect_ok(&format!("kubectl get {kind}"));
    }
}

/// A pod gets Secret keys through its env, as the kubelet hands them over (an optional key that
/// is missing sets no variable), and its own client may not read Secrets, as a worker's
/// ServiceAccount may not: so a worker that read a Secret through the API would fail here.
#[test]
fn pods_get_secret_keys_through_their_env_and_may_not_read_secrets() {
    let ns = TestNamespace::new("builtin-secrets");
    let out = std::env::temp_dir().join(format!("{}-pod-secrets", ns.name));
    let _ = std::fs::remove_file(&out);
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: pw}}\nstringData: {{password: s3cret}}\n---\n\
         apiVersion: batch/v1\nkind: Job\nmetadata: {{name: secrets}}\nspec:\n  template:\n    spec:\n\
         \x20     restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n\
         \x20       command: [sh, -c, 'r=ok; test \"$PW\" = s3cret || r=no-env; \
         test -z \"${{MISSING+x}}\" || r=optional-missing-set; \
         kubectl get secret pw -n \"$NS\" >/dev/null 2>&1 && r=secret-readable; echo $r > {}']\n\
         \x20       env:\n\
         \x20       - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}\n\
         \x20       - {{name: PW, valueFrom: {{secretKeyRef: {{name: pw, key: password}}}}}}\n\
         \x20       - {{name: MISSING, valueFrom: {{secretKeyRef: {{name: pw, key: other, optional: true}}}}}}\n",
        out.display()
    );
    ns.kubectl(&["apply", "-f", "-"], Some(&yaml))
        .expect_ok("the Secret and the Job");
    let done = wait(&ns, "job/secrets", "{.status.conditions[*].type}", |s| {
        s.contains("Complete") || s.contains("Failed")
    });
    assert_eq!(done, "SuccessCriteriaMet Complete");
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    let _ = std::fs::remove_file(&out);
    assert_eq!(said.trim(), "ok");
}

#[test]
fn the_job_executor_runs_indexed_pods_and_honours_the_deadline_and_deletion() {
    let ns = TestNamespace::new("builtin-jobs");
    let job = |name: &str, spec: &str, command: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n{spec}\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: busybox\n        command: [sh, -c, '{command}']\n        env:\n        - {{name: NS, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}\n"
        )
    };
    // Three indexes, two at a time: each pod gets its index and the pod's env.
    let yaml = job(
        "indexed",
        "  completionMode: Indexed\n  completions: 3\n  parallelism: 2",
        "test \"$NS\" = \"$0\" || exit 9; test -n \"$JOB_COMPLETION_INDEX\"",
    )
    // The namespace goes in as $0, to compare with the env the fieldRef gave.
    .replace("']\n", &format!("', {}]\n", ns.name));
    ns.kubectl(&["apply", "-f", "-"], Some(&yaml))
        .expect_ok("the indexed Job");
    let done = wait(&ns, "job/indexed", "{.status.conditions[*].type}", |s| {
        s.contains("Complete") || s.contains("Failed")
    });
    assert_eq!(done, "SuccessCriteriaMet Complete");
    assert_eq!(
        wait(
            &ns,
            "job/indexed",
            "{.status.completedIndexes}|{.status.succeeded}",
            |_| true
        ),
        "0-2|3"
    );

    // Past activeDeadlineSeconds the pods are killed and the Job fails.
    let marker = format!("deadline-{}", ns.name);
    ns.kubectl(
        &["apply", "-f", "-"],
        Some(&job(
            "deadline",
            "  activeDeadlineSeconds: 2",
            &format!("sleep 60; echo {marker}"),
        )),
    )
    .expect_ok("the Job with a deadline");
    let reason = wait(
        &ns,
        "job/deadline",
        "{.status.conditions[?(@.type==\"Failed\")].reason}",
        |s| !s.is_empty(),
    );
    assert_eq!(reason, "DeadlineExceeded");
    let gone = Instant::now() + Duration::from_secs(40);
    while running(&marker) {
        assert!(Instant::now() < gone, "the pod of a failed Job still runs");
        std::thread::sleep(Duration::from_millis(200));
    }

    // Deleting a Job kills its pods.
    let marker = format!("deleted-{}", ns.name);
    ns.kubectl(
        &["apply", "-f", "-"],
        Some(&job(
            "deleted",
            "  backoffLimit: 0",
            &format!("sleep 60; echo {marker}"),
        )),
    )
    .expect_ok("the Job to delete");
    let started = Instant::now() + Duration::from_secs(30);
    while !running(&marker) {
        assert!(Instant::now() < started, "the pod never started");
        std::thread::sleep(Duration::from_millis(100));
    }
    ns.kubectl(&["delete", "job", "deleted"], None)
        .expect_ok("deleting the Job");
    let gone = Instant::now() + Duration::from_secs(40);
    while running(&marker) {
        assert!(Instant::now() < gone, "the pod of a deleted Job still runs");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The Job the controller builds for a run (the same function, with every runtime field set),
/// validated strictly. A misspelt field must fail the same check: it can fail.
#[test]
fn the_job_of_a_run_is_a_valid_kubernetes_object() {
    let schedule: MigrationSchedule = serde_json::from_value(serde_json::json!({
        "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
        "metadata": {"name": "erp", "namespace": "shop", "uid": "s-1"},
        "spec": {
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "postgres://cloud.example/bc"},
            "runtime": {"runner": "Job", "workers": 3, "backoffLimit": 4, "parallelism": 2,
                        "activeDeadlineSeconds": 7200, "image": "registry.example/cm:1",
                        "resources": {"limits": {"memory": "512Mi", "cpu": "2"},
                                      "requests": {"memory": "256Mi"}}}
        }
    }))
    .unwrap();
    let run: MigrationRun = serde_json::from_value(serde_json::json!({
        "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
        "metadata": {"name": "erp-202605010200", "namespace": "shop", "uid": "r-1"},
        "spec": {"scheduleRef": {"name": "erp"}}
    }))
    .unwrap();
    let job = cloudmigrate::runner::job::job_for(&run, &schedule, 2, "cloudmigrate-worker");
    let mut json = serde_json::to_value(&job).unwrap();
    json["apiVersion"] = "batch/v1".into();
    json["kind"] = "Job".into();
    validate_strictly(&[json.clone()]).unwrap_or_else(|e| panic!("the run's Job: {e}"));
    json["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always".into();
    let e = validate_strictly(&[json]).expect_err("a misspelt field passed strict validation");
    assert!(e.contains("imagePullPolicyy"), "{e}");
}
