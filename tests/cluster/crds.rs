//! The CRDs on a real API server: accepted, established, discoverable and documented.

use crate::api_server::{TestNamespace, install_crds, kubectl};

#[test]
fn every_crd_becomes_established() {
    install_crds();
    let listed = kubectl(&["get", "crd", "-o", "name"], None).expect_ok("kubectl get crd");
    for crd in cloudmigrate::api::crds() {
        let name = crd.metadata.name.unwrap();
        assert!(
            listed.contains(&name),
            "{name} is not listed by kubectl get crd:\n{listed}"
        );
        let conditions = kubectl(
            &[
                "get",
                "crd",
                &name,
                "-o",
                "jsonpath={range .status.conditions[*]}{.type}={.status} {end}",
            ],
            None,
        )
        .expect_ok("reading CRD conditions");
        for wanted in ["Established=True", "NamesAccepted=True"] {
            assert!(conditions.contains(wanted), "{name}: {conditions}");
        }
        // A schema the server could not take as structural shows up as this condition.
        assert!(
            !conditions.contains("NonStructuralSchema=True"),
            "{name}: {conditions}"
        );
    }
}

#[test]
fn short_names_and_the_category_resolve() {
    let ns = TestNamespace::new("names");
    for short in [
        "msched",
        "mrun",
        "csel",
        "umap",
        "creset",
        "rkr",
        "cloudmigrate",
    ] {
        ns.kubectl(&["get", short], None)
            .expect_ok(&format!("kubectl get {short}"));
    }
}

#[test]
fn explain_shows_the_field_docs() {
    install_crds();
    let cases = [
        ("msched.spec.runtime.workers", "Number of worker pods"),
        ("msched.spec.schedule", "5-field cron expression"),
        (
            "msched.spec.source.passwordSecretRef",
            "Secret key that holds the password",
        ),
        ("mrun.spec.type", "Diagnostic"),
        ("mrun.status.tables.guidance", "What to do about it"),
        ("csel.spec.companies.initialization", "MarkInitialized"),
        ("umap.spec.mappings.cloudUser", "authentication email"),
        ("creset.spec.confirm", "The schedule's name again"),
        ("rkr", "fingerprint, never the key"),
    ];
    for (path, wanted) in cases {
        let text = kubectl(&["explain", path], None).expect_ok(&format!("kubectl explain {path}"));
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            flat.contains(wanted),
            "kubectl explain {path} lacks {wanted:?}:\n{text}"
        );
    }
}

/// The header line of `kubectl get KIND` in a namespace with one object of that kind.
fn header(ns: &TestNamespace, kind: &str) -> Vec<String> {
    let out = ns
        .kubectl(&["get", kind], None)
        .expect_ok(&format!("kubectl get {kind}"));
    out.lines()
        .next()
        .unwrap_or_default()
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(|c| c.trim().to_string())
        .collect()
}

#[test]
fn kubectl_get_shows_the_printer_columns() {
    let ns = TestNamespace::new("columns");
    ns.kubectl(&["apply", "-f", "examples/"], None)
        .expect_ok("applying the examples");
    let expected: [(&str, &[&str]); 6] = [
        (
            "msched",
            &[
                "NAME",
                "SCHEDULE",
                "SUSPENDED",
                "LAST RUN",
                "RESULT",
                "MIGRATED",
                "FAILED",
                "NEXT RUN",
                "AGE",
            ],
        ),
        (
            "mrun",
            &[
                "NAME", "SCHEDULE", "TYPE", "RESULT", "REASON", "TABLES", "FAILED", "ROWS",
                "STARTED", "DURATION",
            ],
        ),
        (
            "csel",
            &[
                "NAME",
                "SCHEDULE",
                "FOUND",
                "SELECTED",
                "INITIALIZED",
                "READY",
                "AGE",
            ],
        ),
        (
            "umap",
            &["NAME", "SCHEDULE", "APPLIED", "PROBLEMS", "READY", "AGE"],
        ),
        (
            "creset",
            &["NAME", "SCHEDULE", "SUCCEEDED", "REASON", "AGE"],
        ),
        (
            "rkr",
            &["NAME", "SCHEDULE", "SUCCEEDED", "STAGE", "REASON", "AGE"],
        ),
    ];
    for (kind, columns) in expected {
        assert_eq!(
            header(&ns, kind),
            columns.to_vec(),
            "columns of kubectl get {kind}"
        );
    }
}

/// The columns read real status fields: a status written through the status subresource shows
/// up in `kubectl get`.
#[test]
fn printer_columns_show_status_values() {
    let ns = TestNamespace::new("values");
    ns.kubectl(
        &[
            "apply",
            "-f",
            "examples/migrationrun.yaml",
            "-f",
            "examples/migrationschedule.yaml",
            "-f",
            "examples/cloudreset.yaml",
        ],
        None,
    )
    .expect_ok("applying examples");
    let run_status = r#"{"status":{"result":"PartiallySucceeded","duration":"4m12s",
        "startTime":"2026-11-25T01:30:00Z",
        "progress":{"tables":"338/340","tablesTotal":340,"tablesDone":338,"tablesFailed":2,"rowsCopied":1234567}}}"#;
    ns.kubectl(
        &[
            "patch",
            "mrun",
            "cronus-manual-1",
            "--subresource=status",
            "--type=merge",
            "-p",
            run_status,
        ],
        None,
    )
    .expect_ok("patching the run's status");
    let row = ns
        .kubectl(&["get", "mrun", "cronus-manual-1", "--no-headers"], None)
        .expect_ok("get mrun");
    for value in [
        "cronus",
        "Diagnostic",
        "PartiallySucceeded",
        "338/340",
        "1234567",
        "4m12s",
    ] {
        assert!(row.contains(value), "kubectl get mrun lacks {value}: {row}");
    }

    let schedule_status = r#"{"status":{"nextRunTime":"2099-01-01T00:30:00Z",
        "lastRun":{"name":"cronus-202611250130","result":"Succeeded"},
        "migration":{"tablesMigrated":311,"tablesFailed":3}}}"#;
    ns.kubectl(
        &[
            "patch",
            "msched",
            "cronus",
            "--subresource=status",
            "--type=merge",
            "-p",
            schedule_status,
        ],
        None,
    )
    .expect_ok("patching the schedule's status");
    let row = ns
        .kubectl(&["get", "msched", "cronus", "--no-headers"], None)
        .expect_ok("get msched");
    // A future time shows as written, not as `<invalid>` (a date column would).
    for value in [
        "30 1 * * *",
        "cronus-202611250130",
        "Succeeded",
        "311",
        "2099-01-01T00:30:00Z",
    ] {
        assert!(
            row.contains(value),
            "kubectl get msched lacks {value}: {row}"
        );
    }
    assert!(!row.contains("<invalid>"), "{row}");

    let reset_status = r#"{"status":{"conditions":[{"type":"Succeeded","status":"False",
        "reason":"ActiveRun","message":"waiting for cronus-1 to end","lastTransitionTime":"2026-11-25T01:30:00Z"}]}}"#;
    ns.kubectl(
        &[
            "patch",
            "creset",
            "cronus-reset",
            "--subresource=status",
            "--type=merge",
            "-p",
            reset_status,
        ],
        None,
    )
    .expect_ok("patching the reset's status");
    let row = ns
        .kubectl(&["get", "creset", "cronus-reset", "--no-headers"], None)
        .expect_ok("get creset");
    assert!(row.contains("False") && row.contains("ActiveRun"), "{row}");
}

/// Conditions are a list map keyed by type: two field managers applying different condition
/// types through server-side apply keep both.
#[test]
fn conditions_merge_by_type_under_server_side_apply() {
    let ns = TestNamespace::new("conditions");
    ns.kubectl(&["apply", "-f", "examples/migrationschedule.yaml"], None)
        .expect_ok("apply");
    let condition = |kind: &str, reason: &str| {
        format!(
            "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata: {{name: cronus}}\n\
             status:\n  observedGeneration: 1\n  conditions:\n  - type: {kind}\n    status: \"True\"\n    \
             reason: {reason}\n    message: set by a test\n    lastTransitionTime: \"2026-11-25T00:00:00Z\"\n"
        )
    };
    for (manager, kind, reason) in [
        ("first", "Ready", "Valid"),
        ("second", "Scheduled", "NextRunPlanned"),
    ] {
        ns.kubectl(
            &[
                "apply",
                "--server-side",
                "--subresource=status",
                &format!("--field-manager={manager}"),
                "-f",
                "-",
            ],
            Some(&condition(kind, reason)),
        )
        .expect_ok("applying a condition");
    }
    let types = ns
        .kubectl(
            &[
                "get",
                "msched",
                "cronus",
                "-o",
                "jsonpath={.status.conditions[*].type}",
            ],
            None,
        )
        .expect_ok("reading conditions");
    assert_eq!(
        types.split_whitespace().collect::<Vec<_>>(),
        ["Ready", "Scheduled"]
    );
    let generation = ns
        .kubectl(
            &[
                "get",
                "msched",
                "cronus",
                "-o",
                "jsonpath={.status.observedGeneration}",
            ],
            None,
        )
        .expect_ok("reading observedGeneration");
    assert_eq!(generation, "1");
}
