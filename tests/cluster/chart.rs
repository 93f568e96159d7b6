//! The Helm chart, through Helm v4's own engine (helm-python-sdk, driven by
//! `tests/chart/helm.py`): linted strictly, rendered with the defaults and with every switch
//! on, each object validated strictly against the published Kubernetes schemas; bad values
//! fail with a message that names them; the roles grant what they say; deploy/ is its
//! render; and the Dockerfile lints and builds with the release command.

use crate::api_server::validate_strictly;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The virtualenv that tests/run.sh fills (helm-python-sdk, hadolint, kubernetes-validate).
fn venv_tool(tool: &str) -> PathBuf {
    let venv = std::env::var("CLOUDMIGRATE_VENV").unwrap_or_else(|_| {
        panic!("CLOUDMIGRATE_VENV is not set: run the tests with tests/run.sh, which installs it")
    });
    Path::new(&venv).join("bin").join(tool)
}

/// Runs tests/chart/helm.py; Ok(stdout) or Err(stderr).
fn helm(args: &[&str]) -> Result<String, String> {
    let out = Command::new(venv_tool("python"))
        .arg(repo().join("tests/chart/helm.py"))
        .args(args)
        .output()
        .expect("the virtualenv's python must run");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The objects of a render.
fn render(values: Value) -> Vec<Value> {
    let text = helm(&["render", &values.to_string()])
        .unwrap_or_else(|e| panic!("rendering with {values} failed: {e}"));
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Validates every object the Kubernetes schemas know (the Prometheus Operator's kinds are
/// not among them).
fn validate(objects: &[Value]) {
    let known: Vec<Value> = objects
        .iter()
        .filter(|o| {
            !o["apiVersion"]
                .as_str()
                .unwrap_or_default()
                .starts_with("monitoring.coreos.com/")
        })
        .cloned()
        .collect();
    if let Err(e) = validate_strictly(&known) {
        panic!("the chart renders invalid objects:\n{e}");
    }
}

#[test]
fn the_chart_lints_and_its_default_render_is_valid_and_locked_down() {
    let report = helm(&["lint"]).unwrap_or_else(|e| panic!("helm lint failed: {e}"));
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["errors"], json!([]), "{report}");

    let objects = render(json!({}));
    validate(&objects);
    let crds = of_kind(&objects, "CustomResourceDefinition");
    assert_eq!(crds.len(), 6);
    for crd in &crds {
        assert_eq!(
            crd["metadata"]["annotations"]["helm.sh/resource-policy"], "keep",
            "an uninstall must keep {}",
            crd["metadata"]["name"]
        );
    }
    let deployment = named(&objects, "Deployment", "cloudmigrate-controller");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    // One image, the one the Job runner defaults to.
    let image = format!(
        "ghcr.io/cloudmigrate/cloudmigrate:{}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(container["image"], image.as_str());
    assert_eq!(image, cloudmigrate::runner::job::DEFAULT_IMAGE);
    let env = container["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "CLOUDMIGRATE_WORKER_IMAGE" && e["value"] == image.as_str()),
        "{env:?}"
    );
    // Two replicas take part in leader election.
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--leader-elect"), "{args:?}");
    // The restricted Pod Security profile.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(of_kind(&objects, "Service").len(), 1);
    assert!(of_kind(&objects, "ServiceMonitor").is_empty());
    assert!(of_kind(&objects, "PodMonitor").is_empty());
    // The workers' account in the default namespace.
    let worker = named(&objects, "ServiceAccount", "cloudmigrate-worker");
    assert_eq!(worker["metadata"]["namespace"], "default");
}

#[test]
fn every_switch_renders_valid_objects() {
    let objects = render(json!({
        "image": {"repository": "registry.example/cm", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "crds": {"keep": false},
        "controller": {
            "replicas": 1, "watchNamespace": "erp", "logJson": false,
            "podAnnotations": {"team": "erp"}, "podLabels": {"tier": "ops"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical"
        },
        "workers": {"namespaces": ["erp", "erp-test"]},
        "rbac": {"aggregateToDefaultRoles": true},
        "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "labels": {"release": "prom"}}}
    }));
    validate(&objects);
    let deployment = named(&objects, "Deployment", "cloudmigrate-controller");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example/cm:0.1.0-rc1");
    let args = container["args"].to_string();
    assert!(
        !args.contains("--leader-elect"),
        "one replica needs no election: {args}"
    );
    assert!(args.contains("--namespace=erp"), "{args}");
    assert!(args.contains("--listen=0.0.0.0:9090"), "{args}");
    for crd in of_kind(&objects, "CustomResourceDefinition") {
        assert!(crd["metadata"]["annotations"]["helm.sh/resource-policy"].is_null());
    }
    assert_eq!(of_kind(&objects, "RoleBinding").len(), 2);
    let monitor = of_kind(&objects, "ServiceMonitor");
    assert_eq!(monitor.len(), 1);
    assert_eq!(monitor[0]["metadata"]["labels"]["release"], "prom");
    let admin = named(&objects, "ClusterRole", "cloudmigrate-admin");
    assert_eq!(
        admin["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"],
        "true"
    );
    let viewer = named(&objects, "ClusterRole", "cloudmigrate-viewer");
    assert_eq!(
        viewer["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );

    let objects = render(json!({
        "crds": {"create": false},
        "rbac": {"peopleRoles": false},
        "metrics": {"podMonitor": {"enabled": true}}
    }));
    validate(&objects);
    assert!(of_kind(&objects, "CustomResourceDefinition").is_empty());
    assert_eq!(of_kind(&objects, "PodMonitor").len(), 1);
    assert!(
        objects
            .iter()
            .all(|o| o["metadata"]["name"] != "cloudmigrate-admin")
    );
}

#[test]
fn bad_values_fail_at_install_with_a_message_that_names_them() {
    for (values, expected) in [
        (
            json!({"controller": {"replicas": 0}}),
            "/controller/replicas",
        ),
        (json!({"controler": {"replicas": 2}}), "controler"),
        (
            json!({"workers": {"namespaces": ["Bad_NS"]}}),
            "/workers/namespaces/0",
        ),
        (
            json!({"image": {"pullPolicy": "Sometimes"}}),
            "/image/pullPolicy",
        ),
        (
            json!({"metrics": {"serviceMonitor": {"enabled": true}, "podMonitor": {"enabled": true}}}),
            "choose one",
        ),
    ] {
        let error =
            helm(&["render", &values.to_string()]).expect_err(&format!("{values} rendered"));
        assert!(error.contains(expected), "{values}: {error}");
    }
}

/// Every (group, resource, verb) a ClusterRole grants.
fn grants(role: &Value) -> Vec<(String, String, String)> {
    let mut out = vec![];
    for rule in role["rules"].as_array().unwrap() {
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                for v in rule["verbs"].as_array().unwrap() {
                    out.push((
                        g.as_str().unwrap().to_string(),
                        r.as_str().unwrap().to_string(),
                        v.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_roles_for_people_grant_what_they_say() {
    let objects = render(json!({}));
    let viewer = grants(named(&objects, "ClusterRole", "cloudmigrate-viewer"));
    assert!(!viewer.is_empty());
    for (group, resource, verb) in &viewer {
        assert!(
            ["get", "list", "watch"].contains(&verb.as_str()),
            "the viewer may {verb} {resource}"
        );
        assert_ne!(resource, "secrets", "the viewer reads Secrets");
        assert!(
            group == "cloudmigrate.io" || resource == "events",
            "{group}/{resource}"
        );
    }
    let admin = grants(named(&objects, "ClusterRole", "cloudmigrate-admin"));
    for kind in [
        "migrationschedules",
        "migrationruns",
        "companyselections",
        "usermappings",
        "cloudresets",
        "runtimekeyrotations",
    ] {
        for verb in ["create", "delete", "patch", "get"] {
            assert!(
                admin.contains(&("cloudmigrate.io".into(), kind.into(), verb.into())),
                "the admin may not {verb} {kind}"
            );
        }
    }
    // Get Runtime Service Key.
    assert!(admin.contains(&("".into(), "secrets".into(), "get".into())));
}

#[test]
fn deploy_manifest_is_the_charts_render() {
    let rendered = helm(&["deploy"]).unwrap_or_else(|e| panic!("{e}"));
    let committed = std::fs::read_to_string(repo().join("deploy/cloudmigrate.yaml")).unwrap();
    assert!(
        rendered == committed,
        "deploy/cloudmigrate.yaml is stale: run `tests/chart/helm.py deploy > \
         deploy/cloudmigrate.yaml` with the virtualenv's python, and commit it"
    );
    let objects: Vec<Value> = committed
        .split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect();
    validate(&objects);
}

#[test]
fn the_dockerfile_lints_and_builds_with_the_release_command() {
    let out = Command::new(venv_tool("hadolint"))
        .arg(repo().join("Dockerfile"))
        .output()
        .expect("hadolint must run");
    assert!(
        out.status.success(),
        "hadolint: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let build = std::fs::read_to_string(repo().join(".ci/build-release")).unwrap();
    assert!(build.contains("cargo build --release --locked --bin cloudmigrate"));
    assert!(dockerfile.contains(".ci/build-release"), "{dockerfile}");
    // The benchmarks measure the binary that the image holds.
    for bench in ["compare.sh", "validate.sh", "controller.sh"] {
        let text = std::fs::read_to_string(repo().join("benches").join(bench)).unwrap();
        assert!(text.contains(".ci/build-release"), "benches/{bench}");
    }
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("the image names its user");
    assert_ne!(user.trim(), "USER root");
    assert!(user.contains("65532"), "{user}");
}
