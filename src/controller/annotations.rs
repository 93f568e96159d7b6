//! The labels and annotations the controller puts on the runs it creates. A person never has
//! to set them; a run made by hand simply has none.

/// Annotation on a run that names the `spec.runRequest` token it was started for.
pub const RUN_REQUEST: &str = "cloudmigrate.io/run-request";
/// Annotation on a run: Scheduled, Manual or Immediate.
pub const TRIGGER: &str = "cloudmigrate.io/trigger";
/// Annotation on a scheduled run: the due time it was started for (RFC 3339, UTC).
pub const SCHEDULED_TIME: &str = "cloudmigrate.io/scheduled-time";
/// Label on every run the controller creates, with its schedule's name (when it fits a label
/// value).
pub const SCHEDULE_LABEL: &str = "cloudmigrate.io/schedule";
