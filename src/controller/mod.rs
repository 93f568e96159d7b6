//! The operator: reconcilers for MigrationSchedule and MigrationRun, and the process that runs
//! them (`cloudmigrate controller`): health and metrics endpoints, and leader election.

pub mod clock;
pub mod conditions;
pub mod context;
pub mod cron;
pub mod metrics;
pub mod permissions;
pub mod run;
pub mod run_decide;
pub mod schedule;
pub mod schedule_decide;

use crate::api::{MigrationRun, MigrationSchedule};
use context::Context;
use futures_util::StreamExt;
use kube::api::ListParams;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How the controller runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub listen: SocketAddr,
    /// Take part in leader election on this Lease (namespace, name); None: run alone.
    pub leader_lease: Option<(String, String)>,
    /// Watch only this namespace; None: all of them.
    pub namespace: Option<String>,
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

/// Checks that both kinds are served; the message says how to install them when not.
async fn check_crds(client: &Client, namespace: &Option<String>) -> Result<(), Error> {
    let one = ListParams::default().limit(1);
    let checks = [
        api::<MigrationSchedule>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
        api::<MigrationRun>(client, namespace)
            .list(&one)
            .await
            .map(|_| ()),
    ];
    for (kind, check) in ["migrationschedules", "migrationruns"].iter().zip(checks) {
        match check {
            Ok(()) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {
                return Err(Error::CrdsMissing(format!(
                    "{kind}.cloudmigrate.io is not served"
                )));
            }
            Err(e) => return Err(Error::Api(format!("listing {kind}: {e}"))),
        }
    }
    Ok(())
}

fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &schedule::Error,
    _ctx: Arc<Context>,
) -> Action {
    let r = obj.object_ref(&());
    tracing::warn!(
        kind = r.kind.as_deref().unwrap_or_default(),
        object = %format!("{}/{}", r.namespace.unwrap_or_default(), r.name.unwrap_or_default()),
        %error,
        "reconcile failed; trying again in 10 s"
    );
    Action::requeue(Duration::from_secs(10))
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
    let mut leadership = match &options.leader_lease {
        Some(lease) => Some(lead(&client, lease).await?),
        None => None,
    };
    ready.store(true, Ordering::SeqCst);
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        std::env::var("POD_NAME").ok(),
    ));
    let runs = api::<MigrationRun>(&client, &options.namespace);
    let schedules = api::<MigrationSchedule>(&client, &options.namespace);
    let schedule_controller = Controller::new(schedules, watcher::Config::default())
        // Every run wakes its schedule, also one a person made without an owner reference:
        // that is how it gets adopted.
        .watches(
            runs.clone(),
            watcher::Config::default(),
            |run: MigrationRun| {
                let ns = run.metadata.namespace.clone().unwrap_or_default();
                Some(ObjectRef::new(&run.spec.schedule_ref.name).within(&ns))
            },
        )
        .graceful_shutdown_on(shutdown_signal(leadership.clone()))
        .run(schedule::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let run_controller = Controller::new(runs, watcher::Config::default())
        .graceful_shutdown_on(shutdown_signal(leadership.take()))
        .run(run::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    tracing::info!(listen = %options.listen, "controller started");
    tokio::select! {
        _ = async { tokio::join!(schedule_controller, run_controller) } => {}
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
    use http::{Request, Response};
    use kube::client::Body;

    #[tokio::test]
    async fn missing_crds_stop_the_controller_with_the_install_command() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let server = tokio::spawn(async move {
            let (req, send) = handle.next_request().await.unwrap();
            assert_eq!(
                req.uri().to_string(),
                "/apis/cloudmigrate.io/v1alpha1/migrationschedules?&limit=1"
            );
            let status = serde_json::json!({
                "kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "the server could not find the requested resource",
                "reason": "NotFound", "code": 404
            });
            send.send_response(
                Response::builder()
                    .status(404)
                    .body(Body::from(serde_json::to_vec(&status).unwrap()))
                    .unwrap(),
            );
        });
        let e = check_crds(&client, &None).await.unwrap_err().to_string();
        server.await.unwrap();
        assert!(e.contains("CRDs are not installed"), "{e}");
        assert!(
            e.contains("cloudmigrate crds | kubectl apply --server-side -f -"),
            "{e}"
        );
        assert!(e.contains("migrationschedules.cloudmigrate.io"), "{e}");
    }
}
