//! The one admission rule for every run, end to end with the real controller and PostgreSQL: a
//! run made by hand waits for the run at work and for a pending CloudReset; a run request waits
//! for an active run and for a key rotation, then starts exactly one run; `cloudmigrate run`
//! says that it waits, and why. The target's own run log shows that no two runs overlapped.

use super::api_server::TestNamespace;
use super::controller::{
    Controller, ended, ok, plugin, psql, request_run, role_safe_name, running, runs,
    slow_schedule_named, wait_for,
};

/// Creates the MigrationRun `name` of the schedule `schedule` by hand, as a person would.
fn hand_made_run(ns: &TestNamespace, schedule: &str, name: &str) {
    ok(
        ns.kubectl(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationRun\n\
                 metadata: {{name: {name}}}\nspec: {{scheduleRef: {{name: {schedule}}}}}\n"
            )),
        ),
        "creating a run by hand",
    );
}

/// The reason of the run's Running condition, and its start time, once it has a condition.
fn waiting(ns: &TestNamespace, run: &str, controller: &Controller) -> String {
    wait_for(
        ns,
        &format!("mrun/{run}"),
        "{.status.conditions[?(@.type==\"Running\")].reason}|{.status.startTime}",
        |s| s != "|",
        controller,
    )
}

/// The run that the schedule's run request `token` started, once there is one.
fn run_of_request(ns: &TestNamespace, token: &str, controller: &Controller) -> String {
    let annotation = "{range .items[*]}{.metadata.name}={.metadata.annotations.cloudmigrate\\.io/run-request}{\"\\n\"}{end}";
    let mut found = String::new();
    for _ in 0..600 {
        let listed = ok(
            ns.kubectl(
                &["get", "mrun", "-o", &format!("jsonpath={annotation}")],
                None,
            ),
            "listing runs",
        );
        let mine: Vec<&str> = listed
            .lines()
            .filter_map(|l| l.strip_suffix(&format!("={token}")))
            .collect();
        assert!(mine.len() <= 1, "two runs for one request: {listed}");
        if let Some(run) = mine.first() {
            found = run.to_string();
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(
        !found.is_empty(),
        "no run for {token}: {}",
        controller.log()
    );
    found
}

/// `(run, started_at, finished_at)` of every run the target's ledger recorded, by start.
fn run_log(dst: &str) -> Vec<(String, String, String)> {
    psql(
        dst,
        "SELECT run_id || '|' || started_at || '|' || coalesce(finished_at, '') \
         FROM cloudmigrate_runs ORDER BY started_at",
    )
    .lines()
    .map(|l| {
        let mut it = l.split('|').map(str::to_string);
        (
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
            it.next().unwrap_or_default(),
        )
    })
    .collect()
}

#[test]
fn a_hand_made_run_and_a_request_wait_for_the_run_at_work_and_never_overlap() {
    let ns = TestNamespace::new("rules-wait");
    let slow = role_safe_name("rules-wait");
    let (controller, dst) = slow_schedule_named(&ns, &slow, "rw", "");
    request_run(&ns, &slow, "1");
    let first = running(&ns, &slow, &controller);

    // A run made by hand meanwhile waits, naming the run at work.
    hand_made_run(&ns, &slow, "by-hand");
    assert_eq!(waiting(&ns, "by-hand", &controller), "WaitingForRun|");
    let message = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "by-hand",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Running\")].message}",
            ],
            None,
        ),
        "the waiting run's message",
    );
    assert!(message.contains(&first), "{message}");

    // Run Migration Now meanwhile: the request waits, and the command says so and why.
    let (ran, said) = plugin(&["run", &slow, "-n", &ns.name]);
    assert!(ran, "{said}");
    assert!(said.contains("waits (RunActive)"), "{said}");
    let token = said
        .strip_prefix("runRequest ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no token in: {said}"))
        .to_string();
    let pending = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                &slow,
                "-o",
                "jsonpath={.status.pendingRunRequest.token}|\
                 {.status.conditions[?(@.type==\"RunRequest\")].reason}",
            ],
            None,
        ),
        "the pending request",
    );
    assert_eq!(pending, format!("{token}|RunRequestWaiting"));

    // The first ends; the run made by hand goes next (it was made first), then the request's.
    assert_eq!(ended(&ns, &first, &controller), "Succeeded");
    assert_eq!(ended(&ns, "by-hand", &controller), "Succeeded");
    let requested = run_of_request(&ns, &token, &controller);
    assert_eq!(ended(&ns, &requested, &controller), "Succeeded");
    assert_eq!(runs(&ns).len(), 3, "{:?}", runs(&ns));
    let handled = ok(
        ns.kubectl(
            &[
                "get",
                "msched",
                &slow,
                "-o",
                "jsonpath={.status.lastHandledRunRequest}|{.status.pendingRunRequest}",
            ],
            None,
        ),
        "the handled request",
    );
    assert_eq!(handled, format!("{token}|"));

    // The target's own log: three runs, each started after the one before had ended.
    let log = run_log(&dst);
    let order: Vec<&str> = log.iter().map(|(r, _, _)| r.as_str()).collect();
    assert_eq!(
        order,
        [first.as_str(), "by-hand", requested.as_str()],
        "{log:?}"
    );
    for pair in log.windows(2) {
        assert!(
            !pair[0].2.is_empty() && pair[1].1 >= pair[0].2,
            "runs overlapped: {log:?}"
        );
    }
}

#[test]
fn a_hand_made_run_waits_for_a_pending_reset_then_copies_in_full() {
    let ns = TestNamespace::new("rules-reset");
    let slow = role_safe_name("rules-reset");
    let (controller, dst) = slow_schedule_named(&ns, &slow, "rr", "");
    request_run(&ns, &slow, "1");
    let first = running(&ns, &slow, &controller);
    // The reset waits for the run at work; a run made meanwhile waits for the reset.
    let reset = "apiVersion: cloudmigrate.io/v1alpha1\nkind: CloudReset\nmetadata: {name: clear}\n\
                 spec:\n  scheduleRef: {name: SLOW}\n  confirm: SLOW\n"
        .replace("SLOW", &slow);
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&reset)),
        "applying the reset",
    );
    wait_for(
        &ns,
        &format!("msched/{slow}"),
        "{.status.conditions[?(@.type==\"Resetting\")].status}",
        |s| s == "True",
        &controller,
    );
    hand_made_run(&ns, &slow, "after-reset");
    assert_eq!(
        waiting(&ns, "after-reset", &controller),
        "WaitingForCloudReset|"
    );
    assert_eq!(ended(&ns, &first, &controller), "Succeeded");
    ok(
        ns.kubectl(
            &[
                "wait",
                "creset/clear",
                "--for=condition=Succeeded",
                "--timeout=120s",
            ],
            None,
        ),
        "kubectl wait for the reset",
    );
    assert_eq!(
        ended(&ns, "after-reset", &controller),
        "Succeeded",
        "{}",
        ok(
            ns.kubectl(&["get", "mrun", "after-reset", "-o", "yaml"], None),
            "the run"
        )
    );
    let reasons = ok(
        ns.kubectl(
            &[
                "get",
                "mrun",
                "after-reset",
                "-o",
                "jsonpath={range .status.tables[*]}{.mode}/{.fullReason} {end}",
            ],
            None,
        ),
        "the run's tables",
    );
    assert_eq!(
        reasons.split_whitespace().collect::<Vec<_>>(),
        vec!["Full/Reset"; 6],
        "{reasons}"
    );
    // The reset emptied the run log; the run after it is the one there.
    let log = run_log(&dst);
    assert_eq!(log.len(), 1, "{log:?}");
    assert_eq!(log[0].0, "after-reset");
}

#[test]
fn a_request_made_during_a_key_rotation_starts_exactly_one_run_after_it() {
    let ns = TestNamespace::new("rules-rotate");
    let slow = role_safe_name("rules-rotate");
    let (controller, _dst) = slow_schedule_named(&ns, &slow, "rk", "");
    request_run(&ns, &slow, "1");
    let first = running(&ns, &slow, &controller);
    let rotation = "apiVersion: cloudmigrate.io/v1alpha1\nkind: RuntimeKeyRotation\n\
                    metadata: {name: rotate}\nspec:\n  scheduleRef: {name: SLOW}\n"
        .replace("SLOW", &slow);
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&rotation)),
        "applying the rotation",
    );
    request_run(&ns, &slow, "during-rotation");
    let pending = wait_for(
        &ns,
        &format!("msched/{slow}"),
        "{.status.pendingRunRequest.token}|{.status.pendingRunRequest.reason}",
        |s| s.starts_with("during-rotation|"),
        &controller,
    );
    // Held by the rotation, or (once it is done) by the run still at work.
    assert!(
        pending == "during-rotation|RotatingKey" || pending == "during-rotation|RunActive",
        "{pending}"
    );
    assert_eq!(ended(&ns, &first, &controller), "Succeeded");
    ok(
        ns.kubectl(
            &[
                "wait",
                "rkr/rotate",
                "--for=condition=Succeeded",
                "--timeout=120s",
            ],
            None,
        ),
        "kubectl wait for the rotation",
    );
    let requested = run_of_request(&ns, "during-rotation", &controller);
    assert_eq!(ended(&ns, &requested, &controller), "Succeeded");
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(runs(&ns).len(), 2, "{:?}", runs(&ns));
}

/// The controller runs at most `--max-in-process-runs` runs in-process at once: a run of
/// another schedule waits for a place (`WaitingForRunner`), and starts when the first ends.
#[test]
fn in_process_runs_wait_for_a_place_under_the_operators_cap() {
    use super::controller::{database, ledgers, schedule_yaml};
    let ns = TestNamespace::new("rules-cap");
    let (slow_src, slow_dst) = (database("cap_src"), database("cap_dst"));
    let (small_src, small_dst) = (database("cap2_src"), database("cap2_dst"));
    psql(&slow_src, &ledgers(6, 150_000));
    psql(
        &small_src,
        "CREATE TABLE \"CRONUS$Item\" (\"No_\" int PRIMARY KEY); INSERT INTO \"CRONUS$Item\" VALUES (1)",
    );
    let controller = Controller::start_with(&ns.name, &["--max-in-process-runs", "1"], "a");
    let slow = role_safe_name("cap-slow");
    let slow_yaml = schedule_yaml(&slow, &slow_src, &slow_dst, "0 2 * * *")
        .replace("runner: InProcess", "runner: InProcess, parallelism: 1");
    let small = schedule_yaml("small", &small_src, &small_dst, "0 2 * * *");
    for (yaml, what) in [
        (slow_yaml, "the slow schedule"),
        (small, "the small schedule"),
    ] {
        ok(ns.kubectl(&["apply", "-f", "-"], Some(&yaml)), what);
    }
    request_run(&ns, &slow, "1");
    let first = running(&ns, &slow, &controller);
    hand_made_run(&ns, "small", "small-now");
    assert_eq!(waiting(&ns, "small-now", &controller), "WaitingForRunner|");
    assert_eq!(ended(&ns, &first, &controller), "Succeeded");
    assert_eq!(ended(&ns, "small-now", &controller), "Succeeded");
    assert_eq!(
        psql(&small_dst, "SELECT count(*) FROM \"CRONUS$Item\""),
        "1"
    );
}
