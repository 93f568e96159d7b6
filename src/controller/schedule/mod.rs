//! The MigrationSchedule reconciler: read the schedule's runs, the schedules that share its
//! databases and its key from the caches; decide its prerequisites (`decide::prerequisites`:
//! its finalizer and its runtime key) and put them in place (`runtime_key`); decide its runs
//! (`decide`), then act: create, stop and prune the runs it created, and write the status
//! when it changed. Runs a person created count as the
//! schedule's (by their scheduleRef), and are never written to. A deleted schedule only drops
//! its login role (`deletion`).

pub mod checklist;
pub mod decide;
pub mod deletion;
pub mod update;

use super::annotations::{RUN_REQUEST, SCHEDULE_LABEL, SCHEDULED_TIME, TRIGGER};
use super::context::{Context, CreatedRun};
use super::error::Error;
use crate::api::run::{MigrationRun, MigrationRunSpec};
use crate::api::{MigrationSchedule, common::ScheduleRef};
use crate::clock::utc;
use decide::{Counts, Decision, Observed, Requeue, RunView};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Field manager of the stop the schedule asks of an active run.
pub const STOP_MANAGER: &str = "cloudmigrate-controller-replace";

/// What a run looks like to its schedule.
pub fn run_view(run: &MigrationRun) -> RunView {
    let status = run.status.clone().unwrap_or_default();
    let p = status.progress.clone().unwrap_or_default();
    RunView {
        name: run.name_any(),
        created: run.creation_timestamp().map(|t| utc(&t)),
        run_type: run.spec.r#type,
        run_request: run.annotations().get(RUN_REQUEST).cloned(),
        result: status.result,
        start_time: status.start_time,
        completion_time: status.completion_time,
        stop_requested: run.stop_asked(),
        made_here: run.annotations().contains_key(TRIGGER),
        counts: Counts {
            migrated: p.tables_migrated,
            with_warnings: p.tables_with_warnings,
            failed: p.tables_failed,
            excluded: p.tables_excluded,
        },
    }
}

/// The schedule controller: woken by a change of the schedule, of an object that names it (a
/// run, a CompanySelection, a UserMapping, a CloudReset, a rotation, its key Secret), and by
/// the end of a probe of its databases.
pub async fn controller(
    handle: kube::runtime::reflector::ReflectHandle<MigrationSchedule>,
    store: kube::runtime::reflector::Store<MigrationSchedule>,
    woken: futures_util::stream::BoxStream<
        'static,
        kube::runtime::reflector::ObjectRef<MigrationSchedule>,
    >,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let watched = kube::runtime::Controller::for_shared_stream(handle, store).reconcile_on(woken);
    super::watches::drive(watched, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(schedule = %format!("{}/{}", schedule.namespace().unwrap_or_default(), schedule.name_any())))]
pub async fn reconcile(
    schedule: Arc<MigrationSchedule>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    if schedule.metadata.deletion_timestamp.is_some() {
        return deletion::finish(&ctx, &schedule).await;
    }
    let mut observed = read(&schedule, &ctx).await?;
    // First the prerequisites, decided and put in place: a run is decided only once runs can
    // write as the role, so the key is made (or set on the role) first; a key in effect costs
    // nothing. The finalizer comes before the role: a schedule deleted at any later moment
    // drops its role on the way out. It goes once no role can exist: the key was never made,
    // or Disable Cloud Migration revoked it. First in the reconcile, so that it is written on
    // the resourceVersion the watch delivered.
    let needed = decide::prerequisites(
        &schedule.spec,
        observed.conflict.is_some(),
        observed.reach.as_ref().is_some_and(|r| r.target.is_err()),
        &observed.key,
        deletion::holds(&schedule),
        decide::tracking_may_be_on(
            &observed.runs,
            observed.reach.as_ref(),
            schedule
                .status
                .as_ref()
                .is_some_and(|s| s.last_run.is_some()),
        ),
    );
    let written = match needed.finalizer {
        Some(true) => deletion::hold(&ctx, &schedule).await?,
        Some(false) => deletion::release(&ctx, &schedule).await?,
        None => true,
    };
    if !written {
        // A newer version is on its way through the watch (a status write of a moment ago):
        // the reconcile it wakes decides on it. Nothing else is done on this one.
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    if let Some(step) = needed.key {
        // Database work waits for the namespace's share, without holding a reconcile slot.
        let Some(_share) = ctx.database_share(&schedule.namespace().unwrap_or_default()) else {
            return Ok(Action::requeue(super::context::SHARE_WAIT));
        };
        observed.key = super::runtime_key::take(&ctx, &schedule, step, observed.key).await;
    }
    if observed.key.made {
        let note = super::note::Note::normal(
            "RuntimeKeySet",
            format!(
                "runs write to the target as {} with the key in Secret {}",
                observed.key.role.as_deref().unwrap_or_default(),
                observed.key.secret
            ),
        );
        ctx.publish(schedule.as_ref(), &[note]).await;
    }
    let decision = decide::decide(observed.observed(&schedule));
    act(&schedule, &ctx, decision).await
}

/// What the read step found: the schedule's runs, its conflict and the companies its
/// CompanySelection selects, from the caches.
struct Read {
    runs: Vec<RunView>,
    conflict: Option<String>,
    conflict_pending: bool,
    companies: Result<Option<Vec<String>>, (&'static str, String)>,
    resetting: Option<String>,
    reach: Option<super::reach::Reach>,
    rotating: Option<String>,
    key: super::runtime_key::KeyView,
    company_views: Vec<checklist::CompanyView>,
    users_mapped: bool,
    runner_refused: Option<String>,
    /// What the registry said of the runtime image's repository (Check for Update).
    release: Option<super::releases::Answer>,
}

impl Read {
    fn observed<'a>(&self, schedule: &'a MigrationSchedule) -> Observed<'a> {
        Observed {
            name: schedule.meta().name.as_deref().unwrap_or_default(),
            generation: schedule.metadata.generation,
            created: super::admission::created(schedule),
            spec: &schedule.spec,
            status: schedule.status.clone().unwrap_or_default(),
            runs: self.runs.clone(),
            conflict: self.conflict.clone(),
            conflict_pending: self.conflict_pending,
            companies: self.companies.clone(),
            resetting: self.resetting.clone(),
            reach: self.reach.clone(),
            rotating: self.rotating.clone(),
            key: self.key.clone(),
            company_views: self.company_views.clone(),
            users_mapped: self.users_mapped,
            runner_refused: self.runner_refused.clone(),
            release: self.release.clone(),
            now: chrono::Utc::now(),
        }
    }
}

/// Read: no API call; the caches hold the runs and the neighbours. It waits only for the
/// first probe of the schedule's databases, and briefly (`reach::FIRST_WAIT`).
async fn read(schedule: &MigrationSchedule, ctx: &Context) -> Result<Read, Error> {
    let ns = schedule
        .namespace()
        .ok_or_else(|| Error::Invalid("a MigrationSchedule is namespaced".into()))?;
    let name = schedule.name_any();
    let mut runs: Vec<RunView> = ctx
        .caches
        .runs_of(&ns, &name)
        .iter()
        .map(|r| run_view(r))
        .collect();
    // A run created a moment ago that the cache does not show yet still counts.
    let cached: Vec<&str> = runs.iter().map(|r| r.name.as_str()).collect();
    let pending = ctx.not_yet_cached(&format!("{ns}/{name}"), &cached, chrono::Utc::now());
    runs.extend(pending.into_iter().map(|r| RunView {
        name: r.name,
        created: Some(r.at),
        run_request: r.run_request,
        made_here: true,
        ..Default::default()
    }));
    let conflict = super::admission::conflict_in(&ctx.caches, schedule);
    let conflict_pending =
        conflict.is_none() && super::admission::conflict_pending(&ctx.caches, schedule);
    let selections: Vec<_> = ctx
        .caches
        .selections_of(&ns, &name)
        .into_iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .collect();
    let companies = decide::selected_companies(
        &selections
            .iter()
            .map(|s| {
                let created = s.creation_timestamp().map(|t| utc(&t)).unwrap_or_default();
                (
                    s.meta().name.as_deref().unwrap_or_default(),
                    created,
                    &s.spec,
                )
            })
            .collect::<Vec<_>>(),
    )
    .map_err(|e| ("NoCompanySelected", e))
    .and_then(|chosen| {
        match oldest(&selections) {
            Some(s) => {
                decide::selection_checked(&s.name_any(), s.metadata.generation, s.status.as_ref())
            }
            None => Ok(()),
        }
        .map(|()| chosen)
    });
    Ok(Read {
        runs,
        conflict,
        conflict_pending,
        companies,
        resetting: super::queries::pending_reset(&ctx.caches, &ns, &name),
        reach: ctx
            .probes
            .observe(&ctx.client, schedule, super::reach::FIRST_WAIT)
            .await,
        rotating: super::queries::pending_rotation(&ctx.caches, &ns, &name),
        key: super::runtime_key::view(ctx, schedule),
        release: super::releases::Lookup::of(schedule)
            .and_then(|lookup| ctx.releases.latest(&ctx.client, schedule, lookup)),
        company_views: company_views(&selections),
        users_mapped: users_mapped(ctx, &ns, &name),
        runner_refused: match schedule.spec.runtime.runner {
            crate::api::schedule::Runner::InProcess => ctx.in_process_refused(&ns),
            crate::api::schedule::Runner::Job => None,
        },
    })
}

/// The selected companies of the schedule's CompanySelection (the oldest, as for runs), with
/// their initialization.
fn company_views(selections: &[Arc<crate::api::CompanySelection>]) -> Vec<checklist::CompanyView> {
    use crate::api::companies::InitializationState;
    let Some(selection) = oldest(selections) else {
        return vec![];
    };
    let status = selection.status.clone().unwrap_or_default();
    selection
        .spec
        .companies
        .iter()
        .filter(|c| c.migrate)
        .map(|c| checklist::CompanyView {
            in_source: (!status.companies.is_empty())
                .then(|| status.companies.iter().any(|s| s.name == c.name)),
            name: c.name.clone(),
            initialized: status.companies.iter().any(|s| {
                s.name == c.name && s.initialization == Some(InitializationState::Initialized)
            }),
        })
        .collect()
}

/// The CompanySelection that runs use: the oldest, then the first by name.
fn oldest(
    selections: &[Arc<crate::api::CompanySelection>],
) -> Option<&Arc<crate::api::CompanySelection>> {
    selections
        .iter()
        .min_by_key(|s| (s.creation_timestamp().map(|t| utc(&t)), s.name_any()))
}

/// Whether a UserMapping of the schedule has applied every mapping (its Ready is True).
fn users_mapped(ctx: &Context, ns: &str, schedule: &str) -> bool {
    ctx.caches.mappings.state().iter().any(|m| {
        m.metadata.namespace.as_deref() == Some(ns)
            && m.spec.schedule_ref.name == schedule
            && m.status.as_ref().is_some_and(|s| {
                s.conditions
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            })
    })
}

/// Takes one step of Disable Cloud Migration.
async fn disable(
    ctx: &Context,
    schedule: &MigrationSchedule,
    step: checklist::DisableStep,
) -> Result<super::note::Note, String> {
    use super::note::Note;
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    match step {
        checklist::DisableStep::RemoveChangeTracking => {
            // The target first: once its state is marked, a run after re-enabling copies
            // every table in full, whatever happens to the source's triggers.
            let target =
                crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Target)
                    .await?;
            let marked = crate::engine::reset::mark_disabled(&target).await;
            target.close().await;
            marked.map_err(|e| format!("target database: {e}"))?;
            let source =
                crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Source)
                    .await?;
            let removed = crate::engine::tracking::disable_all(&source).await;
            source.close().await;
            let tables = removed.map_err(|e| format!("source database: {e}"))?;
            ctx.probes.refresh(&ns, &name);
            Ok(Note::normal(
                "ChangeTrackingRemoved",
                format!("change tracking removed from {tables} tables of the source"),
            ))
        }
        checklist::DisableStep::RevokeRuntimeKey => {
            super::runtime_key::revoke(ctx, schedule).await?;
            Ok(Note::normal(
                "RuntimeKeyRevoked",
                format!(
                    "the login role {} was dropped and Secret {} deleted",
                    crate::logins::role_of(schedule).unwrap_or_default(),
                    crate::logins::secret_name(&name)
                ),
            ))
        }
    }
}

/// The run to create, as an object.
fn new_run(schedule: &MigrationSchedule, ns: &str, new: &decide::NewRun) -> MigrationRun {
    let name = schedule.name_any();
    let mut annotations = BTreeMap::new();
    annotations.insert(TRIGGER.to_string(), new.trigger.to_string());
    if let Some(t) = new.scheduled_time {
        annotations.insert(SCHEDULED_TIME.to_string(), t.to_rfc3339());
    }
    if let Some(r) = &new.run_request {
        annotations.insert(RUN_REQUEST.to_string(), r.clone());
    }
    let mut labels = BTreeMap::new();
    if super::annotations::fits_label(&name) {
        labels.insert(SCHEDULE_LABEL.to_string(), name.clone());
    }
    MigrationRun {
        metadata: ObjectMeta {
            name: Some(new.name.clone()),
            namespace: Some(ns.to_string()),
            owner_references: schedule.controller_owner_ref(&()).map(|o| vec![o]),
            annotations: Some(annotations),
            labels: Some(labels),
            ..Default::default()
        },
        spec: MigrationRunSpec {
            schedule_ref: ScheduleRef { name },
            r#type: Default::default(),
            companies: new.companies.clone(),
            stop: false,
        },
        status: None,
    }
}

/// When a schedule is looked at again at the latest, so that its databases are probed.
const PROBE_AGAIN: std::time::Duration = super::reach::PROBE_EVERY;

/// Act: the writes the decision asks for, then the status if it changed.
async fn act(
    schedule: &MigrationSchedule,
    ctx: &Context,
    decision: Decision,
) -> Result<Action, Error> {
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let runs_api: Api<MigrationRun> = Api::namespaced(ctx.client.clone(), &ns);
    if let Some(run) = &decision.stop {
        // Through the run's status, with a field manager of its own: the run's spec is its
        // author's, and the run's reconciler keeps the field.
        let body = json!({
            "apiVersion": MigrationRun::api_version(&()),
            "kind": MigrationRun::kind(&()),
            "status": {"stopRequested": format!(
                "a run of MigrationSchedule {name} is due, and concurrencyPolicy is Replace"
            )},
        });
        runs_api
            .patch_status(
                run,
                &PatchParams::apply(STOP_MANAGER).force(),
                &Patch::Apply(body),
            )
            .await
            .map_err(|e| Error::Act(format!("stopping MigrationRun {run}"), e))?;
    }
    if let Some(new) = &decision.create {
        match runs_api
            .create(&PostParams::default(), &new_run(schedule, &ns, new))
            .await
        {
            Ok(_) => {}
            // A scheduled or first run made before a restart: taken as it is. A manual run's
            // name is new each time, so a clash means the cache was behind: try again once it
            // has caught up, under a free name.
            Err(kube::Error::Api(e)) if e.code == 409 && new.trigger != "Manual" => {}
            Err(e) => return Err(Error::Act(format!("creating MigrationRun {}", new.name), e)),
        }
        ctx.created(
            &format!("{ns}/{name}"),
            CreatedRun {
                name: new.name.clone(),
                run_request: new.run_request.clone(),
                at: chrono::Utc::now(),
            },
        );
    }
    for old in &decision.delete {
        match runs_api.delete(old, &DeleteParams::background()).await {
            Ok(_) => tracing::info!(run = %old, "pruned a run beyond the history limits"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(Error::Act(format!("deleting MigrationRun {old}"), e)),
        }
    }
    // An unchanged status is not written again: a quiet schedule costs no API call.
    if schedule.status.as_ref() != Some(&decision.status) {
        ctx.apply_status(schedule, &decision.status).await?;
    }
    ctx.publish(schedule, &decision.notes).await;
    if let Some(step) = decision.disable {
        let Some(_share) = ctx.database_share(&schedule.namespace().unwrap_or_default()) else {
            return Ok(Action::requeue(super::context::SHARE_WAIT));
        };
        match disable(ctx, schedule, step).await {
            Ok(note) => ctx.publish(schedule, &[note]).await,
            Err(e) => {
                let note = super::note::Note::warning("DisableFailed", e.clone());
                ctx.publish(schedule, &[note]).await;
                return Err(Error::Retry(e));
            }
        }
        // The next step follows at once; the probe's answer wakes the schedule too.
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    }
    Ok(match decision.requeue {
        // The databases are probed again every few minutes, whatever else is due.
        Requeue::At(wait) => Action::requeue(wait.min(PROBE_AGAIN)),
        Requeue::Recheck(wait) => {
            Action::requeue(super::jitter::spread(wait.min(PROBE_AGAIN), &(ns, name)))
        }
        Requeue::OnChange => Action::requeue(super::jitter::spread(PROBE_AGAIN, &(ns, name))),
    })
}

#[cfg(test)]
mod tests {
    //! The exact API calls of a reconcile, against a tower-test mock of the API server.
    use super::*;
    use crate::fixtures::ApiServer;
    use http::Method;

    /// A schedule that holds its finalizer already, as one whose runs may have put change
    /// tracking on its source does.
    fn schedule(spec: serde_json::Value) -> MigrationSchedule {
        serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1",
            "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop", "uid": "u-1", "generation": 3,
                         "creationTimestamp": "2026-05-01T00:00:00Z",
                         "finalizers": [deletion::FINALIZER]},
            "spec": spec
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn a_run_request_creates_an_owned_run_then_acknowledges_it_without_a_list() {
        let (client, mut server) = ApiServer::new();
        let schedule = schedule(json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "sqlite:///var/lib/cloudmigrate/bc.db"},
            "runRequest": "please",
            "runtime": {"runner": "InProcess"}
        }));
        let ctx = Context::for_test(client, vec![schedule.clone()], vec![]);
        // The probe of the databases has answered: the status holds still between looks.
        ctx.probes.found(
            &schedule,
            crate::controller::reach::Reach {
                source: Ok(()),
                target: Ok(()),
                target_reason: None,
                tracking: Some(true),
                source_lacks: None,
                not_migrated: Some(vec![]),
                standing: None,
                endpoints: Default::default(),
            },
        );
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx.clone()));

        // The runs and the neighbours come from the caches: the first call is the new run.
        let call = server
            .expect(
                Method::POST,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns?",
            )
            .await;
        let body = &call.body;
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        assert!(name.starts_with("erp-"), "{name}");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(body["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(body["metadata"]["annotations"][TRIGGER], "Manual");
        assert_eq!(body["metadata"]["annotations"][RUN_REQUEST], "please");
        assert_eq!(body["metadata"]["labels"][SCHEDULE_LABEL], "erp");
        assert_eq!(body["spec"]["scheduleRef"]["name"], "erp");
        call.echo(201);

        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp/status?&force=true&fieldManager=cloudmigrate-controller",
            )
            .await;
        let body = call.body.clone();
        assert_eq!(body["apiVersion"], "cloudmigrate.io/v1alpha1");
        assert_eq!(body["kind"], "MigrationSchedule");
        assert_eq!(body["status"]["lastHandledRunRequest"], "please");
        assert_eq!(body["status"]["activeRun"], name.as_str());
        assert_eq!(body["status"]["observedGeneration"], 3);
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = body["status"].clone();
        call.reply(200, obj);

        // The event of the new run.
        let call = server
            .expect(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/shop/events?",
            )
            .await;
        assert_eq!(call.body["reason"], "RunCreated");
        assert_eq!(call.body["regarding"]["name"], "erp");
        call.echo(201);

        // No cron: only a change, or the next probe of the databases, brings it back.
        let action = task.await.unwrap().unwrap();
        assert_ne!(action, Action::await_change());

        // Woken again before the cache shows the new run or the acknowledgement: the run it
        // created counts, so the request is acknowledged again (now with the run as the last
        // one) and no second run starts.
        let again = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx.clone()));
        let call = server.next().await;
        assert_eq!(call.method, Method::PATCH, "{}", call.uri);
        assert_eq!(call.body["status"]["lastHandledRunRequest"], "please");
        assert_eq!(call.body["status"]["activeRun"], name.as_str());
        assert_eq!(call.body["status"]["lastRun"]["name"], name.as_str());
        let written = call.body["status"].clone();
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = written.clone();
        call.reply(200, obj);
        again.await.unwrap().unwrap();

        // Woken once more, the cache still behind: the status it would write is the one it
        // wrote on this same version of the schedule, so it makes no call at all.
        let third = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx.clone()));
        let made = tokio::select! {
            call = server.next() => Some(format!("{} {}", call.method, call.uri)),
            done = third => { done.unwrap().unwrap(); None }
        };
        assert_eq!(
            made, None,
            "a reconcile on a cache behind its own write made a call"
        );

        // Once the schedule has moved on (another resourceVersion) without that status, it is
        // written again.
        let mut moved = schedule.clone();
        moved.metadata.resource_version = Some("2".into());
        let fourth = tokio::spawn(reconcile(Arc::new(moved), ctx));
        let call = server.next().await;
        assert_eq!(call.method, Method::PATCH, "{}", call.uri);
        assert_eq!(call.body["status"], written);
        call.reply(200, serde_json::to_value(&schedule).unwrap());
        fourth.await.unwrap().unwrap();
        server.assert_no_list();
    }

    #[tokio::test]
    async fn a_quiet_schedule_makes_no_call_and_sleeps_until_its_due_time() {
        let (client, server) = ApiServer::new();
        let mut schedule = schedule(json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "sqlite:///var/lib/cloudmigrate/bc.db"},
            "schedule": "0 2 * * *"
        }));
        // The status as the previous reconcile wrote it, after the probe of the databases.
        let now = chrono::Utc::now();
        let reach = crate::controller::reach::Reach {
            source: Ok(()),
            target: Ok(()),
            target_reason: None,
            tracking: Some(true),
            source_lacks: None,
            not_migrated: Some(vec![]),
            standing: None,
            endpoints: Default::default(),
        };
        let observed = Read {
            runs: vec![],
            conflict: None,
            conflict_pending: false,
            companies: Ok(None),
            resetting: None,
            reach: Some(reach.clone()),
            rotating: None,
            key: Default::default(),
            company_views: vec![],
            users_mapped: false,
            runner_refused: None,
            release: None,
        };
        // The first look at it starts today's run, if 02:00 has passed; the next one is quiet.
        let mut o = observed.observed(&schedule);
        o.now = now;
        schedule.status = Some(decide::decide(o).status);
        let mut o = observed.observed(&schedule);
        o.now = now;
        let decision = decide::decide(o);
        let Requeue::At(due_in) = decision.requeue else {
            panic!(
                "a cron schedule wakes at its due time: {:?}",
                decision.requeue
            );
        };
        assert!(
            due_in <= std::time::Duration::from_secs(24 * 3600),
            "{due_in:?}"
        );
        schedule.status = Some(decision.status);
        let ctx = Context::for_test(client, vec![schedule.clone()], vec![]);
        ctx.probes.found(&schedule, reach);
        let mut server = server;
        let action = tokio::select! {
            a = reconcile(Arc::new(schedule), ctx) => a.unwrap(),
            call = server.next() => panic!("a quiet schedule called {} {}: {}", call.method, call.uri, call.body),
        };
        // The same wake-up, give or take the second that passed since, unless the next probe
        // of the databases comes first.
        let second = std::time::Duration::from_secs(1);
        let wake = due_in.min(PROBE_AGAIN);
        assert!(
            [wake - second, wake, wake + second]
                .iter()
                .any(|d| action == Action::requeue(*d)),
            "{action:?} is not in {wake:?}"
        );
        assert!(server.seen.is_empty(), "calls: {:?}", server.seen);
    }

    #[tokio::test]
    async fn runs_beyond_the_history_limits_are_deleted() {
        let (client, mut server) = ApiServer::new();
        let schedule = schedule(json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "sqlite:///var/lib/cloudmigrate/bc.db"},
            "history": {"successful": 1, "failed": 1}
        }));
        let run = |name: &str, result: &str, end: &str| -> MigrationRun {
            serde_json::from_value(json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
                "metadata": {"name": name, "namespace": "shop",
                             "creationTimestamp": end,
                             "annotations": {"cloudmigrate.io/trigger": "Scheduled"},
                             "ownerReferences": [{"apiVersion": "cloudmigrate.io/v1alpha1",
                                 "kind": "MigrationSchedule", "name": "erp", "uid": "u-1",
                                 "controller": true}]},
                "spec": {"scheduleRef": {"name": "erp"}},
                "status": {"result": result, "completionTime": end}
            }))
            .unwrap()
        };
        let runs = vec![
            run("erp-1", "Succeeded", "2026-05-01T02:00:00Z"),
            run("erp-2", "Failed", "2026-05-02T02:00:00Z"),
            run("erp-3", "Succeeded", "2026-05-03T02:00:00Z"),
            run("erp-4", "Stopped", "2026-05-04T02:00:00Z"),
            // Another schedule's run, in the same namespace: not this one's to prune.
            serde_json::from_value(json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
                "metadata": {"name": "other-1", "namespace": "shop",
                             "creationTimestamp": "2026-04-01T02:00:00Z"},
                "spec": {"scheduleRef": {"name": "other"}},
                "status": {"result": "Failed", "completionTime": "2026-04-01T02:00:00Z"}
            }))
            .unwrap(),
        ];
        let ctx = Context::for_test(client, vec![schedule.clone()], runs);
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));

        // The older of each kind goes: erp-2 (failed side), erp-1 (successful side).
        let mut deleted = vec![];
        for _ in 0..2 {
            let call = server.next().await;
            assert_eq!(call.method, Method::DELETE);
            deleted.push(call.uri.clone());
            call.reply(
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

        let call = server.next().await;
        assert_eq!(call.method, Method::PATCH);
        assert!(
            call.uri.contains("/migrationschedules/erp/status?"),
            "{}",
            call.uri
        );
        assert_eq!(call.body["status"]["lastRun"]["name"], "erp-4");
        assert_eq!(
            call.body["status"]["lastSuccessfulTime"],
            "2026-05-03T02:00:00Z"
        );
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = call.body["status"].clone();
        call.reply(200, obj);
        task.await.unwrap().unwrap();
        server.assert_no_list();
    }

    #[tokio::test]
    async fn a_new_schedule_stores_its_runtime_key_in_a_secret_before_the_role_and_never_shows_it()
    {
        use base64::Engine;
        let (client, mut server) = ApiServer::new();
        // A target that refuses connections: the Secret is made, setting the role fails.
        let mut schedule = schedule(json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "postgres://admin@127.0.0.1:1/bc"},
            "runtime": {"runner": "InProcess"}
        }));
        schedule.metadata.finalizers = None;
        let ctx = Context::for_test(client, vec![schedule.clone()], vec![]);
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));

        // First the finalizer, so that a deletion at any later moment drops the role.
        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp?",
            )
            .await;
        assert_eq!(
            call.body["metadata"]["finalizers"],
            json!([deletion::FINALIZER])
        );
        let mut held = serde_json::to_value(&schedule).unwrap();
        held["metadata"]["finalizers"] = json!([deletion::FINALIZER]);
        call.reply(200, held);

        let call = server
            .expect(Method::POST, "/api/v1/namespaces/shop/secrets?")
            .await;
        let body = call.body.clone();
        assert_eq!(body["metadata"]["name"], "erp-runtime-key");
        assert_eq!(body["type"], "kubernetes.io/basic-auth");
        assert_eq!(body["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(
            body["metadata"]["labels"]["cloudmigrate.io/runtime-key"],
            "erp"
        );
        let decode = |v: &serde_json::Value| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap()
        };
        assert_eq!(
            decode(&body["data"]["username"]),
            b"cloudmigrate_rt_shop_erp"
        );
        let key = String::from_utf8(decode(&body["data"]["password"])).unwrap();
        assert_eq!(key.len(), 43);
        assert_eq!(
            body["metadata"]["annotations"]["cloudmigrate.io/key-fingerprint"],
            crate::engine::access::fingerprint(key.as_bytes()).as_str()
        );
        call.echo(201);
        // The role is set from what the Secret holds.
        let call = server
            .expect(
                Method::GET,
                "/api/v1/namespaces/shop/secrets/erp-runtime-key",
            )
            .await;
        call.reply(200, body);

        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp/status?&force=true&fieldManager=cloudmigrate-controller",
            )
            .await;
        let status = call.body["status"].clone();
        let text = status.to_string();
        assert!(!text.contains(&key), "the status shows the key");
        let condition = |t: &str| {
            status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(condition("RuntimeKey")["status"], "False");
        assert_eq!(condition("RuntimeKey")["reason"], "KeyNotMade");
        let message = condition("RuntimeKey")["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("target database"), "{message}");
        assert_eq!(condition("Ready")["reason"], "RuntimeKeyNotReady");
        assert_eq!(status["runtime"]["keyRole"], "cloudmigrate_rt_shop_erp");
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = status;
        call.reply(200, obj);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_deleted_schedule_whose_databases_are_silent_says_why_then_goes_after_the_deadline() {
        let (client, mut server) = ApiServer::new();
        let mut schedule = schedule(json!({
            "source": {"url": "postgres://erp@127.0.0.1:1/nav"},
            "target": {"url": "postgres://admin@127.0.0.1:1/bc"}
        }));
        schedule.metadata.finalizers =
            Some(vec!["example.com/other".into(), deletion::FINALIZER.into()]);
        schedule.metadata.resource_version = Some("41".into());
        let deleted = chrono::Utc::now() - chrono::Duration::seconds(30);
        schedule.metadata.deletion_timestamp = Some(crate::clock::time(deleted));
        let ctx = Context::for_test(client, vec![schedule.clone()], vec![]);

        // Within the deadline: the finalizer stays, the condition and a Warning say why.
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx.clone()));
        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp/status?&force=true&fieldManager=cloudmigrate-controller",
            )
            .await;
        let key = call.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "RuntimeKey")
            .unwrap()
            .clone();
        assert_eq!(key["reason"], "RoleNotDropped");
        let message = key["message"].as_str().unwrap();
        assert!(
            message.contains(r#"DROP ROLE "cloudmigrate_rt_shop_erp""#),
            "{message}"
        );
        let tracking = call.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "ChangeTracking")
            .unwrap()
            .clone();
        assert_eq!(tracking["reason"], "NotRemoved");
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = call.body["status"].clone();
        call.reply(200, obj);
        for reason in ["RuntimeRoleNotDropped", "ChangeTrackingNotRemoved"] {
            let call = server.next().await;
            assert_eq!(call.body["reason"], reason);
            assert_eq!(call.body["type"], "Warning");
            call.echo(201);
        }
        let action = task.await.unwrap().unwrap();
        assert_ne!(action, Action::await_change(), "it is tried again");

        // Past the deadline: only this finalizer goes, on the resourceVersion read.
        schedule.metadata.deletion_timestamp = Some(crate::clock::time(
            chrono::Utc::now() - chrono::Duration::from_std(deletion::GIVE_UP_AFTER).unwrap(),
        ));
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));
        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationschedules/erp?",
            )
            .await;
        assert_eq!(
            call.body,
            json!({"metadata": {"finalizers": ["example.com/other"], "resourceVersion": "41"}})
        );
        call.reply(200, serde_json::to_value(&schedule).unwrap());
        for reason in ["RuntimeRoleLeft", "ChangeTrackingLeft"] {
            let call = server.next().await;
            assert_eq!(call.body["reason"], reason);
            assert_eq!(call.body["type"], "Warning");
            call.echo(201);
        }
        assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    }

    #[tokio::test]
    async fn a_schedule_on_another_namespaces_database_is_in_conflict() {
        let (client, mut server) = ApiServer::new();
        let spec = json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "postgres://cloud.example/bc"}
        });
        let mut mine = schedule(spec.clone());
        mine.metadata.finalizers = None;
        let mut older: MigrationSchedule = schedule(spec);
        older.metadata.namespace = Some("other-tenant".into());
        older.metadata.uid = Some("u-0".into());
        older.metadata.creation_timestamp = Some(crate::clock::time(
            chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
                .unwrap()
                .to_utc(),
        ));
        // The older one has logged in to its databases (Ready); one that has not blocks
        // nobody (below).
        older.status = Some(
            serde_json::from_value(json!({"conditions": [{
                "type": "Ready", "status": "True", "reason": "Valid", "message": "",
                "lastTransitionTime": "2026-01-01T00:00:00Z"
            }]}))
            .unwrap(),
        );
        let ctx = Context::for_test(client, vec![mine.clone(), older.clone()], vec![]);
        let task = tokio::spawn(reconcile(Arc::new(mine.clone()), ctx));
        let call = server.next().await;
        assert_eq!(call.method, Method::PATCH);
        let conditions = call.body["status"]["conditions"]
            .as_array()
            .unwrap()
            .clone();
        let conflict = conditions.iter().find(|c| c["type"] == "Conflict").unwrap();
        assert_eq!(conflict["status"], "True");
        let message = conflict["message"].as_str().unwrap();
        // The other tenant's schedule is not named.
        assert!(
            message.contains("(in another namespace) already migrates the same source")
                && !message.contains("other-tenant"),
            "{message}"
        );
        let mut obj = serde_json::to_value(&mine).unwrap();
        obj["status"] = call.body["status"].clone();
        call.reply(200, obj);
        let action = task.await.unwrap().unwrap();
        assert_ne!(
            action,
            Action::await_change(),
            "a conflict is looked at again"
        );
        server.assert_no_list();
    }

    #[tokio::test]
    async fn replace_stops_the_active_run_through_its_status_not_its_spec() {
        let (client, mut server) = ApiServer::new();
        let schedule = schedule(json!({
            "source": {"url": "postgres://erp.example/nav"},
            "target": {"url": "sqlite:///var/lib/cloudmigrate/bc.db"},
            "runRequest": "now",
            "concurrencyPolicy": "Replace"
        }));
        let active: MigrationRun = serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationRun",
            "metadata": {"name": "by-hand", "namespace": "shop",
                         "creationTimestamp": "2026-05-02T00:00:00Z",
                         "ownerReferences": [{"apiVersion": "cloudmigrate.io/v1alpha1",
                             "kind": "MigrationSchedule", "name": "erp", "uid": "u-1",
                             "controller": true}]},
            "spec": {"scheduleRef": {"name": "erp"}},
            "status": {"startTime": "2026-05-02T00:00:00Z"}
        }))
        .unwrap();
        let ctx = Context::for_test(client, vec![schedule.clone()], vec![active.clone()]);
        let task = tokio::spawn(reconcile(Arc::new(schedule.clone()), ctx));
        let call = server
            .expect(
                Method::PATCH,
                "/apis/cloudmigrate.io/v1alpha1/namespaces/shop/migrationruns/by-hand/status?&force=true&fieldManager=cloudmigrate-controller-replace",
            )
            .await;
        assert!(call.body.get("spec").is_none(), "{}", call.body);
        let why = call.body["status"]["stopRequested"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(why.contains("Replace"), "{why}");
        let mut obj = serde_json::to_value(&active).unwrap();
        obj["status"]["stopRequested"] = why.into();
        call.reply(200, obj);
        // The schedule's status, then the event; the request waits until the run has ended.
        let call = server.next().await;
        assert!(
            call.uri.contains("/migrationschedules/erp/status"),
            "{}",
            call.uri
        );
        assert!(call.body["status"].get("lastHandledRunRequest").is_none());
        let pending = &call.body["status"]["pendingRunRequest"];
        assert_eq!(
            (&pending["token"], &pending["reason"]),
            (&json!("now"), &json!("RunActive"))
        );
        let mut obj = serde_json::to_value(&schedule).unwrap();
        obj["status"] = call.body["status"].clone();
        call.reply(200, obj);
        let call = server.next().await;
        assert_eq!(call.body["reason"], "RunReplaced");
        call.echo(201);
        let call = server.next().await;
        assert_eq!(call.body["reason"], "RunRequestWaiting");
        call.echo(201);
        task.await.unwrap().unwrap();
    }
}
