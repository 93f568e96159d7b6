//! How a MigrationRun executes: one or more workers, each running the engine on its share of
//! the tables and writing its progress and per-table results into the run's status. The
//! in-process runner spawns the worker in the controller; `cloudmigrate replicate` is the
//! worker of a Job's pod.

pub mod initializer;
pub mod inprocess;
pub mod job;
pub mod log;
pub mod startup;

use crate::api::run::{MigrationRun, TableResult, TableStatus, WorkerPhase, WorkerStatus};
use crate::clock::time;
use crate::convert::{engine_config, table_status};
use crate::db::ReadProgress;
use crate::engine::report::{RunReport, TableReport};
use crate::engine::{self, Observer, RunConfig, StopSignal};
use crate::lake::run::{LakeRunConfig, LakeRunError};
use crate::logins;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Past this many tables in a run, the status lists only the tables that did not migrate
/// cleanly; the complete list stays in the target's run log (`cloudmigrate runs show`). With
/// several workers, each keeps to its part of the limit.
pub const STATUS_TABLE_CAP: usize = 2000;

/// At most this many tables that did not migrate cleanly are listed in a run's status (failed
/// ones first), each message cut to `MESSAGE_CAP` characters: 20,000 tables with warnings keep
/// the status far below what the API server stores. The rest are counted in
/// `tablesOmitted`, and every one is in the target's run log. With several workers, each keeps
/// to its part.
pub const STATUS_PROBLEM_CAP: usize = 200;

/// The longest message or guidance of a table in a run's status, in characters.
const MESSAGE_CAP: usize = 1000;

/// How long after a worker returned its last status write may still be on its way to the
/// controller; until then its runner counts as alive.
pub(crate) const FINAL_WORD: Duration = Duration::from_secs(60);

/// How often a worker writes its progress while it runs.
const FLUSH_EVERY: Duration = Duration::from_secs(2);

/// What one worker knows while it runs; written to the run's status as it goes.
struct Progress {
    me: WorkerStatus,
    /// Every table result of this worker's share.
    tables: Vec<TableStatus>,
    planned: bool,
}

/// The engine observer of a worker: counts and per-table results, flushed to the status.
struct Reporter {
    state: Mutex<Progress>,
    read: Arc<ReadProgress>,
    /// This worker's part of the run's table limit: the workers together stay within it.
    cap: usize,
    /// This worker's part of the limit on listed problems.
    problem_cap: usize,
}

impl Reporter {
    fn lock(&self) -> std::sync::MutexGuard<'_, Progress> {
        // A panic while the lock is held leaves counts that are still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The status body this worker applies: its own entry in `workers`, and its tables.
    fn body(&self) -> serde_json::Value {
        let p = self.lock();
        let mut me = p.me.clone();
        if me.phase == WorkerPhase::Running {
            use std::sync::atomic::Ordering::Relaxed;
            me.rows_copied = me.rows_copied.max(self.read.rows.load(Relaxed) as i64);
            me.bytes_copied = me.bytes_copied.max(self.read.bytes.load(Relaxed) as i64);
        }
        let tables = listed(
            &p.tables,
            self.cap,
            me.tables_total as usize,
            self.problem_cap,
        );
        json!({
            "apiVersion": "cloudmigrate.io/v1alpha1",
            "kind": "MigrationRun",
            "status": { "workers": [me], "tables": tables },
        })
    }
}

impl Observer for Reporter {
    fn planned(&self, tables: u64, _rows: u64) {
        let mut p = self.lock();
        p.me.tables_total = p.me.tables_done + tables as i64;
        p.planned = true;
    }

    fn table_done(&self, r: &TableReport) {
        let mut p = self.lock();
        p.me.tables_done += 1;
        match r.result {
            TableResult::Migrated => p.me.tables_migrated += 1,
            TableResult::Warning => p.me.tables_with_warnings += 1,
            TableResult::Failed => p.me.tables_failed += 1,
            TableResult::Excluded | TableResult::Skipped => p.me.tables_excluded += 1,
            TableResult::NotStarted | TableResult::InProgress => p.me.tables_not_started += 1,
        }
        if !p.planned {
            p.me.tables_total = p.me.tables_done;
        }
        p.me.rows_copied += r.rows as i64;
        p.me.bytes_copied += r.bytes as i64;
        p.tables.push(table_status(r));
    }
}

/// The tables a worker lists in the run's status: all of them up to `cap`; past it only those
/// that did not migrate cleanly, failed first, at most `problem_cap`, messages cut short.
fn listed(
    tables: &[TableStatus],
    cap: usize,
    total: usize,
    problem_cap: usize,
) -> Vec<TableStatus> {
    let cut = |t: &TableStatus| {
        let mut t = t.clone();
        for text in [&mut t.message, &mut t.guidance].into_iter().flatten() {
            crate::engine::report::shorten(text, MESSAGE_CAP);
        }
        t
    };
    if tables.len() <= cap && total <= cap {
        return tables.iter().map(cut).collect();
    }
    let mut problems: Vec<&TableStatus> = tables
        .iter()
        .filter(|t| !matches!(t.result, TableResult::Migrated | TableResult::Excluded))
        .collect();
    // Failed before warnings, each in the order it ended.
    problems.sort_by_key(|t| t.result != TableResult::Failed);
    problems.into_iter().take(problem_cap).map(cut).collect()
}

/// Where a worker runs: which run, which share, which attempt.
#[derive(Clone, Debug)]
pub struct WorkerSpec {
    pub namespace: String,
    pub name: String,
    pub index: i32,
    pub count: i32,
    pub attempt: i32,
}

/// The field manager of a worker's status writes.
pub fn field_manager(index: i32) -> String {
    format!("cloudmigrate-worker-{index}")
}

/// What a worker runs: the engine into a database, or a run into a data lake.
enum Work {
    Database(RunConfig),
    Lake(LakeRunConfig),
}

/// Why a run failed as a whole, and what to do about it.
struct Failure {
    error: String,
    fix: &'static str,
}

const FIX_COMPANIES: &str = "Correct the company names in the CompanySelection (or in the \
                             run's spec.companies), then start a new run.";

impl From<engine::EngineError> for Failure {
    fn from(e: engine::EngineError) -> Self {
        let fix = match &e {
            engine::EngineError::Plan(engine::plan::PlanError::UnknownCompanies(..)) => {
                FIX_COMPANIES
            }
            engine::EngineError::Plan(_) => {
                "Correct spec.tables of the MigrationSchedule, then start a new run."
            }
            engine::EngineError::Internal(_) => {
                "Other runs and schedules are not affected; a new run may get past it."
            }
            _ => {
                "Check the address, the login and the network path from the runner to the \
                 database, then start a new run."
            }
        };
        Failure {
            error: e.to_string(),
            fix,
        }
    }
}

impl From<LakeRunError> for Failure {
    fn from(e: LakeRunError) -> Self {
        match e {
            LakeRunError::Engine(e) => e.into(),
            LakeRunError::Lake(e) => Failure {
                error: e.to_string(),
                fix: "Fix the lake target (spec.target.url, spec.target.lake and the key in the \
                      Secret that spec.target.passwordSecretRef names), then start a new run: \
                      nothing was written.",
            },
        }
    }
}

impl Work {
    /// Runs it to the end. A panic ends this run Failed, and nothing else: the controller
    /// that runs it in-process stays up.
    async fn run(
        &self,
        observer: &Reporter,
        progress: Arc<ReadProgress>,
    ) -> Result<RunReport, Failure> {
        use futures_util::FutureExt;
        let run: futures_util::future::BoxFuture<'_, Result<RunReport, Failure>> = match self {
            Work::Database(config) => engine::run(config, observer, progress)
                .map(|r| r.map_err(Failure::from))
                .boxed(),
            Work::Lake(config) => crate::lake::run::run(config, observer, progress)
                .map(|r| r.map_err(Failure::from))
                .boxed(),
        };
        std::panic::AssertUnwindSafe(run)
            .catch_unwind()
            .await
            .unwrap_or_else(|p| {
                Err(engine::EngineError::Internal(engine::panic_message(&*p)).into())
            })
    }
}

/// Records how the worker ended in its status: its phase, and the error with its fix.
fn record_end(
    reporter: &Reporter,
    outcome: &Result<RunReport, Failure>,
    stop: &StopSignal,
) -> WorkerPhase {
    let mut p = reporter.lock();
    p.me.completion_time = Some(time(chrono::Utc::now()));
    p.me.phase = match outcome {
        Err(Failure { error, fix }) => {
            p.me.message = Some(format!("{error}. {fix}"));
            WorkerPhase::Failed
        }
        Ok(_) if p.me.tables_not_started > 0 || stop.is_stopped() => WorkerPhase::Stopped,
        Ok(_) => WorkerPhase::Finished,
    };
    p.me.phase
}

/// Runs one worker to the end: reads the run and its schedule, the passwords from their
/// Secrets, runs the engine on the share, and keeps the status up to date. Returns the phase
/// it ended in. Stops between tables when `stop` is set, or when the run is deleted.
#[tracing::instrument(skip_all, fields(run = %format!("{}/{}", w.namespace, w.name), worker = w.index, attempt = w.attempt))]
pub async fn work(client: kube::Client, w: WorkerSpec, stop: StopSignal) -> WorkerPhase {
    let runs: Api<MigrationRun> = Api::namespaced(client.clone(), &w.namespace);
    let reporter = Arc::new(Reporter {
        state: Mutex::new(Progress {
            me: WorkerStatus {
                index: w.index,
                phase: WorkerPhase::Running,
                attempt: w.attempt,
                start_time: Some(time(chrono::Utc::now())),
                ..Default::default()
            },
            tables: vec![],
            planned: false,
        }),
        read: Arc::new(ReadProgress::default()),
        cap: STATUS_TABLE_CAP / w.count.max(1) as usize,
        problem_cap: (STATUS_PROBLEM_CAP / w.count.max(1) as usize).max(1),
    });
    let apply = {
        let params = PatchParams::apply(&field_manager(w.index)).force();
        let name = w.name.clone();
        move |body: serde_json::Value| {
            let runs = runs.clone();
            let params = params.clone();
            let name = name.clone();
            async move { runs.patch_status(&name, &params, &Patch::Apply(body)).await }
        }
    };

    let prepared = prepare(&client, &w).await;
    let work = match prepared {
        Ok(mut work) => {
            match &mut work {
                Work::Database(c) => c.stop = stop.clone(),
                Work::Lake(c) => c.stop = stop.clone(),
            }
            work
        }
        Err(message) => {
            tracing::warn!(%message, "the worker cannot run");
            {
                let mut p = reporter.lock();
                p.me.phase = WorkerPhase::Failed;
                p.me.message = Some(message);
                p.me.completion_time = Some(time(chrono::Utc::now()));
            }
            if let Err(e) = apply(reporter.body()).await {
                tracing::warn!(error = %e, "writing the worker status failed");
            }
            return WorkerPhase::Failed;
        }
    };

    // Write progress every few seconds while the engine runs; a deleted run stops the worker.
    let flusher = {
        let reporter = reporter.clone();
        let stop = stop.clone();
        let apply = apply.clone();
        let run = w.name.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLUSH_EVERY).await;
                match apply(reporter.body()).await {
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        tracing::info!(%run, "the run was deleted: stopping after the tables in progress");
                        stop.stop();
                    }
                    Err(e) => {
                        tracing::warn!(%run, error = %e, "writing progress failed; trying again")
                    }
                    // A stop reaches the worker with the answer to its own write.
                    Ok(obj) if obj.stop_asked() && !stop.is_stopped() => {
                        tracing::info!(%run, "the run is asked to stop: stopping after the tables in progress");
                        stop.stop();
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    if let Err(e) = apply(reporter.body()).await {
        tracing::warn!(error = %e, "writing the worker status failed");
    }
    tracing::info!("worker started");
    let outcome = work.run(reporter.as_ref(), reporter.read.clone()).await;
    flusher.abort();
    let phase = record_end(&reporter, &outcome, &stop);
    match &outcome {
        Ok(r) => {
            tracing::info!(
                result = r.result(),
                tables = r.tables.len(),
                rows = r.rows(),
                "worker finished"
            )
        }
        Err(e) => {
            tracing::warn!(error = %e.error, "worker failed")
        }
    }
    // The last word matters: try it a few times.
    for delay in [0u64, 1, 2, 4, 8] {
        tokio::time::sleep(Duration::from_secs(delay)).await;
        match apply(reporter.body()).await {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 404 => break,
            Err(e) => tracing::warn!(error = %e, "writing the final status failed"),
        }
    }
    phase
}

/// What a worker runs: run and schedule read, passwords (or the lake's key) from Secrets.
async fn prepare(client: &kube::Client, w: &WorkerSpec) -> Result<Work, String> {
    let runs: Api<MigrationRun> = Api::namespaced(client.clone(), &w.namespace);
    let run = runs
        .get(&w.name)
        .await
        .map_err(|e| format!("reading MigrationRun {}/{}: {e}", w.namespace, w.name))?;
    let schedules: Api<crate::api::MigrationSchedule> =
        Api::namespaced(client.clone(), &w.namespace);
    let schedule = schedules
        .get_opt(&run.spec.schedule_ref.name)
        .await
        .map_err(|e| {
            format!(
                "reading MigrationSchedule {:?}: {e}",
                run.spec.schedule_ref.name
            )
        })?
        .ok_or_else(|| {
            format!(
                "MigrationSchedule {:?} does not exist in namespace {:?}",
                run.spec.schedule_ref.name, w.namespace
            )
        })?;
    let companies = (!run.spec.companies.is_empty()).then(|| run.spec.companies.clone());
    if let Some(lake) = logins::lake_of(client, &w.namespace, &schedule.spec).await? {
        // One worker writes a lake (`workers`).
        let source = logins::run_source(client, &schedule).await?;
        return Ok(Work::Lake(crate::convert::lake_run_config(
            &schedule.spec,
            companies,
            (source, lake),
            w.name.clone(),
            run.spec.r#type,
        )));
    }
    let logins = (
        logins::run_source(client, &schedule).await?,
        logins::run_target(client, &schedule).await?,
    );
    let mut config = engine_config(
        &schedule.spec,
        companies,
        logins,
        w.name.clone(),
        run.spec.r#type,
    );
    if w.count > 1 {
        config.share = Some((w.index.max(0) as usize, w.count as usize));
    }
    Ok(Work::Database(config))
}

/// How many workers a run of the schedule has: one in-process, and one for a data lake
/// target (its tables are not shared out); else `runtime.workers`.
pub fn workers(spec: &crate::api::schedule::MigrationScheduleSpec) -> i32 {
    match spec.runtime.runner {
        crate::api::schedule::Runner::InProcess => 1,
        crate::api::schedule::Runner::Job if crate::lake::store::is_lake_url(&spec.target.url) => 1,
        crate::api::schedule::Runner::Job => spec.runtime.workers.max(1),
    }
}

#[cfg(test)]
mod status_size {
    use super::*;

    fn warned(i: usize) -> TableStatus {
        TableStatus {
            company: "CRONUS".into(),
            table: format!("Table {i}"),
            result: if i.is_multiple_of(1000) {
                TableResult::Failed
            } else {
                TableResult::Warning
            },
            mode: None,
            full_reason: None,
            rows: 0,
            inserted: None,
            updated: None,
            deleted: None,
            bytes: None,
            duration_ms: None,
            message: Some("x".repeat(5000)),
            guidance: Some("the table was missing in the cloud and was created".into()),
            lake: None,
        }
    }

    #[test]
    fn twenty_thousand_tables_with_warnings_keep_the_status_small() {
        let tables: Vec<TableStatus> = (0..20_000).map(warned).collect();
        let shown = listed(&tables, STATUS_TABLE_CAP, 20_000, STATUS_PROBLEM_CAP);
        assert_eq!(shown.len(), STATUS_PROBLEM_CAP);
        // The failed ones come first.
        assert!(shown[..20].iter().all(|t| t.result == TableResult::Failed));
        let size = serde_json::to_vec(&shown).unwrap().len();
        assert!(size < 512 * 1024, "{size} bytes");
        // Few tables: every one is listed.
        assert_eq!(
            listed(&tables[..10], STATUS_TABLE_CAP, 10, STATUS_PROBLEM_CAP).len(),
            10
        );
    }
}
