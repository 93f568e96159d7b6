//! Every file in `examples/` applies as it is, client-side and server-side.

use crate::api_server::{TestNamespace, yaml_files};

fn apply_each(ns: &TestNamespace, extra: &[&str]) {
    for file in yaml_files("examples") {
        let path = file.to_string_lossy();
        let mut args = vec!["apply"];
        args.extend_from_slice(extra);
        args.extend(["-f", &path]);
        let out = ns
            .kubectl(&args, None)
            .expect_ok(&format!("kubectl apply {extra:?} -f {path}"));
        assert!(
            out.contains("created") || out.contains("applied"),
            "{path}: {out}"
        );
    }
    // Applying again changes nothing and is accepted (GitOps tools apply over and over).
    let mut args = vec!["apply"];
    args.extend_from_slice(extra);
    args.extend(["-f", "examples/"]);
    ns.kubectl(&args, None)
        .expect_ok("applying the examples a second time");
    let listed = ns
        .kubectl(&["get", "cloudmigrate", "-o", "name"], None)
        .expect_ok("listing");
    assert_eq!(
        listed.lines().count(),
        yaml_files("examples").len(),
        "{listed}"
    );
}

#[test]
fn examples_apply_client_side() {
    let ns = TestNamespace::new("examples-csa");
    apply_each(&ns, &[]);
}

#[test]
fn examples_apply_server_side() {
    let ns = TestNamespace::new("examples-ssa");
    apply_each(&ns, &["--server-side", "--field-manager=gitops"]);
}

/// The server fills in the documented defaults, so `kubectl get -o yaml` shows what applies.
#[test]
fn defaults_are_filled_in_by_the_server() {
    let ns = TestNamespace::new("defaults");
    let minimal = "apiVersion: cloudmigrate.io/v1alpha1\nkind: MigrationSchedule\nmetadata: {name: minimal}\n\
                   spec:\n  source: {url: 'sqlite:///data/onprem.db'}\n  target: {url: 'sqlite:///data/cloud.db'}\n";
    ns.kubectl(&["apply", "-f", "-"], Some(minimal))
        .expect_ok("applying a minimal schedule");
    let spec = ns
        .kubectl(
            &["get", "msched", "minimal", "-o", "jsonpath={.spec}"],
            None,
        )
        .expect_ok("reading the spec");
    let spec: serde_json::Value = serde_json::from_str(&spec).unwrap();
    assert_eq!(spec["product"], "BusinessCentral");
    assert_eq!(spec["timeZone"], "UTC");
    assert_eq!(spec["concurrencyPolicy"], "Forbid");
    assert_eq!(spec["runtime"]["workers"], 1);
    assert_eq!(spec["runtime"]["parallelism"], 4);
    assert_eq!(spec["history"]["successful"], 10);
    assert_eq!(spec["history"]["failed"], 5);
    assert_eq!(spec["target"]["createMissingTables"], false);
}

/// `examples/gitops` renders with `kubectl kustomize`, and each overlay's custom resources
/// apply to the API server (into a test namespace in place of the overlay's own), twice, as a
/// GitOps tool applies them. The Secrets template is not among the resources.
#[test]
fn the_gitops_layout_renders_and_its_resources_apply() {
    for (overlay, namespace, kinds) in [
        ("test", "erp-migration-test", 3),
        ("production", "erp-migration-prod", 5),
    ] {
        let path = format!("examples/gitops/overlays/{overlay}");
        let rendered = crate::api_server::kubectl(&["kustomize", &path], None)
            .expect_ok(&format!("kubectl kustomize {path}"));
        assert!(
            !rendered.contains("REPLACE-ME"),
            "{overlay} renders the Secrets template"
        );
        assert!(rendered.contains(&format!("namespace: {namespace}")));
        let ns = TestNamespace::new(&format!("gitops-{overlay}"));
        let objects: Vec<&str> = rendered
            .split("\n---\n")
            .filter(|doc| !doc.contains("kind: Namespace"))
            .collect();
        let ours = objects.join("\n---\n").replace(
            &format!("namespace: {namespace}"),
            &format!("namespace: {}", ns.name),
        );
        for _ in 0..2 {
            ns.kubectl(
                &[
                    "apply",
                    "--server-side",
                    "--field-manager=gitops",
                    "-f",
                    "-",
                ],
                Some(&ours),
            )
            .expect_ok(&format!("applying the {overlay} overlay"));
        }
        let listed = ns
            .kubectl(&["get", "cloudmigrate", "-o", "name"], None)
            .expect_ok("listing");
        assert_eq!(listed.lines().count(), kinds, "{overlay}: {listed}");
    }
}
