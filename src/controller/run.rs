//! The MigrationRun reconciler: read the run, its schedule and its runner, decide
//! (`run_decide`), then act: start or stop the runner, write the controller's part of the
//! status, and count the ended run in the metrics.

use super::context::{Context, MANAGER};
use super::run_decide::{self, RunAction, RunObserved, ScheduleFacts};
use super::schedule::Error;
use super::schedule_decide::TRIGGER_ANNOTATION;
use crate::api::MigrationSchedule;
use crate::api::run::MigrationRun;
use crate::api::schedule::Runner;
use crate::runner::WorkerSpec;
use crate::runner::job;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub async fn reconcile(run: Arc<MigrationRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    ctx.measured("MigrationRun", reconcile_inner(&run, &ctx))
        .await
}

async fn reconcile_inner(run: &MigrationRun, ctx: &Context) -> Result<Action, Error> {
    let ns = run
        .namespace()
        .ok_or_else(|| Error::Invalid("a MigrationRun is namespaced".into()))?;
    let name = run.name_any();
    let key = format!("{ns}/{name}");
    let uid = run.uid().unwrap_or_default();
    let runs: Api<MigrationRun> = Api::namespaced(ctx.client.clone(), &ns);
    let schedules: Api<MigrationSchedule> = Api::namespaced(ctx.client.clone(), &ns);

    // Read.
    let schedule = schedules.get_opt(&run.spec.schedule_ref.name).await?;
    let status = run.status.clone().unwrap_or_default();
    let attempt = status.attempts.unwrap_or(0);
    let runner = schedule
        .as_ref()
        .map(|s| s.spec.runtime.runner)
        .unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let runner_alive = match runner {
        Runner::InProcess => ctx.inprocess.alive(&key, &uid, attempt),
        Runner::Job if attempt == 0 => false,
        Runner::Job => match jobs.get_opt(&job::job_name(&name, attempt)).await? {
            Some(j) => job::job_alive(j.status.as_ref(), chrono::Utc::now()),
            None => false,
        },
    };

    // Decide.
    let decision = run_decide::decide(RunObserved {
        generation: run.metadata.generation,
        spec: &run.spec,
        status,
        trigger: run.annotations().get(TRIGGER_ANNOTATION).cloned(),
        schedule: schedule.as_ref().map(|s| ScheduleFacts {
            // The in-process runner is one worker.
            workers: match s.spec.runtime.runner {
                Runner::InProcess => 1,
                Runner::Job => s.spec.runtime.workers,
            },
            backoff_limit: s.spec.runtime.backoff_limit,
            disabled: s.spec.disabled,
        }),
        runner_alive,
        now: chrono::Utc::now(),
    });

    // Act: the status first, so that a start is on record before the runner writes.
    let body = json!({
        "apiVersion": MigrationRun::api_version(&()),
        "kind": MigrationRun::kind(&()),
        "status": decision.status,
    });
    runs.patch_status(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    match decision.action {
        RunAction::Start { attempt } => match runner {
            Runner::InProcess => ctx.inprocess.start(
                ctx.client.clone(),
                &uid,
                WorkerSpec {
                    namespace: ns.clone(),
                    name: name.clone(),
                    index: 0,
                    count: 1,
                    attempt,
                },
            ),
            Runner::Job => {
                if let Some(schedule) = &schedule {
                    let account = std::env::var("CLOUDMIGRATE_WORKER_SERVICE_ACCOUNT")
                        .unwrap_or_else(|_| job::DEFAULT_SERVICE_ACCOUNT.to_string());
                    let j = job::job_for(run, schedule, attempt, &account);
                    match jobs.create(&PostParams::default(), &j).await {
                        Ok(_) => {}
                        // Created before a restart.
                        Err(kube::Error::Api(e)) if e.code == 409 => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        },
        // A Job's workers read spec.stop themselves.
        RunAction::Stop => ctx.inprocess.stop(&key),
        RunAction::Nothing => {}
    }
    if let Some(result) = decision.finished {
        let label = format!("{result:?}");
        ctx.metrics
            .runs
            .get_or_create(&super::metrics::Metrics::result(&label))
            .inc();
        if let Some(p) = &decision.status.progress {
            for (r, n) in [
                ("Migrated", p.tables_migrated),
                ("Warning", p.tables_with_warnings),
                ("Failed", p.tables_failed),
                ("Excluded", p.tables_excluded),
            ] {
                ctx.metrics
                    .tables
                    .get_or_create(&super::metrics::Metrics::result(r))
                    .inc_by(n.max(0) as u64);
            }
            ctx.metrics.rows.inc_by(p.rows_copied.max(0) as u64);
        }
    }
    ctx.publish(run, &decision.notes).await;
    // A running run is looked at again now and then: a lost runner is noticed even when no
    // status write wakes the reconciler.
    Ok(if decision.status.result.is_some() {
        Action::await_change()
    } else {
        Action::requeue(Duration::from_secs(10))
    })
}

#[cfg(test)]
mod tests {
    //! The exact API calls of a run's first reconcile with the Job runner, against a mock.
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::Value;

    #[tokio::test]
    async fn a_new_job_run_records_its_start_then_creates_its_job() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let run: MigrationRun = serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
            "metadata": {"name": "erp-1", "namespace": "shop", "uid": "r-1", "generation": 1,
                         "annotations": {"cloudmigrate.io/trigger": "Scheduled"}},
            "spec": {"scheduleRef": {"name": "erp"}, "type": "Full"}
        }))
        .unwrap();
        let schedule = json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "uid": "s-1"},
            "spec": {"source": {"url": "postgres://erp.example/nav"},
                     "target": {"url": "postgres://cloud.example/bc"},
                     "runtime": {"runner": "Job", "workers": 2}}
        });
        let ctx = Arc::new(Context::new(
            client,
            crate::controller::metrics::Metrics::default(),
            None,
        ));
        let task = tokio::spawn(reconcile(Arc::new(run), ctx));
        let mut next = async || {
            let (req, send) = handle.next_request().await.expect("no further call");
            let (method, uri) = (req.method().clone(), req.uri().to_string());
            let bytes = req.into_body().collect_bytes().await.unwrap();
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            (method, uri, body, send)
        };
        let reply = |send: tower_test::mock::SendResponse<Response<Body>>, code: u16, v: Value| {
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(&v).unwrap()))
                    .unwrap(),
            )
        };

        let (m, uri, _, send) = next().await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::GET,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp"
            )
        );
        reply(send, 200, schedule);

        let (m, uri, body, send) = next().await;
        assert_eq!(m, Method::PATCH);
        assert_eq!(
            uri,
            "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns/erp-1/status?&force=true&fieldManager=cloudmigrate-controller"
        );
        assert_eq!(body["kind"], "MigrationRun");
        assert_eq!(body["status"]["attempts"], 1);
        assert_eq!(body["status"]["trigger"], "Scheduled");
        assert!(
            body["status"].get("workers").is_none(),
            "the workers' part is theirs"
        );
        assert!(
            body["status"].get("tables").is_none(),
            "the workers' part is theirs"
        );
        reply(
            send,
            200,
            json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
                "metadata": {"name": "erp-1", "namespace": "shop"},
                "spec": {"scheduleRef": {"name": "erp"}}, "status": body["status"].clone()
            }),
        );

        let (m, uri, body, send) = next().await;
        assert_eq!(
            (m, uri.as_str()),
            (Method::POST, "/apis/batch/v1/namespaces/shop/jobs?")
        );
        assert_eq!(body["metadata"]["name"], "erp-1-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "r-1");
        assert_eq!(body["spec"]["completions"], 2);
        assert_eq!(body["spec"]["completionMode"], "Indexed");
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["args"][2],
            "shop/erp-1"
        );
        reply(send, 201, body);

        let (m, uri, body, send) = next().await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?"
            )
        );
        assert_eq!(body["reason"], "RunStarted");
        assert_eq!(body["type"], "Normal");
        reply(send, 201, body);

        let action = task.await.unwrap().unwrap();
        assert_eq!(action, Action::requeue(Duration::from_secs(10)));
    }
}
