//! `check [--wait]`: whether cloudmigrate is ready in the cluster, for CI pipelines: every CRD
//! is there and Established, a controller is up (it holds its leader Lease, or, without
//! leader election, one of its pods is Ready), and each namespace with a schedule that runs
//! Jobs has the workers' ServiceAccount, and the image each such schedule names can be pulled
//! with its pull secret.
//! API calls: get customresourcedefinitions; get leases; list pods (only without a Lease);
//! list migrationschedules; get serviceaccounts (one per namespace with Job schedules); get
//! secrets (the pull secrets). Registry calls: the manifest of each named image.

use super::api_error;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};
use std::time::Duration;

/// What one look found: every line, and whether all is ready.
pub struct Found {
    pub lines: Vec<String>,
    pub ready: bool,
}

/// One look. `lease` is NAMESPACE/NAME; `namespace` limits the workers' check to one.
pub async fn look(client: &Client, lease: (&str, &str), namespace: Option<&str>) -> Found {
    let mut lines = Vec::new();
    let mut ready = true;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        match crds.get_opt(&name).await {
            Ok(Some(found)) => {
                let established = found
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| {
                        c.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    });
                ready &= established;
                lines.push(format!(
                    "CRD {name}: {}",
                    if established {
                        "established"
                    } else {
                        "not established yet"
                    }
                ));
            }
            Ok(None) => {
                ready = false;
                lines.push(format!(
                    "CRD {name}: missing; install it: cloudmigrate crds | kubectl apply \
                     --server-side -f - (or helm install with crds.create=true)"
                ));
            }
            Err(e) => {
                ready = false;
                lines.push(api_error(&format!("CRD {name}"), e));
            }
        }
    }
    let (ns, name) = lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    match leases.get_opt(name).await {
        Ok(Some(l)) => {
            let spec = l.spec.unwrap_or_default();
            let holder = spec.holder_identity.unwrap_or_default();
            let fresh = match (spec.renew_time, spec.lease_duration_seconds) {
                (Some(renewed), Some(duration)) => {
                    let renewed = crate::clock::utc(
                        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(renewed.0),
                    );
                    chrono::Utc::now() - renewed < chrono::TimeDelta::seconds(duration as i64)
                }
                _ => false,
            };
            let up = !holder.is_empty() && fresh;
            ready &= up;
            lines.push(if up {
                format!("controller: {holder} leads (Lease {ns}/{name})")
            } else {
                format!(
                    "controller: Lease {ns}/{name} is not held or not renewed; is the \
                     controller running? kubectl -n {ns} get pods"
                )
            });
        }
        Ok(None) => {
            // Without leader election there is no Lease: a Ready controller pod will do.
            let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
            let lp = ListParams::default().labels(
                "app.kubernetes.io/component=controller,app.kubernetes.io/name=cloudmigrate",
            );
            match pods.list(&lp).await {
                Ok(list) => {
                    let up = list.items.iter().any(|p| {
                        p.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    });
                    ready &= up;
                    lines.push(if up {
                        format!("controller: a pod is Ready in {ns}")
                    } else {
                        format!(
                            "controller: no Lease {ns}/{name} and no Ready controller pod in \
                             {ns}; give --lease NAMESPACE/NAME where it runs elsewhere"
                        )
                    });
                }
                Err(e) => {
                    ready = false;
                    lines.push(api_error(
                        &format!("controller: no Lease {ns}/{name}; its pods"),
                        e,
                    ));
                }
            }
        }
        Err(e) => {
            ready = false;
            lines.push(api_error(&format!("controller: Lease {ns}/{name}"), e));
        }
    }
    let (worker_lines, workers_ready) = workers(client, namespace).await;
    lines.extend(worker_lines);
    Found {
        lines,
        ready: ready && workers_ready,
    }
}

/// For each namespace with a schedule that runs Jobs, whether the workers' ServiceAccount is
/// there (the chart makes it for the namespaces in workers.namespaces).
async fn workers(client: &Client, namespace: Option<&str>) -> (Vec<String>, bool) {
    use crate::api::MigrationSchedule;
    use crate::api::schedule::Runner;
    let schedules: Api<MigrationSchedule> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let list = match schedules.list(&ListParams::default()).await {
        Ok(l) => l,
        // No CRD yet: said above.
        Err(kube::Error::Api(e)) if e.code == 404 => return (vec![], true),
        Err(e) => return (vec![api_error("schedules", e)], false),
    };
    let jobs: Vec<&MigrationSchedule> = list
        .items
        .iter()
        .filter(|s| s.spec.runtime.runner == Runner::Job)
        .collect();
    let namespaces: std::collections::BTreeSet<String> = jobs
        .iter()
        .filter_map(|s| s.metadata.namespace.clone())
        .collect();
    let account = crate::runner::job::service_account();
    let mut lines = Vec::new();
    let mut ready = true;
    for ns in namespaces {
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        match accounts.get_opt(&account).await {
            Ok(Some(_)) => lines.push(format!("workers in {ns}: ServiceAccount {account}")),
            Ok(None) => {
                ready = false;
                lines.push(format!(
                    "workers in {ns}: no ServiceAccount {account}, so the Jobs of its schedules \
                     get no pods; add {ns} to the chart's workers.namespaces (helm upgrade), or \
                     kubectl create serviceaccount {account} -n {ns} && kubectl create \
                     rolebinding {account} -n {ns} --clusterrole=<release>-worker \
                     --serviceaccount={ns}:{account}"
                ));
            }
            Err(e) => {
                ready = false;
                lines.push(api_error(
                    &format!("workers in {ns}: ServiceAccount {account}"),
                    e,
                ));
            }
        }
    }
    let (image_lines, images_ready) = images(client, &jobs).await;
    lines.extend(image_lines);
    (lines, ready && images_ready)
}

/// Whether the image each Job schedule names (`spec.runtime.image`) can be pulled with its
/// pull secrets: its manifest is read from the registry, once per image and login. A schedule
/// without an image runs the controller's, which the controller's own pod pulled.
async fn images(
    client: &Client,
    schedules: &[&crate::api::MigrationSchedule],
) -> (Vec<String>, bool) {
    use crate::controller::releases::{Lookup, login};
    let http = crate::registry::client();
    let mut seen = std::collections::BTreeSet::new();
    let mut lines = Vec::new();
    let mut ready = true;
    for s in schedules.iter().filter(|s| s.spec.runtime.image.is_some()) {
        let Some(lookup) = Lookup::of(s) else {
            ready = false;
            lines.push(format!(
                "image of {}/{}: {:?} is not an image reference",
                s.metadata.namespace.as_deref().unwrap_or_default(),
                s.metadata.name.as_deref().unwrap_or_default(),
                s.spec.runtime.image.as_deref().unwrap_or_default()
            ));
            continue;
        };
        let key = (
            lookup.namespace.clone(),
            lookup.image.clone(),
            lookup.secrets.clone(),
        );
        if !seen.insert(key) {
            continue;
        }
        let pulled = match login(client, &lookup).await {
            Ok(l) => crate::registry::pullable(&http, &lookup.image, l.as_ref()).await,
            Err(e) => Err(e),
        };
        let with = match lookup.secrets.as_slice() {
            [] => "without a pull secret".to_string(),
            names => format!("with {}", names.join(", ")),
        };
        let (ns, image) = (&lookup.namespace, &lookup.image);
        match pulled {
            Ok(()) => lines.push(format!("image in {ns}: {image} can be pulled {with}")),
            Err(e) => {
                ready = false;
                lines.push(format!(
                    "image in {ns}: {image} cannot be pulled {with}: {e}"
                ));
            }
        }
    }
    (lines, ready)
}

/// Looks until ready or `wait` has passed (no wait: one look).
pub async fn check(
    client: &Client,
    lease: (&str, &str),
    namespace: Option<&str>,
    wait: Option<Duration>,
) -> Found {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let found = look(client, lease, namespace).await;
        match deadline {
            Some(d) if !found.ready && tokio::time::Instant::now() < d => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            _ => return found,
        }
    }
}
