//! How a company's initialization executes in a cluster: read the CompanySelection and its
//! schedule, open both databases with the passwords from their Secrets, and initialize the
//! company (`engine::initialize`), which keeps its record in the target up to date. The
//! controller runs it in-process, or as a Job whose pod runs `cloudmigrate initialize
//! --selection`.

use crate::api::CompanySelection;
use crate::api::companies::InitializationState;
use crate::api::schedule::MigrationSchedule;
use crate::engine::initialize;
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use kube::api::ObjectMeta;
use kube::{Api, Resource, ResourceExt};
use sha2::{Digest, Sha256};

/// One initialization: which selection, which company, which attempt.
#[derive(Clone, Debug)]
pub struct InitializationSpec {
    pub namespace: String,
    pub selection: String,
    pub company: String,
    pub attempt: String,
}

/// Label on an initialization's Job with the CompanySelection's name (when it fits).
pub const SELECTION_LABEL: &str = "cloudmigrate.io/company-selection";

/// The Job of one attempt: `<selection>-init-<hash>`, the hash of company and attempt, so that
/// every company and attempt gets its own name within the 63 characters a Job's pods allow.
pub fn job_name(selection: &str, company: &str, attempt: &str) -> String {
    let digest = Sha256::digest(format!("{company}\u{1f}{attempt}").as_bytes());
    let hash = &crate::db::hex(&digest)[..10];
    let mut base: String = selection.chars().take(63 - 6 - 10).collect();
    while base.ends_with(['-', '.']) {
        base.pop();
    }
    format!("{base}-init-{hash}")
}

/// Builds the Job of an initialization attempt, owned by the CompanySelection. Pure.
pub fn job_for(
    selection: &CompanySelection,
    schedule: &MigrationSchedule,
    company: &str,
    attempt: &str,
    service_account: &str,
) -> Job {
    let name = selection.name_any();
    let namespace = selection.namespace().unwrap_or_default();
    let mut job = super::job::worker_job(
        &schedule.spec.runtime,
        service_account,
        Container {
            name: "initializer".into(),
            args: Some(vec![
                "initialize".into(),
                "--selection".into(),
                format!("{namespace}/{name}"),
                "--company".into(),
                company.to_string(),
                "--attempt".into(),
                attempt.to_string(),
            ]),
            // The initializer works in the target as the runs do, as the runtime role: the
            // admin password of spec.target never reaches the pod.
            env: Some(crate::logins::pod_env(schedule)),
            ..Default::default()
        },
    );
    let labels = super::job::labels("initializer", SELECTION_LABEL, &name);
    job.metadata = ObjectMeta {
        name: Some(job_name(&name, company, attempt)),
        namespace: Some(namespace),
        labels: Some(labels.clone()),
        owner_references: selection.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    };
    if let Some(JobSpec {
        template: PodTemplateSpec { metadata, .. },
        completion_mode,
        completions,
        parallelism,
        ..
    }) = job.spec.as_mut()
    {
        *metadata = Some(ObjectMeta {
            labels: Some(labels),
            ..Default::default()
        });
        *completion_mode = None;
        *completions = Some(1);
        *parallelism = Some(1);
    }
    // One attempt is one try: a failure is recorded in the target, and the controller shows it.
    if let Some(spec) = job.spec.as_mut() {
        spec.backoff_limit = Some(0);
        if let Some(PodSpec {
            termination_grace_period_seconds,
            ..
        }) = spec.template.spec.as_mut()
        {
            *termination_grace_period_seconds = Some(30);
        }
    }
    job
}

/// Runs one initialization to its end. Every failure, including one to read the objects or
/// reach the databases, ends in the company's record in the target where the target can be
/// reached; the returned state is the record's.
#[tracing::instrument(skip_all, fields(selection = %format!("{}/{}", s.namespace, s.selection), company = %s.company))]
pub async fn run(client: kube::Client, s: InitializationSpec) -> InitializationState {
    let selections: Api<CompanySelection> = Api::namespaced(client.clone(), &s.namespace);
    let schedules: Api<MigrationSchedule> = Api::namespaced(client.clone(), &s.namespace);
    let objects = async {
        let selection = selections
            .get(&s.selection)
            .await
            .map_err(|e| format!("reading CompanySelection {}: {e}", s.selection))?;
        let schedule_name = &selection.spec.schedule_ref.name;
        let schedule = schedules
            .get(schedule_name)
            .await
            .map_err(|e| format!("reading MigrationSchedule {schedule_name}: {e}"))?;
        Ok::<_, String>((selection, schedule))
    };
    let (selection, schedule) = match objects.await {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "the initializer cannot start");
            return InitializationState::Failed;
        }
    };
    let target = match crate::logins::open_target_as_run(&client, &schedule).await {
        Ok(db) => db,
        Err(e) => {
            tracing::warn!(error = %e, "the initializer cannot reach the target");
            return InitializationState::Failed;
        }
    };
    let source = crate::logins::open_side(&client, &schedule, crate::logins::Side::Source).await;
    let say = |m: &str| tracing::info!(message = m, "initializing");
    let outcome = match &source {
        Ok(source) => {
            initialize::initialize(
                source,
                &target,
                &s.company,
                &s.attempt,
                &selection.spec.initialization_steps,
                &say,
            )
            .await
        }
        Err(e) => Err(crate::db::DbError::Config(e.clone())),
    };
    let state = match outcome {
        Ok(o) => o.state,
        Err(e) => {
            let message = format!("{e}; correct it, then initialize again");
            if let Err(e) = crate::engine::ledger::companies::set_state(
                &target,
                &s.company,
                &s.attempt,
                InitializationState::Failed,
                Some(&message),
                None,
            )
            .await
            {
                tracing::warn!(error = %e, "recording the failure in the target failed");
            }
            InitializationState::Failed
        }
    };
    if let Ok(source) = source {
        source.close().await;
    }
    target.close().await;
    tracing::info!(?state, "initialization ended");
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_fit_and_differ_by_company_and_attempt() {
        let long = "a".repeat(80);
        let n = job_name(&long, "CRONUS", "1");
        assert!(n.len() <= 63, "{n}");
        assert_ne!(
            job_name("erp", "CRONUS", "1"),
            job_name("erp", "CRONUS", "2")
        );
        assert_ne!(job_name("erp", "A", "1"), job_name("erp", "B", "1"));
        assert!(job_name("erp", "A", "1").starts_with("erp-init-"));
    }
}
