//! What every reconcile shares: the API client, the caches, the in-process runner, metrics
//! and events.

use super::cache::Caches;
use super::error::Error;
use super::metrics::Metrics;
use super::note::Note;
use crate::runner::inprocess::InProcess;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// Field manager of the controller's own writes.
pub const MANAGER: &str = "cloudmigrate-controller";
/// In-process runs at once, unless the operator says otherwise (`--max-in-process-runs`).
pub const DEFAULT_MAX_IN_PROCESS_RUNS: usize = 4;
/// Reconciles of one namespace that may talk to databases at once (`database_share`): fewer
/// than the reconcile slots of a kind, so other namespaces always find one.
pub const DATABASE_SHARES_PER_NAMESPACE: usize = 2;
/// How soon a reconcile that found its namespace's database shares taken tries again.
pub const SHARE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);
/// The field manager of the condition that shows a caught panic (`report_panic`).
pub const PANIC_MANAGER: &str = "cloudmigrate-panic";

/// The namespaces whose schedules may use `runner: InProcess`: it runs tenants' work inside
/// the controller, so the operator chooses where. None by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InProcessNamespaces {
    All,
    Only(Vec<String>),
}

impl InProcessNamespaces {
    /// From the flag's values: `*` is every namespace.
    pub fn from_flag(values: Vec<String>) -> Self {
        if values.iter().any(|v| v == "*") {
            Self::All
        } else {
            Self::Only(values)
        }
    }
}

pub struct Context {
    pub client: kube::Client,
    pub caches: Caches,
    pub inprocess: InProcess,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Whether each schedule's databases answer, probed in the background.
    pub probes: super::reach::Probes,
    /// Check for Update's registry answers.
    pub releases: super::releases::Releases,
    /// The target databases that the runs this process started write.
    pub claims: super::claims::Claims,
    /// Failed reconciles in a row, by object, for the back-off of `error_policy`.
    failures: Mutex<HashMap<String, u32>>,
    /// Where runs may run inside the controller.
    in_process_namespaces: InProcessNamespaces,
    /// How many runs may run inside the controller at once.
    pub max_in_process_runs: usize,
    /// The shares of database work, by namespace (`database_share`).
    database_shares: Mutex<HashMap<String, std::sync::Arc<tokio::sync::Semaphore>>>,
    /// Objects (`Kind/namespace/name`) whose last reconcile panicked.
    panicked: Mutex<std::collections::HashSet<String>>,
    /// Runs created for a schedule (by `namespace/name`) that the cache may not show yet.
    created: Mutex<HashMap<String, Vec<CreatedRun>>>,
    /// The status last written to each object (`kind/namespace/name`), as a hash of its JSON,
    /// with the resourceVersion of the object it was decided on.
    written: Mutex<HashMap<String, (Option<String>, u64)>>,
}

/// How many objects `written` remembers before it starts afresh: it only saves writes.
const WRITTEN_MEMORY: usize = 100_000;

/// A run the controller created: until the cache shows it, the schedule counts it as there,
/// so that a reconcile in between does not start the same run twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreatedRun {
    pub name: String,
    pub run_request: Option<String>,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// How long a created run is remembered when the cache never shows it (it was deleted at
/// once, say).
const CREATED_MEMORY: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

impl Context {
    pub fn new(
        client: kube::Client,
        caches: Caches,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            caches,
            inprocess: InProcess::default(),
            metrics,
            recorder,
            probes: Default::default(),
            releases: Default::default(),
            claims: Default::default(),
            failures: Mutex::new(HashMap::new()),
            panicked: Mutex::new(Default::default()),
            in_process_namespaces: InProcessNamespaces::Only(vec![]),
            max_in_process_runs: DEFAULT_MAX_IN_PROCESS_RUNS,
            database_shares: Mutex::new(HashMap::new()),
            created: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
        }
    }

    /// The same context, running runs in-process only in `namespaces` (the operator's
    /// `--in-process-namespaces`).
    pub fn with_in_process(mut self, namespaces: InProcessNamespaces) -> Self {
        self.in_process_namespaces = namespaces;
        self
    }

    /// The same context, running at most `cap` runs in-process at once (the operator's
    /// `--max-in-process-runs`).
    pub fn with_max_in_process_runs(mut self, cap: usize) -> Self {
        self.max_in_process_runs = cap.max(1);
        self
    }

    /// Why a schedule of `namespace` may not use `runner: InProcess`, or None when it may.
    pub fn in_process_refused(&self, namespace: &str) -> Option<String> {
        match &self.in_process_namespaces {
            InProcessNamespaces::All => None,
            InProcessNamespaces::Only(list) if list.iter().any(|n| n == namespace) => None,
            InProcessNamespaces::Only(_) => Some(format!(
                "runner: InProcess is not allowed in namespace {namespace}: the controller runs \
                 in-process only where its operator allows it (--in-process-namespaces, the \
                 chart's controller.inProcessNamespaces); set spec.runtime.runner: Job"
            )),
        }
    }

    /// A share of database work for a reconcile in `namespace`: at most
    /// `DATABASE_SHARES_PER_NAMESPACE` reconciles of one namespace talk to databases at once,
    /// so that one tenant's slow database cannot fill every reconcile slot. None when the
    /// namespace's shares are taken: the reconcile gives its slot back and tries again soon
    /// (`SHARE_WAIT`).
    pub fn database_share(&self, namespace: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let shares = self
            .database_shares
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(namespace.to_string())
            .or_insert_with(|| {
                std::sync::Arc::new(tokio::sync::Semaphore::new(DATABASE_SHARES_PER_NAMESPACE))
            })
            .clone();
        shares.try_acquire_owned().ok()
    }

    /// The same context, with registry answers that wake schedules through `releases`.
    pub fn with_releases(mut self, releases: super::releases::Releases) -> Self {
        self.releases = releases;
        self
    }

    /// The same context, with probes that wake schedules through `probes`.
    pub fn with_probes(mut self, probes: super::reach::Probes) -> Self {
        self.probes = probes;
        self
    }

    /// Remembers a run created for `schedule` (`namespace/name`).
    pub fn created(&self, schedule: &str, run: CreatedRun) {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(schedule.to_string())
            .or_default()
            .push(run);
    }

    /// The runs created for `schedule` that `cached` (the names the cache shows) lacks; those
    /// the cache shows now, or that are too old to wait for, are forgotten.
    pub fn not_yet_cached(
        &self,
        schedule: &str,
        cached: &[&str],
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<CreatedRun> {
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(runs) = created.get_mut(schedule) else {
            return vec![];
        };
        runs.retain(|r| !cached.contains(&r.name.as_str()) && now - r.at < CREATED_MEMORY);
        let left = runs.clone();
        if left.is_empty() {
            created.remove(schedule);
        }
        left
    }

    /// Counts a failed reconcile of the object `key`; returns the failures before this one.
    pub fn failed(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        *n - 1
    }

    /// Runs one reconcile of the object `key` (kind/namespace/name), counting it and its time
    /// in the metrics; a success ends the object's back-off.
    pub async fn measured<T>(
        &self,
        key: &str,
        reconcile: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let kind = Metrics::kind(key.split('/').next().unwrap_or_default());
        self.metrics.reconciles.get_or_create(&kind).inc();
        let result = reconcile.await;
        self.metrics
            .duration
            .get_or_create(&kind)
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(key);
        }
        result
    }

    /// Writes the controller's part of `obj`'s status, by server-side apply. A status that
    /// this controller already wrote on top of the same resourceVersion is not written again:
    /// the object holds it, and the cache has not caught up with the write yet (a reconcile
    /// woken between the write and the watch's echo of it).
    pub async fn apply_status<K>(
        &self,
        obj: &K,
        status: &impl serde::Serialize,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": status,
        });
        let meta = obj.meta();
        let (ns, name) = (
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default(),
        );
        let key = format!("{}/{ns}/{name}", K::kind(&()));
        let digest = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            body["status"].to_string().hash(&mut h);
            h.finish()
        };
        let write = (meta.resource_version.clone(), digest);
        if self
            .written
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            == Some(&write)
        {
            return Ok(());
        }
        kube::Api::<K>::namespaced(self.client.clone(), ns)
            .patch_status(
                name,
                &kube::api::PatchParams::apply(MANAGER).force(),
                &kube::api::Patch::Apply(body),
            )
            .await
            .map_err(Error::Status)?;
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        if written.len() >= WRITTEN_MEMORY {
            written.clear();
        }
        written.insert(key, write);
        Ok(())
    }

    /// Shows a caught panic of a reconcile on its object: the condition `Reconciled=False`
    /// (`ControllerPanicked`), written by a field manager of its own, so that the
    /// reconciler's status writes leave it alone. Logged too.
    pub async fn report_panic<K>(&self, obj: &K, key: &str, message: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        tracing::error!(object = %key, panic = %message, "the reconcile panicked; other objects go on");
        self.panicked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_string());
        let condition = serde_json::json!({
            "type": "Reconciled",
            "status": "False",
            "reason": "ControllerPanicked",
            "message": format!(
                "the controller failed on this object with an internal error ({message}); it \
                 tries again later, and other objects are not affected. Please report it with \
                 `cloudmigrate report` (a support bundle)"
            ),
            "lastTransitionTime": crate::clock::time(chrono::Utc::now()),
            "observedGeneration": obj.meta().generation,
        });
        if let Err(e) = self.apply_panic_condition(obj, vec![condition]).await {
            tracing::warn!(object = %key, error = %e, "writing the panic's condition failed");
        }
    }

    /// Takes a panic's condition away once a reconcile of the object succeeds again.
    pub async fn clear_panic<K>(&self, obj: &K, key: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let was = self
            .panicked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
        if was && let Err(e) = self.apply_panic_condition(obj, vec![]).await {
            tracing::warn!(object = %key, error = %e, "removing the panic's condition failed");
        }
    }

    async fn apply_panic_condition<K>(
        &self,
        obj: &K,
        conditions: Vec<serde_json::Value>,
    ) -> Result<(), kube::Error>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let meta = obj.meta();
        let body = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": {"conditions": conditions},
        });
        kube::Api::<K>::namespaced(
            self.client.clone(),
            meta.namespace.as_deref().unwrap_or_default(),
        )
        .patch_status(
            meta.name.as_deref().unwrap_or_default(),
            &kube::api::PatchParams::apply(PANIC_MANAGER).force(),
            &kube::api::Patch::Apply(body),
        )
        .await
        .map(|_| ())
    }

    /// Records events about an object. A cluster without the events API (the test API server
    /// serves custom resources only) gets them in the log instead.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, notes: &[Note]) {
        let reference = obj.object_ref(&());
        for n in notes {
            let event = Event {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.into(),
                note: Some(n.message.chars().take(1000).collect()),
                action: n.reason.into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
            // The object is a field of the reconcile's span.
            tracing::info!(reason = n.reason, "{}", n.message);
        }
    }
}

#[cfg(test)]
impl Context {
    /// A context on `client`, with caches that hold `schedules` and `runs`.
    pub fn for_test(
        client: kube::Client,
        schedules: Vec<crate::api::MigrationSchedule>,
        runs: Vec<crate::api::MigrationRun>,
    ) -> std::sync::Arc<Self> {
        // The tests' schedules run in-process, as the operator may allow everywhere.
        std::sync::Arc::new(
            Self::new(
                client,
                Caches::of(schedules, runs),
                Metrics::default(),
                None,
            )
            .with_in_process(InProcessNamespaces::All),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One namespace takes at most its shares of database work; another still finds one, and
    /// a share given back is there again.
    #[tokio::test]
    async fn one_namespace_cannot_take_every_share_of_database_work() {
        let (client, _server) = crate::fixtures::ApiServer::new();
        let ctx = Context::for_test(client, vec![], vec![]);
        let held: Vec<_> = (0..DATABASE_SHARES_PER_NAMESPACE)
            .map(|_| ctx.database_share("busy").unwrap())
            .collect();
        assert!(ctx.database_share("busy").is_none());
        assert!(ctx.database_share("quiet").is_some());
        drop(held);
        assert!(ctx.database_share("busy").is_some());
        assert!(
            DATABASE_SHARES_PER_NAMESPACE < super::super::watches::RECONCILE_CONCURRENCY as usize
        );
    }
}
