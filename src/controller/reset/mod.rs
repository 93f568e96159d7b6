//! The CloudReset reconciler: read the schedule, its runs and its other resets from the
//! caches; decide (`decide`); write the status, so that the schedule starts no run meanwhile;
//! then clear the target (`engine::reset`) and record the outcome, once and for good.

pub mod decide;

use super::conditions::At;
use super::context::Context;
use super::error::Error;
use super::note::Note;
use super::queries;
use crate::api::CloudReset;
use crate::engine::reset::Outcome;
use decide::{ResetObserved, finished};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

/// The CloudReset controller: woken by a change of the object, and by a change of the schedule
/// it names (its active run ended).
pub async fn controller(
    watch: super::watches::Dependent<CloudReset>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    super::watches::drive_dependent(watch, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(reset = %format!("{}/{}", reset.namespace().unwrap_or_default(), reset.name_any())))]
pub async fn reconcile(reset: Arc<CloudReset>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = reset
        .namespace()
        .ok_or_else(|| Error::Invalid("a CloudReset is namespaced".into()))?;
    let status = reset.status.clone().unwrap_or_default();
    if finished(&status) || reset.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let schedule_name = &reset.spec.schedule_ref.name;
    let schedule = ctx.caches.schedule(&ns, schedule_name);
    let observed = ResetObserved {
        name: reset.name_any(),
        schedule: schedule_name.clone(),
        confirm: reset.spec.confirm.clone(),
        generation: reset.metadata.generation,
        status: status.clone(),
        schedule_exists: schedule.is_some(),
        lake_target: schedule
            .as_ref()
            .is_some_and(|s| crate::lake::store::is_lake_url(&s.spec.target.url)),
        older_pending: queries::older_reset(&ctx.caches, &ns, &reset),
        active_run: queries::active_run(&ctx.caches, &ns, schedule_name),
        initializing: queries::initializing(&ctx.caches, &ns, schedule_name),
        now: chrono::Utc::now(),
    };
    let d = decide::decide(&observed);
    if reset.status.is_none() || d.status != status {
        ctx.apply_status(reset.as_ref(), &d.status).await?;
    }
    let Some(schedule) = schedule.filter(|_| d.clear) else {
        // Waiting: a run that ends, or a schedule that appears, wakes the reset.
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    // Database work waits for the namespace's share, without holding a reconcile slot.
    let Some(_share) = ctx.database_share(&ns) else {
        return Ok(Action::requeue(super::context::SHARE_WAIT));
    };
    let outcome = async {
        // What the schedule copies, from its source: the only tables a reset may clear.
        let source =
            crate::logins::open_side(&ctx.client, &schedule, crate::logins::Side::Source).await?;
        let db = match crate::logins::open_side(&ctx.client, &schedule, crate::logins::Side::Target)
            .await
        {
            Ok(db) => db,
            Err(e) => {
                source.close().await;
                return Err(e);
            }
        };
        let options = crate::convert::plan_options(&schedule.spec, None);
        let copied = crate::engine::reset::copied_tables(&source, &options, db.dialect()).await;
        source.close().await;
        let copied = match copied {
            Ok(c) => c,
            Err(e) => {
                db.close().await;
                return Err(format!(
                    "{e}; a reset reads the source to know which tables the schedule copies"
                ));
            }
        };
        let key = format!("{ns}/{schedule_name}");
        let name = reset.name_any();
        let request = crate::engine::ledger::requests::Request {
            schedule: &key,
            kind: "CloudReset",
            name: &name,
        };
        let cleared = crate::engine::reset::clear(&db, &request, &copied).await;
        db.close().await;
        cleared.map_err(|e| format!("target database: {e}"))
    }
    .await;
    let at = At {
        generation: reset.metadata.generation,
        now: chrono::Utc::now(),
    };
    let note = match &outcome {
        Ok(Outcome::Cleared(c)) => Note::normal(
            "Reset",
            format!(
                "cleared {} migrated tables in the target of {schedule_name}",
                c.tables
            ),
        ),
        Ok(Outcome::AlreadyDone(done)) => Note::normal(
            "AlreadyDone",
            format!(
                "this reset ran on the target of {schedule_name} at {}; nothing was cleared now",
                done.at
            ),
        ),
        Err(e) => Note::warning("ResetFailed", e.clone()),
    };
    let done = decide::ended(d.status, at, outcome);
    ctx.apply_status(reset.as_ref(), &done).await?;
    ctx.publish(reset.as_ref(), &[note]).await;
    Ok(Action::await_change())
}
