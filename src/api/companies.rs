//! CompanySelection: which companies of the source a schedule migrates, and their
//! initialization in the cloud.

use super::common::{Conditions, ScheduleRef, conditions_list_map, list_map};
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
           its estimated size. (The initialization is not acted on yet.)",
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
    /// What to do about the company's initialization in the cloud after a run copied it:
    /// `None` (the default) leaves it, `Initialize` schedules the initialization, and
    /// `MarkInitialized` records it as done (for example when an earlier run initialized it).
    /// Not acted on yet: nothing initializes a company so far.
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

/// The state of a company's initialization in the cloud.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InitializationState {
    /// Not initialized; nobody can use the company in the cloud yet.
    NotInitialized,
    /// The initialization is scheduled.
    Scheduled,
    /// The initialization is running.
    Running,
    /// Initialized (or marked as initialized).
    Initialized,
    /// The initialization failed; see the message.
    Failed,
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
    /// split them.
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
    /// The company's initialization in the cloud. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initialization: Option<InitializationState>,
    /// More about the initialization, for example why it failed. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
