//! CompanySelection: which companies of the source a schedule migrates, and their
//! initialization in the cloud.

use super::common::{Conditions, ScheduleRef, conditions_list_map, list_map};
pub use crate::vocabulary::{InitializationState, InitializationStep};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The chosen companies (Select Companies to Migrate) and the initialization each asks for.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "CompanySelection",
    namespaced,
    shortname = "csel",
    category = "cloudmigrate",
    status = "CompanySelectionStatus",
    doc = "Which companies of the source database a MigrationSchedule migrates, and how each is \
           initialized in the cloud. The status lists every company found in the source with \
           its estimated size, and the initialization of each migrated company.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(
        name = "Found",
        type_ = "integer",
        json_path = ".status.companiesFound"
    ),
    printcolumn(
        name = "Selected",
        type_ = "integer",
        json_path = ".status.companiesSelected"
    ),
    printcolumn(
        name = "Initialized",
        type_ = "integer",
        json_path = ".status.companiesInitialized"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct CompanySelectionSpec {
    /// The MigrationSchedule this selection is for. It cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("scheduleRef cannot change: create a new CompanySelection for the other schedule"))]
    pub schedule_ref: ScheduleRef,
    /// The companies to migrate, by name as in the source's Company table. The runs that the
    /// schedule creates migrate the companies listed here with `migrate: true`, and no other
    /// (a run made by hand names its own). Of several CompanySelections for one schedule, the
    /// oldest counts. One that selects no company stops the schedule from starting runs.
    #[serde(default)]
    #[schemars(transform = company_list_map)]
    pub companies: Vec<CompanyChoice>,
    /// SQL statements that initializing a company runs in the target after the built-in
    /// steps, in order, in one transaction with the mark that the company is initialized: if
    /// one fails, none is kept, and the company's message names the step and the database's
    /// error. In the SQL, `{{company}}` stands for the company's name (passed as a parameter,
    /// never spliced in) and `{{table:Name}}` for the company's table `Name`, quoted for the
    /// target, for example `UPDATE {{table:Sales Setup}} SET "Posted Invoice Nos." = 'S-INV'`.
    /// The steps run as the schedule's runtime role, the login runs write as, never as the
    /// admin login of `spec.target`: they may read and change the rows of the tables the last
    /// run copied, and nothing else (no DDL, no roles, no other table).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = step_list_map)]
    pub initialization_steps: Vec<InitializationStep>,
}

fn step_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["name"]);
}

fn company_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["name"]);
}

/// One company and what to do with it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanyChoice {
    /// The company's name as in the source's Company table, for example `CRONUS International Ltd.`.
    #[schemars(length(min = 1, max = 250))]
    pub name: String,
    /// Whether the company's tables are migrated. Defaults to true.
    #[serde(default = "yes")]
    pub migrate: bool,
    /// What to do about the company's initialization in the cloud once a run has migrated it:
    /// `None` (the default) leaves it, `Initialize` schedules the initialization (data
    /// validation against the source, the built-in steps, then `initializationSteps`), and
    /// `MarkInitialized` records it as initialized without running anything (for example when
    /// an earlier migration initialized it). A failed initialization is tried again after a
    /// newer run has migrated the company, or when this CompanySelection's spec changes. While
    /// a company's initialization is scheduled or running, runs skip its tables, and a change
    /// of its choice waits until the initialization ends.
    #[serde(default)]
    pub initialization: Initialization,
}

fn yes() -> bool {
    true
}

/// The initialization a company asks for.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Initialization {
    /// Leave the company's initialization as it is.
    #[default]
    None,
    /// Initialize the company in the cloud after its data is migrated.
    Initialize,
    /// Record the company as initialized without running the initialization.
    MarkInitialized,
}

/// What the controller found of the companies in the source.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanySelectionStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: the schedule exists, the source can be read, and every selected company
    /// exists in it. `Conflict`: an older CompanySelection names the same schedule, and runs
    /// use that one. `TooManyCompanies`: more than 250 companies are selected for one run;
    /// split them. `Initializing`: a company's initialization is scheduled or running.
    /// `ChangeRefused`: the choice of a company that is being initialized changed; the change
    /// takes effect when the initialization ends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// When the companies and their sizes were last read from the source. They are read
    /// again after 10 minutes, and after each successful run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sizes_read_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// How many companies the source has.
    #[serde(default)]
    pub companies_found: i64,
    /// How many of them are selected.
    #[serde(default)]
    pub companies_selected: i64,
    /// How many of them are initialized in the cloud.
    #[serde(default)]
    pub companies_initialized: i64,
    /// Every company found in the source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = company_list_map)]
    pub companies: Vec<CompanyStatus>,
}

/// One company of the source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanyStatus {
    /// The company's name as in the source's Company table.
    pub name: String,
    /// Estimated size of the company's tables in bytes.
    #[serde(default)]
    pub estimated_bytes: i64,
    /// Estimated size of the company's tables, readable, for example `12.4 GiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_size: Option<String>,
    /// Number of tables of the company.
    #[serde(default)]
    pub tables: i64,
    /// Whether the company is selected for migration.
    #[serde(default)]
    pub selected: bool,
    /// The last MigrationRun that migrated the company.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_migrated_run: Option<String>,
    /// The company's initialization in the cloud, once a run has migrated it, as the target
    /// records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<InitializationState>,
    /// More about the initialization: the step it is at, why it failed, or what it did. Whole
    /// (up to 1,000 characters) for the first 10 companies with a problem, cut to 120 for the
    /// others, and left out when even that would make the status too large; the target's
    /// `cloudmigrate_companies` table keeps it whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The data validation of the company's last initialization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<CompanyValidation>,
}

/// How a company's tables in the target compared with the source: row counts and a checksum
/// over every compared column, computed by each database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CompanyValidation {
    /// Tables compared.
    pub tables_checked: i64,
    /// Tables whose rows are equal on both sides.
    pub tables_matching: i64,
    /// Rows compared, counted in the source.
    pub rows_compared: i64,
    /// Keys that changed in the source after the run copied their tables (the ERP kept
    /// posting). Their rows were not compared; the next run copies them.
    #[serde(default)]
    pub keys_changed_since_run: i64,
    /// The company's tables in the source that no run has written to the target, so not
    /// compared (excluded by the schedule's table filter, for example).
    #[serde(default)]
    pub tables_not_migrated: i64,
    /// The tables that differ (the first 20), each with its first differing keys; listed for
    /// the first 10 companies with a problem, the counts above stand for the others.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mismatches: Vec<TableMismatch>,
    /// Columns that were not compared, and why (the first 20 tables; listed for the first 10
    /// companies and for those with a problem shown in full).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<ColumnsLeftOut>,
}

/// A table whose rows differ between source and target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableMismatch {
    /// The table's name in the source.
    pub table: String,
    /// Rows of the table in the source.
    pub source_rows: i64,
    /// Rows of the table in the target.
    pub target_rows: i64,
    /// The first differing rows: key, and how the row differs (`MissingInTarget`,
    /// `OnlyInTarget`, `ValuesDiffer`), for example `No.=10000: ValuesDiffer`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_keys: Vec<String>,
    /// Why the table could not be compared, where it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Columns of one table left out of the comparison.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColumnsLeftOut {
    /// The table's name in the source.
    pub table: String,
    /// The columns not compared.
    pub columns: Vec<String>,
    /// Why they could not be compared exactly.
    pub reason: String,
}
