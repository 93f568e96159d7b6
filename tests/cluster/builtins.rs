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

/// The Job executor plays the kubelet's and the scheduler's failures with real Pod objects: an
/// image with no entrypoint here cannot be pulled (ErrImagePull, then ImagePullBackOff), a
/// missing Secret is CreateContainerConfigError until it is made (then the pod runs), a node
/// selector no node matches leaves the pod Unschedulable, and a missing ServiceAccount gives
/// the Job a FailedCreate event and no pod. A pod that runs and ends shows its phases.
#[test]
fn the_job_executor_makes_pods_that_fail_as_a_kubelet_says() {
    let ns = TestNamespace::new("builtin-pods");
    let job = |name: &str, pod: &str, container: &str| {
        format!(
            "apiVersion: batch/v1\nkind: Job\nmetadata: {{name: {name}}}\nspec:\n  backoffLimit: 0\n  template:\n    spec:\n      restartPolicy: Never\n{pod}      containers:\n      - name: main\n{container}"
        )
    };
    // The first pod of a Job, as `path` shows it, once `done` accepts it.
    let pods_of = |job: &str, path: &str, done: &dyn Fn(&str) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let selector = format!("batch.kubernetes.io/job-name={job}");
        let path = format!("jsonpath={{range .items[0]}}{path}{{end}}");
        loop {
            let out = ns.kubectl(&["get", "pods", "-l", &selector, "-o", &path], None);
            if out.ok && done(&out.stdout) {
                return out.stdout;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the pod of Job {job} never got there: {} {}",
                out.stdout,
                out.stderr
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    };
    let yaml = [
        job("pull", "", "        image: registry.example/nowhere:1\n"),
        job(
            "config",
            "",
            "        image: busybox\n        command: [sh, -c, 'test \"$PW\" = s3cret']\n        env:\n        - {name: PW, valueFrom: {secretKeyRef: {name: later, key: password}}}\n",
        ),
        job(
            "nowhere",
            "      nodeSelector: {pool: migration}\n",
            "        image: busybox\n        command: [sh, -c, 'true']\n",
        ),
        job(
            "noaccount",
            "      serviceAccountName: missing\n",
            "        image: busybox\n        command: [sh, -c, 'true']\n",
        ),
    ]
    .join("---\n");
    ns.kubectl(&["apply", "-f", "-"], Some(&yaml))
        .expect_ok("the Jobs");
    let pulled = pods_of(
        "pull",
        "{.status.phase}|{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        &|s| s.contains("ImagePullBackOff"),
    );
    assert_eq!(
        pulled,
        "Pending|ImagePullBackOff|Back-off pulling image \"registry.example/nowhere:1\""
    );
    let events = ns
        .kubectl(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=Failed,involvedObject.kind=Pod",
            ],
            None,
        )
        .expect_ok("the kubelet's events");
    assert!(
        events.contains("ErrImagePull") || events.contains("Failed to pull image"),
        "{events}"
    );
    let config = pods_of(
        "config",
        "{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}",
        &|s| s.starts_with("CreateContainerConfigError"),
    );
    assert_eq!(
        config,
        "CreateContainerConfigError|secret \"later\" not found"
    );
    let unscheduled = pods_of(
        "nowhere",
        "{.status.conditions[?(@.type==\"PodScheduled\")].status}|{.status.conditions[?(@.type==\"PodScheduled\")].reason}|{.status.conditions[?(@.type==\"PodScheduled\")].message}|{.spec.nodeName}",
        &|s| s.starts_with("False"),
    );
    assert!(
        unscheduled.starts_with("False|Unschedulable|0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."),
        "{unscheduled}"
    );
    assert!(
        unscheduled.ends_with('|'),
        "scheduled to a node: {unscheduled}"
    );
    let refused = wait(
        &ns,
        "events",
        "{range .items[?(@.reason==\"FailedCreate\")]}{.involvedObject.name}: {.message}{end}",
        |s| !s.is_empty(),
    );
    assert!(
        refused.starts_with(&format!(
            "noaccount: Error creating: pods \"noaccount-\" is forbidden: error looking up service account {}/missing: serviceaccount \"missing\" not found",
            ns.name
        )),
        "{refused}"
    );
    let none = ns
        .kubectl(
            &[
                "get",
                "pods",
                "-l",
                "batch.kubernetes.io/job-name=noaccount",
                "-o",
                "name",
            ],
            None,
        )
        .expect_ok("the refused Job's pods");
    assert_eq!(none.trim(), "", "a pod without its ServiceAccount: {none}");
    // The Secret made, the waiting pod runs and succeeds, and shows it.
    ns.kubectl(
        &[
            "create",
            "secret",
            "generic",
            "later",
            "--from-literal=password=s3cret",
        ],
        None,
    )
    .expect_ok("the Secret");
    let done = wait(&ns, "job/config", "{.status.conditions[*].type}", |s| {
        s.contains("Complete") || s.contains("Failed")
    });
    assert_eq!(done, "SuccessCriteriaMet Complete");
    let finished = pods_of(
        "config",
        "{.status.phase}|{.status.containerStatuses[0].state.terminated.reason}|{.status.containerStatuses[0].state.terminated.exitCode}|{.spec.nodeName}",
        &|s| s.starts_with("Succeeded"),
    );
    assert_eq!(finished, "Succeeded|Completed|0|localhost");
    let table = ns
        .kubectl(&["get", "pods"], None)
        .expect_ok("kubectl get pods");
    assert!(
        table.contains("ImagePullBackOff") && table.contains("Completed"),
        "{table}"
    );
}
