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

/// Writes the bundle into `dir` (created). Returns the files written and the notes of what
/// could not be read.
pub async fn report(
    client: &Client,
    ns: &str,
    controller_ns: &str,
    dir: &Path,
) -> Result<(Vec<PathBuf>, Vec<String>), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut files = Vec::new();
    let mut notes = Vec::new();
    let mut write = |name: &str, text: &str| -> Result<(), String> {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
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
                    Ok(log) => write(&format!("controller-{name}.log"), &log)?,
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
