//! `check [--wait]`: whether cloudmigrate is ready in the cluster, for CI pipelines: every CRD
//! is there and Established, and a controller is up (it holds its leader Lease, or, without
//! leader election, one of its pods is Ready).
//! API calls: get customresourcedefinitions; get leases; list pods (only without a Lease).

use super::api_error;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::ListParams;
use kube::{Api, Client};
use std::time::Duration;

/// What one look found: every line, and whether all is ready.
pub struct Found {
    pub lines: Vec<String>,
    pub ready: bool,
}

/// One look. `lease` is NAMESPACE/NAME.
pub async fn look(client: &Client, lease: (&str, &str)) -> Found {
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
    Found { lines, ready }
}

/// Looks until ready or `wait` has passed (no wait: one look).
pub async fn check(client: &Client, lease: (&str, &str), wait: Option<Duration>) -> Found {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    loop {
        let found = look(client, lease).await;
        match deadline {
            Some(d) if !found.ready && tokio::time::Instant::now() < d => {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            _ => return found,
        }
    }
}
