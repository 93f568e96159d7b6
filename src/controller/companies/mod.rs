//! The CompanySelection reconciler: read the schedule, the other selections for it and its
//! last successful run from the caches, and the companies with their estimated sizes from the
//! source when the ones in the status are stale (one catalog read, whatever the number of
//! tables); decide the status (`decide`); write it when it changed.

pub mod decide;

use super::context::Context;
use super::error::Error;
use crate::api::CompanySelection;
use crate::api::run::{RunResult, RunType};
use crate::api::schedule::MigrationSchedule;
use crate::clock::utc;
use decide::{FoundCompany, LastRun, SelectionObserved};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

#[tracing::instrument(skip_all, fields(selection = %format!("{}/{}", selection.namespace().unwrap_or_default(), selection.name_any())))]
pub async fn reconcile(
    selection: Arc<CompanySelection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = format!(
        "CompanySelection/{}/{}",
        selection.namespace().unwrap_or_default(),
        selection.name_any()
    );
    ctx.measured(&key, async {
        let ns = selection
            .namespace()
            .ok_or_else(|| Error::Invalid("a CompanySelection is namespaced".into()))?;
        let schedule_name = &selection.spec.schedule_ref.name;
        let schedule = ctx.caches.schedule(&ns, schedule_name);
        let last_success = last_success(&ctx, &ns, schedule_name);
        let status = selection.status.clone().unwrap_or_default();
        let now = chrono::Utc::now();
        let found = match &schedule {
            Some(s) if decide::needs_reading(&status, last_success.as_ref().map(|r| r.at), now) => {
                Some(read_companies(&ctx.client, &ns, s).await)
            }
            _ => None,
        };
        let decided = decide::decide(SelectionObserved {
            generation: selection.metadata.generation,
            spec: &selection.spec,
            status: status.clone(),
            schedule_exists: schedule.is_some(),
            older: older(&ctx, &ns, &selection),
            found,
            last_success,
            now,
        });
        if selection.status.is_none() || decided != status {
            ctx.apply_status(selection.as_ref(), &decided).await?;
        }
        // Sizes go stale: look again when they do (a successful run wakes the schedule, and
        // through its run the selection, sooner).
        Ok(Action::requeue(super::jitter::spread(
            decide::SIZES_FRESH_FOR,
            &key,
        )))
    })
    .await
}

/// The oldest other CompanySelection for the same schedule, if it is older than this one: the
/// runs use that one.
fn older(ctx: &Context, ns: &str, me: &CompanySelection) -> Option<String> {
    let created = |s: &CompanySelection| s.creation_timestamp().map(|t| utc(&t));
    let mine = (created(me), me.name_any());
    ctx.caches
        .selections_of(ns, &me.spec.schedule_ref.name)
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .map(|s| (created(s), s.name_any()))
        .filter(|other| *other < mine)
        .min()
        .map(|(_, name)| name)
}

/// The schedule's newest run that migrated data and succeeded (wholly or in part).
pub(super) fn last_success(ctx: &Context, ns: &str, schedule: &str) -> Option<LastRun> {
    ctx.caches
        .runs_of(ns, schedule)
        .iter()
        .filter(|r| r.spec.r#type != RunType::Diagnostic)
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            matches!(
                s.result,
                Some(RunResult::Succeeded | RunResult::PartiallySucceeded)
            )
            .then_some(())?;
            Some(LastRun {
                name: r.name_any(),
                at: utc(s.completion_time.as_ref()?),
                companies: r.spec.companies.clone(),
            })
        })
        .max_by_key(|r| r.at)
}

/// The companies of the schedule's source with their estimated sizes, from one read of the
/// catalog. The error says what failed and never holds a password.
async fn read_companies(
    client: &kube::Client,
    ns: &str,
    schedule: &MigrationSchedule,
) -> Result<Vec<FoundCompany>, String> {
    let source = &schedule.spec.source;
    let read = async {
        let db = crate::runner::open_database(
            client,
            ns,
            "source",
            &source.url,
            source.password_secret_ref.as_ref(),
        )
        .await?;
        let catalog = crate::engine::catalog::Catalog::read(&db).await;
        db.close().await;
        catalog.map_err(|e| format!("reading the source database's companies: {e}"))
    };
    let catalog = tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .map_err(|_| "reading the source's catalog took over 2 minutes".to_string())??;
    Ok(catalog
        .company_sizes()
        .into_iter()
        .map(|(name, size)| FoundCompany {
            name,
            bytes: size.bytes,
            tables: size.tables,
        })
        .collect())
}
