//! The UserMapping reconciler: read the users of both databases' `User` tables
//! (`engine::users`) and the renames this mapping made (`ledger::renames`), decide what to give
//! back, what to rename and the status (`decide`), then act: both in one transaction in the
//! target, and write the status when it changed.

pub mod decide;

use super::context::Context;
use super::error::Error;
use crate::api::UserMapping;
use crate::db::Database;
use crate::engine::users;
use decide::{CloudUser, MappingObserved, Users};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

/// How often the users are read again when nothing wakes the mapping.
const RECHECK: Duration = Duration::from_secs(600);

/// The UserMapping controller: woken by a change of the object, and by a change of the schedule
/// it names (a run migrated the users).
pub async fn controller(
    watch: super::watches::Dependent<UserMapping>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    super::watches::drive_dependent(watch, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(mapping = %format!("{}/{}", mapping.namespace().unwrap_or_default(), mapping.name_any())))]
pub async fn reconcile(mapping: Arc<UserMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = mapping
        .namespace()
        .ok_or_else(|| Error::Invalid("a UserMapping is namespaced".into()))?;
    let schedule_name = &mapping.spec.schedule_ref.name;
    let schedule = ctx.caches.schedule(&ns, schedule_name);
    let migrated = super::queries::last_success(&ctx.caches, &ns, schedule_name).is_some();
    let key = format!("{ns}/{}", mapping.name_any());
    // Database work waits for the namespace's share, without holding a reconcile slot.
    let Some(_share) = ctx.database_share(&ns) else {
        return Ok(Action::requeue(super::context::SHARE_WAIT));
    };
    let lake_target = schedule
        .as_ref()
        .is_some_and(|s| crate::lake::store::is_lake_url(&s.spec.target.url));
    let (users, target) = match &schedule {
        Some(_) if lake_target => (Err(String::new()), None),
        Some(s) => match crate::logins::open_both(&ctx.client, s, None).await {
            Ok((source, target)) => {
                let users = read_users(&source, &target, &key).await;
                source.close().await;
                (users, Some(target))
            }
            Err(e) => (Err(e), None),
        },
        None => (Err(String::new()), None),
    };
    let status = mapping.status.clone().unwrap_or_default();
    let mut decision = decide::decide(MappingObserved {
        generation: mapping.metadata.generation,
        spec: &mapping.spec,
        status: status.clone(),
        schedule_exists: schedule.is_some(),
        lake_target,
        migrated,
        users,
        now: chrono::Utc::now(),
    });
    if let Some(target) = target {
        let changes = decision.restores.len() + decision.renames.len();
        if changes > 0 {
            match users::apply(&target, &key, &decision.restores, &decision.renames).await {
                Ok(()) => tracing::info!(
                    renamed = decision.renames.len(),
                    given_back = decision.restores.len(),
                    "cloud users renamed"
                ),
                Err(e) => {
                    decision.status = decide::failed(
                        decision.status,
                        &format!(
                            "renaming the cloud users in the target failed, and nothing was \
                             renamed: {e}"
                        ),
                        chrono::Utc::now(),
                    )
                }
            }
        }
        target.close().await;
    }
    if mapping.status.is_none() || decision.status != status {
        ctx.apply_status(mapping.as_ref(), &decision.status).await?;
    }
    Ok(Action::requeue(super::jitter::spread(
        RECHECK,
        &format!("UserMapping/{ns}/{}", mapping.name_any()),
    )))
}

/// The users of both sides, the length of the cloud's user name column, and the cloud users
/// that the mapping `key` renamed.
async fn read_users(source: &Database, target: &Database, key: &str) -> Result<Users, String> {
    let source = users::read(source)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    let cloud = users::read(target)
        .await
        .map_err(|e| format!("target database: {e}"))?;
    let renamed = crate::engine::ledger::renames::read(target, key)
        .await
        .map_err(|e| format!("target database: {e}"))?;
    Ok(Users {
        source: source.users.into_iter().map(|u| u.name).collect(),
        cloud: cloud
            .users
            .into_iter()
            .map(|u| CloudUser {
                name: u.name,
                email: u.email,
            })
            .collect(),
        name_limit: cloud.name_limit,
        renamed,
    })
}
