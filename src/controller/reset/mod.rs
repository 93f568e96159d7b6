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
use crate::api::schedule::MigrationSchedule;
use crate::engine::reset::Outcome;
use decide::{ResetObserved, finished};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

/// Clears the schedule's target: the tables it copies into the target database; for Dynamics
/// GP, also into each company's database on the target's server (each with its own record of
/// the request). The outcome of all of them: cleared, with the tables together, unless every
/// database had done this request before.
async fn clear(ctx: &Context, schedule: &MigrationSchedule, name: &str) -> Result<Outcome, String> {
    let mut databases = vec![None];
    if schedule.spec.product == crate::vocabulary::Product::Gp {
        databases.extend(gp_databases(ctx, schedule).await?.into_iter().map(Some));
    }
    let mut outcome: Option<Outcome> = None;
    for database in &databases {
        let o = clear_database(ctx, schedule, name, database.as_deref())
            .await
            .map_err(|e| match database {
                Some(db) => format!("{e} (GP company database {db})"),
                None => e,
            })?;
        outcome = Some(match (outcome, o) {
            (None, o) => o,
            (Some(Outcome::Cleared(mut a)), Outcome::Cleared(b)) => {
                a.tables += b.tables;
                a.companies += b.companies;
                Outcome::Cleared(a)
            }
            (Some(Outcome::Cleared(a)), Outcome::AlreadyDone(_)) => Outcome::Cleared(a),
            (Some(Outcome::AlreadyDone(_)), o) => o,
        });
    }
    // `databases` holds the target's own database at least.
    outcome.ok_or_else(|| "no database to clear".to_string())
}

/// The GP company databases (`SY01500`) that the target's server has: a company never
/// migrated has none there, and nothing to clear.
async fn gp_databases(ctx: &Context, schedule: &MigrationSchedule) -> Result<Vec<String>, String> {
    let (system, target) = crate::logins::open_both(&ctx.client, schedule, None).await?;
    let found = crate::engine::gp::databases_on(&system, &target, &schedule.spec.target.url)
        .await
        .map_err(|e| format!("reading the GP company databases: {e}"));
    system.close().await;
    target.close().await;
    found
}

/// Clears one database pair: what the schedule copies, read from its source, are the only
/// tables a reset may clear in the target.
async fn clear_database(
    ctx: &Context,
    schedule: &MigrationSchedule,
    name: &str,
    database: Option<&str>,
) -> Result<Outcome, String> {
    let (source, db) = crate::logins::open_both(&ctx.client, schedule, database).await?;
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
    let key = format!(
        "{}/{}",
        schedule.namespace().unwrap_or_default(),
        schedule.name_any()
    );
    let request = crate::engine::ledger::requests::Request {
        schedule: &key,
        kind: "CloudReset",
        name,
    };
    let cleared = crate::engine::reset::clear(&db, &request, &copied).await;
    db.close().await;
    cleared.map_err(|e| format!("target database: {e}"))
}

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
    let outcome = clear(&ctx, &schedule, &reset.name_any()).await;
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
