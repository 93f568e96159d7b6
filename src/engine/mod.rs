//! The replication engine: reads the source's catalog, plans the run, copies each table into
//! the target and reports per table. Knows SQL, knows nothing of Kubernetes.

pub mod catalog;
pub mod copy;
pub mod plan;
pub mod report;
pub mod state;
pub mod tracking;

use crate::db::{ConnectSpec, Database, DbError, Dialect, ReadProgress};
use catalog::Catalog;
use futures_util::StreamExt;
use plan::{PlanError, PlanOptions};
use report::{Mode, RunReport, TableReport, TableResult};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// Everything one run needs.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub run_id: String,
    pub source: ConnectSpec,
    pub target: ConnectSpec,
    pub plan: PlanOptions,
    pub create_missing_tables: bool,
    /// Tables copied at the same time.
    pub parallelism: usize,
    /// Auto, Full or Diagnostic.
    pub run_type: RunType,
    /// How long the source keeps changes.
    pub retention: std::time::Duration,
    /// Set to stop the run: the tables in progress finish, the others are left NotStarted.
    pub stop: StopSignal,
    /// This worker's place among the workers sharing the run: (index, count). Each table is
    /// claimed by one worker in the target (`state::claim`). None: one worker copies all.
    pub share: Option<(usize, usize)>,
}

/// How long a worker of a shared run waits for the others to claim their shares before it
/// takes every table still unclaimed.
const CLAIM_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A flag that stops a run between tables. Clones share the flag.
#[derive(Clone, Debug, Default)]
pub struct StopSignal(Arc<std::sync::atomic::AtomicBool>);

impl StopSignal {
    pub fn stop(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn is_stopped(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The tables of one worker's share, out of tables sorted biggest first: each goes to the
/// worker with the smallest total so far (ties to the lower index). Every worker computes the
/// same split from the same list; it is each worker's preference, and the claims in the target
/// settle who copies what.
pub fn share_of<T>(tables: Vec<T>, size: impl Fn(&T) -> u64, index: usize, count: usize) -> Vec<T> {
    let count = count.max(1);
    let mut totals = vec![0u64; count];
    let mut mine = vec![];
    for t in tables {
        let (w, _) = totals
            .iter()
            .enumerate()
            .min_by_key(|(i, total)| (**total, *i))
            .unwrap_or((0, &0));
        totals[w] += size(&t).max(1);
        if w == index {
            mine.push(t);
        }
    }
    mine
}

/// The kind of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunType {
    /// Incremental where change tracking allows, full elsewhere.
    #[default]
    Auto,
    /// Every table in full.
    Full,
    /// Nothing written anywhere: connections, schemas and change tracking are checked, and each
    /// table reports what a run would do.
    Diagnostic,
}

impl RunType {
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Auto => "Auto",
            RunType::Full => "Full",
            RunType::Diagnostic => "Diagnostic",
        }
    }
}

/// Problems that stop a run before any table is copied.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("source database: {0}")]
    Source(DbError),
    #[error("target database: {0}")]
    Target(DbError),
    #[error(transparent)]
    Plan(#[from] PlanError),
}

/// Receives what happens during a run, for progress displays and status updates.
pub trait Observer: Send + Sync {
    /// The plan is made: `tables` will be copied, holding about `rows` rows.
    fn planned(&self, _tables: u64, _rows: u64) {}
    /// A table is done.
    fn table_done(&self, _report: &TableReport) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// What change tracking looks like for a run.
pub(crate) struct TrackingState {
    /// The run's versions, or why change tracking is not available.
    pub clock: Result<tracking::Clock, String>,
    /// Tables tracked before this run, with the key columns their triggers record.
    pub tracked: HashMap<String, String>,
    /// Tables whose triggers could not be installed, and why.
    pub enable_errors: HashMap<String, String>,
    /// Tables made anew since they were registered (a TRUNCATE on MySQL or MariaDB).
    pub recreated: std::collections::HashSet<String>,
}

impl TrackingState {
    /// The run's versions and the tables tracked before it; nothing installed, nothing made anew.
    fn new(clock: Result<tracking::Clock, String>, tracked: HashMap<String, String>) -> Self {
        Self {
            clock,
            tracked,
            enable_errors: HashMap::new(),
            recreated: Default::default(),
        }
    }
}

/// Installs change tracking where it is missing (and again on tables made anew), then fixes
/// the run's version (see `tracking`). With `install` false it installs nothing: when
/// something is missing it returns `None` and leaves the source as it was.
async fn prepare_tracking(
    source: &Database,
    plan: &plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
    retention: std::time::Duration,
    install: bool,
) -> Option<TrackingState> {
    let mut st = TrackingState::new(Err(String::new()), HashMap::new());
    let unavailable = |e: crate::db::DbError| {
        format!(
            "change tracking is not available on the source, so every run copies every table in \
             full: {e}. Grant the migration login the right to create tables and triggers."
        )
    };
    // Installed already (the usual case): no DDL. Otherwise install, then read again.
    let registered = match tracking::enabled(source).await {
        Ok(r) => r,
        Err(_) if !install => return None,
        Err(_) => match with_retries(|| tracking::install(source)).await {
            Err(e) => {
                st.clock = Err(unavailable(e));
                return Some(st);
            }
            Ok(()) => match tracking::enabled(source).await {
                Ok(r) => r,
                Err(e) => {
                    st.clock = Err(unavailable(e));
                    return Some(st);
                }
            },
        },
    };
    let names: Vec<&str> = plan.to_copy().map(|t| t.source.def.name.as_str()).collect();
    let ids = match tracking::table_ids(source, &names).await {
        Ok(ids) => ids,
        Err(e) => {
            st.clock = Err(unavailable(e));
            return Some(st);
        }
    };
    // Each worker enables change tracking on its own share only.
    let mut to_enable = vec![];
    for t in tables_to_copy(plan, owned)
        .into_iter()
        .map(|t| &t.source.def)
    {
        if t.primary_key.is_empty() {
            continue;
        }
        let id = ids.get(&t.name).copied();
        if let Some(r) = registered
            .get(&t.name)
            .filter(|r| r.key_columns == tracking::key_columns(t))
        {
            st.tracked.insert(t.name.clone(), r.key_columns.clone());
            if r.table_id == id {
                continue;
            }
            // Tracked, but made anew: the triggers go in again and the table is copied in full.
            st.recreated.insert(t.name.clone());
        }
        to_enable.push((t, id));
    }
    if !to_enable.is_empty() && !install {
        return None;
    }
    st.enable_errors = tracking::enable(source, &to_enable).await;
    let started = Instant::now();
    st.clock = tracking::stamp(source, retention)
        .await
        .map_err(unavailable);
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "changes stamped");
    Some(st)
}

/// The tables this run copies, biggest first: all of the plan's, or one worker's share.
fn tables_to_copy<'p>(
    plan: &'p plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
) -> Vec<&'p plan::PlannedTable> {
    let mut to_copy: Vec<_> = plan.to_copy().collect();
    to_copy.sort_by(|a, b| {
        let key = |t: &plan::PlannedTable| {
            (
                std::cmp::Reverse((t.source.def.est_bytes, t.source.def.est_rows)),
                t.source.def.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    if let Some(owned) = owned {
        to_copy.retain(|t| owned.contains(&t.source.def.name));
    }
    to_copy
}

/// Runs a step that creates shared objects (`CREATE ... IF NOT EXISTS`) again when it fails:
/// two workers of one run creating the same object at the same moment make one of them fail
/// once, and the second try finds the object made.
async fn with_retries<T, F, Fut>(mut step: F) -> Result<T, crate::db::DbError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::db::DbError>>,
{
    let mut tries = 0;
    loop {
        match step().await {
            Err(e) if tries < 4 => {
                tries += 1;
                tracing::debug!(error = %e, tries, "creating shared objects failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(150 * tries)).await;
            }
            other => return other,
        }
    }
}

/// The report of a table that was not copied, and why.
fn uncopied(
    t: &plan::PlannedTable,
    result: TableResult,
    message: String,
    guidance: Option<String>,
) -> TableReport {
    let mut r = copy::report(t, result, Instant::now());
    r.duration = Default::default();
    r.message = Some(message);
    r.guidance = guidance;
    r
}

/// Copies one table and tells the observer. A named function rather than a closure, so that the
/// run's future stays `Send` and can be spawned (the in-process runner does).
async fn copy_and_report(
    ctx: &copy::CopyContext,
    t: &plan::PlannedTable,
    progress: Arc<ReadProgress>,
    observer: &dyn Observer,
    stop: &StopSignal,
) -> TableReport {
    let r = if stop.is_stopped() {
        uncopied(
            t,
            TableResult::NotStarted,
            "the run was stopped before this table started".into(),
            Some("The next run copies it.".into()),
        )
    } else {
        copy::copy_table(ctx, t, progress).await
    };
    observer.table_done(&r);
    r
}

/// Runs one migration from source to target.
pub async fn run(
    config: &RunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let parallelism = config.parallelism.max(1);
    let mut source_spec = config.source.clone();
    source_spec.max_connections = parallelism as u32 + 2;
    source_spec.create = false;
    let mut target_spec = config.target.clone();
    target_spec.max_connections = parallelism as u32 + 1;
    let (source, target) = tokio::join!(
        Database::connect(&source_spec),
        Database::connect(&target_spec)
    );
    let source = source.map_err(EngineError::Source)?;
    let target = target.map_err(EngineError::Target)?;
    tracing::info!(run = %config.run_id, ms = started.elapsed().as_millis() as u64, "connected");

    // The source side (catalog, plan, change tracking) and the target side (replication state,
    // tables) are independent until the copies start: both go at once.
    let diagnostic = config.run_type == RunType::Diagnostic;
    let shared = config.share.is_some_and(|(_, count)| count > 1);
    let source_side = async {
        let catalog = Catalog::read(&source).await.map_err(EngineError::Source)?;
        tracing::info!(run = %config.run_id, ms = started.elapsed().as_millis() as u64, tables = catalog.tables.len(), "catalog read");
        let mut options = config.plan.clone();
        options.target = Some(target.dialect());
        let plan = plan::plan(&catalog, &options)?;
        // Change tracking that is in place already needs nothing from the target, so it gets
        // ready meanwhile. Installing waits until the target has answered, so that a run that
        // cannot use its target leaves no trigger behind; workers sharing a run wait for their
        // claims.
        let tracking = if diagnostic {
            let (clock, tracked) = tracking::peek(&source).await;
            Some(TrackingState::new(clock, tracked))
        } else if shared {
            None
        } else {
            prepare_tracking(&source, &plan, None, config.retention, false).await
        };
        Ok::<_, EngineError>((plan, tracking))
    };
    let target_side = async {
        let bookkeeping = async {
            if !diagnostic {
                with_retries(|| state::ensure(&target)).await?;
                state::start_run(&target, &config.run_id, config.run_type.as_str(), shared).await?;
            }
            match state::read_table_states(&target).await {
                Ok(s) => Ok(s),
                // A diagnostic run may meet a target that no run has written to yet.
                Err(_) if diagnostic => Ok(HashMap::new()),
                Err(e) => Err(e),
            }
        };
        let (tables, states) = tokio::join!(target.tables(), bookkeeping);
        let tables: HashMap<_, _> = tables?.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok((tables, states?))
    };
    let (source_side, target_side) = tokio::join!(source_side, target_side);
    let (target_tables, target_state) = target_side.map_err(EngineError::Target)?;
    let (plan, ready_tracking) = match source_side {
        Ok(s) => s,
        Err(e) => {
            // The run was recorded as started in the target: record that it ended.
            if !diagnostic {
                let _ = state::finish_run(&target, &config.run_id, "Failed").await;
            }
            return Err(e);
        }
    };
    // Workers sharing a run: each claims its preferred share, then every table still
    // unclaimed, and copies what it owns. Each table has exactly one owner, even when the
    // workers' catalogs saw slightly different sizes.
    let owned = match config.share {
        Some((index, count)) if count > 1 && !diagnostic => {
            let sorted = tables_to_copy(&plan, None);
            let all: Vec<&str> = sorted.iter().map(|t| t.source.def.name.as_str()).collect();
            let mine: Vec<&str> = share_of(
                sorted.clone(),
                |t| t.source.def.est_bytes.max(0) as u64,
                index,
                count,
            )
            .into_iter()
            .map(|t| t.source.def.name.as_str())
            .collect();
            // A marker row says this worker has made its claims, even with an empty share.
            let marker = format!("#worker-{index}");
            let claimed = async {
                state::claim(&target, &config.run_id, index, &mine).await?;
                state::claim(&target, &config.run_id, index, &[marker.as_str()]).await?;
                // Wait a little for the others, so that a worker that starts first does not
                // take every table; one that never comes leaves its tables to the rest.
                let waited = Instant::now();
                while state::claimants(&target, &config.run_id).await? < count
                    && waited.elapsed() < CLAIM_WAIT
                {
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                state::claim(&target, &config.run_id, index, &all).await?;
                state::claimed(&target, &config.run_id, index).await
            };
            Some(claimed.await.map_err(EngineError::Target)?)
        }
        _ => None,
    };
    // Change tracking: the log and the clock, then triggers on every table that lacks them,
    // then the run's version, and only then the snapshot the tables are read in. In this order
    // nothing that changes during the run can be missed.
    let tracking_state = match ready_tracking {
        Some(st) => st,
        // Allowed to install, prepare_tracking always answers; were it not to, the tables go
        // in full, as without change tracking.
        None => prepare_tracking(&source, &plan, owned.as_ref(), config.retention, true)
            .await
            .unwrap_or_else(|| {
                TrackingState::new(
                    Err("change tracking could not be prepared on the source".into()),
                    HashMap::new(),
                )
            }),
    };
    tracing::info!(run = %config.run_id, ms = started.elapsed().as_millis() as u64, "change tracking ready");
    let snapshot = if diagnostic {
        None
    } else {
        source
            .export_snapshot()
            .await
            .map_err(EngineError::Source)?
    };
    // One query finds the tables with change records since the lowest watermark among this
    // run's tables; the others have nothing to read. Not on MySQL and MariaDB: under a
    // case-insensitive collation DISTINCT would return one of two names that differ only in
    // case, and the other table would miss its changes.
    let changed = match (&tracking_state.clock, config.run_type) {
        (Ok(_), RunType::Auto | RunType::Diagnostic) if source.dialect() != Dialect::MySql => {
            let lowest = plan
                .to_copy()
                .filter_map(|t| target_state.get(&t.source.def.name))
                .filter_map(|s| s.ct_version)
                .min();
            match lowest {
                Some(v) => tracking::changed_tables(&source, v).await.ok(),
                None => None,
            }
        }
        _ => None,
    };
    let ctx = copy::CopyContext {
        source: source.clone(),
        target: target.clone(),
        target_tables,
        create_missing_tables: config.create_missing_tables,
        run_id: config.run_id.clone(),
        snapshot: snapshot.as_ref().map(|s| s.id.clone()),
        tracking: tracking_state.clock,
        tracked: tracking_state.tracked,
        enable_errors: tracking_state.enable_errors,
        recreated: tracking_state.recreated,
        changed,
        target_state,
        force_full: config.run_type == RunType::Full,
        diagnostic,
    };

    let mut reports = Vec::with_capacity(plan.tables.len());
    // With the tables shared among workers, the first one reports those that are not copied.
    let reports_skipped = config.share.is_none_or(|(index, _)| index == 0);
    for (t, skip) in plan
        .tables
        .iter()
        .filter(|_| reports_skipped)
        .filter_map(|t| t.skip.as_ref().map(|s| (t, s)))
    {
        let r = uncopied(
            t,
            if skip.is_error() {
                TableResult::Failed
            } else {
                TableResult::Excluded
            },
            skip.message(&t.source),
            skip.is_error().then(|| {
                "Rename one of the tables in the source so that the names differ within the \
                 target's identifier limit, or exclude one with spec.tables.exclude."
                    .to_string()
            }),
        );
        observer.table_done(&r);
        reports.push(r);
    }
    // Biggest tables first, so that the last minutes are not spent on one large table alone.
    let to_copy = tables_to_copy(&plan, owned.as_ref());
    observer.planned(
        to_copy.len() as u64,
        to_copy
            .iter()
            .map(|t| t.source.def.est_rows.max(0) as u64)
            .sum(),
    );
    // By index: a closure over `&PlannedTable` would make the future not `Send` (the compiler
    // cannot prove it for every lifetime).
    let copied: Vec<TableReport> = futures_util::stream::iter(0..to_copy.len())
        .map(|i| copy_and_report(&ctx, to_copy[i], progress.clone(), observer, &config.stop))
        .buffer_unordered(parallelism)
        .collect()
        .await;
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "copies joined");
    drop(snapshot);
    tracing::info!(run = %config.run_id, ms = started.elapsed().as_millis() as u64, "tables done");
    // Tables that did not load have no line in the log yet: add it now.
    if diagnostic {
        reports.extend(copied);
        reports.sort_by(|a, b| (&a.company, &a.table).cmp(&(&b.company, &b.table)));
        source.close().await;
        target.close().await;
        return Ok(RunReport {
            run_id: config.run_id.clone(),
            tables: reports,
            duration: started.elapsed(),
        });
    }
    let d = target.dialect();
    let unlogged: Vec<TableReport> = reports
        .iter()
        .chain(&copied)
        .filter(|r| r.mode == Mode::None || r.result == TableResult::Failed)
        .cloned()
        .collect();
    for stmt in state::table_logs(d, &config.run_id, &unlogged) {
        target.execute(&stmt).await.map_err(EngineError::Target)?;
    }
    reports.extend(copied);
    reports.sort_by(|a, b| (&a.company, &a.table).cmp(&(&b.company, &b.table)));
    let report = RunReport {
        run_id: config.run_id.clone(),
        tables: reports,
        duration: started.elapsed(),
    };
    state::finish_run(&target, &config.run_id, report.result())
        .await
        .map_err(EngineError::Target)?;
    source.close().await;
    target.close().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn shares_are_balanced_by_size_and_cover_every_table_once() {
        let sizes = [900u64, 500, 400, 300, 200, 100, 100, 50];
        let shares: Vec<Vec<u64>> = (0..3)
            .map(|i| share_of(sizes.to_vec(), |s| *s, i, 3))
            .collect();
        let mut all: Vec<u64> = shares.concat();
        all.sort_unstable();
        let mut expected = sizes.to_vec();
        expected.sort_unstable();
        assert_eq!(all, expected);
        let totals: Vec<u64> = shares.iter().map(|s| s.iter().sum()).collect();
        assert_eq!(totals, vec![900, 850, 800]);
    }
}
