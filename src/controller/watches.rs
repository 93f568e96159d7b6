//! The shared watches: one per kind, in the watched namespace or in all of them. They fill the
//! caches that every reconciler reads (`cache::Caches`), and they say whom each change wakes:
//! a schedule wakes the objects that name it, and an object that names a schedule wakes it.
//! Each kind's own controller chain sits beside its reconciler (`schedule::controller`,
//! `run::controller`, ...), built with `drive`.

use super::cache::{self, Caches, Index, OfSchedule, Watched, schedule_keys};
use super::context::Context;
use super::error::Error;
use super::{annotations, api, error_policy};
use crate::api::{
    CloudReset, CompanySelection, MigrationRun, MigrationSchedule, RuntimeKeyRotation, UserMapping,
};
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{Lookup, ObjectRef, ReflectHandle, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use std::sync::Arc;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// How many objects of one kind are reconciled at once. Each reconcile holds only its own
/// object and a few API calls, so this bounds the controller's work, not its memory.
pub const RECONCILE_CONCURRENCY: u16 = 8;

/// Wakes the objects that name the schedule with the index key it is given.
type Waker = Box<dyn Fn(&str) + Send + Sync>;

/// A watched kind whose objects name a schedule: its cache, its index by schedule, the handle
/// its controller is driven by, and its objects to reconcile because their schedule changed.
pub struct Dependent<K: Lookup<DynamicType = ()> + Clone + 'static> {
    pub store: Store<K>,
    pub index: Index<K>,
    pub handle: ReflectHandle<K>,
    pub woken: UnboundedReceiver<ObjectRef<K>>,
    wake: UnboundedSender<ObjectRef<K>>,
}

impl<K> Dependent<K>
where
    K: OfSchedule + Lookup<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    /// Wakes the objects that name the schedule with index key `key`.
    fn waker(&self) -> impl Fn(&str) + Send + Sync + 'static {
        let (index, wake) = (self.index.clone(), self.wake.clone());
        move |key| {
            for obj in index.get(key) {
                // The receiver lives as long as the kind's controller.
                let _ = wake.send(obj);
            }
        }
    }
}

/// The messages of a channel as a stream.
fn stream_of<T: Send + 'static>(rx: UnboundedReceiver<T>) -> impl Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

/// The watch of one kind that names a schedule: every change of one of its objects wakes that
/// schedule.
fn dependent<K>(
    client: &Client,
    namespace: &Option<String>,
    slim: fn(&mut K),
    schedules: UnboundedSender<ObjectRef<MigrationSchedule>>,
) -> (Dependent<K>, BoxStream<'static, ()>)
where
    K: OfSchedule + Watched + Resource<Scope = k8s_openapi::NamespaceResourceScope>,
{
    let index = Index::new(schedule_keys::<K>);
    let (store, handle, events) = cache::watch(
        api::<K>(client, namespace),
        watcher::Config::default(),
        index.clone(),
        slim,
        wakes_schedule(schedules),
    );
    let (wake, woken) = unbounded_channel();
    let dependent = Dependent {
        store,
        index,
        handle,
        woken,
        wake,
    };
    (dependent, events.boxed())
}

/// For each change (or deletion) of an object that names a schedule, that schedule to wake.
fn wakes_schedule<K: OfSchedule + 'static>(
    tx: UnboundedSender<ObjectRef<MigrationSchedule>>,
) -> impl FnMut(&watcher::Event<K>) + Send + 'static {
    move |event| {
        if let watcher::Event::Apply(obj) | watcher::Event::Delete(obj) = event {
            let r = ObjectRef::new(obj.schedule_name())
                .within(obj.meta().namespace.as_deref().unwrap_or_default());
            // The receiver lives as long as the schedule controller.
            let _ = tx.send(r);
        }
    }
}

/// Everything the watches hold for the controllers: the handles they are driven by and whom
/// each change wakes, and the stream that keeps every watch going.
pub struct Watches {
    pub schedules: ReflectHandle<MigrationSchedule>,
    /// Schedules to reconcile: one of their objects changed, or a probe of their databases
    /// ended.
    pub schedules_woken: BoxStream<'static, ObjectRef<MigrationSchedule>>,
    /// Wakes a schedule from outside the watches (a probe of its databases ended).
    pub schedule_waker: UnboundedSender<ObjectRef<MigrationSchedule>>,
    pub runs: ReflectHandle<MigrationRun>,
    pub jobs: Option<ReflectHandle<Job>>,
    /// The worker pods and the Jobs' `FailedCreate` events, where they are watched.
    pub pods: Option<ReflectHandle<Pod>>,
    pub refusals: Option<ReflectHandle<Event>>,
    pub selections: Dependent<CompanySelection>,
    pub mappings: Dependent<UserMapping>,
    pub resets: Dependent<CloudReset>,
    pub rotations: Dependent<RuntimeKeyRotation>,
    pub events: BoxFuture<'static, ()>,
}

/// The field selector of the events the controller watches: a Job that could not create a pod.
pub const REFUSALS_SELECTOR: &str = "involvedObject.kind=Job,reason=FailedCreate";

/// Starts one watch per kind (Jobs only where `jobs_served`; worker pods and the Jobs'
/// refusals only where `workers_served` too), and returns the caches they fill and the
/// watches for the controllers.
pub fn watch(
    client: &Client,
    namespace: &Option<String>,
    jobs_served: bool,
    workers_served: bool,
) -> (Caches, Watches) {
    let (schedule_waker, schedules_woken) = unbounded_channel();
    let (runs, runs_events) =
        dependent::<MigrationRun>(client, namespace, cache::slim_run, schedule_waker.clone());
    let (selections, selections_events) = dependent(
        client,
        namespace,
        cache::slim_selection,
        schedule_waker.clone(),
    );
    let (mappings, mappings_events) = dependent(
        client,
        namespace,
        cache::slim_mapping,
        schedule_waker.clone(),
    );
    let (resets, resets_events) =
        dependent(client, namespace, cache::slim_reset, schedule_waker.clone());
    let (rotations, rotations_events) = dependent(
        client,
        namespace,
        cache::slim_rotation,
        schedule_waker.clone(),
    );
    // A schedule that changes (created, a run ended) wakes the objects that name it.
    let wakers: Vec<Waker> = vec![
        Box::new(selections.waker()),
        Box::new(mappings.waker()),
        Box::new(resets.waker()),
        Box::new(rotations.waker()),
    ];
    let schedules_index = Index::new(cache::database_keys);
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
                for wake in &wakers {
                    wake(&key);
                }
            }
        },
    );
    let (secret_store, secrets_events) =
        key_secrets(client, namespace, &schedule_waker, &rotations);
    let mut streams = vec![
        schedule_events.boxed(),
        runs_events,
        selections_events,
        mappings_events,
        resets_events,
        rotations_events,
        secrets_events,
    ];
    let runners = runner_watches(client, namespace, jobs_served, workers_served);
    streams.extend(runners.streams);
    let caches = Caches {
        schedules: schedule_store,
        runs: runs.store,
        runs_by_schedule: runs.index,
        schedules_by_database: schedules_index,
        jobs: runners.job_store,
        selections: selections.store.clone(),
        selections_by_schedule: selections.index.clone(),
        mappings: mappings.store.clone(),
        resets: resets.store.clone(),
        resets_by_schedule: resets.index.clone(),
        rotations: rotations.store.clone(),
        rotations_by_schedule: rotations.index.clone(),
        key_secrets: secret_store,
        workers: runners.workers,
    };
    let watches = Watches {
        schedules: schedule_handle,
        schedules_woken: stream_of(schedules_woken).boxed(),
        schedule_waker,
        runs: runs.handle,
        jobs: runners.jobs,
        pods: runners.pods,
        refusals: runners.refusals,
        selections,
        mappings,
        resets,
        rotations,
        events: Box::pin(futures_util::stream::select_all(streams).for_each(|_| async {})),
    };
    (caches, watches)
}

/// The watches of the Job runner: worker Jobs, and their pods and refusals.
struct RunnerWatches {
    job_store: Option<Store<Job>>,
    jobs: Option<ReflectHandle<Job>>,
    workers: Option<cache::WorkerCaches>,
    pods: Option<ReflectHandle<Pod>>,
    refusals: Option<ReflectHandle<Event>>,
    streams: Vec<BoxStream<'static, ()>>,
}

/// Starts the watches of worker Jobs (where `jobs_served`), and of their pods and the Jobs'
/// `FailedCreate` events (where `workers_served` too).
fn runner_watches(
    client: &Client,
    namespace: &Option<String>,
    jobs_served: bool,
    workers_served: bool,
) -> RunnerWatches {
    let (job_store, jobs, job_events) = if jobs_served {
        let (store, handle, events) = cache::watch(
            api::<Job>(client, namespace),
            watcher::Config::default().labels(crate::runner::job::WORKER_SELECTOR),
            Index::new(|_| vec![]),
            cache::slim_job,
            |_| {},
        );
        (Some(store), Some(handle), Some(events.boxed()))
    } else {
        (None, None, None)
    };
    let mut streams: Vec<BoxStream<'static, ()>> = job_events.into_iter().collect();
    let (workers, pods, refusals) = if jobs_served && workers_served {
        let pods_by_job = Index::new(cache::pod_job_keys);
        let (pods, pod_handle, pod_events) = cache::watch(
            api::<Pod>(client, namespace),
            watcher::Config::default().labels(crate::runner::job::WORKER_SELECTOR),
            pods_by_job.clone(),
            cache::slim_pod,
            |_| {},
        );
        let refusals_by_job = Index::new(cache::event_job_keys);
        let (refusals, refusal_handle, refusal_events) = cache::watch(
            api::<Event>(client, namespace),
            watcher::Config::default().fields(REFUSALS_SELECTOR),
            refusals_by_job.clone(),
            cache::slim_event,
            |_| {},
        );
        streams.push(pod_events.boxed());
        streams.push(refusal_events.boxed());
        let workers = cache::WorkerCaches {
            pods,
            pods_by_job,
            refusals,
            refusals_by_job,
        };
        (Some(workers), Some(pod_handle), Some(refusal_handle))
    } else {
        (None, None, None)
    };
    RunnerWatches {
        job_store,
        jobs,
        workers,
        pods,
        refusals,
        streams,
    }
}

/// The runtime key Secrets, metadata only: a changed one wakes its schedule and the schedule's
/// rotations.
fn key_secrets(
    client: &Client,
    namespace: &Option<String>,
    schedules: &UnboundedSender<ObjectRef<MigrationSchedule>>,
    rotations: &Dependent<RuntimeKeyRotation>,
) -> (Store<Secret>, BoxStream<'static, ()>) {
    let mut wake_schedule = wakes_schedule(schedules.clone());
    let wake_rotations = rotations.waker();
    let (store, events) = cache::watch_plain(
        api::<Secret>(client, namespace),
        watcher::Config::default().labels(annotations::RUNTIME_KEY_LABEL),
        cache::slim_secret,
        move |event| {
            wake_schedule(event);
            if let watcher::Event::Apply(s) | watcher::Event::Delete(s) = event {
                for key in schedule_keys(s) {
                    wake_rotations(&key);
                }
            }
        },
    );
    (store, events.boxed())
}

/// Drives one kind's controller until `shutdown`: `reconcile` for each object that is due,
/// `RECONCILE_CONCURRENCY` at once, each counted and timed in the metrics (`measured`).
pub async fn drive<K, F, Fut>(
    controller: Controller<K>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    K: Watched<Scope = k8s_openapi::NamespaceResourceScope>,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    controller
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(measured(reconcile), error_policy, ctx)
        .for_each(|_| async {})
        .await
}

/// `reconcile`, counted and timed in the metrics by kind; a success ends the object's
/// back-off. A panic is caught: it fails this reconcile of this object only, shows on the
/// object as the condition `Reconciled=False` (`ControllerPanicked`), and is tried again after
/// the back-off; the next success takes the condition away.
fn measured<K, F, Fut>(
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> + Send + Sync
where
    K: Watched<Scope = k8s_openapi::NamespaceResourceScope>,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |obj, ctx| {
        let key = format!(
            "{}/{}/{}",
            <K as Resource>::kind(&()),
            obj.meta().namespace.as_deref().unwrap_or_default(),
            obj.meta().name.as_deref().unwrap_or_default()
        );
        let reconcile = reconcile.clone();
        Box::pin(async move {
            use futures_util::FutureExt;
            let work = std::panic::AssertUnwindSafe(reconcile(obj.clone(), ctx.clone()))
                .catch_unwind()
                .map(|r| {
                    r.unwrap_or_else(|p| Err(Error::Panicked(crate::engine::panic_message(&*p))))
                });
            let result = ctx.measured(&key, work).await;
            match &result {
                Err(Error::Panicked(message)) => {
                    ctx.report_panic(obj.as_ref(), &key, message).await
                }
                Ok(_) => ctx.clear_panic(obj.as_ref(), &key).await,
                Err(_) => {}
            }
            result
        })
    }
}

/// Drives the controller of a kind that names a schedule: reconciled on its own changes and on
/// those of its schedule.
pub async fn drive_dependent<K, F, Fut>(
    watch: Dependent<K>,
    reconcile: F,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) where
    K: OfSchedule + Watched<Scope = k8s_openapi::NamespaceResourceScope>,
    F: Fn(Arc<K>, Arc<Context>) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<Action, Error>> + Send + 'static,
{
    let watched = Controller::for_shared_stream(watch.handle, watch.store)
        .reconcile_on(stream_of(watch.woken));
    drive(watched, reconcile, ctx, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::MigrationSchedule;
    use crate::fixtures::ApiServer;
    use http::Method;

    fn schedule() -> MigrationSchedule {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "generation": 3},
            "spec": {"source": {"url": "sqlite:///s.db"}, "target": {"url": "sqlite:///t.db"}}
        }))
        .unwrap()
    }

    /// A reconcile that panics fails that object's reconcile only: the condition says so on
    /// the object, written by a field manager of its own; the next success takes it away.
    #[tokio::test]
    async fn a_panicking_reconcile_fails_its_object_only_and_says_so_on_it() {
        let (client, mut server) = ApiServer::new();
        let ctx = Arc::new(Context::new(
            client,
            Caches::of(vec![], vec![]),
            crate::controller::metrics::Metrics::default(),
            None,
        ));
        let panicking = measured(|_: Arc<MigrationSchedule>, _: Arc<Context>| async {
            if true {
                panic!("a value of the wrong type");
            }
            Ok(Action::await_change())
        });
        let obj = Arc::new(schedule());
        let status_uri = "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp/status?&force=true&fieldManager=cloudmigrate-panic";
        let reconcile = tokio::spawn(panicking(obj.clone(), ctx.clone()));
        let call = server.expect(Method::PATCH, status_uri).await;
        let condition = &call.body["status"]["conditions"][0];
        assert_eq!(condition["type"], "Reconciled");
        assert_eq!(condition["reason"], "ControllerPanicked");
        assert!(
            condition["message"]
                .as_str()
                .unwrap()
                .contains("a value of the wrong type"),
            "{condition}"
        );
        call.echo(200);
        match reconcile.await.unwrap() {
            Err(Error::Panicked(m)) => assert_eq!(m, "a value of the wrong type"),
            other => panic!("{other:?}"),
        }
        // The next reconcile succeeds: the condition goes.
        let healthy = measured(|_: Arc<MigrationSchedule>, _: Arc<Context>| async {
            Ok(Action::await_change())
        });
        let reconcile = tokio::spawn(healthy(obj.clone(), ctx.clone()));
        let call = server.expect(Method::PATCH, status_uri).await;
        assert_eq!(call.body["status"]["conditions"], serde_json::json!([]));
        call.echo(200);
        assert!(reconcile.await.unwrap().is_ok());
        // And once it is gone, a success writes nothing.
        let again = healthy(obj, ctx).await;
        assert!(again.is_ok());
        assert_eq!(server.seen.len(), 2);
    }
}
