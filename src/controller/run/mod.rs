//! The MigrationRun reconciler: read the run's schedule (from the cache) and its runner,
//! decide (`decide`), then act: start or stop the runner, write the controller's part of the
//! status when it changed, and count the ended run in the metrics. A run that has ended is
//! never looked at again.

pub mod decide;

use super::annotations::TRIGGER;
use super::context::Context;
use super::error::Error;
use crate::api::MigrationSchedule;
use crate::api::run::MigrationRun;
use crate::api::schedule::Runner;
use crate::runner::WorkerSpec;
use crate::runner::job;
use crate::runner::startup::{self, Blocked};
use decide::{RunAction, RunDecision, RunObserved, ScheduleFacts};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, ReflectHandle};
use kube::{Api, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// What wakes a run besides itself, where it is watched: its worker Job, the Job's pods, and
/// the events of pods the Job could not create.
pub struct Runners {
    pub jobs: Option<ReflectHandle<Job>>,
    pub pods: Option<ReflectHandle<Pod>>,
    pub refusals: Option<ReflectHandle<Event>>,
}

/// The run a worker Job belongs to: its name is `<run>-<attempt>`.
fn run_of_job(namespace: Option<&str>, job: &str) -> Option<ObjectRef<MigrationRun>> {
    let (run, attempt) = job.rsplit_once('-')?;
    attempt.parse::<i32>().ok()?;
    Some(ObjectRef::new(run).within(namespace.unwrap_or_default()))
}

/// The run controller: woken by a change of the run, and where they are watched, of its
/// worker Job (a failed Job is seen at once), of the Job's pods, and by a pod the Job could
/// not create (a worker that cannot start is seen at once).
pub async fn controller(
    handle: ReflectHandle<MigrationRun>,
    store: kube::runtime::reflector::Store<MigrationRun>,
    runners: Runners,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let mut watched = kube::runtime::Controller::for_shared_stream(handle, store);
    if let Some(jobs) = runners.jobs {
        watched = watched.owns_shared_stream(jobs);
    }
    if let Some(pods) = runners.pods {
        watched = watched.watches_shared_stream(pods, |pod| {
            let job = crate::controller::cache::pod_job(&pod)?;
            run_of_job(pod.metadata.namespace.as_deref(), job)
        });
    }
    if let Some(refusals) = runners.refusals {
        watched = watched.watches_shared_stream(refusals, |event| {
            let o = &event.involved_object;
            let ns = o
                .namespace
                .as_deref()
                .or(event.metadata.namespace.as_deref());
            run_of_job(ns, o.name.as_deref()?)
        });
    }
    super::watches::drive(watched, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(run = %format!("{}/{}", run.namespace().unwrap_or_default(), run.name_any())))]
pub async fn reconcile(run: Arc<MigrationRun>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Terminal: an ended run is never evaluated again, not after a restart either.
    if run.status.as_ref().is_some_and(|s| s.result.is_some()) {
        return Ok(Action::await_change());
    }
    let read = read(&run, &ctx).await?;
    let decision = decide::decide(RunObserved {
        generation: run.metadata.generation,
        spec: &run.spec,
        status: run.status.clone().unwrap_or_default(),
        trigger: run.annotations().get(TRIGGER).cloned(),
        schedule: read.schedule.as_ref().map(|s| ScheduleFacts {
            workers: crate::runner::workers(&s.spec),
            backoff_limit: s.spec.runtime.backoff_limit,
            hold: read.hold.clone(),
            refused: match s.spec.runtime.runner {
                Runner::InProcess => ctx
                    .in_process_refused(&s.namespace().unwrap_or_default())
                    .map(|why| (decide::RUNNER_NOT_ALLOWED, why)),
                Runner::Job => None,
            },
            start_deadline_seconds: s.spec.runtime.start_deadline_seconds,
        }),
        runner_alive: read.runner_alive,
        runner_failure: read.runner_failure.clone(),
        workers_blocked: read.workers_blocked.clone(),
        now: chrono::Utc::now(),
    });
    act(&run, &ctx, read, decision).await
}

/// What the read step found.
struct Read {
    schedule: Option<Arc<MigrationSchedule>>,
    runner: Runner,
    runner_alive: bool,
    runner_failure: Option<String>,
    /// Workers of the current attempt's Job that have not started, and why.
    workers_blocked: Option<Blocked>,
    /// What holds a run that has not started (`admission::admit`).
    hold: Option<super::admission::Hold>,
}

/// Read: the schedule from the cache (asked of the API server only when the cache does not
/// have it yet: a run and its schedule applied together), and whether the runner is at work
/// (a Job's status from the cache, or from the API server when the cache has no such Job).
async fn read(run: &MigrationRun, ctx: &Context) -> Result<Read, Error> {
    let ns = run
        .namespace()
        .ok_or_else(|| Error::Invalid("a MigrationRun is namespaced".into()))?;
    let name = run.name_any();
    let schedule_name = &run.spec.schedule_ref.name;
    let schedule = match ctx.caches.schedule(&ns, schedule_name) {
        Some(s) => Some(s),
        None => Api::<MigrationSchedule>::namespaced(ctx.client.clone(), &ns)
            .get_opt(schedule_name)
            .await
            .map_err(|e| Error::Read(format!("MigrationSchedule {schedule_name}"), e))?
            .map(Arc::new),
    };
    let attempt = run.status.as_ref().and_then(|s| s.attempts).unwrap_or(0);
    let runner = schedule
        .as_ref()
        .map(|s| s.spec.runtime.runner)
        .unwrap_or_default();
    let (runner_alive, runner_failure, workers_blocked) = match runner {
        Runner::InProcess => (
            ctx.inprocess.alive(
                &format!("{ns}/{name}"),
                &run.uid().unwrap_or_default(),
                attempt,
            ),
            None,
            None,
        ),
        Runner::Job if attempt == 0 => (false, None, None),
        Runner::Job => {
            let job_name = job::job_name(&name, attempt);
            // A Job created a moment ago may not be in the cache yet: only the API server can
            // say that it is gone.
            let job = match ctx.caches.job(&ns, &job_name) {
                Some(j) => Some(j),
                None => Api::<Job>::namespaced(ctx.client.clone(), &ns)
                    .get_opt(&job_name)
                    .await
                    .map_err(|e| Error::Read(format!("Job {job_name}"), e))?
                    .map(Arc::new),
            };
            match job {
                Some(j) => (
                    job::job_alive(j.status.as_ref(), chrono::Utc::now()),
                    job::job_failure(&job_name, j.status.as_ref()),
                    schedule
                        .as_ref()
                        .and_then(|s| workers_blocked(ctx, run, s, &j, attempt)),
                ),
                None => (false, None, None),
            }
        }
    };
    // The one admission rule, asked only by a run that may start now: not started, not
    // stopped. A run it lets through holds the claim on its target from here on.
    // An in-process run first waits for a place under the operator's cap, before it takes a
    // claim on its target.
    let hold = match &schedule {
        Some(s) if attempt == 0 && !run.stop_asked() => match runner {
            Runner::InProcess => super::admission::in_process_hold(
                ctx.inprocess.runs_at_work(),
                ctx.max_in_process_runs,
            ),
            Runner::Job => None,
        }
        .or_else(|| super::admission::admit(ctx, s, run)),
        _ => None,
    };
    Ok(Read {
        schedule,
        runner,
        runner_alive,
        runner_failure,
        workers_blocked,
        hold,
    })
}

/// Why the workers of the attempt's Job have not started (`runner::startup`), from the cached
/// pods and refusals; None once the Job has ended. Where pods are not watched, a Job none of
/// whose pods is ready, before any worker of the attempt wrote its status, waits for no known
/// cause.
fn workers_blocked(
    ctx: &Context,
    run: &MigrationRun,
    schedule: &MigrationSchedule,
    j: &Job,
    attempt: i32,
) -> Option<Blocked> {
    if job::job_ended(j.status.as_ref()) {
        return None;
    }
    let ns = run.namespace().unwrap_or_default();
    let job_name = j.metadata.name.clone().unwrap_or_default();
    let created = j
        .metadata
        .creation_timestamp
        .as_ref()
        .map(crate::clock::utc);
    let Some((pods, refusals)) = ctx.caches.job_workers(&ns, &job_name) else {
        let reported = run
            .status
            .as_ref()
            .is_some_and(|s| s.workers.iter().any(|w| w.attempt == attempt));
        let ready = j.status.as_ref().and_then(|s| s.ready).unwrap_or(0);
        return (!reported && ready == 0).then(|| Blocked {
            since: created.unwrap_or_else(chrono::Utc::now),
            cause: "Pending".into(),
            message: format!(
                "no worker pod of Job {job_name} is ready (the controller may not watch pods \
                 and events here, so it cannot say why: kubectl describe job {job_name} -n {ns})"
            ),
            known: false,
        });
    };
    let pull_secrets: Vec<String> = job::image_pull_secrets(&schedule.spec.runtime)
        .into_iter()
        .map(|s| s.name)
        .collect();
    let account = job::service_account();
    let facts = startup::JobFacts {
        namespace: &ns,
        job: &job_name,
        service_account: &account,
        pull_secrets: &pull_secrets,
    };
    startup::blocked(&facts, created, &pods, &refusals)
}

/// Act: the status first, so that a start is on record before the runner writes; then the
/// runner; then the metrics and events of a run that ended.
async fn act(
    run: &MigrationRun,
    ctx: &Context,
    read: Read,
    decision: RunDecision,
) -> Result<Action, Error> {
    let ns = run.namespace().unwrap_or_default();
    let name = run.name_any();
    let uid = run.uid().unwrap_or_default();
    let mut current = run.status.clone().unwrap_or_default();
    // The workers' parts are theirs; only the controller's part is compared.
    current.workers.clear();
    current.tables.clear();
    if current != decision.status || run.status.is_none() {
        ctx.apply_status(run, &decision.status).await?;
    }
    let granted = match (&decision.action, &read.schedule) {
        (RunAction::Start { .. }, Some(schedule)) => {
            Some(super::runtime_key::grant_for_run(ctx, schedule, run).await)
        }
        _ => None,
    };
    if let Some(Ok(g)) = &granted
        && let Some(note) = decide::tables_not_created(&g.not_created)
    {
        ctx.publish(run, &[note]).await;
    }
    if let Some(Err(e)) = granted {
        let at = super::conditions::At {
            generation: run.metadata.generation,
            now: chrono::Utc::now(),
        };
        // A run that cannot be planned ends now: another attempt would plan the same.
        if let crate::engine::access::GrantError::Plan(e) = &e {
            let (status, note) = decide::cannot_plan(decision.status, at, e);
            ctx.apply_status(run, &status).await?;
            ctx.claims.release(&uid);
            ctx.publish(run, &[note]).await;
            return Ok(Action::await_change());
        }
        let e = e.to_string();
        ctx.apply_status(run, &decide::not_granted(decision.status, at, &e))
            .await?;
        let note = super::note::Note::warning("AccessNotGranted", e);
        ctx.publish(run, &[note]).await;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    match decision.action {
        RunAction::Start { attempt } => match read.runner {
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
                if let Some(schedule) = &read.schedule {
                    let account = job::service_account();
                    let j = job::job_for(run, schedule, attempt, &account);
                    let job_name = job::job_name(&name, attempt);
                    match job::create(&ctx.client, &ns, &j).await {
                        Ok(()) => {}
                        // Refused (invalid, forbidden): the run says why, and goes again up to
                        // its limit.
                        Err(Ok((code, message))) => {
                            let at = super::conditions::At {
                                generation: run.metadata.generation,
                                now: chrono::Utc::now(),
                            };
                            let status =
                                decide::refused(decision.status, at, &job_name, code, &message);
                            ctx.apply_status(run, &status).await?;
                            let note = super::note::Note::warning(
                                "RunnerRefused",
                                format!("the API server refused Job {job_name}: {message}"),
                            );
                            ctx.publish(run, &[note]).await;
                            return Ok(Action::requeue(Duration::from_secs(5)));
                        }
                        Err(Err(e)) => {
                            return Err(Error::Act(format!("creating Job {job_name}"), e));
                        }
                    }
                }
            }
        },
        // A Job's workers read the stop themselves.
        RunAction::Stop => ctx.inprocess.stop(&format!("{ns}/{name}")),
        RunAction::DeleteJob { attempt } => {
            delete_job(ctx, run, &job::job_name(&name, attempt)).await
        }
        RunAction::Nothing => {}
    }
    if let Some(result) = decision.finished {
        ctx.claims.release(&uid);
        count_ended(ctx, result, &decision);
    }
    ctx.publish(run, &decision.notes).await;
    // A running run is looked at again now and then: a lost runner is noticed even when no
    // status write wakes the reconciler.
    Ok(if decision.status.result.is_some() {
        Action::await_change()
    } else if decision.status.start_time.is_none() {
        // Held (`admission`): looked at again soon; what holds it wakes nothing here.
        Action::requeue(super::jitter::spread(Duration::from_secs(3), &(ns, name)))
    } else {
        Action::requeue(super::jitter::spread(Duration::from_secs(10), &(ns, name)))
    })
}

/// Deletes the Job of a run that ended before its workers started, with its pods. A Job that
/// cannot be deleted stays until its run is deleted (the garbage collector takes it then); a
/// Warning event says so.
async fn delete_job(ctx: &Context, run: &MigrationRun, job_name: &str) {
    let ns = run.namespace().unwrap_or_default();
    let jobs = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    match jobs
        .delete(job_name, &kube::api::DeleteParams::background())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => {
            let note = super::note::Note::warning(
                "JobNotDeleted",
                format!(
                    "the Job {job_name}, whose workers never started, could not be deleted \
                     ({e}); delete it yourself (kubectl delete job {job_name} -n {ns}), or \
                     give the controller delete on jobs (batch); it goes with the run otherwise"
                ),
            );
            ctx.publish(run, &[note]).await;
        }
    }
}

/// Counts a run that ended, and its tables and rows, in the metrics.
fn count_ended(ctx: &Context, result: crate::api::run::RunResult, decision: &RunDecision) {
    use super::metrics::Metrics;
    ctx.metrics
        .runs
        .get_or_create(&Metrics::result(&format!("{result:?}")))
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
                .get_or_create(&Metrics::result(r))
                .inc_by(n.max(0) as u64);
        }
        ctx.metrics.rows.inc_by(p.rows_copied.max(0) as u64);
    }
}

#[cfg(test)]
mod tests {
    //! The exact API calls of a run's first reconcile with the Job runner, against a mock.
    use super::*;
    use crate::fixtures::ApiServer;
    use http::Method;
    use serde_json::json;

    fn run() -> MigrationRun {
        serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
            "metadata": {"name": "erp-1", "namespace": "shop", "uid": "r-1", "generation": 1,
                         "annotations": {"cloudmigrate.io/trigger": "Scheduled"}},
            "spec": {"scheduleRef": {"name": "erp"}, "type": "Full"}
        }))
        .unwrap()
    }

    fn schedule() -> MigrationSchedule {
        serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "uid": "s-1"},
            "spec": {"source": {"url": "postgres://erp.example/nav"},
                     "target": {"url": "sqlite:///var/lib/cloudmigrate/bc.db"},
                     "runtime": {"runner": "Job", "workers": 2}}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_new_job_run_records_its_start_then_creates_its_job() {
        let (client, mut server) = ApiServer::new();
        // The schedule is in the cache: no call reads it.
        let ctx = Context::for_test(client, vec![schedule()], vec![]);
        let task = tokio::spawn(reconcile(Arc::new(run()), ctx));

        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns/erp-1/status?&force=true&fieldManager=cloudmigrate-controller",
            )
            .await;
        let body = call.body.clone();
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
        call.reply(
            200,
            json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
                "metadata": {"name": "erp-1", "namespace": "shop"},
                "spec": {"scheduleRef": {"name": "erp"}}, "status": body["status"].clone()
            }),
        );

        let call = server
            .expect(Method::POST, "/apis/batch/v1/namespaces/shop/jobs?")
            .await;
        let body = &call.body;
        assert_eq!(body["metadata"]["name"], "erp-1-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "r-1");
        assert_eq!(body["spec"]["completions"], 2);
        assert_eq!(body["spec"]["completionMode"], "Indexed");
        assert_eq!(
            body["spec"]["template"]["spec"]["containers"][0]["args"][2],
            "shop/erp-1"
        );
        call.echo(201);

        let call = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
            )
            .await;
        assert_eq!(call.body["reason"], "RunStarted");
        assert_eq!(call.body["type"], "Normal");
        call.echo(201);

        task.await.unwrap().unwrap();
        server.assert_no_list();
    }

    #[tokio::test]
    async fn a_run_whose_schedule_is_not_cached_yet_reads_it_once() {
        let (client, mut server) = ApiServer::new();
        let ctx = Context::for_test(client, vec![], vec![]);
        let mut run = run();
        run.spec.stop = true;
        let run_copy = run.clone();
        let task = tokio::spawn(reconcile(Arc::new(run), ctx));
        let call = server
            .expect(
                Method::GET,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp",
            )
            .await;
        call.reply(200, serde_json::to_value(schedule()).unwrap());
        // Stopped before it started: the status says so, and nothing starts.
        let call = server.next().await;
        assert_eq!(call.method, Method::PATCH);
        assert_eq!(call.body["status"]["result"], "Stopped");
        let mut obj = serde_json::to_value(run_copy).unwrap();
        obj["status"] = call.body["status"].clone();
        call.reply(200, obj);
        let call = server.next().await;
        assert_eq!(call.method, Method::POST, "{}", call.uri);
        assert!(call.uri.contains("/events"), "{}", call.uri);
        call.echo(201);
        assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    }

    #[tokio::test]
    async fn an_ended_run_makes_no_call() {
        let (client, server) = ApiServer::new();
        let ctx = Context::for_test(client, vec![schedule()], vec![]);
        let mut run = run();
        run.status = Some(serde_json::from_value(json!({"result": "Succeeded"})).unwrap());
        assert_eq!(
            reconcile(Arc::new(run), ctx).await.unwrap(),
            Action::await_change()
        );
        assert!(server.seen.is_empty());
    }

    #[tokio::test]
    async fn a_running_job_run_reads_its_job_from_the_cache() {
        let (client, server) = ApiServer::new();
        let mut caches = crate::controller::cache::Caches::of(vec![schedule()], vec![]);
        let (jobs, mut writer) = kube::runtime::reflector::store();
        let job: Job = serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "erp-1-1", "namespace": "shop"},
            "status": {"active": 2}
        }))
        .unwrap();
        writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(job));
        caches.jobs = Some(jobs);
        let ctx = Arc::new(Context::new(
            client,
            caches,
            crate::controller::metrics::Metrics::default(),
            None,
        ));
        // Started, its two workers at work: the status the last reconcile wrote.
        let mut running = run();
        let facts = ScheduleFacts {
            workers: 2,
            backoff_limit: 3,
            hold: None,
            refused: None,
            start_deadline_seconds: 600,
        };
        let mut status = Default::default();
        for alive in [false, true] {
            status = decide::decide(RunObserved {
                generation: Some(1),
                spec: &running.spec,
                status,
                trigger: Some("Scheduled".into()),
                schedule: Some(facts.clone()),
                runner_alive: alive,
                runner_failure: None,
                workers_blocked: None,
                now: chrono::Utc::now(),
            })
            .status;
        }
        running.status = Some(status);
        let mut server = server;
        let action = tokio::select! {
            a = reconcile(Arc::new(running), ctx) => a.unwrap(),
            call = server.next() => panic!("called {} {}", call.method, call.uri),
        };
        assert_ne!(action, Action::await_change());
        // No GET of the Job, no status write: nothing changed.
        assert!(server.seen.is_empty(), "calls: {:?}", server.seen);
    }
}
