//! Bad manifests are refused by the API server with a message a person understands, and
//! one-shot or owned specs cannot be edited.

use crate::api_server::{TestNamespace, yaml_files};

/// Each fixture names the message it must produce on a line `# expect: ...`, and on a line
/// `# expect-server-side: ...` where server-side apply words it differently.
#[test]
fn every_invalid_fixture_is_rejected_with_its_message() {
    let ns = TestNamespace::new("invalid");
    let mut failures = Vec::new();
    for file in yaml_files("tests/fixtures/invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let expected = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let server_side = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect-server-side: "))
            .unwrap_or(expected);
        for (mode, expected) in [(&[][..], expected), (&["--server-side"][..], server_side)] {
            let mut args = vec!["apply"];
            args.extend_from_slice(mode);
            args.extend(["-f", "-"]);
            let out = ns.kubectl(&args, Some(&text));
            if out.ok || !out.stderr.contains(expected) {
                failures.push(format!(
                    "{} ({mode:?}): ok={} expected {expected:?}\n  got: {}",
                    file.display(),
                    out.ok,
                    out.stderr
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let left = ns
        .kubectl(&["get", "cloudmigrate", "-o", "name"], None)
        .expect_ok("listing");
    assert!(
        left.trim().is_empty(),
        "an invalid manifest was stored: {left}"
    );
}

fn refused(ns: &TestNamespace, args: &[&str], stdin: Option<&str>, message: &str) {
    let out = ns.kubectl(args, stdin);
    assert!(!out.ok, "kubectl {args:?} was accepted");
    assert!(
        out.stderr.contains(message),
        "kubectl {args:?}: expected {message:?}, got {}",
        out.stderr
    );
}

#[test]
fn a_cloud_reset_cannot_be_edited() {
    let ns = TestNamespace::new("reset-immutable");
    ns.kubectl(&["create", "-f", "examples/cloudreset.yaml"], None)
        .expect_ok("create");
    let message = "a CloudReset cannot be changed: delete it and create a new one";
    let changed =
        std::fs::read_to_string(crate::api_server::repo().join("examples/cloudreset.yaml"))
            .unwrap()
            .replace("name: cronus\n", "name: other\n")
            .replace("confirm: cronus", "confirm: other");
    refused(&ns, &["apply", "-f", "-"], Some(&changed), message);
    refused(
        &ns,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&changed),
        message,
    );
    refused(
        &ns,
        &[
            "patch",
            "creset",
            "cronus-reset",
            "--type=merge",
            "-p",
            r#"{"spec":{"scheduleRef":{"name":"other"},"confirm":"other"}}"#,
        ],
        None,
        message,
    );
    let kept = ns
        .kubectl(
            &[
                "get",
                "creset",
                "cronus-reset",
                "-o",
                "jsonpath={.spec.scheduleRef.name}",
            ],
            None,
        )
        .expect_ok("get");
    assert_eq!(kept, "cronus");
}

#[test]
fn a_key_rotation_cannot_be_edited() {
    let ns = TestNamespace::new("rkr-immutable");
    ns.kubectl(&["create", "-f", "examples/runtimekeyrotation.yaml"], None)
        .expect_ok("create");
    refused(
        &ns,
        &[
            "patch",
            "rkr",
            "cronus-key-2026-11",
            "--type=merge",
            "-p",
            r#"{"spec":{"scheduleRef":{"name":"other"}}}"#,
        ],
        None,
        "a RuntimeKeyRotation cannot be changed",
    );
}

#[test]
fn schedule_ref_cannot_change_on_owned_kinds() {
    let ns = TestNamespace::new("ref-immutable");
    for file in [
        "examples/migrationrun.yaml",
        "examples/companyselection.yaml",
        "examples/usermapping.yaml",
    ] {
        ns.kubectl(&["create", "-f", file], None)
            .expect_ok("create");
    }
    let patch = r#"{"spec":{"scheduleRef":{"name":"other"}}}"#;
    for (kind, name, message) in [
        (
            "mrun",
            "cronus-manual-1",
            "scheduleRef cannot change: create a new MigrationRun",
        ),
        (
            "csel",
            "cronus",
            "scheduleRef cannot change: create a new CompanySelection",
        ),
        (
            "umap",
            "cronus",
            "scheduleRef cannot change: create a new UserMapping",
        ),
    ] {
        refused(
            &ns,
            &["patch", kind, name, "--type=merge", "-p", patch],
            None,
            message,
        );
    }
    // Other fields stay editable.
    ns.kubectl(
        &[
            "patch",
            "mrun",
            "cronus-manual-1",
            "--type=merge",
            "-p",
            r#"{"spec":{"stop":true}}"#,
        ],
        None,
    )
    .expect_ok("stopping a run");
}
