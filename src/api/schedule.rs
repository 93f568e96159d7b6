//! MigrationSchedule: the migration setup of one source database into one cloud target.

use super::common::{Conditions, SourceConnection, TargetConnection, conditions_list_map};
pub use crate::vocabulary::Product;
use k8s_openapi::api::core::v1::{LocalObjectReference, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired migration: the source and target databases, what is copied, when runs start and
/// how they execute.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "MigrationSchedule",
    namespaced,
    shortname = "msched",
    category = "cloudmigrate",
    status = "MigrationScheduleStatus",
    doc = "The migration of one on-premises ERP database into one cloud tenant database: what \
           is copied, when runs start and how they run. Each run appears as a MigrationRun \
           owned by this schedule.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend"),
    printcolumn(
        name = "Last Run",
        type_ = "string",
        json_path = ".status.lastRun.name"
    ),
    printcolumn(
        name = "Result",
        type_ = "string",
        json_path = ".status.lastRun.result"
    ),
    printcolumn(
        name = "Migrated",
        type_ = "integer",
        json_path = ".status.migration.tablesMigrated"
    ),
    printcolumn(
        name = "Failed",
        type_ = "integer",
        json_path = ".status.migration.tablesFailed"
    ),
    printcolumn(name = "Next Run", type_ = "string", json_path = ".status.nextRunTime"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MigrationScheduleSpec {
    /// The on-premises database to migrate from.
    pub source: SourceConnection,
    /// The cloud tenant database to migrate into.
    pub target: TargetConnection,
    /// The ERP product of the source. It decides which system tables are not migrated by design
    /// (users, permissions and the like).
    #[serde(default)]
    pub product: Product,
    /// When runs start, as a 5-field cron expression (minute hour day-of-month month
    /// day-of-week), for example `0 2 * * *` for every night at 02:00. Leave it out to run only
    /// on request (`runRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub schedule: Option<String>,
    /// The IANA time zone `schedule` is read in, for example `Europe/Berlin`. Defaults to `UTC`.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Stop starting scheduled runs: due times pass without a run and are not caught up
    /// afterwards. A `runRequest` still starts a run (as `kubectl create job --from` does for a
    /// suspended CronJob), and a run in progress goes on to its end.
    #[serde(default)]
    pub suspend: bool,
    /// Start the first run as soon as the schedule is created, without waiting for `schedule`.
    #[serde(default)]
    pub run_immediately: bool,
    /// What to do when a run is due while the previous one is still going. `Forbid` (the
    /// default) skips the due run and records why; `Replace` stops the running one after its
    /// tables in progress, then starts the new one. Runs of one schedule never overlap.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// How late a missed run (for example after the controller was down) may still start, in
    /// seconds. A missed run older than this is skipped. Unset: any delay is accepted. At most
    /// one missed run is ever started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub starting_deadline_seconds: Option<i64>,
    /// Which tables are migrated, by name without the company part.
    #[serde(default)]
    pub tables: TableFilter,
    /// How and where runs execute.
    #[serde(default)]
    pub runtime: Runtime,
    /// How many finished MigrationRuns are kept.
    #[serde(default)]
    pub history: History,
    /// Any new value starts one run (Run Migration Now). Use a value that changes, such as
    /// a timestamp: `kubectl patch msched NAME --type merge -p '{"spec":{"runRequest":"'$(date +%s)'"}}'`.
    /// While something holds runs back (another run at work, a conflict, Disable, a key
    /// rotation, a key not in effect, a CloudReset, a company the source lacks) the request
    /// waits in `status.pendingRunRequest`, and starts exactly one run once the way is clear.
    /// The value handled last is shown in `status.lastHandledRunRequest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_request: Option<String>,
    /// Disable Cloud Migration, when the cloud tenant becomes the primary system: no run
    /// starts; once the active run has ended, the controller removes change tracking from the
    /// source (triggers, functions, change tables) and revokes the runtime key (drops the
    /// login role, deletes its Secret). `status.checklist` shows each step done or not.
    /// Setting it back to false makes a new key, and the next run copies every table in full
    /// (reason `ReEnabled`).
    #[serde(default)]
    pub disabled: bool,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// What happens when a run is due while the previous one is still going.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Skip the due run and record why.
    #[default]
    Forbid,
    /// Stop the running run after its tables in progress, then start the due one.
    Replace,
}

/// Which tables are migrated. Patterns are globs (`*`, `?`, `[abc]`) on the table name without
/// the company, for example `G_L Entry` or `Item*`. Permission and user tables are never
/// migrated, whatever the filter says.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableFilter {
    /// Only tables matching one of these patterns are migrated. Empty: every table.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Tables matching one of these patterns are not migrated, even when `include` matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// Tables that no run migrates (by design, such as permissions and users, or by
    /// `exclude`) and that you have set up in the cloud by hand. The Setup Checklist counts a
    /// table left out whose name matches one of these patterns as set up; `["*"]` says so of
    /// every one. A table that failed or was missing in the cloud still needs a run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_up_by_hand: Vec<String>,
}

/// How and where the runs of a schedule execute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Runtime {
    /// Where runs execute: `Job` (a Kubernetes Job with `workers` pods, the default) or
    /// `InProcess` (inside the controller; for small databases and local clusters).
    #[serde(default)]
    pub runner: Runner,
    /// The container image of the Job's workers. Defaults to the controller's
    /// CLOUDMIGRATE_WORKER_IMAGE, which the Helm chart sets to the controller's own image, else
    /// `ghcr.io/cloudmigrate/cloudmigrate:<the controller's version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of worker pods of a Job run. Tables are shared among them, balanced by size. A
    /// data lake target is written by one worker, whatever this says.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 64))]
    pub workers: i32,
    /// Number of tables each worker copies at the same time.
    #[serde(default = "default_parallelism")]
    #[schemars(range(min = 1, max = 64))]
    pub parallelism: i32,
    /// CPU and memory for each worker pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// With the Job runner, how long a run's Job may take, in seconds: past it, its workers are
    /// stopped and the run fails (DeadlineExceeded). The in-process runner has no limit. Unset:
    /// no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// How many times a failed worker pod is retried before the run fails. Defaults to 2.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0))]
    pub backoff_limit: i32,
    /// With the Job runner, how long a worker pod may take to start, in seconds: a pod not
    /// running by then (its image cannot be pulled, a Secret it names is missing, it cannot be
    /// scheduled, or the Job cannot create it at all) ends the run `Failed`
    /// (`WorkersNotStarting`), its Job is deleted and the next run may start. Defaults to 600.
    #[serde(default = "default_start_deadline")]
    #[schemars(range(min = 1))]
    pub start_deadline_seconds: i64,
    /// The Secrets (type `kubernetes.io/dockerconfigjson`, in the schedule's namespace) that
    /// the worker pods pull the image with, and that Check for Update reads the image's
    /// registry with. Unset: the controller's CLOUDMIGRATE_WORKER_IMAGE_PULL_SECRETS, which the
    /// Helm chart sets from `workers.imagePullSecrets`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    /// With the Job runner, the node labels a worker pod must run on (the pod's
    /// `nodeSelector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<std::collections::BTreeMap<String, String>>,
}

impl Default for Runtime {
    fn default() -> Self {
        Self {
            runner: Runner::default(),
            image: None,
            workers: default_workers(),
            parallelism: default_parallelism(),
            resources: None,
            active_deadline_seconds: None,
            backoff_limit: default_backoff_limit(),
            start_deadline_seconds: default_start_deadline(),
            image_pull_secrets: None,
            node_selector: None,
        }
    }
}

fn default_workers() -> i32 {
    1
}
fn default_parallelism() -> i32 {
    4
}
fn default_backoff_limit() -> i32 {
    2
}
fn default_start_deadline() -> i64 {
    600
}

/// Where the runs of a schedule execute.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Runner {
    /// A Kubernetes Job with `runtime.workers` pods.
    #[default]
    Job,
    /// A task inside the controller.
    InProcess,
}

/// How many finished runs are kept. Older ones that the controller created are deleted,
/// oldest first; a run made by hand is never deleted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct History {
    /// Runs that ended Succeeded. Defaults to 10.
    #[serde(default = "default_successful")]
    #[schemars(range(min = 0))]
    pub successful: i32,
    /// Runs that ended PartiallySucceeded, Failed or Stopped. Defaults to 5.
    #[serde(default = "default_failed")]
    #[schemars(range(min = 0))]
    pub failed: i32,
}

impl Default for History {
    fn default() -> Self {
        Self {
            successful: default_successful(),
            failed: default_failed(),
        }
    }
}

fn default_successful() -> i32 {
    10
}
fn default_failed() -> i32 {
    5
}

/// What the controller observed of a MigrationSchedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationScheduleStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the spec is valid (cron, time zone, companies, no conflict) and both
    /// databases answered the last probe (every 5 minutes; the message names the one that did
    /// not, with the error). `ChangeTracking`: change tracking is installed in the source
    /// (False until the first run installs it). `Scheduled`: a next run is planned.
    /// `Disabled`: the migration is disabled. `Conflict`: another schedule uses the same
    /// source or target.
    /// `Resetting`: a CloudReset is pending, and no run starts until it ends.
    /// `RunRequest`: the last `spec.runRequest` started its run (True), or waits
    /// (`RunRequestWaiting`; `pendingRunRequest` says for what).
    /// `UpdateAvailable`: a newer release is in the runtime image's repository (read from its
    /// registry) or the controller is newer than the pinned image; the message says how to
    /// update. `RegistryUnreachable`/`RegistryRefused` when the registry could not be read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// The most recent run that started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<RunSummary>,
    /// The MigrationRun of this schedule that has not ended, if any: at work, or waiting to
    /// start (its `Running` condition says for what).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_run: Option<String>,
    /// When the next scheduled run starts: RFC 3339, in the schedule's time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<String>,
    /// The scheduled time handled last: a run started for it, or it was skipped. Due times up
    /// to this one never start a run again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// When the last run that ended Succeeded finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<Time>,
    /// The `spec.runRequest` value that was handled last: a run started for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_run_request: Option<String>,
    /// A `spec.runRequest` that waits to start its run, and what it waits for. It is kept,
    /// never dropped: exactly one run starts for it once the way is clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_run_request: Option<PendingRunRequest>,
    /// The Migration Information tiles: each table of the source counted once, by its latest
    /// result across the runs so far, from the target's run log. A stopped run, or a run made
    /// by hand for one company, updates the tables it copied and leaves the others as they
    /// were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationInformation>,
    /// The replication runtime: the version its runs use against the controller's (Check for
    /// Update), and its key (never the key itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStatus>,
    /// The steps before the cloud tenant can become the primary system (Setup Checklist), each
    /// marked done from what the databases and the cluster show.
    /// The controller writes the list whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checklist: Vec<ChecklistStep>,
    /// Where the databases' host names resolved at the last probe, one entry per address
    /// (`postgres://10.0.0.5:5432/bc`). Two schedules conflict when their URLs name the same
    /// database or when these share an entry, so two names of one server are one database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<ResolvedEndpoints>,
}

/// The addresses a schedule's database URLs resolved to, as `scheme://address:port/database`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedEndpoints {
    /// The source URL's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source: Vec<String>,
    /// The target URL's addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target: Vec<String>,
}

/// A run request that cannot start its run yet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingRunRequest {
    /// The `spec.runRequest` value.
    pub token: String,
    /// What holds it: `RunActive` (another run of the schedule is at work), `Conflict`,
    /// `Disabled`, `RotatingKey`, `RuntimeKeyNotReady`, `Resetting`, `UnknownCompany`,
    /// `NoCompanySelected`, or a problem with `spec.schedule`'s timing.
    pub reason: String,
    /// What holds it, and what ends the wait.
    pub message: String,
    /// When the controller first saw it wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// A short account of one run.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunSummary {
    /// Name of the MigrationRun.
    pub name: String,
    /// The run type: Auto, Full or Diagnostic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub r#type: Option<String>,
    /// Succeeded, PartiallySucceeded, Failed or Stopped; empty while the run goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Tables copied without a problem.
    #[serde(default)]
    pub tables_migrated: i64,
    /// Tables copied with a warning, or not copied because of one.
    #[serde(default)]
    pub tables_with_warnings: i64,
    /// Tables that failed.
    #[serde(default)]
    pub tables_failed: i64,
}

/// The Migration Information tiles: where every table of the source stands over the runs so
/// far, read from the target's run log (`cloudmigrate_table_log`). Each table counts in exactly
/// one tile, by its latest line there; diagnostic runs are left out. A line that only says a run
/// left a table alone (its company not in that run, filtered out, or not started) does not
/// replace an earlier copy's result: a run of one company leaves the other companies' tables as
/// they were. Refreshed by the probe of the databases after each run ends; absent until a run
/// has written the log, all zero after Reset Cloud Data emptied it. A data lake keeps no run
/// log: for a lake target the tiles are the counts of the newest run that ended (not
/// Diagnostic), with the tables it excluded as not migrated. For Dynamics GP into a database
/// target, they add up the run logs of the system database and of each company database on
/// the target's server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationInformation {
    /// Tables whose latest copy migrated without a problem.
    #[serde(default)]
    pub tables_migrated: i64,
    /// Tables whose latest copy migrated with a warning, or did not because of one (for
    /// example missing in the target). The MigrationRun of that copy has the guidance.
    #[serde(default)]
    pub tables_with_warnings: i64,
    /// Tables whose latest copy failed, or whose name cannot exist in the target. The
    /// MigrationRun of that copy has the error and the guidance.
    #[serde(default)]
    pub tables_failed: i64,
    /// Tables not migrated by design (permissions, users): they are set up in the cloud by
    /// hand (the Setup Checklist's per-database step).
    #[serde(default)]
    pub tables_not_migrated: i64,
    /// Tables no run has copied because their company is not selected (Business Central
    /// companies: an unselected GP company's database is not read).
    #[serde(default)]
    pub tables_of_unselected_companies: i64,
    /// Tables no run has copied because the schedule's `spec.tables` filter leaves them out.
    #[serde(default)]
    pub tables_filtered_out: i64,
    /// Tables that the latest run to reach them skipped because their company was being
    /// initialized; the next run after the initialization copies them.
    #[serde(default)]
    pub tables_skipped_for_initialization: i64,
    /// Tables no run has copied yet because each run that got to them was stopped first.
    #[serde(default)]
    pub tables_not_started: i64,
}

/// The replication runtime of a schedule.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStatus {
    /// The login role that runs write to the target as (PostgreSQL, MySQL/MariaDB targets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_role: Option<String>,
    /// The Secret holding the runtime key, `<schedule>-runtime-key` (Get Runtime Service Key
    /// is reading it: `username` and `password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_name: Option<String>,
    /// The current key's fingerprint (`sha256:` and 16 hex digits), to compare without
    /// revealing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// When the current key was generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_rotated_at: Option<Time>,
    /// The cloudmigrate version that runs use now: the tag of the runtime image
    /// (`spec.runtime.image`, else the workers' default), or the controller's own version for
    /// the in-process runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_in_use: Option<String>,
    /// The newest released cloudmigrate version in the runtime image's repository, read from
    /// its registry at most once an hour; the controller's own version until the registry
    /// answers, or when it cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// True when `latestVersion` is newer than `versionInUse` (Check for Update).
    #[serde(default)]
    pub update_available: bool,
}

/// One step of the setup checklist.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChecklistStep {
    /// The step: `SetUpTablesNotMigrated` and `InitializeCompany` (per company, for 50
    /// companies at most, those with a step not done first), `MoreCompanies` (counting the
    /// others), `MapUsers`, then `DisableCloudMigration` with its parts `LetActiveRunFinish`,
    /// `RemoveChangeTracking` and `RevokeRuntimeKey`.
    pub name: String,
    /// The company the step is for; none for a step of the whole database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    /// Whether the step is done, as the databases and the cluster show it now.
    #[serde(default)]
    pub done: bool,
    /// What the step asks for and how to do it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
