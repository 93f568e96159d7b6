//! The replication engine: reads the source's catalog, plans the run, copies each table into
//! the target and reports per table. Knows SQL, knows nothing of Kubernetes.
//!
//! A run (`run`) goes through these phases, in order:
//! 1. `connect`: a pool on each database, sized to the run's parallelism;
//! 2. `prepare.rs`: the catalog (`catalog`; the one the controller recorded for the run in
//!    `ledger::catalogs`, else the source's) and the plan (`plan`) on the source side, and at
//!    the same time the ledger (`ledger`), the run's start and the tables on the target side;
//! 3. `claims.rs`: workers sharing a run claim their tables in the target;
//! 4. `changes.rs`, `change_tracking`: triggers where they are missing (`tracking`), and the
//!    run's version;
//! 5. the snapshot the tables are read in, and `changes.rs`, `changed_tables`: which have
//!    changes at all;
//! 6. `copy_tables.rs`: every table of this worker, biggest first, each in its own
//!    transaction with its watermark and log line (`copy.rs`);
//! 7. `finish.rs`: the log lines of tables that did not load, and the run's end in the target.

pub mod access;
pub mod catalog;
pub(crate) mod changes;
pub mod claims;
pub mod copy;
pub(crate) mod copy_tables;
mod finish;
pub mod gp;
pub mod initialize;
pub mod ledger;
pub mod plan;
mod prepare;
pub mod privileges;
pub mod report;
pub mod reset;
pub mod tracking;
pub mod users;
pub mod validate;

use crate::db::{ConnectSpec, Database, DbError, ReadProgress};
use plan::{PlanError, PlanOptions};
use report::{RunReport, TableReport};
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
    /// A bug: the run panicked. Caught, so that it ends the run and nothing else.
    #[error(
        "the run stopped on an internal error ({0}); please report it with `cloudmigrate report` (a support bundle)"
    )]
    Internal(String),
}

/// What a caught panic said.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
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

/// Runs one migration from source to target, phase by phase (see the module doc); for
/// Dynamics GP, one such run per GP database (`run_gp`). Its log lines carry the run's id in
/// their span.
#[tracing::instrument(skip_all, fields(run_id = %config.run_id))]
pub async fn run(
    config: &RunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, EngineError> {
    if config.plan.product == crate::vocabulary::Product::Gp {
        return run_gp(config, observer, progress).await;
    }
    run_database(config, observer, progress).await
}

/// A Dynamics GP run: the system database that the source's URL names into the target's, then
/// each selected company's database (`SY01500`'s `INTERID`) into the database of the same
/// name on the target's server, one after the other, each a run of its own (ledger, claims,
/// change tracking). The company databases must exist in the target; their tables keep their
/// names, and each table's report carries its company's name.
async fn run_gp(
    config: &RunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let companies = {
        let mut one = config.source.clone();
        one.max_connections = 1;
        one.create = false;
        let system = Database::connect(&one).await.map_err(EngineError::Source)?;
        let companies = gp::companies(&system).await;
        system.close().await;
        companies.map_err(EngineError::Source)?
    };
    let selected = gp::selected(&companies, config.plan.companies.as_deref())?;
    let mut each = config.clone();
    // A GP database is its company's whole: every table of it is planned.
    each.plan.companies = None;
    let mut tables = run_database(&each, observer, progress.clone())
        .await?
        .tables;
    for c in &selected {
        let (source, target) = gp::database_urls(config, &c.database)?;
        let mut company = each.clone();
        company.source.url = source;
        company.target.url = target;
        let observer = gp::InCompany {
            observer,
            company: &c.name,
        };
        let report = run_database(&company, &observer, progress.clone())
            .await
            .map_err(|e| gp::in_company(e, c))?;
        tables.extend(report.tables.into_iter().map(|mut t| {
            t.company = c.name.clone();
            t
        }));
    }
    Ok(RunReport {
        run_id: config.run_id.clone(),
        tables,
        duration: started.elapsed(),
    })
}

/// One run between one source database and one target database.
async fn run_database(
    config: &RunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, EngineError> {
    let started = Instant::now();
    let (source, target) = connect(config).await?;
    tracing::info!(ms = started.elapsed().as_millis() as u64, "connected");
    let mut prepared = prepare::prepare(config, &source, &target, started).await?;
    let owned = claims::claim_share(config, &target, &prepared.plan)
        .await
        .map_err(EngineError::Target)?;
    let ready = prepared.ready_tracking.take();
    let tracking =
        changes::change_tracking(config, &source, &prepared.plan, ready, owned.as_ref()).await;
    tracing::info!(
        ms = started.elapsed().as_millis() as u64,
        "change tracking ready"
    );
    let diagnostic = config.run_type == RunType::Diagnostic;
    let snapshot = snapshot(&source, diagnostic).await?;
    let changed = changes::changed_tables(
        config,
        &source,
        &prepared.plan,
        &prepared.target_state,
        &tracking,
    )
    .await;
    let prepare::Prepared {
        plan,
        target_tables,
        target_state,
        created_by_admin,
        ..
    } = prepared;
    let ctx = copy::CopyContext {
        source: source.clone(),
        target: target.clone(),
        target_tables,
        create_missing_tables: config.create_missing_tables,
        created_by_admin,
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
        copy_tables::copy_tables(config, &ctx, &plan, owned.as_ref(), observer, progress).await;
    drop(snapshot);
    tracing::info!(ms = started.elapsed().as_millis() as u64, "tables done");
    let report = finish::finish(config, &target, skipped, copied, started).await;
    source.close().await;
    target.close().await;
    report
}

/// Phase 5: the snapshot every table is read in (PostgreSQL sources); none for a diagnostic
/// run, which reads nothing of the tables' rows.
pub(crate) async fn snapshot(
    source: &Database,
    diagnostic: bool,
) -> Result<Option<crate::db::postgres::SnapshotGuard>, EngineError> {
    if diagnostic {
        return Ok(None);
    }
    source.export_snapshot().await.map_err(EngineError::Source)
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
