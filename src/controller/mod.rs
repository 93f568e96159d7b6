//! The operator: one folder per kind (`schedule/`, `run/`, `companies/`, `users/`), each a reconcile of three steps
//! (read, a pure decide, act), and what they share at this root: the caches, the context, the
//! error type, notes, annotations and conditions. This file is the process that runs them
//! (`cloudmigrate controller`): the watches, health and metrics endpoints, and leader election.

pub mod admission;
pub mod annotations;
pub mod cache;
pub mod claims;
pub mod companies;
pub mod conditions;
pub mod context;
pub mod cron;
pub mod error;
pub mod jitter;
pub mod metrics;
pub mod note;
pub mod permissions;
pub mod queries;
pub mod reach;
pub mod releases;
pub mod reset;
pub mod rotation;
pub mod run;
pub mod runtime_key;
pub mod schedule;
pub mod users;
pub mod watches;

use crate::api::{CompanySelection, MigrationRun, MigrationSchedule, UserMapping};
use context::Context;
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// Take part in leader election on this Lease (namespace, name); None: run alone.
    pub leader_lease: Option<(String, String)>,
    /// Watch only this namespace; None: all of them.
    pub namespace: Option<String>,
    /// Where schedules may use `runner: InProcess`.
    pub in_process: context::InProcessNamespaces,
    /// How many runs may run in-process at once.
    pub max_in_process_runs: usize,
}

/// Why the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "cannot reach the Kubernetes API: {0}. Check KUBECONFIG (or the in-cluster service \
         account) and that the API server is up."
    )]
    Connect(String),
    #[error(
        "the cloudmigrate CRDs are not installed in this cluster ({0}). Install them with \
         `cloudmigrate crds | kubectl apply --server-side -f -` (or `kubectl apply -f crds/`), \
         then start the controller again."
    )]
    CrdsMissing(String),
    #[error("the Kubernetes API refused {0}")]
    Api(String),
    #[error("leader election on Lease {0}: {1}")]
    Lease(String, String),
    #[error("serving metrics on {0}: {1}")]
    Listen(SocketAddr, String),
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Checks that the watched kinds are served, one after the other; the message says how to
/// install them when one is not.
async fn check_crds(client: &Client, namespace: &Option<String>) -> Result<(), Error> {
    let one = ListParams::default().limit(1);
    let served = |r: Result<(), kube::Error>, kind: &str| match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Err(Error::CrdsMissing(format!(
            "{kind}.cloudmigrate.io is not served"
        ))),
        Err(e) => Err(Error::Api(format!("listing {kind}: {e}"))),
    };
    served(
        api::<MigrationSchedule>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
        "migrationschedules",
    )?;
    served(
        api::<MigrationRun>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
        "migrationruns",
    )?;
    served(
        api::<CompanySelection>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
        "companyselections",
    )?;
    served(
        api::<UserMapping>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
        "usermappings",
    )
}

/// What the controller does after a failed reconcile of `obj`: an object that is invalid as
/// it stands waits for a change; a failed API call is tried again, later each time.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &error::Error,
    ctx: Arc<Context>,
) -> Action {
    let r = obj.object_ref(&());
    let kind = r.kind.clone().unwrap_or_default();
    let key = format!(
        "{kind}/{}/{}",
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default()
    );
    ctx.metrics
        .errors
        .get_or_create(&metrics::Metrics::error(&kind, error.step()))
        .inc();
    match error {
        error::Error::Invalid(_) => {
            tracing::warn!(object = %key, %error, "the object is invalid; waiting for it to change");
            Action::await_change()
        }
        _ => {
            let failures = ctx.failed(&key);
            let wait = jitter::spread(error::backoff(failures), &key);
            tracing::warn!(object = %key, %error, retry_in = ?wait, "reconcile failed; trying again");
            Action::requeue(wait)
        }
    }
}

/// Serves `/metrics`, `/healthz` (the process is up) and `/readyz` (the CRDs are there and,
/// with leader election, this replica leads).
async fn serve(
    listen: SocketAddr,
    metrics: metrics::Metrics,
    ready: Arc<AtomicBool>,
) -> Result<(), Error> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        m.render(),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::Listen(listen, e.to_string()))?;
    axum::serve(listener, app)
        .await
        .map_err(|e| Error::Listen(listen, e.to_string()))
}

/// Waits for leadership. The returned channel turns false when it is lost.
async fn lead(
    client: &Client,
    (namespace, name): &(String, String),
) -> Result<tokio::sync::watch::Receiver<bool>, Error> {
    let identity = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| format!("cloudmigrate-{}", std::process::id()));
    let lease = format!("{namespace}/{name}");
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), name)
        .with_namespace(namespace)
        .with_identity(identity.clone())
        .with_duration(15)
        .with_grace(5)
        .build()
        .await
        .map_err(|e| Error::Lease(lease.clone(), e.to_string()))?;
    let (mut rx, _task) = manager.watch().await;
    tracing::info!(%lease, %identity, "waiting to lead");
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return Err(Error::Lease(lease, "the lease manager stopped".into()));
        }
    }
    tracing::info!(%lease, %identity, "leading");
    Ok(rx)
}

/// Runs the controller until SIGTERM or SIGINT, or until leadership is lost.
pub async fn run(options: Options) -> Result<(), Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Connect(e.to_string()))?;
    let metrics = metrics::Metrics::default();
    let ready = Arc::new(AtomicBool::new(false));
    let server = tokio::spawn(serve(options.listen, metrics.clone(), ready.clone()));
    check_crds(&client, &options.namespace).await?;
    let leadership = match &options.leader_lease {
        Some(lease) => Some(lead(&client, lease).await?),
        None => None,
    };
    ready.store(true, Ordering::SeqCst);
    let jobs_served = jobs_served(&client, &options.namespace).await;
    let workers_served = workers_served(&client, &options.namespace).await;
    let (caches, watches) =
        watches::watch(&client, &options.namespace, jobs_served, workers_served);
    let events = tokio::spawn(watches.events);
    // A schedule decides from its runs: none is reconciled before both caches are filled.
    let filled = async {
        caches.schedules.wait_until_ready().await.is_ok()
            && caches.selections.wait_until_ready().await.is_ok()
            && caches.runs.wait_until_ready().await.is_ok()
    };
    tokio::select! {
        ok = filled => if !ok {
            return Err(Error::Api("the watches stopped before the caches were filled".into()));
        },
        _ = shutdown_signal(None) => return Ok(()),
    }
    tracing::info!(
        schedules = caches.schedules.state().len(),
        runs = caches.runs.state().len(),
        "caches filled"
    );
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            caches.clone(),
            metrics,
            std::env::var("POD_NAME").ok(),
        )
        .with_probes(reach::Probes::new(Some(watches.schedule_waker.clone())))
        .with_releases(releases::Releases::new(Some(
            watches.schedule_waker.clone(),
        )))
        .with_in_process(options.in_process.clone())
        .with_max_in_process_runs(options.max_in_process_runs),
    );
    let stop = || shutdown_signal(leadership.clone());
    let controllers = async {
        tokio::join!(
            schedule::controller(
                watches.schedules,
                caches.schedules.clone(),
                watches.schedules_woken,
                ctx.clone(),
                stop(),
            ),
            run::controller(
                watches.runs,
                caches.runs.clone(),
                run::Runners {
                    jobs: watches.jobs,
                    pods: watches.pods,
                    refusals: watches.refusals,
                },
                ctx.clone(),
                stop(),
            ),
            companies::controller(watches.selections, ctx.clone(), stop()),
            users::controller(watches.mappings, ctx.clone(), stop()),
            reset::controller(watches.resets, ctx.clone(), stop()),
            rotation::controller(watches.rotations, ctx.clone(), stop()),
        )
    };
    tracing::info!(listen = %options.listen, "controller started");
    tokio::select! {
        _ = controllers => {}
        _ = events => {}
        r = server => {
            if let Ok(Err(e)) = r {
                return Err(e);
            }
        }
    }
    // The runs in this process finish the tables in progress; the next controller goes on.
    tracing::info!("stopping: in-process runs finish the tables in progress");
    ctx.inprocess.shutdown().await;
    Ok(())
}

/// Whether worker Jobs can be watched: the API server serves them and the controller may list
/// them. Where not (the local test API server serves custom resources only), the Job runner
/// reads a run's Job by GET.
async fn jobs_served(client: &Client, namespace: &Option<String>) -> bool {
    let one = ListParams::default()
        .labels(crate::runner::job::WORKER_SELECTOR)
        .limit(1);
    match api::<Job>(client, namespace).list(&one).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "worker Jobs cannot be watched; the Job runner reads them one by one");
            false
        }
    }
}

/// Whether worker pods and the Jobs' `FailedCreate` events can be watched. Where not, a run
/// whose workers cannot start learns it only from its Job, at its deadline.
async fn workers_served(client: &Client, namespace: &Option<String>) -> bool {
    let pods = ListParams::default()
        .labels(crate::runner::job::WORKER_SELECTOR)
        .limit(1);
    let events = ListParams::default()
        .fields(watches::REFUSALS_SELECTOR)
        .limit(1);
    let (pod_api, event_api) = (
        api::<k8s_openapi::api::core::v1::Pod>(client, namespace),
        api::<k8s_openapi::api::core::v1::Event>(client, namespace),
    );
    let (pods, events) = tokio::join!(
        pod_api.list_metadata(&pods),
        event_api.list_metadata(&events)
    );
    match pods.and(events) {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(error = %e, "worker pods or Job events cannot be watched; a run whose workers cannot start says why only at its start deadline");
            false
        }
    }
}

/// Resolves on SIGTERM, SIGINT, or the loss of leadership.
async fn shutdown_signal(leadership: Option<tokio::sync::watch::Receiver<bool>>) {
    let lost = async move {
        match leadership {
            Some(mut rx) => {
                while *rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
                tracing::warn!("leadership lost: stopping");
            }
            None => std::future::pending::<()>().await,
        }
    };
    let term = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = lost => {}
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{ApiServer, status};
    use http::Method;

    #[tokio::test]
    async fn missing_crds_stop_the_controller_with_the_install_command() {
        let (client, mut server) = ApiServer::new();
        let check = tokio::spawn(async move { check_crds(&client, &None).await });
        server
            .expect(
                Method::GET,
                "/apis/cloudmigrate.io/v1alpha1/migrationschedules?&limit=1",
            )
            .await
            .reply(
                404,
                status(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                ),
            );
        let e = check.await.unwrap().unwrap_err().to_string();
        assert!(e.contains("CRDs are not installed"), "{e}");
        assert!(
            e.contains("cloudmigrate crds | kubectl apply --server-side -f -"),
            "{e}"
        );
        assert!(e.contains("migrationschedules.cloudmigrate.io"), "{e}");
    }

    #[tokio::test]
    async fn invalid_objects_wait_for_a_change_and_failed_calls_back_off() {
        let (client, _server) = ApiServer::new();
        let ctx = Context::for_test(client, vec![], vec![]);
        let schedule: MigrationSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop"},
            "spec": {"source": {"url": "postgres://a/b"}, "target": {"url": "postgres://c/d"}}
        }))
        .unwrap();
        let schedule = Arc::new(schedule);
        let invalid = error::Error::Invalid("bad".into());
        assert_eq!(
            error_policy(schedule.clone(), &invalid, ctx.clone()),
            Action::await_change()
        );
        let failed = || {
            error::Error::Status(kube::Error::Api(
                kube::core::Status::failure("etcd is slow", "Timeout")
                    .with_code(504)
                    .boxed(),
            ))
        };
        let waits: Vec<Action> = (0..3)
            .map(|_| error_policy(schedule.clone(), &failed(), ctx.clone()))
            .collect();
        // 5 s, 10 s, 20 s, each plus up to a tenth.
        for (action, base) in waits.iter().zip([5u64, 10, 20]) {
            let base = std::time::Duration::from_secs(base);
            assert!(
                (0..=base.as_millis() as u64 / 10)
                    .any(|ms| *action
                        == Action::requeue(base + std::time::Duration::from_millis(ms))),
                "{action:?} is not {base:?} plus jitter"
            );
        }
        let metrics = ctx.metrics.render();
        assert!(
            metrics.contains(
                r#"cloudmigrate_reconcile_errors_total{kind="MigrationSchedule",error="status"} 3"#
            ),
            "{metrics}"
        );
        assert!(
            metrics.contains(
                r#"cloudmigrate_reconcile_errors_total{kind="MigrationSchedule",error="invalid"} 1"#
            ),
            "{metrics}"
        );
    }
}
