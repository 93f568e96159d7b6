//! The labels and annotations the controller puts on the runs it creates. A person never has
//! to set them; a run made by hand simply has none.

/// Annotation on a run that names the `spec.runRequest` token it was started for.
pub const RUN_REQUEST: &str = "cloudmigrate.io/run-request";
/// Annotation on a run: Scheduled, Manual or Immediate.
pub const TRIGGER: &str = "cloudmigrate.io/trigger";
/// Annotation on a scheduled run: the due time it was started for (RFC 3339, UTC).
pub const SCHEDULED_TIME: &str = "cloudmigrate.io/scheduled-time";
/// Whether `value` fits a label value (at most 63 characters); a schedule's name that does
/// not is left out of the labels that would carry it.
pub fn fits_label(value: &str) -> bool {
    value.len() <= 63
}

/// Label on every run the controller creates, with its schedule's name (when it fits a label
/// value).
pub const SCHEDULE_LABEL: &str = "cloudmigrate.io/schedule";

/// Label on a runtime key Secret, with its schedule's name (when it fits a label value):
/// the controller watches only the Secrets that carry it.
pub const RUNTIME_KEY_LABEL: &str = "cloudmigrate.io/runtime-key";
/// Annotation on a runtime key Secret: the fingerprint of the key it holds.
pub const KEY_FINGERPRINT: &str = "cloudmigrate.io/key-fingerprint";
/// Annotation on a runtime key Secret: the fingerprint of the key the login role has. It
/// differs from `KEY_FINGERPRINT` between storing a new key and setting it on the role.
pub const APPLIED_FINGERPRINT: &str = "cloudmigrate.io/applied-fingerprint";
/// Annotation on a runtime key Secret: the target (scheme, host, port and database) whose
/// role has the key; another target in the schedule gets the role made there.
pub const APPLIED_TO: &str = "cloudmigrate.io/applied-to";
/// Annotation on a runtime key Secret: when its key was generated (RFC 3339, UTC).
pub const KEY_ROTATED_AT: &str = "cloudmigrate.io/rotated-at";
/// Annotation on a runtime key Secret: the uid of the RuntimeKeyRotation that stored its key.
pub const KEY_ROTATION: &str = "cloudmigrate.io/rotation";
