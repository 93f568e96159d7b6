//! CloudReset: clear the cloud data of a schedule and start the migration over.

use super::common::{Conditions, ScheduleRef, conditions_list_map};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which schedule's cloud data to clear (Reset Cloud Data), with a confirmation. It cannot be
/// changed once created.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "CloudReset",
    namespaced,
    shortname = "creset",
    category = "cloudmigrate",
    status = "CloudResetStatus",
    doc = "Clears every migrated table and all replication state in a schedule's cloud target, \
           and resets company initialization; the next run copies everything again. One-shot: \
           it waits until no run is active (no run starts meanwhile), acts once and records \
           the outcome. Tables that no run wrote are never touched.",
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.scheduleRef.name"
    ),
    printcolumn(
        name = "Succeeded",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Succeeded\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Succeeded\")].reason"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a CloudReset cannot be changed: delete it and create a new one"))]
#[x_kube(validation = Rule::new("self.confirm == self.scheduleRef.name").message("confirm must repeat the schedule's name (spec.scheduleRef.name): resetting deletes all migrated data in the cloud target"))]
pub struct CloudResetSpec {
    /// The MigrationSchedule whose cloud data is cleared.
    pub schedule_ref: ScheduleRef,
    /// The schedule's name again, to confirm that all migrated data in its cloud target is to
    /// be deleted.
    pub confirm: String,
}

/// The outcome of a CloudReset.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CloudResetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Succeeded`: Unknown while waiting or working, then True or False for good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// When the reset began clearing data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the reset ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Tables cleared in the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables_cleared: Option<i64>,
    /// Companies whose initialization was reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub companies_reset: Option<i64>,
}
