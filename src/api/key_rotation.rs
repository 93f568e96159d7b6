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
           the target. The new key goes into the schedule's key Secret before the login role \
           takes it, and the old one stops working. One-shot; the status records the new \
           key's fingerprint, never the key.",
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
    printcolumn(name = "Stage", type_ = "string", json_path = ".status.stage"),
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
    /// How far the rotation got: `Prepared` (the new key is in the Secret, the old one still
    /// logs in), `Rotated` (the login role has the new key) and `OldKeyRevoked` (a login with
    /// the old key was tried and refused, and the old key left the Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<RotationStage>,
    /// The Secret that holds the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// The new key's fingerprint: `sha256:` and 16 hex digits of its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// When the work started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the login role took the new key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotated_at: Option<Time>,
    /// When the rotation ended, succeeded or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
}

/// The stages of a rotation, in order.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
pub enum RotationStage {
    Prepared,
    Rotated,
    OldKeyRevoked,
}
