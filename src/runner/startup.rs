//! Why the worker pods of a Job have not started, read from what the cluster says about them:
//! each pod's scheduling condition and container waiting reason, and the Job's `FailedCreate`
//! events (a pod the API server refused: a missing ServiceAccount, a quota, Pod Security).
//! Each cause comes with the fix, in the words of the schedule's fields. Pure.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event, Pod};
use std::sync::Arc;

/// The label the Job controller puts on a Job's pods, with the Job's name.
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
/// The same label before Kubernetes 1.27.
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Workers that have not started, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blocked {
    /// Since when they wait: the creation of the oldest pod that waits, or the first
    /// `FailedCreate` event after the Job's newest pod.
    pub since: DateTime<Utc>,
    /// The cluster's own reason: `ErrImagePull`, `ImagePullBackOff`,
    /// `CreateContainerConfigError`, `Unschedulable`, `FailedCreate`, or `Pending` when the
    /// cluster names none yet (the image is still being pulled, for one).
    pub cause: String,
    /// What happens and how to fix it, for the run's `Running` condition.
    pub message: String,
    /// False for `Pending` with no reason: normal for a while, reported only at the deadline.
    pub known: bool,
}

/// What the messages name: the Job, its namespace, and what its pods were given.
#[derive(Clone, Debug)]
pub struct JobFacts<'a> {
    pub namespace: &'a str,
    pub job: &'a str,
    pub service_account: &'a str,
    /// The image pull secrets the pods carry.
    pub pull_secrets: &'a [String],
}

/// Why the Job's workers have not started, from its pods and its `FailedCreate` events; None
/// when every pod it has runs or ran, and no pod was refused since its newest one. A pod with
/// a known cause wins over one that is only `Pending`; among equals, the oldest. A Job with no
/// pod and no refusal waits too, since `created`, for no known cause.
pub fn blocked(
    facts: &JobFacts<'_>,
    created: Option<DateTime<Utc>>,
    pods: &[Arc<Pod>],
    events: &[Arc<Event>],
) -> Option<Blocked> {
    let mut waiting: Vec<Blocked> = pods.iter().filter_map(|p| pod_blocked(facts, p)).collect();
    waiting.sort_by_key(|b| (!b.known, b.since));
    if let Some(b) = waiting.into_iter().next() {
        return Some(b);
    }
    let newest_pod = pods
        .iter()
        .filter_map(|p| p.metadata.creation_timestamp.as_ref())
        .map(crate::clock::utc)
        .max();
    let refused = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedCreate"))
        .filter_map(|e| Some((event_times(e)?, e)))
        .filter(|((_, last), _)| newest_pod.is_none_or(|p| *last > p))
        .min_by_key(|((first, _), _)| *first);
    let Some(refused) = refused else {
        return match (pods.is_empty(), created) {
            (true, Some(since)) => Some(Blocked {
                since,
                cause: "Pending".into(),
                message: format!("the Job {} has no pod yet", facts.job),
                known: false,
            }),
            _ => None,
        };
    };
    let ((since, _), event) = refused;
    let message = event.message.as_deref().unwrap_or("no message");
    Some(Blocked {
        since,
        cause: "FailedCreate".into(),
        message: refused_message(facts, message),
        known: true,
    })
}

/// When an event was first and last seen.
fn event_times(e: &Event) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let created = e
        .metadata
        .creation_timestamp
        .as_ref()
        .map(crate::clock::utc);
    let first = e
        .first_timestamp
        .as_ref()
        .map(crate::clock::utc)
        .or_else(|| e.event_time.as_ref().map(|t| crate::clock::utc_of(&t.0)))
        .or(created)?;
    let last = e
        .last_timestamp
        .as_ref()
        .map(crate::clock::utc)
        .or_else(|| {
            e.series
                .as_ref()
                .and_then(|s| s.last_observed_time.as_ref())
                .map(|t| crate::clock::utc_of(&t.0))
        })
        .unwrap_or(first);
    Some((first, last))
}

/// The message of a pod the API server refused to create, with the fix.
fn refused_message(facts: &JobFacts<'_>, message: &str) -> String {
    let (ns, job, sa) = (facts.namespace, facts.job, facts.service_account);
    let fix = if message.contains("error looking up service account") {
        format!(
            "the namespace {ns} has no ServiceAccount {sa}: add {ns} to the Helm chart's \
             workers.namespaces (helm upgrade), which makes it and its RoleBinding, or make \
             them yourself: kubectl create serviceaccount {sa} -n {ns} && kubectl create \
             rolebinding {sa} -n {ns} --clusterrole=<release>-worker --serviceaccount={ns}:{sa} \
             (the ClusterRole is cloudmigrate-worker for a release named cloudmigrate)"
        )
    } else if message.contains("exceeded quota") {
        format!(
            "a ResourceQuota of namespace {ns} refuses the worker pods: raise it, or lower \
             spec.runtime.resources or spec.runtime.workers"
        )
    } else if message.contains("violates PodSecurity") {
        format!(
            "the Pod Security admission of namespace {ns} refuses the worker pods; they run as \
             non-root, without privilege escalation or capabilities, on a read-only root \
             filesystem with the RuntimeDefault seccomp profile, which the `restricted` level \
             allows: look at the namespace's pod-security.kubernetes.io labels and the \
             cluster's admission configuration"
        )
    } else {
        "fix what it names, in the schedule's spec.runtime or the namespace".to_string()
    };
    format!("the Job {job} cannot create its worker pods: {message}; {fix}")
}

/// Why one pod has not started; None when it runs or has ended.
fn pod_blocked(facts: &JobFacts<'_>, pod: &Pod) -> Option<Blocked> {
    let status = pod.status.as_ref();
    let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or("Pending");
    if phase != "Pending" || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let since = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map(crate::clock::utc)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let blocked = |cause: &str, message: String| Blocked {
        since,
        cause: cause.to_string(),
        message,
        known: true,
    };
    let unscheduled = status
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False");
    if let Some(c) = unscheduled {
        let reason = c.reason.as_deref().unwrap_or("Unschedulable");
        return Some(blocked(
            reason,
            format!(
                "worker pod {name} cannot be scheduled ({reason}): {}; make room on the nodes, \
                 or change spec.runtime.nodeSelector or spec.runtime.resources",
                c.message
                    .as_deref()
                    .unwrap_or("the scheduler gave no message")
            ),
        ));
    }
    let waiting = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .find_map(|c| {
            let w = c.state.as_ref()?.waiting.as_ref()?;
            Some((c, w.reason.clone()?, w.message.clone().unwrap_or_default()))
        });
    let Some((container, reason, message)) =
        waiting.filter(|(_, r, _)| !matches!(r.as_str(), "ContainerCreating" | "PodInitializing"))
    else {
        return Some(Blocked {
            since,
            cause: "Pending".into(),
            message: format!(
                "worker pod {name} is still Pending, with no reason given by the cluster (its \
                 image may still be on its way)"
            ),
            known: false,
        });
    };
    let said = if message.is_empty() {
        reason.clone()
    } else {
        format!("{reason}: {message}")
    };
    let message = match reason.as_str() {
        "ErrImagePull" | "ImagePullBackOff" | "InvalidImageName" | "ErrImageNeverPull" => {
            let image = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.iter().find(|c| c.name == container.name))
                .and_then(|c| c.image.clone())
                .unwrap_or_else(|| container.image.clone());
            let secrets = match facts.pull_secrets {
                [] => "none now".to_string(),
                s => format!("now {}", s.join(", ")),
            };
            format!(
                "worker pod {name} cannot pull image {image:?} ({said}); check that this tag \
                 exists (spec.runtime.image, else the controller's image), and if the registry \
                 needs a login, name a Secret of type kubernetes.io/dockerconfigjson in \
                 spec.runtime.imagePullSecrets or the chart's workers.imagePullSecrets \
                 ({secrets})"
            )
        }
        "CreateContainerConfigError" => format!(
            "worker pod {name} cannot start ({said}); create the Secret or key it names in \
             namespace {}, or correct the schedule's reference to it (spec.source, spec.target, \
             spec.tls)",
            facts.namespace
        ),
        _ => format!("worker pod {name} cannot start ({said})"),
    };
    Some(blocked(&reason, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts() -> JobFacts<'static> {
        JobFacts {
            namespace: "shop",
            job: "erp-1-1",
            service_account: "cloudmigrate-worker",
            pull_secrets: &[],
        }
    }

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    fn waiting(name: &str, created: &str, reason: &str, message: &str) -> Arc<Pod> {
        pod(json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"containers": [{"name": "worker", "image": "registry.example/cm:9"}]},
            "status": {"phase": "Pending", "containerStatuses": [{
                "name": "worker", "image": "registry.example/cm:9", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"waiting": {"reason": reason, "message": message}}}]}
        }))
    }

    #[test]
    fn an_image_that_cannot_be_pulled_is_named_with_the_secret_to_set() {
        let p = waiting(
            "erp-1-1-0-abcde",
            "2026-12-04T10:00:00Z",
            "ImagePullBackOff",
            "Back-off pulling image \"registry.example/cm:9\"",
        );
        let b = blocked(&facts(), None, &[p], &[]).unwrap();
        assert_eq!(b.cause, "ImagePullBackOff");
        assert!(b.known);
        assert_eq!(b.since.to_rfc3339(), "2026-12-04T10:00:00+00:00");
        assert!(
            b.message.contains("\"registry.example/cm:9\""),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("spec.runtime.imagePullSecrets") && b.message.contains("none now"),
            "{}",
            b.message
        );
    }

    #[test]
    fn a_missing_secret_and_an_unschedulable_pod_say_so() {
        let p = waiting(
            "erp-1-1-0-abcde",
            "2026-12-04T10:00:00Z",
            "CreateContainerConfigError",
            "secret \"erp-db\" not found",
        );
        let b = blocked(&facts(), None, &[p], &[]).unwrap();
        assert_eq!(b.cause, "CreateContainerConfigError");
        assert!(
            b.message.contains("secret \"erp-db\" not found"),
            "{}",
            b.message
        );
        let p = pod(json!({
            "metadata": {"name": "erp-1-1-0-x", "creationTimestamp": "2026-12-04T10:00:00Z"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled",
                "status": "False", "reason": "Unschedulable",
                "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}]}
        }));
        let b = blocked(&facts(), None, &[p], &[]).unwrap();
        assert_eq!(b.cause, "Unschedulable");
        assert!(
            b.message.contains("0/3 nodes are available"),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("spec.runtime.nodeSelector"),
            "{}",
            b.message
        );
    }

    #[test]
    fn a_pod_that_runs_or_only_waits_for_its_image_is_not_a_known_cause() {
        let running = pod(json!({"metadata": {"name": "a"}, "status": {"phase": "Running"}}));
        assert_eq!(
            blocked(&facts(), None, std::slice::from_ref(&running), &[]),
            None
        );
        let creating = waiting("b", "2026-12-04T10:00:00Z", "ContainerCreating", "");
        let b = blocked(&facts(), None, &[running, creating.clone()], &[]).unwrap();
        assert!(!b.known);
        assert_eq!(b.cause, "Pending");
        // A known cause wins over a plain Pending, even a newer one.
        let pull = waiting("c", "2026-12-04T11:00:00Z", "ErrImagePull", "not found");
        assert_eq!(
            blocked(&facts(), None, &[creating, pull], &[])
                .unwrap()
                .cause,
            "ErrImagePull"
        );
    }

    #[test]
    fn a_refused_pod_is_read_from_the_jobs_failed_create_events() {
        let event = |first: &str, message: &str| {
            Arc::new(
                serde_json::from_value::<Event>(json!({
                    "metadata": {"name": "erp-1-1.1", "namespace": "shop"},
                    "involvedObject": {"kind": "Job", "name": "erp-1-1"},
                    "reason": "FailedCreate", "message": message,
                    "firstTimestamp": first, "lastTimestamp": first
                }))
                .unwrap(),
            )
        };
        let sa = event(
            "2026-12-04T10:00:05Z",
            "Error creating: pods \"erp-1-1-0-\" is forbidden: error looking up service account \
             shop/cloudmigrate-worker: serviceaccount \"cloudmigrate-worker\" not found",
        );
        let b = blocked(&facts(), None, &[], std::slice::from_ref(&sa)).unwrap();
        assert_eq!(b.cause, "FailedCreate");
        assert!(b.message.contains("workers.namespaces"), "{}", b.message);
        assert!(
            b.message
                .contains("kubectl create serviceaccount cloudmigrate-worker -n shop"),
            "{}",
            b.message
        );
        let quota = event(
            "2026-12-04T10:00:05Z",
            "Error creating: pods \"erp-1-1-0-\" is forbidden: exceeded quota: q, requested: \
             pods=1, used: pods=1, limited: pods=1",
        );
        let b = blocked(&facts(), None, &[], &[quota]).unwrap();
        assert!(b.message.contains("ResourceQuota"), "{}", b.message);
        // No pod and no refusal: waiting since the Job was made, for no known cause.
        let made = chrono::DateTime::parse_from_rfc3339("2026-12-04T10:00:00Z")
            .unwrap()
            .to_utc();
        let b = blocked(&facts(), Some(made), &[], &[]).unwrap();
        assert_eq!(
            (b.cause.as_str(), b.known, b.since),
            ("Pending", false, made)
        );
        // An event from before the newest pod was created is history.
        let done = pod(json!({"metadata": {"name": "erp-1-1-0-a",
            "creationTimestamp": "2026-12-04T10:01:00Z"}, "status": {"phase": "Running"}}));
        assert_eq!(blocked(&facts(), None, &[done], &[sa]), None);
    }
}
