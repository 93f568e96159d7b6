//! Why a reconcile failed, one variant per step of it, and what the controller does next:
//! an object that is invalid as it stands waits for a change; a failed API call is tried
//! again, later each time.

use super::context::Context;
use kube::Resource;
use kube::runtime::controller::Action;
use std::sync::Arc;
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
    /// Writing the object's own status.
    #[error("writing the status: {0}")]
    Status(#[source] kube::Error),
}

impl Error {
    /// The step that failed, as the `error` label of the failure metric.
    pub fn step(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid",
            Error::Read(..) => "read",
            Error::Act(..) => "act",
            Error::Status(_) => "status",
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

/// What the controller does after a failed reconcile of `obj`.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    obj: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let r = obj.object_ref(&());
    let kind = r.kind.clone().unwrap_or_default();
    let key = format!(
        "{kind}/{}/{}",
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default()
    );
    ctx.metrics
        .errors
        .get_or_create(&super::metrics::Metrics::error(&kind, error.step()))
        .inc();
    match error {
        Error::Invalid(_) => {
            tracing::warn!(%error, "the object is invalid; waiting for it to change");
            Action::await_change()
        }
        _ => {
            let failures = ctx.failed(&key);
            let wait = super::jitter::spread(backoff(failures), &key);
            tracing::warn!(%error, retry_in = ?wait, "reconcile failed; trying again");
            Action::requeue(wait)
        }
    }
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
