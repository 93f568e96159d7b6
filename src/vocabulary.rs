//! The words that the engine and the custom resources share: what kind of run it is, how a
//! table ended and how it was copied, which ERP product the database holds, and where a
//! company's initialization stands. The engine defines its results in these words and the API
//! shows them as they are; this module sits below both, so neither names the other. Serde and
//! the JSON schema derive here; nothing here knows Kubernetes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The kind of a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum RunType {
    /// Incremental where change tracking state is valid, full elsewhere.
    #[default]
    Auto,
    /// Every table in full.
    Full,
    /// Nothing written; a report of what a run would do.
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

impl std::str::FromStr for RunType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(RunType::Auto),
            "full" => Ok(RunType::Full),
            "diagnostic" => Ok(RunType::Diagnostic),
            _ => Err(format!(
                "{s:?} is not a run type: use auto, full or diagnostic"
            )),
        }
    }
}

/// The state of one table in a run.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum TableResult {
    /// Not begun yet.
    NotStarted,
    /// Being copied now.
    InProgress,
    /// Copied without a problem.
    Migrated,
    /// Copied with a warning, or not copied because of one; see the message and guidance.
    Warning,
    /// Not copied because of an error; see the message and guidance.
    Failed,
    /// Not copied by design or by the table filter; the message says why.
    Excluded,
    /// Not copied in this run because its company is being initialized; the next run copies
    /// it.
    Skipped,
}

impl TableResult {
    pub fn as_str(self) -> &'static str {
        match self {
            TableResult::NotStarted => "NotStarted",
            TableResult::InProgress => "InProgress",
            TableResult::Migrated => "Migrated",
            TableResult::Warning => "Warning",
            TableResult::Failed => "Failed",
            TableResult::Excluded => "Excluded",
            TableResult::Skipped => "Skipped",
        }
    }
}

/// How a table was copied.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CopyMode {
    /// Only the rows change tracking reported as changed.
    Incremental,
    /// Every row.
    Full,
    /// Nothing copied (diagnostic run, or the table was excluded).
    None,
}

impl CopyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMode::Full => "Full",
            CopyMode::Incremental => "Incremental",
            CopyMode::None => "None",
        }
    }
}

/// The ERP product a source database belongs to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Product {
    /// Microsoft Dynamics 365 Business Central on-premises.
    #[default]
    BusinessCentral,
    /// Microsoft Dynamics NAV.
    #[serde(rename = "NAV")]
    Nav,
    /// Microsoft Dynamics GP.
    #[serde(rename = "GP")]
    Gp,
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

/// One SQL step of a company's initialization.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializationStep {
    /// The step's name, used in messages.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// One SQL statement in the target's dialect.
    #[schemars(length(min = 1, max = 65536))]
    pub sql: String,
}
