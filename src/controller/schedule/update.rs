//! Check for Update: which cloudmigrate version a schedule's runs use (the Job image's tag, or
//! the controller itself for the in-process runner), against the controller's own version.
//! Pure.

use crate::api::schedule::{MigrationScheduleSpec, Runner, RuntimeStatus};

/// The controller's own version.
pub const CONTROLLER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The version an image reference names by its tag (`registry/cloudmigrate:0.2.0` → `0.2.0`,
/// `v0.2.0` too); None for a digest or a tag that is not a version (`latest`).
pub fn image_version(image: &str) -> Option<semver::Version> {
    let name = image.split('@').next().unwrap_or(image);
    let last = name.rsplit('/').next().unwrap_or(name);
    let (_, tag) = last.split_once(':')?;
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).ok()
}

/// The runtime versions of a schedule, and the condition that says whether an update is
/// available: (status fields, condition status, reason, message). The key fields of `current`
/// are kept.
pub fn check(
    spec: &MigrationScheduleSpec,
    current: Option<&RuntimeStatus>,
    controller: &str,
) -> (RuntimeStatus, bool, &'static str, String) {
    let mut status = current.cloned().unwrap_or_default();
    status.latest_version = Some(controller.to_string());
    let image = match (&spec.runtime.runner, &spec.runtime.image) {
        (Runner::Job, Some(image)) => Some(image.as_str()),
        // The in-process runner is the controller; a Job without an image runs the
        // controller's version.
        _ => None,
    };
    let Some(image) = image else {
        status.version_in_use = Some(controller.to_string());
        status.update_available = false;
        return (
            status,
            false,
            "UpToDate",
            format!("runs use the controller's version {controller}"),
        );
    };
    let latest = semver::Version::parse(controller).ok();
    match (image_version(image), latest) {
        (Some(used), Some(latest)) => {
            status.version_in_use = Some(used.to_string());
            status.update_available = used < latest;
            if status.update_available {
                let repository = image.split('@').next().unwrap_or(image);
                let repository = match repository.rsplit_once(':') {
                    Some((repo, _)) if !repo.ends_with('/') => repo,
                    _ => repository,
                };
                (
                    status,
                    true,
                    "NewerVersion",
                    format!(
                        "runs use {used} (spec.runtime.image {image}); the controller is \
                         {latest}: set spec.runtime.image to {repository}:{latest}, or remove it \
                         to run the controller's version"
                    ),
                )
            } else {
                (
                    status,
                    false,
                    "UpToDate",
                    format!("runs use {used}, as new as the controller ({latest})"),
                )
            }
        }
        _ => {
            status.version_in_use = Some(
                image
                    .rsplit('/')
                    .next()
                    .and_then(|n| n.split_once([':', '@']).map(|(_, t)| t.to_string()))
                    .unwrap_or_else(|| "unknown".into()),
            );
            status.update_available = false;
            (
                status,
                false,
                "UnknownVersion",
                format!(
                    "spec.runtime.image {image} names no version (a tag such as :{controller}); \
                     whether an update is available cannot be told"
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(runtime: serde_json::Value) -> MigrationScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "postgres://cloud.example/bc"},
            "runtime": runtime,
        }))
        .unwrap()
    }

    #[test]
    fn versions_come_from_the_image_tag() {
        assert_eq!(
            image_version("ghcr.io/cloudmigrate/cloudmigrate:0.2.0"),
            Some(semver::Version::new(0, 2, 0))
        );
        assert_eq!(
            image_version("registry.local:5000/cm:v1.2.3"),
            Some(semver::Version::new(1, 2, 3))
        );
        assert_eq!(image_version("registry.local:5000/cm"), None);
        assert_eq!(image_version("cm:latest"), None);
        assert_eq!(image_version("cm@sha256:abcd"), None);
    }

    #[test]
    fn an_older_pinned_image_has_an_update_and_says_how() {
        let s = spec(serde_json::json!({"image": "registry.local:5000/cm:0.1.0"}));
        let (status, available, reason, message) = check(&s, None, "0.3.0");
        assert!(available && status.update_available);
        assert_eq!(reason, "NewerVersion");
        assert_eq!(status.version_in_use.as_deref(), Some("0.1.0"));
        assert_eq!(status.latest_version.as_deref(), Some("0.3.0"));
        assert!(
            message.contains("set spec.runtime.image to registry.local:5000/cm:0.3.0"),
            "{message}"
        );
        let (_, available, reason, _) = check(&s, None, "0.1.0");
        assert!(!available);
        assert_eq!(reason, "UpToDate");
    }

    #[test]
    fn the_controllers_own_version_and_unknown_tags() {
        let s = spec(serde_json::json!({"runner": "InProcess", "image": "cm:0.0.1"}));
        let (status, available, _, _) = check(&s, None, "0.3.0");
        assert!(!available);
        assert_eq!(status.version_in_use.as_deref(), Some("0.3.0"));
        let s = spec(serde_json::json!({"image": "cm:latest"}));
        let (status, available, reason, _) = check(&s, None, "0.3.0");
        assert!(!available);
        assert_eq!(reason, "UnknownVersion");
        assert_eq!(status.version_in_use.as_deref(), Some("latest"));
    }
}
