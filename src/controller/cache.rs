//! The controller's view of the cluster: one watch per kind, held in memory, and the indexes
//! that the reconcilers look things up by (a schedule's runs, the schedules on one database).
//! A reconcile reads here and never lists: its cost does not grow with the number of objects
//! around it. Worker Jobs are cached too, where the API server serves them, with their pods
//! and the events of pods they could not create (`WorkerCaches`).

use crate::api::{
    CloudReset, CompanySelection, MigrationRun, MigrationSchedule, RuntimeKeyRotation, UserMapping,
};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Secret};
use kube::Resource;
use kube::runtime::reflector::{self, Lookup, ObjectRef, ReflectHandle, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};

/// The index keys of a schedule: its source database, its target database, and its runtime
/// role on the target's server.
pub fn database_keys(schedule: &MigrationSchedule) -> Vec<String> {
    let mut keys = vec![
        format!(
            "source {}",
            crate::logins::database_identity(&schedule.spec.source.url)
        ),
        format!(
            "target {}",
            crate::logins::database_identity(&schedule.spec.target.url)
        ),
    ];
    if let Some(e) = schedule.status.as_ref().and_then(|s| s.endpoints.as_ref()) {
        keys.extend(e.source.iter().map(|a| format!("source {a}")));
        keys.extend(e.target.iter().map(|a| format!("target {a}")));
    }
    let name = schedule.metadata.name.as_deref().unwrap_or_default();
    if let Some(role) = crate::logins::role_identity(name, &schedule.spec.target.url) {
        keys.push(format!("role {role}"));
    }
    keys
}

/// The index key of the schedule `name` in `namespace`.
pub fn schedule_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// What a kind needs to be watched into a cache: a Kubernetes kind of static type that can be
/// read from the API, cloned and shared between tasks.
pub trait Watched:
    Resource<DynamicType = ()>
    + Lookup<DynamicType = ()>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
}

impl<K> Watched for K where
    K: Resource<DynamicType = ()>
        + Lookup<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static
{
}

/// A kind whose objects each name one schedule of their namespace: runs, CompanySelections,
/// UserMappings, CloudResets and key rotations by their `scheduleRef`, and a runtime key
/// Secret by its label.
pub trait OfSchedule: Resource<DynamicType = ()> {
    /// The name of the schedule this object belongs to.
    fn schedule_name(&self) -> &str;
}

macro_rules! of_schedule_by_ref {
    ($($kind:ty),*) => {$(
        impl OfSchedule for $kind {
            fn schedule_name(&self) -> &str {
                &self.spec.schedule_ref.name
            }
        }
    )*};
}
of_schedule_by_ref!(
    MigrationRun,
    CompanySelection,
    UserMapping,
    CloudReset,
    RuntimeKeyRotation
);

impl OfSchedule for Secret {
    fn schedule_name(&self) -> &str {
        self.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(super::annotations::RUNTIME_KEY_LABEL))
            .map(String::as_str)
            .unwrap_or_default()
    }
}

/// The index key of an object that names a schedule: that schedule.
pub fn schedule_keys<K: OfSchedule>(obj: &K) -> Vec<String> {
    vec![schedule_key(
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.schedule_name(),
    )]
}

struct Keys<K: Lookup<DynamicType = ()>> {
    of: HashMap<ObjectRef<K>, Vec<String>>,
    by: HashMap<String, HashSet<ObjectRef<K>>>,
}

impl<K: Lookup<DynamicType = ()>> Default for Keys<K> {
    fn default() -> Self {
        Self {
            of: HashMap::new(),
            by: HashMap::new(),
        }
    }
}

impl<K: Lookup<DynamicType = ()>> Keys<K> {
    fn remove(&mut self, r: &ObjectRef<K>) {
        for key in self.of.remove(r).unwrap_or_default() {
            if let Some(set) = self.by.get_mut(&key) {
                set.remove(r);
                if set.is_empty() {
                    self.by.remove(&key);
                }
            }
        }
    }

    fn insert(&mut self, r: ObjectRef<K>, keys: Vec<String>) {
        self.remove(&r);
        for key in &keys {
            self.by.entry(key.clone()).or_default().insert(r.clone());
        }
        self.of.insert(r, keys);
    }
}

struct IndexState<K: Lookup<DynamicType = ()>> {
    live: Keys<K>,
    /// Filled during a (re)list, and put live when it is complete.
    building: Keys<K>,
}

/// A secondary index over a watched kind: objects by keys that a function computes from each,
/// kept up to date from the same watch events as the store. The counterpart of an informer
/// index (`MatchingFields` in controller-runtime).
pub struct Index<K: Lookup<DynamicType = ()>> {
    keys: fn(&K) -> Vec<String>,
    state: Arc<RwLock<IndexState<K>>>,
}

impl<K: Lookup<DynamicType = ()>> Clone for Index<K> {
    fn clone(&self) -> Self {
        Self {
            keys: self.keys,
            state: self.state.clone(),
        }
    }
}

impl<K: Resource<DynamicType = ()> + Lookup<DynamicType = ()>> Index<K> {
    pub fn new(keys: fn(&K) -> Vec<String>) -> Self {
        Self {
            keys,
            state: Arc::new(RwLock::new(IndexState {
                live: Keys::default(),
                building: Keys::default(),
            })),
        }
    }

    /// Takes in one watch event.
    pub fn apply(&self, event: &watcher::Event<K>) {
        // A panic while holding the lock leaves the maps whole: each update is one insert or
        // remove, so a poisoned lock is still safe to use.
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match event {
            watcher::Event::Apply(obj) => state
                .live
                .insert(ObjectRef::from_obj(obj), (self.keys)(obj)),
            watcher::Event::Delete(obj) => state.live.remove(&ObjectRef::from_obj(obj)),
            watcher::Event::Init => state.building = Keys::default(),
            watcher::Event::InitApply(obj) => state
                .building
                .insert(ObjectRef::from_obj(obj), (self.keys)(obj)),
            watcher::Event::InitDone => {
                let built = std::mem::take(&mut state.building);
                state.live = built;
            }
        }
    }

    /// The objects with `key`.
    pub fn get(&self, key: &str) -> Vec<ObjectRef<K>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        state
            .live
            .by
            .get(key)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The objects of `store` filed under `key`.
    pub fn objects(&self, store: &Store<K>, key: &str) -> Vec<Arc<K>>
    where
        K: Clone,
    {
        self.get(key).iter().filter_map(|r| store.get(r)).collect()
    }
}

/// What the reconcilers read: the watched schedules and runs, and their indexes.
#[derive(Clone)]
pub struct Caches {
    pub schedules: Store<MigrationSchedule>,
    pub runs: Store<MigrationRun>,
    pub runs_by_schedule: Index<MigrationRun>,
    pub schedules_by_database: Index<MigrationSchedule>,
    /// The worker Jobs; None where the API server serves no Jobs (or may not be asked).
    pub jobs: Option<Store<Job>>,
    pub selections: Store<CompanySelection>,
    pub selections_by_schedule: Index<CompanySelection>,
    pub mappings: Store<UserMapping>,
    pub resets: Store<CloudReset>,
    pub resets_by_schedule: Index<CloudReset>,
    pub rotations: Store<RuntimeKeyRotation>,
    pub rotations_by_schedule: Index<RuntimeKeyRotation>,
    /// The runtime key Secrets, without their data.
    pub key_secrets: Store<Secret>,
    /// The worker pods and the Jobs' refusals; None where Jobs are not watched.
    pub workers: Option<WorkerCaches>,
}

/// What the run's reconciler reads of its workers before they write anything themselves: the
/// worker pods (slimmed to their scheduling and container states), and the `FailedCreate`
/// events of Jobs, both filed by Job.
#[derive(Clone)]
pub struct WorkerCaches {
    pub pods: Store<Pod>,
    pub pods_by_job: Index<Pod>,
    pub refusals: Store<Event>,
    pub refusals_by_job: Index<Event>,
}

/// A Job's pods, and the events of pods it could not create.
pub type JobWorkers = (Vec<Arc<Pod>>, Vec<Arc<Event>>);

/// The index key of a Job's pods and events: `namespace/job`.
fn job_key(namespace: &str, job: &str) -> String {
    format!("{namespace}/{job}")
}

/// A pod's Job, from the label the Job controller sets.
pub fn pod_job(pod: &Pod) -> Option<&str> {
    use crate::runner::startup::{JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL};
    let labels = pod.metadata.labels.as_ref()?;
    labels
        .get(JOB_NAME_LABEL)
        .or_else(|| labels.get(LEGACY_JOB_NAME_LABEL))
        .map(String::as_str)
}

/// The index key of a pod: its Job.
pub fn pod_job_keys(pod: &Pod) -> Vec<String> {
    pod_job(pod)
        .map(|job| job_key(pod.metadata.namespace.as_deref().unwrap_or_default(), job))
        .into_iter()
        .collect()
}

/// The index key of an event: the object it is about.
pub fn event_job_keys(event: &Event) -> Vec<String> {
    let o = &event.involved_object;
    let ns = o
        .namespace
        .as_deref()
        .or(event.metadata.namespace.as_deref())
        .unwrap_or_default();
    o.name
        .as_deref()
        .map(|n| job_key(ns, n))
        .into_iter()
        .collect()
}

impl Caches {
    /// The runs that name the schedule `name` in `namespace`.
    pub fn runs_of(&self, namespace: &str, name: &str) -> Vec<Arc<MigrationRun>> {
        self.runs_by_schedule
            .objects(&self.runs, &schedule_key(namespace, name))
    }

    /// The CompanySelections that name the schedule `name` in `namespace`.
    pub fn selections_of(&self, namespace: &str, name: &str) -> Vec<Arc<CompanySelection>> {
        self.selections_by_schedule
            .objects(&self.selections, &schedule_key(namespace, name))
    }

    /// The CloudResets that name the schedule `name` in `namespace`.
    pub fn resets_of(&self, namespace: &str, name: &str) -> Vec<Arc<CloudReset>> {
        self.resets_by_schedule
            .objects(&self.resets, &schedule_key(namespace, name))
    }

    /// The RuntimeKeyRotations that name the schedule `name` in `namespace`.
    pub fn rotations_of(&self, namespace: &str, name: &str) -> Vec<Arc<RuntimeKeyRotation>> {
        self.rotations_by_schedule
            .objects(&self.rotations, &schedule_key(namespace, name))
    }

    /// The runtime key Secret `name` in `namespace` (metadata only), if the cache has it.
    pub fn key_secret(&self, namespace: &str, name: &str) -> Option<Arc<Secret>> {
        self.key_secrets
            .get(&ObjectRef::new(name).within(namespace))
    }

    /// The pods of the Job `job` in `namespace`, and the events of pods it could not create;
    /// None where they are not watched.
    pub fn job_workers(&self, namespace: &str, job: &str) -> Option<JobWorkers> {
        let w = self.workers.as_ref()?;
        let key = job_key(namespace, job);
        Some((
            w.pods_by_job.objects(&w.pods, &key),
            w.refusals_by_job.objects(&w.refusals, &key),
        ))
    }

    /// The worker Job `name` in `namespace`, if the cache has it.
    pub fn job(&self, namespace: &str, name: &str) -> Option<Arc<Job>> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.get(&ObjectRef::new(name).within(namespace)))
    }

    /// The schedule `name` in `namespace`, as last seen.
    pub fn schedule(&self, namespace: &str, name: &str) -> Option<Arc<MigrationSchedule>> {
        self.schedules.get(&ObjectRef::new(name).within(namespace))
    }

    /// The other schedules, in every watched namespace, that use the source or the target
    /// database of `schedule`.
    pub fn sharing_a_database(&self, schedule: &MigrationSchedule) -> Vec<Arc<MigrationSchedule>> {
        let me = ObjectRef::from_obj(schedule);
        let mut refs: Vec<ObjectRef<MigrationSchedule>> = database_keys(schedule)
            .iter()
            .flat_map(|k| self.schedules_by_database.get(k))
            .filter(|r| *r != me)
            .collect();
        refs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        refs.dedup();
        refs.iter().filter_map(|r| self.schedules.get(r)).collect()
    }

    /// Caches filled with `schedules` and `runs`, without a watch: for tests and tools.
    pub fn of(schedules: Vec<MigrationSchedule>, runs: Vec<MigrationRun>) -> Self {
        let (schedule_store, mut schedule_writer) = reflector::store();
        let (run_store, mut run_writer) = reflector::store();
        let (selection_store, _) = reflector::store();
        let (mapping_store, _) = reflector::store();
        let (reset_store, _) = reflector::store();
        let (rotation_store, _) = reflector::store();
        let (secret_store, _) = reflector::store();
        let caches = Caches {
            schedules: schedule_store,
            runs: run_store,
            runs_by_schedule: Index::new(schedule_keys::<MigrationRun>),
            schedules_by_database: Index::new(database_keys),
            jobs: None,
            selections: selection_store,
            selections_by_schedule: Index::new(schedule_keys::<CompanySelection>),
            mappings: mapping_store,
            resets: reset_store,
            resets_by_schedule: Index::new(schedule_keys::<CloudReset>),
            rotations: rotation_store,
            rotations_by_schedule: Index::new(schedule_keys::<RuntimeKeyRotation>),
            key_secrets: secret_store,
            workers: None,
        };
        for s in schedules {
            let event = watcher::Event::Apply(s);
            caches.schedules_by_database.apply(&event);
            schedule_writer.apply_watcher_event(&event);
        }
        for r in runs {
            let event = watcher::Event::Apply(r);
            caches.runs_by_schedule.apply(&event);
            run_writer.apply_watcher_event(&event);
        }
        caches
    }
}

/// Drops what the controller never reads from a cached object, to keep the caches small:
/// the managed fields of every object.
pub fn slim_schedule(schedule: &mut MigrationSchedule) {
    schedule.metadata.managed_fields = None;
}

/// A CompanySelection as the schedule reads it: its spec and metadata.
pub fn slim_selection(selection: &mut CompanySelection) {
    selection.metadata.managed_fields = None;
}

/// A CloudReset without its managed fields.
pub fn slim_reset(reset: &mut CloudReset) {
    reset.metadata.managed_fields = None;
}

/// A RuntimeKeyRotation without its managed fields.
pub fn slim_rotation(rotation: &mut RuntimeKeyRotation) {
    rotation.metadata.managed_fields = None;
}

/// A runtime key Secret as the controller keeps it: its metadata, never its data.
pub fn slim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.data = None;
    secret.string_data = None;
}

/// A UserMapping without its managed fields.
pub fn slim_mapping(mapping: &mut UserMapping) {
    mapping.metadata.managed_fields = None;
}

/// A worker Job as the run's reconciler reads it: its status. The pod template goes.
pub fn slim_job(job: &mut Job) {
    job.metadata.managed_fields = None;
    if let Some(spec) = job.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// A worker pod as the run's reconciler reads it (`runner::startup`): its name, creation and
/// Job label; its containers' names and images; its phase, its `PodScheduled` condition and
/// its containers' states. The rest of the spec, the annotations and the other conditions go.
pub fn slim_pod(pod: &mut Pod) {
    use crate::runner::startup::{JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL};
    use k8s_openapi::api::core::v1::{Container, PodSpec, PodStatus};
    let meta = &mut pod.metadata;
    meta.managed_fields = None;
    meta.annotations = None;
    meta.owner_references = None;
    if let Some(labels) = meta.labels.as_mut() {
        labels.retain(|k, _| {
            k == JOB_NAME_LABEL || k == LEGACY_JOB_NAME_LABEL || k == crate::runner::job::RUN_LABEL
        });
    }
    if let Some(spec) = pod.spec.take() {
        pod.spec = Some(PodSpec {
            containers: spec
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    image: c.image,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
    }
    if let Some(status) = pod.status.take() {
        pod.status = Some(PodStatus {
            phase: status.phase,
            conditions: status.conditions.map(|mut c| {
                c.retain(|c| c.type_ == "PodScheduled");
                c
            }),
            container_statuses: status.container_statuses,
            ..Default::default()
        });
    }
}

/// A `FailedCreate` event as the run's reconciler reads it: whom it is about, its message and
/// its times.
pub fn slim_event(event: &mut Event) {
    event.metadata.managed_fields = None;
    event.metadata.annotations = None;
    event.metadata.labels = None;
    event.source = None;
    event.related = None;
    event.reporting_component = None;
    event.reporting_instance = None;
}

/// As `slim_schedule`, and for a run that has ended, its per-table and per-worker entries: an
/// ended run is never acted on again, and its schedule reads only its counts.
pub fn slim_run(run: &mut MigrationRun) {
    run.metadata.managed_fields = None;
    if let Some(status) = run.status.as_mut()
        && status.result.is_some()
    {
        status.tables = Vec::new();
        status.workers = Vec::new();
    }
}

/// One shared watch of a kind: the store it fills, a handle that wakes a controller for each
/// object that changed, and the stream that must be polled to keep both going. `on_event`
/// sees every event once the index and the store hold it.
pub fn watch<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    index: Index<K>,
    slim: fn(&mut K),
    mut on_event: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> (Store<K>, ReflectHandle<K>, impl Stream<Item = ()> + Send)
where
    K: Watched,
{
    let (store, writer) = reflector::store_shared(1024);
    // A store made with store_shared always hands out subscribers.
    let handle = writer
        .subscribe()
        .expect("store_shared makes a store that can be subscribed to");
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .map(move |event| {
            if let Ok(e) = &event {
                index.apply(e);
            }
            event
        })
        .reflect_shared(writer)
        // After the store: whoever is woken finds the object there.
        .map(move |event| match event {
            Ok(e) => on_event(&e),
            Err(e) => tracing::warn!(error = %e, "watch failed; it starts again after a pause"),
        });
    (store, handle, events)
}

/// As `watch`, for a kind that no controller is driven by: a plain store, nobody to hand
/// events to.
pub fn watch_plain<K>(
    api: kube::Api<K>,
    config: watcher::Config,
    slim: fn(&mut K),
    mut on_event: impl FnMut(&watcher::Event<K>) + Send + 'static,
) -> (Store<K>, impl Stream<Item = ()> + Send)
where
    K: Watched,
{
    let (store, writer) = reflector::store();
    let events = watcher(api, config)
        .default_backoff()
        .modify(slim)
        .reflect(writer)
        .map(move |event| match event {
            Ok(e) => on_event(&e),
            Err(e) => tracing::warn!(error = %e, "watch failed; it starts again after a pause"),
        });
    (store, events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, schedule: &str) -> MigrationRun {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"scheduleRef": {"name": schedule}}
        }))
        .unwrap()
    }

    fn names(refs: Vec<ObjectRef<MigrationRun>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    #[test]
    fn schedules_in_two_namespaces_on_one_database_see_each_other() {
        let schedule = |ns: &str, name: &str, target: &str| -> MigrationSchedule {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"source": {"url": format!("postgres://erp.example/{name}")},
                         "target": {"url": target}}
            }))
            .unwrap()
        };
        let shop = schedule("shop", "erp", "postgres://cloud.example:5432/bc");
        let other = schedule("finance", "gl", "postgres://CLOUD.example/bc");
        let alone = schedule("finance", "alone", "postgres://cloud.example/other");
        let caches = Caches::of(vec![shop.clone(), other, alone], vec![]);
        let found: Vec<String> = caches
            .sharing_a_database(&shop)
            .iter()
            .map(|s| {
                format!(
                    "{}/{}",
                    s.metadata.namespace.as_deref().unwrap_or_default(),
                    s.metadata.name.as_deref().unwrap_or_default()
                )
            })
            .collect();
        assert_eq!(found, vec!["finance/gl".to_string()]);
    }

    #[test]
    fn the_index_follows_applies_deletes_and_relists() {
        let index = Index::new(schedule_keys::<MigrationRun>);
        index.apply(&watcher::Event::Apply(run("a-1", "a")));
        index.apply(&watcher::Event::Apply(run("a-2", "a")));
        index.apply(&watcher::Event::Apply(run("b-1", "b")));
        assert_eq!(names(index.get("shop/a")), vec!["a-1", "a-2"]);
        index.apply(&watcher::Event::Delete(run("a-1", "a")));
        assert_eq!(names(index.get("shop/a")), vec!["a-2"]);
        // A relist replaces everything once it is complete; until then the old view stands.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(run("c-1", "c")));
        assert_eq!(names(index.get("shop/a")), vec!["a-2"]);
        index.apply(&watcher::Event::InitDone);
        assert!(index.get("shop/a").is_empty());
        assert_eq!(names(index.get("shop/c")), vec!["c-1"]);
    }
}
