//! The MigrationSchedule reconciler: read the schedule, its runs and its neighbours, decide
//! (`schedule_decide`), then act: create, adopt, stop and prune runs, write the status.

use super::clock::utc;
use super::context::{Context, MANAGER};
use super::schedule_decide::{
    self, Counts, Observed, RUN_REQUEST_ANNOTATION, RunView, SCHEDULED_TIME_ANNOTATION,
    TRIGGER_ANNOTATION,
};
use crate::api::run::{MigrationRun, MigrationRunSpec};
use crate::api::{MigrationSchedule, common::ScheduleRef};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Label on every run with its schedule's name (when it fits a label value).
pub const SCHEDULE_LABEL: &str = "cloudmigrate.io/schedule";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Invalid(String),
}

/// What a run looks like to its schedule.
pub fn run_view(run: &MigrationRun, schedule_uid: Option<&str>) -> RunView {
    let status = run.status.clone().unwrap_or_default();
    let p = status.progress.clone().unwrap_or_default();
    RunView {
        name: run.name_any(),
        created: run.creation_timestamp().map(|t| utc(&t)),
        run_type: run.spec.r#type,
        run_request: run.annotations().get(RUN_REQUEST_ANNOTATION).cloned(),
        result: status.result,
        start_time: status.start_time,
        completion_time: status.completion_time,
        stop_requested: run.spec.stop,
        owned: run
            .owner_references()
            .iter()
            .any(|o| Some(o.uid.as_str()) == schedule_uid),
        counts: Counts {
            migrated: p.tables_migrated,
            with_warnings: p.tables_with_warnings,
            failed: p.tables_failed,
            not_migrated: p.tables_excluded,
        },
    }
}

pub async fn reconcile(
    schedule: Arc<MigrationSchedule>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    ctx.measured("MigrationSchedule", reconcile_inner(&schedule, &ctx))
        .await
}

async fn reconcile_inner(schedule: &MigrationSchedule, ctx: &Context) -> Result<Action, Error> {
    let ns = schedule
        .namespace()
        .ok_or_else(|| Error::Invalid("a MigrationSchedule is namespaced".into()))?;
    let name = schedule.name_any();
    let uid = schedule.uid();
    let runs_api: Api<MigrationRun> = Api::namespaced(ctx.client.clone(), &ns);
    let schedules: Api<MigrationSchedule> = Api::namespaced(ctx.client.clone(), &ns);

    // Read.
    let runs: Vec<MigrationRun> = runs_api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| r.spec.schedule_ref.name == name)
        .collect();
    let others = schedules.list(&ListParams::default()).await?.items;
    let created =
        |s: &MigrationSchedule| s.creation_timestamp().map(|t| utc(&t)).unwrap_or_default();
    let conflict = schedule_decide::conflict(
        (&name, created(schedule), &schedule.spec),
        others
            .iter()
            .filter(|o| o.metadata.deletion_timestamp.is_none())
            .map(|o| {
                (
                    o.metadata.name.as_deref().unwrap_or_default(),
                    created(o),
                    &o.spec,
                )
            }),
    );
    let now = chrono::Utc::now();

    // Decide.
    let decision = schedule_decide::decide(Observed {
        name: &name,
        generation: schedule.metadata.generation,
        created: created(schedule),
        spec: &schedule.spec,
        status: schedule.status.clone().unwrap_or_default(),
        runs: runs.iter().map(|r| run_view(r, uid.as_deref())).collect(),
        conflict,
        now,
    });

    // Act.
    let owner = schedule.controller_owner_ref(&());
    for run in &decision.adopt {
        if let Some(owner) = &owner {
            let patch = json!({"metadata": {"ownerReferences": [owner]}});
            runs_api
                .patch(run, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
            tracing::info!(schedule = %name, namespace = %ns, run = %run, "adopted a MigrationRun created by hand");
        }
    }
    if let Some(run) = &decision.stop {
        runs_api
            .patch(
                run,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"stop": true}})),
            )
            .await?;
    }
    if let Some(new) = &decision.create {
        let mut annotations = BTreeMap::new();
        annotations.insert(TRIGGER_ANNOTATION.to_string(), new.trigger.to_string());
        if let Some(t) = new.scheduled_time {
            annotations.insert(SCHEDULED_TIME_ANNOTATION.to_string(), t.to_rfc3339());
        }
        if let Some(r) = &new.run_request {
            annotations.insert(RUN_REQUEST_ANNOTATION.to_string(), r.clone());
        }
        let mut labels = BTreeMap::new();
        if name.len() <= 63 {
            labels.insert(SCHEDULE_LABEL.to_string(), name.clone());
        }
        let run = MigrationRun {
            metadata: ObjectMeta {
                name: Some(new.name.clone()),
                namespace: Some(ns.clone()),
                owner_references: owner.clone().map(|o| vec![o]),
                annotations: Some(annotations),
                labels: Some(labels),
                ..Default::default()
            },
            spec: MigrationRunSpec {
                schedule_ref: ScheduleRef { name: name.clone() },
                r#type: Default::default(),
                companies: vec![],
                stop: false,
            },
            status: None,
        };
        match runs_api.create(&PostParams::default(), &run).await {
            Ok(_) => {}
            // Made before a restart: adopted as it is.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    for old in &decision.delete {
        match runs_api.delete(old, &DeleteParams::background()).await {
            Ok(_) => {
                tracing::info!(schedule = %name, namespace = %ns, run = %old, "pruned a run beyond the history limits")
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    let body = json!({
        "apiVersion": MigrationSchedule::api_version(&()),
        "kind": MigrationSchedule::kind(&()),
        "status": decision.status,
    });
    schedules
        .patch_status(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
    ctx.publish(schedule, &decision.notes).await;
    Ok(Action::requeue(decision.requeue_after))
}

#[cfg(test)]
mod tests {
    //! The exact API calls of a reconcile, against a tower-test mock of the API server.
    use super::*;
    use http::{Method, Request, Response};
    use kube::client::Body;
    use serde_json::Value;

    type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

    async fn next(
        handle: &mut Handle,
    ) -> (
        Method,
        String,
        Value,
        tower_test::mock::SendResponse<Response<Body>>,
    ) {
        let (req, send) = handle
            .next_request()
            .await
            .expect("the reconcile made no further call");
        let method = req.method().clone();
        let uri = req.uri().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        (method, uri, body, send)
    }

    fn reply(send: tower_test::mock::SendResponse<Response<Body>>, status: u16, body: Value) {
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }

    fn list(kind: &str) -> Value {
        json!({"apiVersion": "cloudmigrate.io/v1alpha1", "kind": format!("{kind}List"), "metadata": {}, "items": []})
    }

    #[tokio::test]
    async fn a_run_request_creates_an_owned_run_then_acknowledges_it() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let schedule: MigrationSchedule = serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1",
            "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "uid": "u-1", "generation": 3,
                         "creationTimestamp": "2026-05-01T00:00:00Z"},
            "spec": {
                "source": {"url": "postgres://erp.example/nav"},
                "target": {"url": "postgres://cloud.example/bc"},
                "runRequest": "please",
                "runtime": {"runner": "InProcess"}
            }
        }))
        .unwrap();
        let ctx = Arc::new(Context::new(
            client,
            crate::controller::metrics::Metrics::default(),
            None,
        ));
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));

        let (m, uri, _, send) = next(&mut handle).await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::GET,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns?"
            )
        );
        reply(send, 200, list("MigrationRun"));

        let (m, uri, _, send) = next(&mut handle).await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::GET,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules?"
            )
        );
        let mut schedules = list("MigrationSchedule");
        schedules["items"] = json!([schedule]);
        reply(send, 200, schedules);

        let (m, uri, body, send) = next(&mut handle).await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::POST,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns?"
            )
        );
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("erp-"), "{name}");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            body["metadata"]["annotations"][TRIGGER_ANNOTATION],
            "Manual"
        );
        assert_eq!(
            body["metadata"]["annotations"][RUN_REQUEST_ANNOTATION],
            "please"
        );
        assert_eq!(body["metadata"]["labels"][SCHEDULE_LABEL], "erp");
        assert_eq!(body["spec"]["scheduleRef"]["name"], "erp");
        reply(send, 201, body.clone());

        let (m, uri, body, send) = next(&mut handle).await;
        assert_eq!(m, Method::PATCH);
        assert_eq!(
            uri,
            "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp/status?&force=true&fieldManager=cloudmigrate-controller"
        );
        assert_eq!(body["apiVersion"], "cloudmigrate.io/v1alpha1");
        assert_eq!(body["kind"], "MigrationSchedule");
        assert_eq!(body["status"]["lastHandledRunRequest"], "please");
        assert_eq!(body["status"]["activeRun"], name.as_str());
        assert_eq!(body["status"]["observedGeneration"], 3);
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = body["status"].clone();
        reply(send, 200, obj);

        // The event of the new run.
        let (m, uri, body, send) = next(&mut handle).await;
        assert_eq!(
            (m, uri.as_str()),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?"
            )
        );
        assert_eq!(body["reason"], "RunCreated");
        assert_eq!(body["regarding"]["name"], "erp");
        reply(send, 201, body);

        let action = task.await.unwrap().unwrap();
        assert_eq!(
            action,
            Action::requeue(std::time::Duration::from_secs(3600))
        );
    }

    #[tokio::test]
    async fn runs_beyond_the_history_limits_are_deleted() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        let schedule: MigrationSchedule = serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "uid": "u-1",
                         "creationTimestamp": "2026-05-01T00:00:00Z"},
            "spec": {"source": {"url": "postgres://erp.example/nav"},
                     "target": {"url": "postgres://cloud.example/bc"},
                     "history": {"successful": 1, "failed": 1}}
        }))
        .unwrap();
        let run = |name: &str, result: &str, end: &str| {
            json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
                "metadata": {"name": name, "namespace": "shop",
                             "creationTimestamp": end,
                             "ownerReferences": [{"apiVersion": "cloudmigrate.io/v1alpha1",
                                 "kind": "MigrationSchedule", "name": "erp", "uid": "u-1",
                                 "controller": true}]},
                "spec": {"scheduleRef": {"name": "erp"}},
                "status": {"result": result, "completionTime": end}
            })
        };
        let ctx = Arc::new(Context::new(
            client,
            crate::controller::metrics::Metrics::default(),
            None,
        ));
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));

        let (_, _, _, send) = next(&mut handle).await;
        let mut runs = list("MigrationRun");
        runs["items"] = json!([
            run("erp-1", "Succeeded", "2026-05-01T02:00:00Z"),
            run("erp-2", "Failed", "2026-05-02T02:00:00Z"),
            run("erp-3", "Succeeded", "2026-05-03T02:00:00Z"),
            run("erp-4", "Stopped", "2026-05-04T02:00:00Z"),
        ]);
        reply(send, 200, runs);
        let (_, _, _, send) = next(&mut handle).await;
        let mut schedules = list("MigrationSchedule");
        schedules["items"] = json!([schedule]);
        reply(send, 200, schedules);

        // The older of each kind goes: erp-2 (failed side), erp-1 (successful side).
        let mut deleted = vec![];
        for _ in 0..2 {
            let (m, uri, _, send) = next(&mut handle).await;
            assert_eq!(m, Method::DELETE);
            deleted.push(uri.clone());
            reply(
                send,
                200,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
        }
        deleted.sort();
        assert_eq!(
            deleted,
            vec![
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns/erp-1?",
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns/erp-2?",
            ]
        );

        let (m, uri, body, send) = next(&mut handle).await;
        assert_eq!(m, Method::PATCH);
        assert!(uri.contains("/migrationschedules/erp/status?"), "{uri}");
        assert_eq!(body["status"]["lastRun"]["name"], "erp-4");
        assert_eq!(body["status"]["lastSuccessfulTime"], "2026-05-03T02:00:00Z");
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = body["status"].clone();
        reply(send, 200, obj);
        task.await.unwrap().unwrap();
    }
}
