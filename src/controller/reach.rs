//! Whether a schedule's databases answer, and whether change tracking is in the source: a
//! probe per schedule that runs in the background, at most every few minutes and a few at a
//! time, whose last result the schedule's decide reads (its `Ready` and `ChangeTracking`
//! conditions). A reconcile waits for a database only when it has no result at all for the
//! schedule's settings, and then at most `FIRST_WAIT`: so that a new schedule's first status
//! write carries the answer, instead of a second write following a moment later.

use crate::api::schedule::{MigrationSchedule, MigrationScheduleSpec};
use crate::logins::{Connection, Side};
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How often a schedule's databases are probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(300);

/// How long one connection attempt of a probe may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);

/// How long a reconcile waits for a probe when it has no result for the settings at all.
pub const FIRST_WAIT: Duration = Duration::from_secs(1);

/// How many probes run at once: a few, so that one database that takes its time to answer
/// (up to `CONNECT_LIMIT`) does not hold up every other schedule's first look. At 1,000
/// schedules, 1 and 4 start equally fast (docs/benchmarks.md).
const AT_ONCE: usize = 4;

/// What a probe found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    /// The source answered, or why not (without any password).
    pub source: Result<(), String>,
    pub target: Result<(), String>,
    /// The condition reason of a target that did not answer, when it is more telling than
    /// `TargetUnreachable`: a data lake's (`LakeAccessDenied`, `InvalidLakeTarget`, ...).
    pub target_reason: Option<&'static str>,
    /// Change tracking's log table is in the source; None when the source did not answer.
    pub tracking: Option<bool>,
    /// What the migration login lacks on the source for change tracking, with the GRANTs
    /// (`engine::privileges`); None when it lacks nothing or the source did not answer.
    pub source_lacks: Option<String>,
    /// The tables not in the cloud as they stand over the runs so far, from the target's run
    /// log (for the setup checklist); None when the target did not answer.
    pub not_migrated: Option<Vec<crate::engine::ledger::state::NotMigrated>>,
    /// Where every table stands over the runs so far, from the target's run log (the
    /// Migration Information tiles); None when the target did not answer or no run wrote the
    /// log yet.
    pub standing: Option<crate::engine::ledger::state::Standing>,
    /// The addresses the databases' host names resolved to (for conflicts between schedules).
    pub endpoints: crate::api::schedule::ResolvedEndpoints,
}

struct Entry {
    /// The connection settings the result is for.
    settings: String,
    /// The last run that had ended when the probe started.
    last_end: String,
    started: Instant,
    result: Option<Reach>,
    /// Set when the probe started at `started` ends.
    ended: tokio::sync::watch::Receiver<bool>,
}

/// The probes of every schedule, by `namespace/name`.
#[derive(Clone)]
pub struct Probes {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    limit: Arc<tokio::sync::Semaphore>,
    /// Wakes a schedule when its probe has a result.
    wake: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>>,
}

impl Default for Probes {
    fn default() -> Self {
        Self::new(None)
    }
}

/// What a probe's result depends on: the connection settings.
fn settings(spec: &MigrationScheduleSpec) -> String {
    format!(
        "{}|{:?}|{:?}|{}|{:?}|{:?}",
        spec.source.url,
        spec.source.password_secret_ref,
        spec.source.tls,
        spec.target.url,
        spec.target.password_secret_ref,
        spec.target.tls
    )
}

/// The last run that ended: a run installs change tracking, so its end is worth a new look.
fn last_end(schedule: &MigrationSchedule) -> String {
    schedule
        .status
        .as_ref()
        .and_then(|s| s.last_run.as_ref())
        .filter(|r| r.completion_time.is_some())
        .map(|r| r.name.clone())
        .unwrap_or_default()
}

impl Probes {
    pub fn new(
        wake: Option<tokio::sync::mpsc::UnboundedSender<ObjectRef<MigrationSchedule>>>,
    ) -> Self {
        Self {
            entries: Default::default(),
            limit: Arc::new(tokio::sync::Semaphore::new(AT_ONCE)),
            wake,
        }
    }

    /// Forgets the last result of a schedule, whose databases just changed (Disable Cloud
    /// Migration removed change tracking): the next look starts a probe and, until it ends,
    /// has no result.
    pub fn refresh(&self, namespace: &str, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&format!("{namespace}/{name}"));
    }

    /// The last result for the schedule's current settings. Starts a probe in the background
    /// when none ran for these settings, a run ended since the last one, or the last one
    /// started `PROBE_EVERY` ago. With no result for these settings yet, waits up to `wait`
    /// for the probe under way.
    pub async fn observe(
        &self,
        client: &kube::Client,
        schedule: &MigrationSchedule,
        wait: Duration,
    ) -> Option<Reach> {
        let (last, mut ended) = self.look(client, schedule);
        if last.is_some() || wait.is_zero() {
            return last;
        }
        // An error means the probe's task is gone; the wake brings its result anyway.
        let _ = tokio::time::timeout(wait, ended.wait_for(|done| *done)).await;
        let key = key(schedule);
        let settings = settings(&schedule.spec);
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .filter(|e| e.settings == settings)
            .and_then(|e| e.result.clone())
    }

    /// The last result for the schedule's current settings, if any, and the signal of the
    /// probe under way; starts a probe when one is due.
    fn look(
        &self,
        client: &kube::Client,
        schedule: &MigrationSchedule,
    ) -> (Option<Reach>, tokio::sync::watch::Receiver<bool>) {
        let ns = schedule.metadata.namespace.clone().unwrap_or_default();
        let name = schedule.metadata.name.clone().unwrap_or_default();
        let key = key(schedule);
        let (settings, ended) = (settings(&schedule.spec), last_end(schedule));
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let (due, last) = match entries.get(&key) {
            // Other settings: the old result says nothing about these.
            Some(e) if e.settings != settings => (true, None),
            Some(e) => (
                e.last_end != ended || e.started.elapsed() >= PROBE_EVERY,
                e.result.clone(),
            ),
            None => (true, None),
        };
        if !due {
            let signal = entries
                .get(&key)
                .map(|e| e.ended.clone())
                // The entry was just read under this same lock.
                .unwrap_or_else(|| tokio::sync::watch::channel(true).1);
            return (last, signal);
        }
        let (done, signal) = tokio::sync::watch::channel(false);
        entries.insert(
            key.clone(),
            Entry {
                settings: settings.clone(),
                last_end: ended,
                started: Instant::now(),
                result: last.clone(),
                ended: signal.clone(),
            },
        );
        let this = self.clone();
        let client = client.clone();
        let spec = schedule.spec.clone();
        tokio::spawn(async move {
            let reach = {
                let _turn = this.limit.acquire().await;
                probe(&client, &ns, &spec).await
            };
            if let Some(e) = this
                .entries
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_mut(&key)
                .filter(|e| e.settings == settings)
            {
                e.result = Some(reach);
            }
            let _ = done.send(true);
            if let Some(wake) = &this.wake {
                let _ = wake.send(ObjectRef::new(&name).within(&ns));
            }
        });
        (last, signal)
    }
}

#[cfg(test)]
impl Probes {
    /// Records `reach` as the schedule's fresh result, as if its probe had just ended.
    pub fn found(&self, schedule: &MigrationSchedule, reach: Reach) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                key(schedule),
                Entry {
                    settings: settings(&schedule.spec),
                    last_end: last_end(schedule),
                    started: Instant::now(),
                    result: Some(reach),
                    ended: tokio::sync::watch::channel(true).1,
                },
            );
    }
}

/// A schedule's key in the table of probes: `namespace/name`.
fn key(schedule: &MigrationSchedule) -> String {
    format!(
        "{}/{}",
        schedule.metadata.namespace.as_deref().unwrap_or_default(),
        schedule.metadata.name.as_deref().unwrap_or_default()
    )
}

/// Connects to both databases once, and looks for change tracking's log in the source.
async fn probe(client: &kube::Client, ns: &str, spec: &MigrationScheduleSpec) -> Reach {
    let open = async |side: &'static str, connection: Connection<'_>| match tokio::time::timeout(
        CONNECT_LIMIT,
        crate::logins::open_database(client, ns, side, connection, true),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(format!(
            "{side} database: no answer within {} s",
            CONNECT_LIMIT.as_secs()
        )),
    };
    let lake = crate::lake::store::is_lake_url(&spec.target.url);
    let target = async {
        if lake {
            // A lake answers through its store; it has no run log to read.
            Err(lake_reach(client, ns, spec).await.err())
        } else {
            open("target", Connection::of(spec, Side::Target))
                .await
                .map_err(|e| Some((None, e)))
        }
    };
    let (source, target, source_at, target_at) = tokio::join!(
        open("source", Connection::of(spec, Side::Source)),
        target,
        crate::logins::resolved_endpoints(&spec.source.url),
        crate::logins::resolved_endpoints(&spec.target.url),
    );
    let (tracking, source_lacks) = match &source {
        Ok(db) => (
            crate::engine::tracking::installed(db).await.ok(),
            crate::engine::privileges::missing(db)
                .await
                .ok()
                .and_then(|m| crate::engine::privileges::sentence(&m)),
        ),
        Err(_) => (None, None),
    };
    let (mut not_migrated, mut standing) = match &target {
        Ok(db) => ledger_of(db).await,
        Err(_) => (None, None),
    };
    if spec.product == crate::vocabulary::Product::Gp
        && let (Ok(system), Ok(target)) = (&source, &target)
    {
        // Each GP company database on the target keeps its own run log.
        let databases = crate::engine::gp::databases_on(system, target, &spec.target.url).await;
        for database in databases.unwrap_or_default() {
            let Ok(url) = crate::engine::gp::database_url(&spec.target.url, &database) else {
                continue;
            };
            let connection = Connection {
                url: &url,
                ..Connection::of(spec, Side::Target)
            };
            let Ok(db) = open("target", connection).await else {
                continue;
            };
            let (lines, counted) = ledger_of(&db).await;
            db.close().await;
            if let (Some(all), Some(more)) = (&mut not_migrated, lines) {
                all.extend(more);
            }
            if let Some(more) = counted {
                standing.get_or_insert_default().add(&more);
            }
        }
    }
    for db in [source.as_ref().ok(), target.as_ref().ok()]
        .into_iter()
        .flatten()
    {
        db.close().await;
    }
    let (target, target_reason) = match target {
        Ok(_) | Err(None) => (Ok(()), None),
        Err(Some((reason, e))) => (Err(e), reason),
    };
    Reach {
        source: source.map(|_| ()),
        target,
        target_reason,
        tracking,
        source_lacks,
        not_migrated,
        standing,
        endpoints: crate::api::schedule::ResolvedEndpoints {
            source: source_at,
            target: target_at,
        },
    }
}

/// What a target's run log says: the tables not in the cloud, and the standing of every table.
async fn ledger_of(
    db: &crate::db::Database,
) -> (
    Option<Vec<crate::engine::ledger::state::NotMigrated>>,
    Option<crate::engine::ledger::state::Standing>,
) {
    (
        crate::engine::ledger::state::not_migrated(db).await.ok(),
        crate::engine::ledger::state::standing(db)
            .await
            .ok()
            .flatten(),
    )
}

/// Opens a lake target with the key from its Secret and reads its folder once: wrong
/// credentials, an unknown container or bucket fail here. The error carries its condition
/// reason.
async fn lake_reach(
    client: &kube::Client,
    ns: &str,
    spec: &MigrationScheduleSpec,
) -> Result<(), (Option<&'static str>, String)> {
    let unreachable = |e: String| (None, format!("target data lake: {e}"));
    let Some(target) = crate::logins::lake_of(client, ns, spec)
        .await
        .map_err(unreachable)?
    else {
        return Ok(());
    };
    let checked = async {
        let lake = crate::lake::store::open(&target)?;
        lake.check().await
    };
    match tokio::time::timeout(CONNECT_LIMIT, checked).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err((Some(e.reason()), format!("target data lake: {e}"))),
        Err(_) => Err(unreachable(format!(
            "no answer within {} s",
            CONNECT_LIMIT.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule between two SQLite files of a fresh folder, which need no Secret.
    fn schedule(dir: &std::path::Path) -> MigrationSchedule {
        for side in ["source", "target"] {
            std::fs::File::create(dir.join(format!("{side}.db"))).unwrap();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop"},
            "spec": {
                "source": {"url": format!("sqlite://{}/source.db", dir.display())},
                "target": {"url": format!("sqlite://{}/target.db", dir.display())},
            }
        }))
        .unwrap()
    }

    #[test]
    fn a_changed_tls_or_password_is_a_new_setting_to_probe() {
        let dir = std::env::temp_dir().join(format!("cloudmigrate-set-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = schedule(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        let mut other = s.spec.clone();
        other.target.tls = Some(crate::api::common::Tls {
            mode: crate::api::common::TlsMode::Disable,
            ..Default::default()
        });
        assert_ne!(settings(&s.spec), settings(&other));
        let mut other = s.spec.clone();
        other.source.password_secret_ref = Some(crate::api::common::SecretKeyRef {
            name: "db".into(),
            key: "password".into(),
        });
        assert_ne!(settings(&s.spec), settings(&other));
    }

    #[tokio::test]
    async fn the_first_look_waits_for_the_probe_and_later_looks_answer_at_once() {
        let dir = std::env::temp_dir().join(format!("cloudmigrate-reach-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = schedule(&dir);
        let (client, _server) = crate::fixtures::ApiServer::new();
        // Long enough for any machine: the wait ends when the probe does.
        let patient = Duration::from_secs(60);

        // Without waiting, a first look has no answer yet.
        let probes = Probes::new(None);
        assert_eq!(probes.observe(&client, &s, Duration::ZERO).await, None);

        // Waiting, the first look has the answer itself.
        let probes = Probes::new(None);
        let found = probes.observe(&client, &s, patient).await;
        let found = found.expect("the first look waits for the probe's answer");
        assert_eq!((found.source, found.target), (Ok(()), Ok(())));
        assert_eq!(found.tracking, Some(false));
        // A probe only looks: the empty files stay empty (a read-write open would have made
        // them WAL databases), and no journal is left beside them.
        for side in ["source", "target"] {
            let file = dir.join(format!("{side}.db"));
            assert_eq!(
                std::fs::metadata(&file).unwrap().len(),
                0,
                "{side}.db was written"
            );
            assert!(!dir.join(format!("{side}.db-wal")).exists());
        }

        // The next look answers from the last result without waiting at all, and a look at
        // other settings starts afresh.
        assert!(probes.observe(&client, &s, Duration::ZERO).await.is_some());
        let mut moved = s.clone();
        moved.spec.target.url = format!("sqlite://{}/missing.db", dir.display());
        let other = probes.observe(&client, &moved, patient).await;
        assert!(other.expect("an answer").target.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
