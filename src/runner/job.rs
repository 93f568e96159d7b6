//! The Job runner: one indexed batch/v1 Job per run attempt, `completions = parallelism =
//! runtime.workers`; each pod runs `cloudmigrate replicate` on its share of the tables.

use super::FINAL_WORD;
use crate::api::run::MigrationRun;
use crate::api::schedule::{MigrationSchedule, Runtime};
use k8s_openapi::api::batch::v1::{Job, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EnvVar, EnvVarSource, LocalObjectReference, ObjectFieldSelector,
    PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecurityContext,
};
use kube::api::ObjectMeta;
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;

/// The image the workers run when neither the schedule nor the controller's environment
/// names one: this build's version. The Helm chart sets CLOUDMIGRATE_WORKER_IMAGE to the
/// controller's own image, so both come from one value.
pub const DEFAULT_IMAGE: &str = concat!(
    "ghcr.io/cloudmigrate/cloudmigrate:",
    env!("CARGO_PKG_VERSION")
);

/// The service account of worker pods unless the controller is told otherwise
/// (CLOUDMIGRATE_WORKER_SERVICE_ACCOUNT): it needs get on migrationruns, migrationschedules and
/// companyselections, and patch on migrationruns/status. Never Secrets: the kubelet hands the
/// pods their passwords and CAs (`logins::pod_env`).
pub const DEFAULT_SERVICE_ACCOUNT: &str = "cloudmigrate-worker";

/// Label on a run's Jobs and pods with the run's name (when it fits a label value).
pub const RUN_LABEL: &str = "cloudmigrate.io/run";

/// The label selector of every worker Job cloudmigrate creates.
pub const WORKER_SELECTOR: &str =
    "app.kubernetes.io/name=cloudmigrate,app.kubernetes.io/component=worker";

/// The image of worker pods when the schedule names none: CLOUDMIGRATE_WORKER_IMAGE, else
/// `DEFAULT_IMAGE`.
pub fn default_image() -> String {
    std::env::var("CLOUDMIGRATE_WORKER_IMAGE")
        .ok()
        .filter(|i| !i.is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// The image pull secrets of worker pods: the schedule's `runtime.imagePullSecrets`, else the
/// names in CLOUDMIGRATE_WORKER_IMAGE_PULL_SECRETS (comma-separated; the chart's
/// `workers.imagePullSecrets`).
pub fn image_pull_secrets(rt: &Runtime) -> Vec<LocalObjectReference> {
    match &rt.image_pull_secrets {
        Some(secrets) => secrets.clone(),
        None => std::env::var("CLOUDMIGRATE_WORKER_IMAGE_PULL_SECRETS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| LocalObjectReference { name: n.into() })
            .collect(),
    }
}

/// The service account of worker pods: CLOUDMIGRATE_WORKER_SERVICE_ACCOUNT, else
/// `DEFAULT_SERVICE_ACCOUNT`.
pub fn service_account() -> String {
    std::env::var("CLOUDMIGRATE_WORKER_SERVICE_ACCOUNT")
        .unwrap_or_else(|_| DEFAULT_SERVICE_ACCOUNT.to_string())
}

/// The labels of a Job and its pods: cloudmigrate's name, the component (`worker`,
/// `initializer`), and the owner's name under `owner_label` when it fits a label value.
pub fn labels(component: &str, owner_label: &str, owner: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/name".to_string(),
        "cloudmigrate".to_string(),
    );
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        component.to_string(),
    );
    if owner.len() <= 63 {
        labels.insert(owner_label.to_string(), owner.to_string());
    }
    labels
}

/// The Job of one attempt of a run: `<run>-<attempt>`, owned by the run.
pub fn job_name(run: &str, attempt: i32) -> String {
    format!("{run}-{attempt}")
}

/// Builds the Job of a run attempt. Pure.
pub fn job_for(
    run: &MigrationRun,
    schedule: &MigrationSchedule,
    attempt: i32,
    service_account: &str,
) -> Job {
    let rt = &schedule.spec.runtime;
    let workers = super::workers(&schedule.spec);
    let name = run.name_any();
    let namespace = run.namespace().unwrap_or_default();
    let labels = labels("worker", RUN_LABEL, &name);
    let container = Container {
        name: "worker".into(),
        args: Some(vec![
            "replicate".into(),
            "--run".into(),
            format!("{namespace}/{name}"),
            "--workers".into(),
            workers.to_string(),
            "--attempt".into(),
            attempt.to_string(),
        ]),
        env: Some(
            std::iter::once(EnvVar {
                // Kubernetes sets JOB_COMPLETION_INDEX too; the annotation is spelled out so that
                // the index reaches the worker on every version.
                name: "CLOUDMIGRATE_WORKER_INDEX".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path:
                            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                                .into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .chain(crate::logins::pod_env(schedule))
            .collect(),
        ),
        ..Default::default()
    };
    let mut job = worker_job(rt, service_account, container);
    job.metadata = ObjectMeta {
        name: Some(job_name(&name, attempt)),
        namespace: Some(namespace),
        labels: Some(labels.clone()),
        owner_references: run.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    if let Some(spec) = job.spec.as_mut() {
        spec.completion_mode = Some("Indexed".into());
        spec.completions = Some(workers);
        spec.parallelism = Some(workers);
        spec.template.metadata = Some(ObjectMeta {
            labels: Some(labels),
            ..Default::default()
        });
    }
    job
}

/// The Job around one container of cloudmigrate, as the schedule's runtime asks: the image and
/// its pull secrets, resources, node selector, back-off and deadline, the service account, and
/// a locked-down security context.
/// The caller names it and sets its completions.
pub fn worker_job(rt: &Runtime, service_account: &str, mut container: Container) -> Job {
    container.image = Some(rt.image.clone().unwrap_or_else(default_image));
    container.resources = rt.resources.clone();
    container.security_context = Some(SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    });
    Job {
        metadata: ObjectMeta::default(),
        spec: Some(JobSpec {
            backoff_limit: Some(rt.backoff_limit),
            active_deadline_seconds: rt.active_deadline_seconds,
            template: PodTemplateSpec {
                metadata: None,
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    service_account_name: Some(service_account.to_string()),
                    image_pull_secrets: Some(image_pull_secrets(rt)).filter(|s| !s.is_empty()),
                    node_selector: rt.node_selector.clone().filter(|s| !s.is_empty()),
                    // The worker finishes its tables in progress on SIGTERM.
                    termination_grace_period_seconds: Some(300),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Creates a Job. One that exists already (created before a restart) counts as created. The
/// API server's refusal (4xx: invalid, forbidden) is returned as `Err(Ok((code, message)))`
/// for the caller to report; other failures as `Err(Err(error))`.
pub async fn create(
    client: &kube::Client,
    namespace: &str,
    job: &Job,
) -> Result<(), Result<(u16, String), kube::Error>> {
    match kube::Api::<Job>::namespaced(client.clone(), namespace)
        .create(&kube::api::PostParams::default(), job)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(kube::Error::Api(e)) if (400..500).contains(&e.code) => Err(Ok((e.code, e.message))),
        Err(e) => Err(Err(e)),
    }
}

/// Whether a Job still works on its run: it has not failed for good, and it has not completed
/// so long ago that its workers' last words should have arrived.
pub fn job_alive(status: Option<&JobStatus>, now: chrono::DateTime<chrono::Utc>) -> bool {
    let Some(s) = status else { return true };
    let conditions = s.conditions.as_deref().unwrap_or_default();
    let failed = conditions
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True");
    let completed_long_ago = conditions.iter().any(|c| {
        c.type_ == "Complete"
            && c.status == "True"
            && c.last_transition_time.as_ref().is_some_and(|t| {
                (now - crate::clock::utc(t))
                    .to_std()
                    .is_ok_and(|d| d > FINAL_WORD)
            })
    });
    !failed && !completed_long_ago
}

/// Whether a Job has ended: its `Complete` or `Failed` condition is True.
pub fn job_ended(status: Option<&JobStatus>) -> bool {
    status
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Why a Job failed for good (its `Failed` condition), naming the Job; None while it has not.
pub fn job_failure(name: &str, status: Option<&JobStatus>) -> Option<String> {
    let failed = status?
        .conditions
        .as_deref()?
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")?;
    Some(format!(
        "Job {name} failed ({}): {}",
        failed.reason.as_deref().unwrap_or("no reason given"),
        failed.message.as_deref().unwrap_or("no message")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_spec_of_a_run() {
        let schedule: MigrationSchedule = serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop"},
            "spec": {
                "source": {"url": "postgres://erp.example/nav",
                           "passwordSecretRef": {"name": "erp-db"}},
                "target": {"url": "postgres://cloud.example/bc",
                           "passwordSecretRef": {"name": "cloud-admin"}},
                "runtime": {"runner": "Job", "workers": 3, "backoffLimit": 4,
                            "activeDeadlineSeconds": 7200, "image": "registry.example/cm:1",
                            "imagePullSecrets": [{"name": "regcred"}],
                            "nodeSelector": {"pool": "migration"},
                            "resources": {"limits": {"memory": "512Mi"}}}
            }
        }))
        .unwrap();
        let run: MigrationRun = serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
            "metadata": {"name": "erp-202605010200", "namespace": "shop", "uid": "r-1"},
            "spec": {"scheduleRef": {"name": "erp"}}
        }))
        .unwrap();
        let job = job_for(&run, &schedule, 2, "cm-worker");
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["metadata"]["name"], "erp-202605010200-2");
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "r-1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "MigrationRun");
        assert_eq!(v["metadata"]["labels"][RUN_LABEL], "erp-202605010200");
        let spec = &v["spec"];
        assert_eq!(spec["completionMode"], "Indexed");
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone()),
            (3.into(), 3.into())
        );
        assert_eq!(spec["backoffLimit"], 4);
        assert_eq!(spec["activeDeadlineSeconds"], 7200);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "cm-worker");
        assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
        assert_eq!(pod["nodeSelector"]["pool"], "migration");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        let c = &pod["containers"][0];
        assert_eq!(c["image"], "registry.example/cm:1");
        assert_eq!(
            c["args"],
            serde_json::json!([
                "replicate",
                "--run",
                "shop/erp-202605010200",
                "--workers",
                "3",
                "--attempt",
                "2"
            ])
        );
        assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        assert_eq!(
            c["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
            "metadata.annotations['batch.kubernetes.io/job-completion-index']"
        );
        // The passwords come from the kubelet: the source's, and the runtime key, never the
        // target's admin password.
        let from = |name: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone())
        };
        assert_eq!(from("CLOUDMIGRATE_SOURCE_PASSWORD"), Some("erp-db".into()));
        assert_eq!(
            from("CLOUDMIGRATE_TARGET_PASSWORD"),
            Some("erp-runtime-key".into())
        );
        assert!(
            !c["env"].to_string().contains("cloud-admin"),
            "{}",
            c["env"]
        );
    }

    #[test]
    fn a_failed_job_is_not_alive() {
        let failed: JobStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Failed", "status": "True"}]
        }))
        .unwrap();
        let now = chrono::Utc::now();
        assert!(!job_alive(Some(&failed), now));
        assert!(job_alive(Some(&JobStatus::default()), now));
        assert!(job_alive(None, now));
        // Complete: alive while the workers' last status writes may still be on their way.
        let complete: JobStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Complete", "status": "True",
                            "lastTransitionTime": "2026-05-01T02:00:00Z"}]
        }))
        .unwrap();
        let at = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        assert!(job_alive(Some(&complete), at("2026-05-01T02:00:30Z")));
        assert!(!job_alive(Some(&complete), at("2026-05-01T02:05:00Z")));
    }

    #[test]
    fn a_failed_job_says_why_and_a_complete_one_says_nothing() {
        let failed: JobStatus = serde_json::from_value(serde_json::json!({
            "conditions": [
                {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded"},
                {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                 "message": "Job has reached the specified backoff limit"}
            ]
        }))
        .unwrap();
        assert_eq!(
            job_failure("erp-1", Some(&failed)).as_deref(),
            Some(
                "Job erp-1 failed (BackoffLimitExceeded): Job has reached the specified backoff limit"
            )
        );
        let complete: JobStatus = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "Complete", "status": "True"}]
        }))
        .unwrap();
        assert_eq!(job_failure("erp-1", Some(&complete)), None);
        assert_eq!(job_failure("erp-1", None), None);
    }
}
