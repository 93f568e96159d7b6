//! MigrationRun: one run of a schedule, with the result of every table.

use super::common::{Conditions, ScheduleRef, conditions_list_map, list_map};
pub use crate::vocabulary::{CopyMode, RunType, TableResult};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the run does: for which schedule, of which type, and for which companies.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "MigrationRun",
    namespaced,
    shortname = "mrun",
    category = "cloudmigrate",
    status = "MigrationRunStatus",
    doc = "One migration run of a MigrationSchedule, with the result of every table. The \
           schedule creates runs when its cron fires or on runRequest; a person may create one \
           with kubectl create.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Result", type_ = "string", json_path = ".status.result"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.reason"),
    printcolumn(
        name = "Tables",
        type_ = "string",
        json_path = ".status.progress.tables"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.progress.tablesFailed"
    ),
    printcolumn(
        name = "Rows",
        type_ = "integer",
        json_path = ".status.progress.rowsCopied"
    ),
    printcolumn(name = "Started", type_ = "date", json_path = ".status.startTime"),
    printcolumn(name = "Duration", type_ = "string", json_path = ".status.duration")
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRunSpec {
    /// The MigrationSchedule this run belongs to. It cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("scheduleRef cannot change: create a new MigrationRun for the other schedule"))]
    pub schedule_ref: ScheduleRef,
    /// `Auto` (the default) copies only what changed since the last run, where change tracking
    /// allows, and everything else in full. `Full` copies every table in full. `Diagnostic`
    /// writes nothing: it checks connections, schemas and change tracking, and reports per
    /// table what a run would do.
    #[serde(default)]
    pub r#type: RunType,
    /// The companies this run migrates, by name. A run that its schedule creates lists the
    /// companies that the schedule's CompanySelection selected when the run was created, so the
    /// run records what it was asked to do. Empty: every company of the source. Per-database
    /// tables always migrate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub companies: Vec<String>,
    /// Set to true to stop the run: tables in progress finish, no new table starts, and the run
    /// ends as Stopped. The next run continues from the saved state.
    #[serde(default)]
    pub stop: bool,
}

impl MigrationRun {
    /// Whether the run is to stop: `spec.stop`, or the controller's `status.stopRequested`.
    pub fn stop_asked(&self) -> bool {
        self.spec.stop
            || self
                .status
                .as_ref()
                .is_some_and(|s| s.stop_requested.is_some())
    }
}

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RunResult {
    /// Every table migrated (some perhaps with warnings).
    Succeeded,
    /// Some tables failed; the others migrated.
    PartiallySucceeded,
    /// The run did not get through: no table migrated, or its runner failed for good (a
    /// worker that could not run, a Job past its backoffLimit or deadline, a lost runner past
    /// its attempts), or its schedule is missing. Tables it finished before that keep their
    /// data and state, and `status.tables` names them: the next run goes on from there.
    Failed,
    /// Stopped on request before every table was done.
    Stopped,
}

/// What the controller and the workers observed of a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationRunStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Running`: the run is in progress. `Succeeded`: True when the run ended Succeeded, False
    /// when it ended otherwise; the reason is the result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// How the run ended. Empty while it goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// The run's state in one word: the reason of its `Running` condition while it goes on
    /// (`Started`, `WorkersNotStarting`, `Restarted`, a reason it waits for), of its
    /// `Succeeded` condition once it ended (`Succeeded`, `TablesFailed`, `WorkersNotStarting`,
    /// ...). Each reason is in docs/operations.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What started the run: `Scheduled`, `Manual` (runRequest) or `Created` (kubectl create).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// How long the run took, or has taken so far, for example `4m12s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Counts over all tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RunProgress>,
    /// One entry per table, keyed by company and table. Past 2,000 tables only the tables that
    /// did not migrate cleanly are listed, failed first, at most 200, with messages cut to
    /// 1,000 characters; `cloudmigrate runs show NAMESPACE/NAME` prints all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = table_list_map)]
    pub tables: Vec<TableStatus>,
    /// How many tables are left out of `tables` to keep the status small.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_omitted: Option<i64>,
    /// Each worker's own account of its share, written by the worker itself. The controller
    /// adds them up into `progress` and decides the result when all have finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = worker_list_map)]
    pub workers: Vec<WorkerStatus>,
    /// Why the controller asked the run to stop, when it did (concurrencyPolicy Replace): the
    /// tables in progress finish, then the run ends Stopped, as with `spec.stop`, which stays
    /// as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_requested: Option<String>,
    /// How many times the run was started: more than 1 when a runner was lost (a controller
    /// restart, a pod killed) and the run went on from the state saved in the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
}

fn worker_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["index"]);
}

/// One worker's share of a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerStatus {
    /// The worker's index: 0 for the in-process runner, the Job completion index otherwise.
    pub index: i32,
    /// Running, Finished, Stopped or Failed (the worker could not run at all; see message).
    pub phase: WorkerPhase,
    /// The attempt of the run this worker belongs to.
    #[serde(default)]
    pub attempt: i32,
    /// Tables in this worker's share.
    #[serde(default)]
    pub tables_total: i64,
    /// Tables of the share that are done, whatever their result.
    #[serde(default)]
    pub tables_done: i64,
    /// Tables of the share that migrated cleanly.
    #[serde(default)]
    pub tables_migrated: i64,
    /// Tables of the share that migrated with a warning, or did not because of one.
    #[serde(default)]
    pub tables_with_warnings: i64,
    /// Tables of the share whose copy failed.
    #[serde(default)]
    pub tables_failed: i64,
    /// Tables not migrated by design or by the table filter (reported by worker 0).
    #[serde(default)]
    pub tables_excluded: i64,
    /// Tables left unstarted because the run was stopped.
    #[serde(default)]
    pub tables_not_started: i64,
    /// Rows copied so far (while running, rows read so far).
    #[serde(default)]
    pub rows_copied: i64,
    /// Bytes copied so far.
    #[serde(default)]
    pub bytes_copied: i64,
    /// When the worker started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the worker ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Why the worker could not run (a connection refused, a Secret missing), with the fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Where a worker is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum WorkerPhase {
    #[default]
    Running,
    Finished,
    Stopped,
    Failed,
}

fn table_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["company", "table"]);
}

/// Counts over all tables of a run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunProgress {
    /// Tables done out of the total, for example `120/340`.
    #[serde(default)]
    pub tables: String,
    /// Tables the run copies (excluded tables not counted).
    #[serde(default)]
    pub tables_total: i64,
    /// Tables finished, whatever their result.
    #[serde(default)]
    pub tables_done: i64,
    /// Tables copied without a problem.
    #[serde(default)]
    pub tables_migrated: i64,
    /// Tables with a warning.
    #[serde(default)]
    pub tables_with_warnings: i64,
    /// Tables that failed.
    #[serde(default)]
    pub tables_failed: i64,
    /// Tables not migrated by design or by the table filter.
    #[serde(default)]
    pub tables_excluded: i64,
    /// Rows written to the target (inserted, updated and deleted).
    #[serde(default)]
    pub rows_copied: i64,
    /// Bytes read from the source; for a data lake target, bytes of the data files written.
    #[serde(default)]
    pub bytes_copied: i64,
}

/// The result of one table in a run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableStatus {
    /// The company the table belongs to, as in the source's Company table. Empty for
    /// per-database tables.
    pub company: String,
    /// The table name without the company, for example `G_L Entry`.
    pub table: String,
    /// The table's state.
    pub result: TableResult,
    /// Whether the table was copied in full or incrementally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<CopyMode>,
    /// Why the table was copied in full: `FirstRun`, `RetentionExpired`, `Truncated`,
    /// `SchemaChanged`, `ManyChanges` (more changes than 30% of the table's rows),
    /// `NoPrimaryKey`, `NoChangeTracking`, `Requested`, `Reset` (the first
    /// run after a CloudReset) or `ReEnabled` (the first run after Disable Cloud Migration was
    /// undone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_reason: Option<String>,
    /// Rows written (a full copy) or changed (an incremental run).
    #[serde(default)]
    pub rows: i64,
    /// Rows inserted by an incremental run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inserted: Option<i64>,
    /// Rows updated by an incremental run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated: Option<i64>,
    /// Rows deleted by an incremental run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<i64>,
    /// Bytes read from the source; for a data lake target, bytes of the data files this run
    /// wrote into the table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<i64>,
    /// How long the table took, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    /// What happened, when something needs attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guidance: Option<String>,
    /// The table's Delta table, for a data lake target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeTableStatus>,
}

/// A source table's Delta table in a data lake target, after the run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LakeTableStatus {
    /// The table's folder, as Delta readers are given it, for example
    /// `az://lake/bc/companies/CRONUS/G_L Entry`.
    pub location: String,
    /// The table's Delta version after the run; absent while the table has no commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Data files in the table.
    #[serde(default)]
    pub files: i64,
    /// Rows in the table.
    #[serde(default)]
    pub rows: i64,
    /// Data files this run added.
    #[serde(default)]
    pub files_added: i64,
    /// Data files this run removed.
    #[serde(default)]
    pub files_removed: i64,
}
