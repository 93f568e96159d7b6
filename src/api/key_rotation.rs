//! RuntimeKeyRotation: a new key for the replication runtime of a schedule.

use super::common::{Conditions, ScheduleRef, conditions_list_map};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which schedule gets a new runtime key (Reset Runtime Service Key). It cannot be changed once
/// created.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "cloudmigrate.io",
    version = "v1alpha1",
    kind = "RuntimeKeyRotation",
    namespaced,
    shortname = "rkr",
    category = "cloudmigrate",
    status = "RuntimeKeyRotationStatus",
    doc = "Generates a new runtime key for a schedule: the credential its runs use to write to \
           the target. The new key goes into the schedule's key Secret and the old one stops \
           working. One-shot; the status records the new key's fingerprint, never the key. Not \
           acted on yet: no controller handles a RuntimeKeyRotation so far.",
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
#[x_kube(validation = Rule::new("self == oldSelf").message("a RuntimeKeyRotation cannot be changed: create a new one to rotate again"))]
pub struct RuntimeKeyRotationSpec {
    /// The MigrationSchedule whose runtime key is replaced.
    pub schedule_ref: ScheduleRef,
}

/// The outcome of a RuntimeKeyRotation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeKeyRotationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Succeeded`: Unknown while waiting or working, then True or False for good.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(transform = conditions_list_map)]
    pub conditions: Conditions,
    /// The Secret that holds the new key. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// SHA-256 fingerprint of the new key. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// When the new key took effect. Not written yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Time>,
}
