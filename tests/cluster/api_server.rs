//! Access to the API server under test: kubectl, the CRDs, and a namespace per test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The output of one kubectl call.
pub struct Kubectl {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// stdout, or a panic that shows what kubectl said.
    pub fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok,
            "{what} failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }
}

/// Runs kubectl with `args`, feeding `stdin` if given.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Kubectl {
    let kubeconfig = std::env::var("KUBECONFIG").unwrap_or_default();
    assert!(
        !kubeconfig.is_empty(),
        "KUBECONFIG is not set. Run the tests with tests/run.sh: it starts a local API server \
         and sets KUBECONFIG (or set KUBECONFIG to a real cluster yourself)."
    );
    kubectl_at(&kubeconfig, args, stdin)
}

/// Runs kubectl against the cluster of `kubeconfig`.
pub fn kubectl_at(kubeconfig: &str, args: &[&str], stdin: Option<&str>) -> Kubectl {
    let mut child = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .arg("--request-timeout=60s")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl must be on PATH");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().unwrap();
    Kubectl {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr)
            .lines()
            .filter(|l| !l.contains("version difference between client"))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Installs the CRDs the crate generates (once per test process) and waits until the API
/// server serves them.
pub fn install_crds() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let mut all = String::new();
        for crd in cloudmigrate::api::crds() {
            all.push_str(&cloudmigrate::api::crd_yaml(&crd).unwrap());
        }
        kubectl(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=cloudmigrate-tests",
                "-f",
                "-",
            ],
            Some(&all),
        )
        .expect_ok("installing the CRDs");
        for crd in cloudmigrate::api::crds() {
            let name = format!("crd/{}", crd.metadata.name.unwrap());
            kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "--timeout=60s",
                    &name,
                ],
                None,
            )
            .expect_ok("waiting for a CRD to be Established");
        }
    });
}

/// A namespace for one test, created and deleted. (The local API server deletes a namespace's
/// objects with it only where they have owners: it has no namespace controller.)
pub struct TestNamespace {
    pub name: String,
    created: bool,
}

impl TestNamespace {
    pub fn new(test: &str) -> Self {
        install_crds();
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("t-{test}-{suffix:x}").replace('_', "-");
        let created = kubectl(&["create", "namespace", &name], None).ok;
        // What the chart makes in each namespace it lists in workers.namespaces; a test of a
        // namespace without it deletes it.
        if created {
            let sa = kubectl(
                &[
                    "create",
                    "serviceaccount",
                    "cloudmigrate-worker",
                    "-n",
                    &name,
                ],
                None,
            );
            assert!(sa.ok, "creating the worker ServiceAccount: {}", sa.stderr);
        }
        Self { name, created }
    }

    /// Polls `jsonpath` of an object in this namespace until `done` accepts it (two minutes at
    /// most); a timeout shows the last output and `context()`.
    pub fn wait_until(
        &self,
        object: &str,
        jsonpath: &str,
        done: impl Fn(&str) -> bool,
        context: impl Fn() -> String,
    ) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        loop {
            let out = self.kubectl(
                &["get", object, "-o", &format!("jsonpath={jsonpath}")],
                None,
            );
            if out.ok && done(&out.stdout) {
                return out.stdout;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{object} {jsonpath} never got there; last: {:?} {}\n{}",
                out.stdout,
                out.stderr,
                context()
            );
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    /// kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> Kubectl {
        let mut all = vec!["--namespace", &self.name];
        all.extend_from_slice(args);
        kubectl(&all, stdin)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if self.created {
            kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
        }
    }
}

/// Every YAML file in a folder of the repository, sorted.
pub fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {dir}");
    files
}

/// The Kubernetes version whose published OpenAPI schemas objects are validated against: the
/// newest that the crate's k8s-openapi types are built for (its `latest` feature).
pub const SCHEMA_VERSION: &str = "1.37.0";

/// Validates each object strictly against the published Kubernetes OpenAPI schemas, with
/// kubernetes-validate (unknown fields fail). `tests/run.sh` installs it.
pub fn validate_strictly(objects: &[serde_json::Value]) -> Result<String, String> {
    let program = std::env::var("CLOUDMIGRATE_KUBERNETES_VALIDATE").unwrap_or_else(|_| {
        panic!(
            "CLOUDMIGRATE_KUBERNETES_VALIDATE is not set: run the tests with tests/run.sh, which \
             installs kubernetes-validate"
        )
    });
    assert!(!objects.is_empty(), "nothing to validate");
    let dir = std::env::temp_dir().join(format!(
        "cloudmigrate-validate-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let files: Vec<PathBuf> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let f = dir.join(format!("{i}.json"));
            std::fs::write(&f, serde_json::to_vec_pretty(o).unwrap()).unwrap();
            f
        })
        .collect();
    let out = Command::new(&program)
        .args(["--strict", "--no-warn", "-k", SCHEMA_VERSION])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
