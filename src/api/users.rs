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
    /// The mappings, one per on-premises user. Removing one gives its cloud user its own name
    /// back; changing one renames the cloud user from its own name (both recorded in the
    /// target before the first rename). Empty: every rename of this mapping is undone.
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
    /// `Ready`: every mapping is applied. False with `WaitingForMigration` until a run of the
    /// schedule has migrated a company; with `InvalidMappings` (nothing written) when a mapping
    /// names an unknown user, two name one cloud user, or a name is taken or too long.
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
    /// Mappings that could not be applied; each is listed in `users` with the reason (the
    /// first 500).
    #[serde(default)]
    pub problems: i64,
    /// One entry per mapping, those with a problem first: at most 500 (the counts above cover
    /// every mapping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = mapping_list_map)]
    pub users: Vec<UserMappingResult>,
    /// The users of the source database's `User` table, by user name: those no mapping names
    /// first, at most 500 (`sourceUsersFound` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = user_list_map)]
    pub source_users: Vec<FoundUser>,
    /// The users of the target database's `User` table, by user name: those no mapping names
    /// first, at most 500 (`cloudUsersFound` counts all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = user_list_map)]
    pub cloud_users: Vec<FoundUser>,
}

fn user_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["name"]);
}

/// A user found in a database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FoundUser {
    /// The user name (`User Name`).
    pub name: String,
    /// The authentication email, where the table has one (cloud users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Whether a mapping names this user.
    #[serde(default)]
    pub mapped: bool,
}

/// The state of one mapping.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserMappingResult {
    /// The on-premises user name.
    pub source_user: String,
    /// The cloud user.
    pub cloud_user: String,
    /// `Applied`, `Waiting` (no company migrated yet), `UnknownSourceUser`,
    /// `UnknownCloudUser`, `Conflict` (two mappings name the same cloud user, or the name is
    /// taken) or `TooLong` (the on-premises name does not fit the cloud's `User Name`).
    pub state: String,
    /// More about the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
