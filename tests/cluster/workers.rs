//! Worker Jobs on a cluster that says no: the real controller, the local API server's Job
//! executor with real Pod objects, and the failures a cluster has. A worker that cannot start
//! shows on its run (`WorkersNotStarting`, with the pod's own reason and the fix), and the run
//! fails at its start deadline, its Job deleted, so that the next run may start.

use crate::api_server::TestNamespace;
use crate::controller::{
    Controller, database, ended, ok, psql, request_run, schedule_yaml, stop_run, wait_for,
};

/// What `cloudmigrate check` says of the namespace (its Lease is missing: only the lines count).
pub(crate) fn check(ns: &TestNamespace) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args([
            "check",
            "-n",
            &ns.name,
            "--lease",
            &format!("{}/nobody", ns.name),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A schedule with the Job runner and `runtime` added to its runtime.
pub(crate) fn job_schedule(name: &str, src: &str, dst: &str, runtime: &str) -> String {
    schedule_yaml(name, src, dst, "0 2 * * *")
        .replace("runner: InProcess", &format!("runner: Job{runtime}"))
}

/// The schedule's active run, once it has one.
fn active_run(ns: &TestNamespace, schedule: &str, controller: &Controller) -> String {
    wait_for(
        ns,
        &format!("msched/{schedule}"),
        "{.status.activeRun}",
        |s| !s.is_empty(),
        controller,
    )
}

/// Waits until the run's one-word state is `reason`, and gives its Running condition's message.
fn running_says(ns: &TestNamespace, run: &str, reason: &str, controller: &Controller) -> String {
    let out = wait_for(
        ns,
        &format!("mrun/{run}"),
        "{.status.reason}|{.status.conditions[?(@.type==\"Running\")].message}",
        |s| s.starts_with(&format!("{reason}|")),
        controller,
    );
    out.split_once('|').unwrap().1.to_string()
}

pub(crate) fn small_source(label: &str) -> (String, String) {
    let (src, dst) = (
        database(&format!("{label}_src")),
        database(&format!("{label}_dst")),
    );
    psql(
        &src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1), (2);",
    );
    (src, dst)
}

/// An image that cannot be pulled: the run names the image and the pull secret, `kubectl get
/// mrun` and `cloudmigrate status` show `WorkersNotStarting`; at the deadline the run fails with
/// it and its Job (and pods) go; with the image fixed, the next run starts and succeeds.
#[test]
fn an_image_that_cannot_be_pulled_is_named_then_fails_the_run_at_the_deadline() {
    let ns = TestNamespace::new("wk-pull");
    let (src, dst) = small_source("wpull");
    let controller = Controller::start(&ns.name);
    let image = "registry.example/nowhere/cloudmigrate:9.9.9";
    let yaml = job_schedule(
        "pull",
        &src,
        &dst,
        &format!(
            ", image: \"{image}\", startDeadlineSeconds: 15, imagePullSecrets: [{{name: regcred}}]"
        ),
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    request_run(&ns, "pull", "1");
    let run = active_run(&ns, "pull", &controller);
    let said = running_says(&ns, &run, "WorkersNotStarting", &controller);
    assert!(
        said.contains(&format!("cannot pull image \"{image}\"")),
        "{said}"
    );
    assert!(
        said.contains("ImagePullBackOff") || said.contains("ErrImagePull"),
        "{said}"
    );
    assert!(
        said.contains("spec.runtime.imagePullSecrets") && said.contains("now regcred"),
        "{said}"
    );
    assert!(
        said.contains("the run fails if they have not started by"),
        "{said}"
    );
    let table = ok(ns.kubectl(&["get", "mrun", &run], None), "kubectl get mrun");
    assert!(
        table.contains("REASON") && table.contains("WorkersNotStarting"),
        "{table}"
    );
    let events = ok(
        ns.kubectl(
            &[
                "get",
                "events",
                "--field-selector",
                "reason=WorkersNotStarting",
            ],
            None,
        ),
        "the run's events",
    );
    assert!(events.contains(&format!("MigrationRun/{run}")), "{events}");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args(["status", "pull", "-n", &ns.name])
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&status.stdout);
    assert!(
        screen.contains("WorkersNotStarting"),
        "{screen}\n{}",
        String::from_utf8_lossy(&status.stderr)
    );

    assert_eq!(ended(&ns, &run, &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                &run,
                "-o",
                "jsonpath={.status.reason}|{.status.conditions[?(@.type==\"Succeeded\")].message}",
            ],
            None,
        ),
        "why the run failed",
    );
    assert!(why.starts_with("WorkersNotStarting|worker pod "), "{why}");
    assert!(
        why.contains("past spec.runtime.startDeadlineSeconds, 15s"),
        "{why}"
    );
    ns.wait_until(
        "jobs",
        "{.items[*].metadata.name}",
        |s| !s.split_whitespace().any(|j| j == format!("{run}-1")),
        || controller.log(),
    );
    // The image fixed (the controller's own), the next run starts and ends well.
    let fixed = job_schedule("pull", &src, &dst, ", startDeadlineSeconds: 15");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&fixed)),
        "the fixed schedule",
    );
    request_run(&ns, "pull", "2");
    let next = wait_for(
        &ns,
        "msched/pull",
        "{.status.lastRun.name}",
        |s| !s.is_empty() && s != run,
        &controller,
    );
    assert_eq!(ended(&ns, &next, &controller), "Succeeded");
}

/// A namespace without the worker ServiceAccount: the Job cannot create its pods, and the run
/// says so with the commands that make it; once made, the workers start and the run succeeds.
#[test]
fn a_namespace_without_the_worker_service_account_says_how_to_make_it() {
    let ns = TestNamespace::new("wk-account");
    ok(
        ns.kubectl(&["delete", "serviceaccount", "cloudmigrate-worker"], None),
        "removing the worker ServiceAccount",
    );
    let (src, dst) = small_source("wacct");
    let controller = Controller::start(&ns.name);
    let yaml = job_schedule("account", &src, &dst, "");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    request_run(&ns, "account", "1");
    let run = active_run(&ns, "account", &controller);
    let said = running_says(&ns, &run, "WorkersNotStarting", &controller);
    assert!(
        said.contains(&format!(
            "the namespace {} has no ServiceAccount cloudmigrate-worker",
            ns.name
        )),
        "{said}"
    );
    assert!(said.contains("workers.namespaces"), "{said}");
    assert!(
        said.contains(&format!(
            "kubectl create serviceaccount cloudmigrate-worker -n {}",
            ns.name
        )),
        "{said}"
    );
    // `cloudmigrate check` says so too.
    let check_said = check(&ns);
    assert!(
        check_said.contains(&format!(
            "workers in {}: no ServiceAccount cloudmigrate-worker",
            ns.name
        )),
        "{check_said}"
    );
    ok(
        ns.kubectl(&["create", "serviceaccount", "cloudmigrate-worker"], None),
        "making the ServiceAccount",
    );
    assert_eq!(ended(&ns, &run, &controller), "Succeeded");
    let check = check(&ns);
    assert!(
        check.contains(&format!(
            "workers in {}: ServiceAccount cloudmigrate-worker",
            ns.name
        )),
        "{check}"
    );
}

/// A worker pod no node can take says what the scheduler said; a stop ends such a run at once
/// (its workers would never read it), and its Job goes.
#[test]
fn an_unschedulable_worker_says_what_the_scheduler_said_and_a_stop_ends_it() {
    let ns = TestNamespace::new("wk-sched");
    let (src, dst) = small_source("wsched");
    let controller = Controller::start(&ns.name);
    let yaml = job_schedule("sched", &src, &dst, ", nodeSelector: {pool: migration}");
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    request_run(&ns, "sched", "1");
    let run = active_run(&ns, "sched", &controller);
    let said = running_says(&ns, &run, "WorkersNotStarting", &controller);
    assert!(
        said.contains("cannot be scheduled (Unschedulable)"),
        "{said}"
    );
    assert!(
        said.contains("didn't match Pod's node affinity/selector"),
        "{said}"
    );
    stop_run(&ns, &run);
    assert_eq!(ended(&ns, &run, &controller), "Stopped");
    ns.wait_until(
        "jobs",
        "{.items[*].metadata.name}",
        |s| !s.split_whitespace().any(|j| j == format!("{run}-1")),
        || controller.log(),
    );
}

/// A Secret the workers need that is missing: the schedule names it (its run requests wait),
/// and a run made by hand fails, naming it, before any pod is made: the controller grants the
/// run's tables first, from the source. (The worker pods take their Secret keys as optional,
/// so that a Secret deleted later fails the worker with a message naming it, rather than a pod
/// that waits in CreateContainerConfigError.)
#[test]
fn a_missing_secret_of_a_job_run_is_named() {
    let ns = TestNamespace::new("wk-secret");
    let (src, dst) = small_source("wsec");
    let controller = Controller::start(&ns.name);
    let yaml = job_schedule("secret", &src, &dst, ", backoffLimit: 0").replacen(
        "passwordSecretRef: {name: pg}",
        "passwordSecretRef: {name: erp-db}",
        1,
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    let ready = wait_for(
        &ns,
        "msched/secret",
        "{.status.conditions[?(@.type==\"Ready\")].message}",
        |s| s.contains("erp-db"),
        &controller,
    );
    assert!(
        ready.contains("Secret \"erp-db\" does not exist"),
        "{ready}"
    );
    let run = "by-hand";
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\nmetadata: {name: by-hand}\n\
                 spec: {scheduleRef: {name: secret}}\n",
            ),
        ),
        "creating the run",
    );
    assert_eq!(ended(&ns, run, &controller), "Failed");
    let why = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                run,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Succeeded\")].message}",
            ],
            None,
        ),
        "why",
    );
    assert!(why.contains("Secret \"erp-db\" does not exist"), "{why}");
}
