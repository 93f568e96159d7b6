//! Check for Update: which cloudmigrate version a schedule's runs use (the tag of the runtime
//! image, or the controller itself for the in-process runner), against the newest release in
//! the image's repository (`controller::releases`, read from the registry), else the
//! controller's own version. Pure.

use crate::api::schedule::RuntimeStatus;
use crate::controller::releases::Answer;

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

pub use crate::registry::repository;

/// What Check for Update compares.
#[derive(Clone, Copy, Debug)]
pub struct UpdateFacts<'a> {
    /// The runtime image: `spec.runtime.image`, else the workers' default image.
    pub image: &'a str,
    /// Whether the schedule names its image (`spec.runtime.image`).
    pub pinned: bool,
    /// The in-process runner: runs use the controller itself.
    pub in_process: bool,
    pub controller: &'a str,
    /// What the registry said of the image's repository; None while it has not answered.
    pub registry: Option<&'a Answer>,
}

/// The runtime versions of a schedule, and the condition that says whether an update is
/// available: (status fields, condition status, reason, message). The key fields of `current`
/// are kept. A registry that cannot be read is the reason (`RegistryUnreachable`,
/// `RegistryRefused`) unless an update is known all the same (an image older than the
/// controller).
pub fn check(
    current: Option<&RuntimeStatus>,
    f: UpdateFacts<'_>,
) -> (RuntimeStatus, bool, &'static str, String) {
    let mut status = current.cloned().unwrap_or_default();
    let repo = repository(f.image);
    let controller = semver::Version::parse(f.controller).ok();
    let released = match f.registry {
        Some(Ok(Some(v))) => Some(v.clone()),
        _ => None,
    };
    let latest = match (&released, &controller) {
        (Some(r), _) => Some(r.clone()),
        (None, c) => c.clone(),
    };
    status.latest_version = latest
        .as_ref()
        .map(|v| v.to_string())
        .or_else(|| Some(f.controller.to_string()));
    let used = if f.in_process {
        controller.clone()
    } else {
        image_version(f.image)
    };
    let registry_said = match f.registry {
        None => format!(" (the registry of {repo} has not answered yet)"),
        Some(Ok(Some(v))) => format!(" (the newest release in {repo} is {v})"),
        Some(Ok(None)) => format!(" ({repo} has no release tag)"),
        Some(Err(e)) => format!(" (the tags of {repo} could not be read: {e})"),
    };
    let Some(used) = used else {
        status.version_in_use = Some(
            f.image
                .rsplit('/')
                .next()
                .and_then(|n| n.split_once([':', '@']).map(|(_, t)| t.to_string()))
                .unwrap_or_else(|| "unknown".into()),
        );
        status.update_available = false;
        return (
            status,
            false,
            "UnknownVersion",
            format!(
                "the runtime image {} names no version (a tag such as :{}); whether an update \
                 is available cannot be told",
                f.image, f.controller
            ),
        );
    };
    status.version_in_use = Some(used.to_string());
    let newer = latest.as_ref().filter(|l| **l > used);
    status.update_available = newer.is_some();
    match newer {
        Some(latest) => {
            let how = if f.in_process {
                format!(
                    "upgrade the controller, which runs in-process runs: helm upgrade \
                     --set image.tag={latest}"
                )
            } else {
                format!(
                    "set spec.runtime.image to {repo}:{latest} (`cloudmigrate update SCHEDULE` \
                     does it; with GitOps, commit that change){}",
                    if f.pinned {
                        ""
                    } else {
                        ", or upgrade the controller, whose image the workers run"
                    }
                )
            };
            (
                status,
                true,
                "NewerVersion",
                format!("runs use {used}, and {latest} is out{registry_said}: {how}"),
            )
        }
        None => match f.registry {
            Some(Err(e)) => (
                status,
                false,
                e.reason(),
                format!(
                    "runs use {used}; whether a newer release is out cannot be told{registry_said}"
                ),
            ),
            _ => (
                status,
                false,
                "UpToDate",
                format!("runs use {used}, the newest known{registry_said}"),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::RegistryError;

    fn facts<'a>(image: &'a str, registry: Option<&'a Answer>) -> UpdateFacts<'a> {
        UpdateFacts {
            image,
            pinned: true,
            in_process: false,
            controller: "0.3.0",
            registry,
        }
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
        assert_eq!(
            repository("registry.local:5000/cm:0.1.0"),
            "registry.local:5000/cm"
        );
        assert_eq!(
            repository("registry.local:5000/cm"),
            "registry.local:5000/cm"
        );
    }

    #[test]
    fn a_newer_release_in_the_registry_is_an_update_and_says_how() {
        let newest: Answer = Ok(Some(semver::Version::new(0, 4, 1)));
        let f = facts("registry.local:5000/cm:0.3.0", Some(&newest));
        let (status, available, reason, message) = check(None, f);
        assert!(available && status.update_available);
        assert_eq!(reason, "NewerVersion");
        assert_eq!(status.version_in_use.as_deref(), Some("0.3.0"));
        assert_eq!(status.latest_version.as_deref(), Some("0.4.1"));
        assert!(
            message.contains("set spec.runtime.image to registry.local:5000/cm:0.4.1"),
            "{message}"
        );
        assert!(message.contains("cloudmigrate update"), "{message}");
        // Without an answer yet, the controller's version is what is known.
        let (status, available, reason, message) =
            check(None, facts("registry.local:5000/cm:0.1.0", None));
        assert!(available);
        assert_eq!(
            (reason, status.latest_version.as_deref()),
            ("NewerVersion", Some("0.3.0"))
        );
        assert!(message.contains("has not answered yet"), "{message}");
        let (_, available, reason, _) = check(None, facts("cm:0.4.1", Some(&newest)));
        assert!(!available);
        assert_eq!(reason, "UpToDate");
    }

    #[test]
    fn a_registry_that_refuses_is_a_reason_not_a_failure() {
        let refused: Answer = Err(RegistryError::Refused {
            status: 401,
            message: "a login is needed".into(),
        });
        let (status, available, reason, message) =
            check(None, facts("registry.local:5000/cm:0.3.0", Some(&refused)));
        assert!(!available);
        assert_eq!(reason, "RegistryRefused");
        assert_eq!(status.latest_version.as_deref(), Some("0.3.0"));
        assert!(
            message.contains("could not be read") && message.contains("401"),
            "{message}"
        );
        let down: Answer = Err(RegistryError::Unreachable("connection refused".into()));
        assert_eq!(
            check(None, facts("cm:0.3.0", Some(&down))).2,
            "RegistryUnreachable"
        );
        // An update the controller's version shows is still said.
        assert_eq!(
            check(None, facts("cm:0.1.0", Some(&down))).2,
            "NewerVersion"
        );
    }

    #[test]
    fn the_controllers_own_version_and_unknown_tags() {
        let newest: Answer = Ok(Some(semver::Version::new(0, 4, 0)));
        let mut f = facts("ghcr.io/cloudmigrate/cloudmigrate:0.3.0", Some(&newest));
        f.in_process = true;
        let (status, available, _, message) = check(None, f);
        assert!(available);
        assert_eq!(status.version_in_use.as_deref(), Some("0.3.0"));
        assert!(
            message.contains("helm upgrade --set image.tag=0.4.0"),
            "{message}"
        );
        let (status, available, reason, _) = check(None, facts("cm:latest", None));
        assert!(!available);
        assert_eq!(reason, "UnknownVersion");
        assert_eq!(status.version_in_use.as_deref(), Some("latest"));
    }
}
