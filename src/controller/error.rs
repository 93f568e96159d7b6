//! Why a reconcile failed, one variant per step of it, and how long to wait before trying
//! again (`error_policy` in the controller's root acts on it).

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The object cannot be acted on as it is written: nothing changes until it does.
    #[error("{0}")]
    Invalid(String),
    /// Reading an object that this one points at.
    #[error("reading {0}: {1}")]
    Read(String, #[source] kube::Error),
    /// Creating, changing or deleting another object.
    #[error("{0}: {1}")]
    Act(String, #[source] kube::Error),
    /// A database or a Secret that the step needs failed: tried again after a pause.
    #[error("{0}")]
    Retry(String),
    /// Writing the object's own status.
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
    /// A bug: the reconcile panicked. Caught, reported on the object, tried again later.
    #[error("internal error: {0}")]
    Panicked(String),
}

impl Error {
    /// The step that failed, as the `error` label of the failure metric.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Read(..) => "read",
            Error::Act(..) => "act",
            Error::Retry(_) => "retry",
            Error::Status(_) => "status",
            Error::Panicked(_) => "panicked",
        }
    }
}

/// The first retry after a failed API call; each further failure doubles it, up to `MAX_BACKOFF`.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between two tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The wait before try `failures + 1`, before jitter.
pub fn backoff(failures: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1u32.checked_shl(failures.min(16)).unwrap_or(u32::MAX))
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(3), Duration::from_secs(40));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
