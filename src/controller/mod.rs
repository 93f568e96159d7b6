//! The operator: one folder per kind (`schedule/`, `run/`, `companies/`, `users/`), each a reconcile of three steps
//! (read, a pure decide, act), and what they share at this root: the caches, the context, the
//! error type, notes, annotations and conditions. This file is the process that runs them
//! (`cloudmigrate controller`): the watches, health and metrics endpoints, and leader election.

pub mod annotations;
pub mod cache;
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
pub mod reset;
pub mod rotation;
pub mod run;
pub mod runtime_key;
pub mod schedule;
pub mod users;

use crate::api::{
    CloudReset, CompanySelection, MigrationRun, MigrationSchedule, RuntimeKeyRotation, UserMapping,
};
use cache::{Caches, Index};
use context::Context;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
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
    let mut leadership = match &options.leader_lease {
        Some(lease) => Some(lead(&client, lease).await?),
        None => None,
    };
    ready.store(true, Ordering::SeqCst);
    let jobs_served = jobs_served(&client, &options.namespace).await;
    let (caches, watches, wake) = watch(&client, &options.namespace, jobs_served);
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
        .with_probes(reach::Probes::new(Some(watches.schedule_waker.clone()))),
    );
    let config = controller::Config::default().concurrency(RECONCILE_CONCURRENCY);
    let leadership_for_selections = leadership.clone();
    let leadership_for_mappings = leadership.clone();
    let leadership_for_resets = leadership.clone();
    let leadership_for_rotations = leadership.clone();
    let schedule_controller =
        Controller::for_shared_stream(watches.schedules, caches.schedules.clone())
            // A run, a CompanySelection or a UserMapping that changes wakes its schedule;
            // nothing else does.
            .reconcile_on(wake)
            .with_config(config.clone())
            .graceful_shutdown_on(shutdown_signal(leadership.clone()))
            .run(schedule::reconcile, error_policy, ctx.clone())
            .for_each(|_| async {});
    let mut run_controller = Controller::for_shared_stream(watches.runs, caches.runs.clone());
    if let Some(jobs) = watches.jobs {
        // A worker Job that changes wakes its run: a failed Job is seen at once.
        run_controller = run_controller.owns_shared_stream(jobs);
    }
    let run_controller = run_controller
        .with_config(config)
        .graceful_shutdown_on(shutdown_signal(leadership.take()))
        .run(run::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let selection_controller =
        Controller::for_shared_stream(watches.selections, caches.selections.clone())
            .reconcile_on(receiver_stream(watches.selections_wake))
            .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .graceful_shutdown_on(shutdown_signal(leadership_for_selections))
            .run(companies::reconcile, error_policy, ctx.clone())
            .for_each(|_| async {});
    let mapping_controller =
        Controller::for_shared_stream(watches.mappings, caches.mappings.clone())
            .reconcile_on(receiver_stream(watches.mappings_wake))
            .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .graceful_shutdown_on(shutdown_signal(leadership_for_mappings))
            .run(users::reconcile, error_policy, ctx.clone())
            .for_each(|_| async {});
    let reset_controller = Controller::for_shared_stream(watches.resets, caches.resets.clone())
        .reconcile_on(receiver_stream(watches.resets_wake))
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(shutdown_signal(leadership_for_resets))
        .run(reset::reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let rotation_controller =
        Controller::for_shared_stream(watches.rotations, caches.rotations.clone())
            .reconcile_on(receiver_stream(watches.rotations_wake))
            .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
            .graceful_shutdown_on(shutdown_signal(leadership_for_rotations))
            .run(rotation::reconcile, error_policy, ctx.clone())
            .for_each(|_| async {});
    tracing::info!(listen = %options.listen, "controller started");
    tokio::select! {
        _ = async {
            tokio::join!(
                schedule_controller,
                run_controller,
                selection_controller,
                mapping_controller,
                reset_controller,
                rotation_controller
            )
        } => {}
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

/// How many objects of one kind are reconciled at once. Each reconcile holds only its own
/// object and a few API calls, so this bounds the controller's work, not its memory.
pub const RECONCILE_CONCURRENCY: u16 = 8;

/// The shared watches: what wakes each controller, and the stream that keeps them all going.
struct Watches {
    schedules: kube::runtime::reflector::ReflectHandle<MigrationSchedule>,
    selections: kube::runtime::reflector::ReflectHandle<CompanySelection>,
    /// The CompanySelections whose schedule changed.
    selections_wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<CompanySelection>>,
    mappings: kube::runtime::reflector::ReflectHandle<UserMapping>,
    /// The UserMappings whose schedule changed.
    mappings_wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<UserMapping>>,
    resets: kube::runtime::reflector::ReflectHandle<CloudReset>,
    /// The CloudResets whose schedule changed (a run ended, say).
    resets_wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<CloudReset>>,
    rotations: kube::runtime::reflector::ReflectHandle<RuntimeKeyRotation>,
    /// The RuntimeKeyRotations whose schedule or key Secret changed.
    rotations_wake: tokio::sync::mpsc::UnboundedReceiver<ObjectRef<RuntimeKeyRotation>>,
    runs: kube::runtime::reflector::ReflectHandle<MigrationRun>,
    jobs: Option<kube::runtime::reflector::ReflectHandle<Job>>,
    /// Wakes a schedule from outside the watches (a probe of its databases ended).
    schedule_waker: tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>,
    events: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
}

/// One watch per kind, in the namespace or in all of them: the caches they fill, the handles
/// that wake the controllers, and the schedules to wake for a changed run, CompanySelection
/// or UserMapping.
fn watch(
    client: &Client,
    namespace: &Option<String>,
    jobs_served: bool,
) -> (
    Caches,
    Watches,
    impl Stream<Item = ObjectRef<MigrationSchedule>> + Send + 'static,
) {
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let schedule_waker = wake_tx.clone();
    let runs_index = Index::new(cache::run_keys);
    let schedules_index = Index::new(cache::database_keys);
    let selections_index = Index::new(cache::selection_keys);
    let mappings_index = Index::new(cache::mapping_keys);
    let resets_index = Index::new(cache::reset_keys);
    let rotations_index = Index::new(cache::rotation_keys);
    // A schedule that changes (created, a run ended) wakes the CompanySelections and the
    // UserMappings naming it.
    let (selection_wake_tx, selection_wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let (mapping_wake_tx, mapping_wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let (reset_wake_tx, reset_wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let (rotation_wake_tx, rotation_wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let rotation_wake_by_secret = rotation_wake_tx.clone();
    let (selections_of, mappings_of) = (selections_index.clone(), mappings_index.clone());
    let resets_of = resets_index.clone();
    let (rotations_of, rotations_of_secret) = (rotations_index.clone(), rotations_index.clone());
    let (schedule_store, schedule_handle, schedule_events) = cache::watch(
        api::<MigrationSchedule>(client, namespace),
        watcher::Config::default(),
        schedules_index.clone(),
        cache::slim_schedule,
        move |event| {
            if let watcher::Event::Apply(s) | watcher::Event::Delete(s) = event {
                let key = cache::schedule_key(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default(),
                );
                for selection in selections_of.get(&key) {
                    let _ = selection_wake_tx.send(selection);
                }
                for mapping in mappings_of.get(&key) {
                    let _ = mapping_wake_tx.send(mapping);
                }
                for reset in resets_of.get(&key) {
                    let _ = reset_wake_tx.send(reset);
                }
                for rotation in rotations_of.get(&key) {
                    let _ = rotation_wake_tx.send(rotation);
                }
            }
        },
    );
    let (run_store, run_handle, run_events) = cache::watch(
        api::<MigrationRun>(client, namespace),
        watcher::Config::default(),
        runs_index.clone(),
        cache::slim_run,
        wakes(wake_tx.clone(), |r: &MigrationRun| {
            &r.spec.schedule_ref.name
        }),
    );
    // A schedule reads its CompanySelection when it creates a run; a CompanySelection or a
    // UserMapping that changes wakes its schedule.
    let (selection_store, selection_handle, selections) = cache::watch(
        api::<CompanySelection>(client, namespace),
        watcher::Config::default(),
        selections_index.clone(),
        cache::slim_selection,
        wakes(wake_tx.clone(), |c: &CompanySelection| {
            &c.spec.schedule_ref.name
        }),
    );
    let (mapping_store, mapping_handle, mappings) = cache::watch(
        api::<UserMapping>(client, namespace),
        watcher::Config::default(),
        mappings_index.clone(),
        cache::slim_mapping,
        wakes(wake_tx.clone(), |u: &UserMapping| &u.spec.schedule_ref.name),
    );
    // A CloudReset that changes wakes its schedule, which starts no run while one is pending.
    let (reset_store, reset_handle, resets) = cache::watch(
        api::<CloudReset>(client, namespace),
        watcher::Config::default(),
        resets_index.clone(),
        cache::slim_reset,
        wakes(wake_tx.clone(), |r: &CloudReset| &r.spec.schedule_ref.name),
    );
    // A rotation that changes wakes its schedule, which starts no run while one works.
    let (rotation_store, rotation_handle, rotations) = cache::watch(
        api::<RuntimeKeyRotation>(client, namespace),
        watcher::Config::default(),
        rotations_index.clone(),
        cache::slim_rotation,
        wakes(wake_tx.clone(), |r: &RuntimeKeyRotation| {
            &r.spec.schedule_ref.name
        }),
    );
    // The runtime key Secrets, metadata only: a changed one wakes its schedule and rotations.
    let mut wake_for_secret = wakes(wake_tx, |s: &Secret| {
        s.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(annotations::RUNTIME_KEY_LABEL))
            .map(String::as_str)
            .unwrap_or_default()
    });
    let (secret_store, secrets) = cache::watch_plain(
        api::<Secret>(client, namespace),
        watcher::Config::default().labels(annotations::RUNTIME_KEY_LABEL),
        cache::slim_secret,
        move |event| {
            wake_for_secret(event);
            if let watcher::Event::Apply(s) | watcher::Event::Delete(s) = event
                && let Some(schedule) = s
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(annotations::RUNTIME_KEY_LABEL))
            {
                let key = cache::schedule_key(
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    schedule,
                );
                for rotation in rotations_of_secret.get(&key) {
                    let _ = rotation_wake_by_secret.send(rotation);
                }
            }
        },
    );
    let mut streams = vec![
        schedule_events.boxed(),
        run_events.boxed(),
        selections.boxed(),
        mappings.boxed(),
        resets.boxed(),
        rotations.boxed(),
        secrets.boxed(),
    ];
    let (job_store, job_handle) = if jobs_served {
        let (store, handle, events) = cache::watch(
            api::<Job>(client, namespace),
            watcher::Config::default().labels(crate::runner::job::WORKER_SELECTOR),
            Index::new(|_| vec![]),
            cache::slim_job,
            |_| {},
        );
        streams.push(events.boxed());
        (Some(store), Some(handle))
    } else {
        (None, None)
    };
    let events = futures_util::stream::select_all(streams).for_each(|_| async {});
    let events = Box::pin(events);
    let caches = Caches {
        schedules: schedule_store,
        runs: run_store,
        runs_by_schedule: runs_index,
        schedules_by_database: schedules_index,
        jobs: job_store,
        selections: selection_store,
        selections_by_schedule: selections_index,
        mappings: mapping_store,
        resets: reset_store,
        resets_by_schedule: resets_index,
        rotations: rotation_store,
        rotations_by_schedule: rotations_index,
        key_secrets: secret_store,
    };
    let wake =
        futures_util::stream::unfold(
            wake_rx,
            |mut rx| async move { rx.recv().await.map(|r| (r, rx)) },
        );
    (
        caches,
        Watches {
            schedules: schedule_handle,
            selections: selection_handle,
            selections_wake: selection_wake_rx,
            mappings: mapping_handle,
            mappings_wake: mapping_wake_rx,
            resets: reset_handle,
            resets_wake: reset_wake_rx,
            rotations: rotation_handle,
            rotations_wake: rotation_wake_rx,
            runs: run_handle,
            jobs: job_handle,
            schedule_waker,
            events,
        },
        wake,
    )
}

/// For each change (or deletion) of an object that names a schedule, that schedule to wake.
fn wakes<K: Resource + 'static>(
    tx: tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>,
    schedule: fn(&K) -> &str,
) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
    move |event| {
        if let watcher::Event::Apply(obj) | watcher::Event::Delete(obj) = event {
            let r = ObjectRef::new(schedule(obj))
                .within(obj.meta().namespace.as_deref().unwrap_or_default());
            // The receiver lives as long as the schedule controller.
            let _ = tx.send(r);
        }
    }
}

/// The messages of a channel as a stream.
fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
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
