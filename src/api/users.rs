//! UserMapping: on-premises users mapped to cloud users.

use super::common::{Conditions, ScheduleRef, conditions_list_map, list_map};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The user mappings to apply (Define User Mappings).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "UserMapping",
    namespaced,
    shortname = "umap",
    category = "cloudmigrate",
    status = "UserMappingStatus",
    doc = "Maps on-premises users to cloud users. Applying a mapping renames the cloud user's \
           Name to the on-premises user name, so that processes that go by user name, such as \
           time sheets, find their data.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(name = "Applied", type_ = "integer", json_path = ".status.applied"),
    printcolumn(name = "Problems", type_ = "integer", json_path = ".status.problems"),
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
pub struct UserMappingSpec {
    /// The MigrationSchedule whose databases hold the users. It cannot change.
    #[x_kube(validation = Rule::new("self == oldSelf").message("scheduleRef cannot change: create a new UserMapping for the other schedule"))]
    pub schedule_ref: ScheduleRef,
    /// The mappings, one per on-premises user.
    #[schemars(transform = mapping_list_map)]
    pub mappings: Vec<UserMappingEntry>,
}

fn mapping_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["sourceUser"]);
}

/// One on-premises user and the cloud user it becomes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMappingEntry {
    /// The on-premises user name, for example `CONTOSO\JSMITH`.
    #[schemars(length(min = 1, max = 132))]
    pub source_user: String,
    /// The cloud user, by authentication email or user name, for example
    /// `jsmith@contoso.onmicrosoft.com`.
    #[schemars(length(min = 1, max = 250))]
    pub cloud_user: String,
}

/// What happened to each mapping.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMappingStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every mapping is applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// Users found in the source database.
    #[serde(default)]
    pub source_users_found: i64,
    /// Users found in the target database.
    #[serde(default)]
    pub cloud_users_found: i64,
    /// Mappings applied.
    #[serde(default)]
    pub applied: i64,
    /// Mappings that could not be applied; each is listed in `users` with the reason.
    #[serde(default)]
    pub problems: i64,
    /// One entry per mapping.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = mapping_list_map)]
    pub users: Vec<UserMappingResult>,
}

/// The state of one mapping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMappingResult {
    /// The on-premises user name.
    pub source_user: String,
    /// The cloud user.
    pub cloud_user: String,
    /// `Applied`, `UnknownSourceUser`, `UnknownCloudUser` or `Conflict` (two mappings name the
    /// same cloud user, or the name is taken).
    pub state: String,
    /// More about the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
