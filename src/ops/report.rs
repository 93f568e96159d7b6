//! `report`: a support bundle, a directory with the namespace's cloudmigrate objects, their
//! events and worker Jobs, the Secrets they name with every value redacted, and the
//! controller's logs. Nothing in it is secret.
//! API calls: list the six kinds, events, jobs and secrets in the namespace; list pods and get
//! pods/log in the controller's namespace. What cannot be read is noted in the bundle.

use super::api_error;
use crate::api::{
    CloudReset, CompanySelection, MigrationRun, MigrationSchedule, RuntimeKeyRotation, UserMapping,
};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, LogParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The YAML of every object of a kind in the namespace, without managed fields.
async fn objects<K>(client: &Client, ns: &str) -> Result<(String, Vec<K>), String>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + DeserializeOwned
        + Serialize,
{
    let kind = K::kind(&()).to_string();
    let mut items = Api::<K>::namespaced(client.clone(), ns)
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(&format!("listing {kind}s"), e))?
        .items;
    for i in &mut items {
        i.meta_mut().managed_fields = None;
    }
    let mut text = String::new();
    for i in &items {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(i).map_err(|e| e.to_string())?);
    }
    Ok((text, items))
}

/// A Secret with each value replaced by its length: enough to see a missing or empty key.
fn redacted(secret: &Secret) -> Secret {
    let mut s = secret.clone();
    s.metadata.managed_fields = None;
    let lengths: BTreeMap<String, String> = s
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("<redacted: {} bytes>", v.0.len())))
        .chain(
            s.string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), format!("<redacted: {} bytes>", v.len()))),
        )
        .collect();
    s.data = None;
    s.string_data = Some(lengths);
    // An annotation may hold a whole manifest (kubectl's last-applied-configuration).
    if let Some(a) = s.metadata.annotations.as_mut() {
        a.remove("kubectl.kubernetes.io/last-applied-configuration");
    }
    s
}

/// The log lines about objects of namespace `ns`: the controller serves every namespace, and
/// a bundle of one must not carry the others' names and errors.
fn lines_of(log: &str, ns: &str) -> String {
    let marks = [
        format!("{ns}/"),
        format!("namespace={ns}"),
        format!("\"namespace\":\"{ns}\""),
    ];
    // A mark counts where no name character comes before it: `workshop/` is not `shop/`.
    let about = |line: &str| {
        marks.iter().any(|m| {
            line.match_indices(m.as_str()).any(|(i, _)| {
                !line[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            })
        })
    };
    let mut out = String::new();
    for line in log.lines().filter(|l| about(l)) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes the bundle into `dir` (created, readable by the user alone). Returns the files written and the notes of what
/// could not be read.
pub async fn report(
    client: &Client,
    ns: &str,
    controller_ns: &str,
    dir: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    // Readable by the user alone: the bundle holds other people's object names and errors.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let mut write = |name: &str, text: &str| -> Result<(), String> {
        use std::io::Write;
        let path = dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        files.push(path);
        Ok(())
    };
    let mut secret_names: Vec<String> = Vec::new();
    match objects::<MigrationSchedule>(client, ns).await {
        Ok((text, items)) => {
            write("migrationschedules.yaml", &text)?;
            for s in &items {
                secret_names.push(crate::logins::secret_name(&s.name_any()));
                for r in [
                    &s.spec.source.password_secret_ref,
                    &s.spec.target.password_secret_ref,
                ]
                .into_iter()
                .flatten()
                {
                    secret_names.push(r.name.clone());
                }
            }
        }
        Err(e) => notes.push(e),
    }
    macro_rules! kind {
        ($k:ty, $file:expr) => {
            match objects::<$k>(client, ns).await {
                Ok((text, _)) => write($file, &text)?,
                Err(e) => notes.push(e),
            }
        };
    }
    kind!(MigrationRun, "migrationruns.yaml");
    kind!(CompanySelection, "companyselections.yaml");
    kind!(UserMapping, "usermappings.yaml");
    kind!(CloudReset, "cloudresets.yaml");
    kind!(RuntimeKeyRotation, "runtimekeyrotations.yaml");
    kind!(Event, "events.yaml");
    kind!(Job, "jobs.yaml");
    // Only the Secrets the schedules name, and never a value.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut text = String::new();
    secret_names.sort();
    secret_names.dedup();
    for name in &secret_names {
        match secrets.get_opt(name).await {
            Ok(Some(s)) => {
                text.push_str("---\n");
                text.push_str(&serde_saphyr::to_string(&redacted(&s)).map_err(|e| e.to_string())?);
            }
            Ok(None) => text.push_str(&format!("# Secret {name}: does not exist\n")),
            Err(e) => notes.push(api_error(&format!("Secret {name}"), e)),
        }
    }
    write("secrets-redacted.yaml", &text)?;
    // The controller's logs.
    let pods: Api<Pod> = Api::namespaced(client.clone(), controller_ns);
    let lp = ListParams::default()
        .labels("app.kubernetes.io/name=cloudmigrate,app.kubernetes.io/component=controller");
    match pods.list(&lp).await {
        Ok(list) if list.items.is_empty() => notes.push(format!(
            "no controller pod in namespace {controller_ns}; give --controller-namespace"
        )),
        Ok(list) => {
            for p in list.items {
                let name = p.name_any();
                let params = LogParams {
                    tail_lines: Some(5000),
                    ..Default::default()
                };
                match pods.logs(&name, &params).await {
                    Ok(log) => write(&format!("controller-{name}.log"), &lines_of(&log, ns))?,
                    Err(e) => notes.push(api_error(&format!("the log of pod {name}"), e)),
                }
            }
        }
        Err(e) => notes.push(api_error(
            &format!("listing the controller's pods in {controller_ns}"),
            e,
        )),
    }
    let mut readme = format!(
        "cloudmigrate support bundle of namespace {ns}, made {} by cloudmigrate {}.\n\
         Secret values are replaced by their length.\n",
        chrono::Utc::now().to_rfc3339(),
        env!("CARGO_PKG_VERSION")
    );
    if !notes.is_empty() {
        readme.push_str("\nNot in the bundle:\n");
        for n in &notes {
            readme.push_str(&format!("- {n}\n"));
        }
    }
    write("README.txt", &readme)?;
    Ok((files, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_log_keeps_the_lines_of_the_namespace_asked_about() {
        let log = "INFO reconcile{schedule=shop/erp}: run started\n\
                   INFO reconcile{schedule=rival/payroll}: password refused for payroll\n\
                   {\"namespace\":\"shop\",\"msg\":\"x\"}\n\
                   INFO shopping/erp: not ours\n\
                   INFO workshop/erp: not ours either\n";
        let kept = lines_of(log, "shop");
        assert!(kept.contains("shop/erp") && kept.contains("\"namespace\":\"shop\""));
        assert!(
            !kept.contains("rival") && !kept.contains("shopping") && !kept.contains("workshop"),
            "{kept}"
        );
    }
}
