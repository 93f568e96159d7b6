//! Check for Update against a real registry: Debian's `docker-registry` (the CNCF distribution
//! registry) on loopback, with basic auth from an htpasswd file, and tags pushed through its
//! HTTP API. The controller reads the tags with the schedule's pull secret; `cloudmigrate
//! update` sets the image; a registry that refuses is a condition, and runs go on.

use crate::api_server::TestNamespace;
use crate::controller::{Controller, ok, request_run, stop_run, wait_for};
use crate::workers::{job_schedule, small_source};
use base64::Engine;
use sha2::Digest;
use std::process::{Child, Command, Stdio};

/// A registry process with one login, removed with its storage when dropped.
struct Registry {
    child: Child,
    dir: std::path::PathBuf,
    address: String,
    user: &'static str,
    password: &'static str,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Registry {
    fn start(label: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("cloudmigrate-registry-{label}-{}", free_port()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let (user, password) = ("robot", "pull-s3cret");
        let htpasswd = Command::new("htpasswd")
            .args(["-Bbn", user, password])
            .output()
            .expect("htpasswd (apache2-utils) is missing: run the tests with tests/run.sh");
        assert!(htpasswd.status.success(), "htpasswd failed");
        std::fs::write(dir.join("htpasswd"), &htpasswd.stdout).unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let config = format!(
            "version: 0.1\nlog: {{level: warn}}\nstorage:\n  filesystem: {{rootdirectory: {}}}\n\
             http: {{addr: \"{address}\"}}\nauth:\n  htpasswd: {{realm: cloudmigrate-test, path: {}}}\n",
            dir.join("data").display(),
            dir.join("htpasswd").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .args(["serve", dir.join("config.yml").to_str().unwrap()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("docker-registry is missing: run the tests with tests/run.sh");
        let registry = Self {
            child,
            dir,
            address,
            user,
            password,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the registry did not listen: {}",
                std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        registry
    }

    /// Pushes an image manifest (one small config blob and one layer) as `repository:tag`,
    /// through the registry's HTTP API (with curl).
    fn push(&self, repository: &str, tag: &str) {
        let base = format!("http://{}/v2/{repository}", self.address);
        let login = format!("{}:{}", self.user, self.password);
        let curl = |args: &[&str], body: Option<&[u8]>| -> String {
            let mut c = Command::new("curl")
                .args(["-sS", "-D", "-", "-o", "/dev/null", "-u", &login])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("curl");
            if let Some(b) = body {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(b).unwrap();
            }
            let out = c.wait_with_output().unwrap();
            String::from_utf8_lossy(&out.stdout).to_string()
        };
        let upload = |content: &[u8]| -> (String, usize) {
            let digest = format!("sha256:{:x}", sha2::Sha256::digest(content));
            let started = curl(&["-X", "POST", &format!("{base}/blobs/uploads/")], None);
            assert!(
                started.starts_with("HTTP/1.1 202"),
                "starting an upload: {started}"
            );
            let location = started
                .lines()
                .find_map(|l| {
                    l.strip_prefix("Location: ")
                        .or_else(|| l.strip_prefix("location: "))
                })
                .unwrap()
                .trim()
                .to_string();
            let location = if location.starts_with("http") {
                location
            } else {
                format!("http://{}{location}", self.address)
            };
            let sep = if location.contains('?') { '&' } else { '?' };
            let done = curl(
                &[
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/octet-stream",
                    "--data-binary",
                    "@-",
                    &format!("{location}{sep}digest={digest}"),
                ],
                Some(content),
            );
            assert!(
                done.starts_with("HTTP/1.1 201"),
                "finishing an upload: {done}"
            );
            (digest, content.len())
        };
        let (config, config_size) = upload(format!("{{\"tag\":\"{tag}\"}}").as_bytes());
        let (layer, layer_size) = upload(format!("layer of {tag}").as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config, "size": config_size},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": layer, "size": layer_size}]
        });
        let put = curl(
            &[
                "-X",
                "PUT",
                "-H",
                "Content-Type: application/vnd.oci.image.manifest.v1+json",
                "--data-binary",
                "@-",
                &format!("{base}/manifests/{tag}"),
            ],
            Some(manifest.to_string().as_bytes()),
        );
        assert!(
            put.starts_with("HTTP/1.1 201"),
            "pushing {repository}:{tag}: {put}"
        );
    }

    /// A `kubernetes.io/dockerconfigjson` Secret with this registry's login (or a wrong one).
    fn pull_secret(&self, name: &str, password: &str) -> String {
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", self.user));
        let config = serde_json::json!({"auths": {self.address.clone(): {"auth": auth}}});
        let data = base64::engine::general_purpose::STANDARD.encode(config.to_string());
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\n\
             type: kubernetes.io/dockerconfigjson\ndata: {{.dockerconfigjson: {data}}}\n"
        )
    }
}

/// The schedule's UpdateAvailable condition as `status|reason|message`, once `done` accepts it.
fn update_available(
    ns: &TestNamespace,
    schedule: &str,
    controller: &Controller,
    done: impl Fn(&str) -> bool,
) -> String {
    wait_for(
        ns,
        &format!("msched/{schedule}"),
        "{.status.conditions[?(@.type==\"UpdateAvailable\")].status}|\
         {.status.conditions[?(@.type==\"UpdateAvailable\")].reason}|\
         {.status.conditions[?(@.type==\"UpdateAvailable\")].message}|{.status.runtime.latestVersion}",
        done,
        controller,
    )
}

/// A schedule whose registry has a newer release says so, with how to move; `cloudmigrate
/// update` sets the image and the next run's Job uses it. A registry that refuses the login is
/// a condition (RegistryRefused), and runs go on.
#[test]
fn check_for_update_reads_the_registry_and_update_sets_the_image() {
    let registry = Registry::start("update");
    let repository = "team/cloudmigrate";
    for tag in ["0.1.0", "0.2.0", "0.3.0-rc.1", "latest"] {
        registry.push(repository, tag);
    }
    let ns = TestNamespace::new("reg-update");
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&registry.pull_secret("regcred", registry.password)),
        ),
        "the pull secret",
    );
    ok(
        ns.kubectl(
            &["apply", "-f", "-"],
            Some(&registry.pull_secret("badcred", "wrong")),
        ),
        "a pull secret with a wrong password",
    );
    let (src, dst) = small_source("reg");
    let controller = Controller::start(&ns.name);
    let image = format!("{}/{repository}:0.1.0", registry.address);
    let yaml = job_schedule(
        "upd",
        &src,
        &dst,
        &format!(
            ", image: \"{image}\", imagePullSecrets: [{{name: regcred}}], startDeadlineSeconds: 600"
        ),
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&yaml)),
        "the schedule",
    );
    let said = update_available(&ns, "upd", &controller, |s| s.starts_with("True|"));
    assert!(
        said.starts_with("True|NewerVersion|runs use 0.1.0, and 0.2.0 is out"),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "set spec.runtime.image to {}/{repository}:0.2.0",
            registry.address
        )),
        "{said}"
    );
    assert!(said.ends_with("|0.2.0"), "{said}");

    let update = Command::new(env!("CARGO_BIN_EXE_cloudmigrate"))
        .args(["update", "upd", "-n", &ns.name])
        .output()
        .unwrap();
    let told = String::from_utf8_lossy(&update.stdout);
    assert!(
        update.status.success(),
        "{told}{}",
        String::from_utf8_lossy(&update.stderr)
    );
    let updated = format!("{}/{repository}:0.2.0", registry.address);
    assert!(
        told.contains(&format!("-> {updated}")) && told.contains("GitOps"),
        "{told}"
    );
    assert_eq!(
        ok(
            ns.kubectl(
                &[
                    "get",
                    "msched",
                    "upd",
                    "-o",
                    "jsonpath={.spec.runtime.image}"
                ],
                None
            ),
            "the image"
        ),
        updated
    );
    let said = update_available(&ns, "upd", &controller, |s| s.starts_with("False|"));
    assert!(said.starts_with("False|UpToDate|runs use 0.2.0"), "{said}");
    // The next run's Job runs the new image.
    request_run(&ns, "upd", "1");
    let run = wait_for(
        &ns,
        "msched/upd",
        "{.status.activeRun}",
        |s| !s.is_empty(),
        &controller,
    );
    let job_image = wait_for(
        &ns,
        "jobs",
        &format!(
            "{{.items[?(@.metadata.name==\"{run}-1\")].spec.template.spec.containers[0].image}}"
        ),
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(job_image, updated);
    let pull = wait_for(
        &ns,
        "jobs",
        &format!(
            "{{.items[?(@.metadata.name==\"{run}-1\")].spec.template.spec.imagePullSecrets[0].name}}"
        ),
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(pull, "regcred");
    stop_run(&ns, &run);

    // A login the registry refuses: a reason, and the schedule still runs.
    let (src2, dst2) = small_source("reg2");
    let refused = job_schedule(
        "refused",
        &src2,
        &dst2,
        &format!(", image: \"{image}\", imagePullSecrets: [{{name: badcred}}]"),
    );
    ok(
        ns.kubectl(&["apply", "-f", "-"], Some(&refused)),
        "the refused schedule",
    );
    let said = update_available(&ns, "refused", &controller, |s| s.contains("Registry"));
    assert!(said.starts_with("False|RegistryRefused|"), "{said}");
    assert!(
        said.contains("(401)") && said.contains("login was refused"),
        "{said}"
    );
    assert!(!said.contains("wrong"), "a password in the status: {said}");
    let ready = wait_for(
        &ns,
        "msched/refused",
        "{.status.conditions[?(@.type==\"Ready\")].status}",
        |s| !s.is_empty(),
        &controller,
    );
    assert_eq!(ready, "True");
    request_run(&ns, "refused", "1");
    wait_for(
        &ns,
        "msched/refused",
        "{.status.activeRun}",
        |s| !s.is_empty(),
        &controller,
    );

    // `cloudmigrate check` reads each named image's manifest with the schedule's pull secret.
    let said = crate::workers::check(&ns);
    assert!(
        said.contains(&format!(
            "image in {}: {updated} can be pulled with regcred",
            ns.name
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "image in {}: {image} cannot be pulled with badcred: the registry refused (401)",
            ns.name
        )),
        "{said}"
    );
    assert!(
        !said.contains("wrong"),
        "a password in check's output: {said}"
    );
}
