//! The replication engine: reads the source's catalog, plans the run, copies each table into
//! the target and reports per table. Knows SQL, knows nothing of Kubernetes.
//!
//! A run (`run`) goes through these phases, in order:
//! 1. `connect`: a pool on each database, sized to the run's parallelism;
//! 2. `prepare`: the catalog and the plan on the source side, and at the same time the
//!    replication state, the run's start and the tables on the target side;
//! 3. `claims::claim_share`: workers sharing a run claim their tables in the target;
//! 4. `change_tracking`: triggers where they are missing, and the run's version;
//! 5. the snapshot the tables are read in, and `changed_tables`: which have changes at all;
//! 6. `copy_tables`: every table of this worker, biggest first, each in its own transaction
//!    with its watermark and log line (`copy`);
//! 7. `finish`: the log lines of tables that did not load, and the run's end in the target.

pub mod access;
pub mod catalog;
pub mod claims;
pub mod copy;
pub mod initialize;
pub mod ledger;
pub mod plan;
pub mod report;
pub mod reset;

pub mod tracking;
pub mod users;
pub mod validate;

use crate::db::{ConnectSpec, Database, DbError, Dialect, ReadProgress};
use catalog::Catalog;
use futures_util::StreamExt;
use ledger::state;
use plan::{PlanError, PlanOptions};
use report::{CopyMode, RunReport, TableReport, TableResult};
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

pub use crate::vocabulary::RunType;

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

/// Runs one migration from source to target, phase by phase (see the module doc). Its log
/// lines carry the run's id in their span.
#[tracing::instrument(skip_all, fields(run_id = %config.run_id))]
pub async fn run(
    config: &RunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let (source, target) = connect(config).await?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, "connected");
    let mut prepared = prepare(config, &source, &target, started).await?;
    let owned = claims::claim_share(config, &target, &prepared.plan)
        .await
        .map_err(EngineError::Target)?;
    let ready = prepared.ready_tracking.take();
    let tracking = change_tracking(config, &source, &prepared.plan, ready, owned.as_ref()).await;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "change tracking ready"
    );
    let diagnostic = config.run_type == RunType::Diagnostic;
    let snapshot = if diagnostic {
        None
    } else {
        source
            .export_snapshot()
            .await
            .map_err(EngineError::Source)?
    };
    let changed = changed_tables(config, &source, &prepared, &tracking).await;
    let Prepared {
        plan,
        target_tables,
        target_state,
        ..
    } = prepared;
    let ctx = copy::CopyContext {
        source: source.clone(),
        target: target.clone(),
        target_tables,
        create_missing_tables: config.create_missing_tables,
        run_id: config.run_id.clone(),
        snapshot: snapshot.as_ref().map(|s| s.id.clone()),
        tracking: tracking.clock,
        tracked: tracking.tracked,
        enable_errors: tracking.enable_errors,
        recreated: tracking.recreated,
        changed,
        target_state,
        force_full: config.run_type == RunType::Full,
        diagnostic,
    };
    let (skipped, copied) =
        copy_tables(config, &ctx, &plan, owned.as_ref(), observer, progress).await;
    drop(snapshot);
    tracing::info!(ms = started.elapsed().as_millis() as u64, "tables done");
    let report = finish(config, &target, skipped, copied, started).await;
    source.close().await;
    target.close().await;
    report
}

/// Phase 1: connect to both databases at once, with a pool each sized to the run.
async fn connect(config: &RunConfig) -> Result<(Database, Database), EngineError> {
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
    Ok((
        source.map_err(EngineError::Source)?,
        target.map_err(EngineError::Target)?,
    ))
}

/// What phase 2 found on both sides.
struct Prepared {
    plan: plan::Plan,
    /// Change tracking that was in place already, ready for this run; None: still to do.
    ready_tracking: Option<TrackingState>,
    target_tables: HashMap<String, crate::db::TableDef>,
    target_state: HashMap<String, state::TableState>,
}

/// Phase 2: the source side (catalog, plan, change tracking already in place) and the target
/// side (replication state, the run's start, the target's tables) at once: they are
/// independent until the copies start.
async fn prepare(
    config: &RunConfig,
    source: &Database,
    target: &Database,
    started: Instant,
) -> Result<Prepared, EngineError> {
    let diagnostic = config.run_type == RunType::Diagnostic;
    let shared = config.share.is_some_and(|(_, count)| count > 1);
    let source_side = async {
        // The catalog the controller granted the run on, else the source's own.
        let catalog = match ledger::catalogs::read(target, &config.run_id).await {
            Some(recorded) => recorded,
            None => Catalog::read(source).await.map_err(EngineError::Source)?,
        };
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            tables = catalog.tables.len(),
            "catalog read"
        );
        let mut options = config.plan.clone();
        options.target = Some(target.dialect());
        let plan = plan::plan(&catalog, &options)?;
        // Change tracking that is in place already needs nothing from the target, so it gets
        // ready meanwhile. Installing waits until the target has answered, so that a run that
        // cannot use its target leaves no trigger behind; workers sharing a run wait for their
        // claims.
        let tracking = if diagnostic {
            let (clock, tracked) = tracking::peek(source).await;
            Some(TrackingState::new(clock, tracked))
        } else if shared {
            None
        } else {
            prepare_tracking(source, &plan, None, config.retention, false).await
        };
        Ok::<_, EngineError>((plan, tracking))
    };
    let target_side = async {
        let bookkeeping = async {
            if !diagnostic {
                with_retries(|| ledger::ensure(target)).await?;
                state::start_run(target, &config.run_id, config.run_type.as_str(), shared).await?;
            }
            // Read after the run is recorded as running: an initialization scheduled from now
            // on waits for this run, and one scheduled before is seen here.
            let busy = match ledger::companies::busy(target).await {
                Ok(b) => b,
                // A diagnostic run may meet a target that no run has written to yet.
                Err(_) if diagnostic => Default::default(),
                Err(e) => return Err(e),
            };
            match state::read_table_states(target).await {
                Ok(s) => Ok((s, busy)),
                // A diagnostic run may meet a target that no run has written to yet.
                Err(_) if diagnostic => Ok((HashMap::new(), busy)),
                Err(e) => Err(e),
            }
        };
        let (tables, states) = tokio::join!(target.tables(), bookkeeping);
        let tables: HashMap<_, _> = tables?.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok((tables, states?))
    };
    let (source_side, target_side) = tokio::join!(source_side, target_side);
    let (target_tables, (target_state, busy)) = target_side.map_err(EngineError::Target)?;
    match source_side {
        Ok((mut plan, ready_tracking)) => {
            skip_busy_companies(&mut plan, &busy);
            Ok(Prepared {
                plan,
                ready_tracking,
                target_tables,
                target_state,
            })
        }
        Err(e) => {
            // The run was recorded as started in the target: record that it ended.
            if !diagnostic {
                let _ = state::finish_run(target, &config.run_id, "Failed").await;
            }
            Err(e)
        }
    }
}

/// The tables of companies that are being initialized are skipped, whatever else the plan
/// said about them.
fn skip_busy_companies(plan: &mut plan::Plan, busy: &std::collections::HashSet<String>) {
    for t in &mut plan.tables {
        if t.skip.is_none() && t.source.company.as_ref().is_some_and(|c| busy.contains(c)) {
            t.skip = Some(plan::Skip::BeingInitialized);
        }
    }
}

/// Phase 4: change tracking: the log and the clock, then triggers on every table that lacks
/// them, then the run's version, and only then (phase 5) the snapshot the tables are read in.
/// In this order nothing that changes during the run can be missed.
async fn change_tracking(
    config: &RunConfig,
    source: &Database,
    plan: &plan::Plan,
    ready: Option<TrackingState>,
    owned: Option<&std::collections::HashSet<String>>,
) -> TrackingState {
    if let Some(st) = ready {
        return st;
    }
    // Allowed to install, prepare_tracking always answers; were it not to, the tables go in
    // full, as without change tracking.
    prepare_tracking(source, plan, owned, config.retention, true)
        .await
        .unwrap_or_else(|| {
            TrackingState::new(
                Err("change tracking could not be prepared on the source".into()),
                HashMap::new(),
            )
        })
}

/// Phase 5, after the snapshot: one query finds the tables with change records since the
/// lowest watermark among this run's tables; the others have nothing to read. Not on MySQL and
/// MariaDB: under a case-insensitive collation DISTINCT would return one of two names that
/// differ only in case, and the other table would miss its changes.
async fn changed_tables(
    config: &RunConfig,
    source: &Database,
    prepared: &Prepared,
    tracking: &TrackingState,
) -> Option<std::collections::HashSet<String>> {
    match (&tracking.clock, config.run_type) {
        (Ok(_), RunType::Auto | RunType::Diagnostic) if source.dialect() != Dialect::MySql => {
            let lowest = prepared
                .plan
                .to_copy()
                .filter_map(|t| prepared.target_state.get(&t.source.def.name))
                .filter_map(|s| s.ct_version)
                .min();
            match lowest {
                Some(v) => tracking::changed_tables(source, v).await.ok(),
                None => None,
            }
        }
        _ => None,
    }
}

/// Phase 6: the tables that are not copied are reported (by the first worker of a shared
/// run), then the tables to copy go, biggest first, `parallelism` at once. Returns the two
/// lists of reports.
async fn copy_tables(
    config: &RunConfig,
    ctx: &copy::CopyContext,
    plan: &plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> (Vec<TableReport>, Vec<TableReport>) {
    let mut skipped = Vec::with_capacity(plan.tables.len());
    let reports_skipped = config.share.is_none_or(|(index, _)| index == 0);
    for (t, skip) in plan
        .tables
        .iter()
        .filter(|_| reports_skipped)
        .filter_map(|t| t.skip.as_ref().map(|s| (t, s)))
    {
        let r = uncopied(
            t,
            skip.result(),
            skip.message(&t.source),
            skip.is_error().then(|| {
                "Rename one of the tables in the source so that the names differ within the \
                 target's identifier limit, or exclude one with spec.tables.exclude."
                    .to_string()
            }),
        );
        observer.table_done(&r);
        skipped.push(r);
    }
    // Biggest tables first, so that the last minutes are not spent on one large table alone.
    let to_copy = tables_to_copy(plan, owned);
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
        .map(|i| copy_and_report(ctx, to_copy[i], progress.clone(), observer, &config.stop))
        .buffer_unordered(config.parallelism.max(1))
        .collect()
        .await;
    (skipped, copied)
}

/// Phase 7: the log lines of the tables that did not load, the run's end in the target, and
/// the report, sorted by company and table. A diagnostic run writes nothing.
async fn finish(
    config: &RunConfig,
    target: &Database,
    mut reports: Vec<TableReport>,
    copied: Vec<TableReport>,
    started: Instant,
) -> Result<RunReport, EngineError> {
    let diagnostic = config.run_type == RunType::Diagnostic;
    if !diagnostic {
        // Tables that did not load have no line in the log yet: add it now.
        let unlogged: Vec<TableReport> = reports
            .iter()
            .chain(&copied)
            .filter(|r| r.mode == CopyMode::None || r.result == TableResult::Failed)
            .cloned()
            .collect();
        for stmt in state::table_logs(target.dialect(), &config.run_id, &unlogged) {
            target.execute(&stmt).await.map_err(EngineError::Target)?;
        }
    }
    reports.extend(copied);
    reports.sort_by(|a, b| (&a.company, &a.table).cmp(&(&b.company, &b.table)));
    let report = RunReport {
        run_id: config.run_id.clone(),
        tables: reports,
        duration: started.elapsed(),
    };
    if !diagnostic {
        state::finish_run(target, &config.run_id, report.result())
            .await
            .map_err(EngineError::Target)?;
    }
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
