//! Deleting a schedule: its login role leaves the target, and change tracking leaves the
//! source, before the schedule leaves the cluster. While a role may exist or change tracking
//! may be on the source, the finalizer `FINALIZER` holds the schedule (its name is older than
//! its second duty); on deletion the controller drops the role and removes change tracking
//! (as Disable does), then removes the finalizer.
//!
//! A database that cannot be reached holds a deleted schedule for `GIVE_UP_AFTER` at most.
//! Then the schedule goes, and a Warning names what stays and how to remove it by hand: a
//! namespace torn down together with its databases must not hang.

use super::super::context::Context;
use super::super::error::Error;
use super::super::note::Note;
use crate::api::MigrationSchedule;
use crate::clock::utc;
use crate::db::Dialect;
use crate::logins::role_of;
use chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// The finalizer that holds a schedule until its login role is dropped.
pub const FINALIZER: &str = "cloudmigrate.io/runtime-role";

/// How long a deleted schedule waits for its target before it goes and leaves the role.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);

/// How soon a failed drop is tried again.
const RETRY_EVERY: Duration = Duration::from_secs(10);

/// What follows an attempt to drop the role of a deleted schedule.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Remove the finalizer: the schedule goes. The note says what became of the role.
    Release(Option<Note>),
    /// Keep the finalizer and try again after `after`; `message` is the condition's: the
    /// type and reason in `condition`.
    Retry {
        after: Duration,
        condition: (&'static str, &'static str),
        message: String,
        note: Note,
    },
}

/// Whether the schedule carries the finalizer.
pub fn holds(schedule: &MigrationSchedule) -> bool {
    schedule.finalizers().iter().any(|f| f == FINALIZER)
}

/// Whether a live schedule should carry the finalizer: its target has login roles
/// (`has_roles`), and a role may exist, because the schedule may make its key now (`may_act`)
/// or its key Secret exists (the role is made after the Secret and dropped before it).
pub fn wanted(has_roles: bool, may_act: bool, key_stored: bool) -> bool {
    has_roles && (may_act || key_stored)
}

/// What to do after trying to drop `role` (None: the target has no roles), the schedule
/// having been deleted at `since`.
pub fn after_drop(
    role: Option<(&str, Dialect)>,
    dropped: Result<(), String>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Next {
    let Some((role, dialect)) = role else {
        return Next::Release(None);
    };
    let error = match dropped {
        Ok(()) => {
            return Next::Release(Some(Note::normal(
                "RuntimeRoleDropped",
                format!(
                    "the schedule was deleted: its login role {role} was dropped from the target"
                ),
            )));
        }
        Err(e) => e,
    };
    let by_hand = crate::engine::access::drop_statements(dialect, role).join("; ");
    let deadline = since + chrono::TimeDelta::seconds(GIVE_UP_AFTER.as_secs() as i64);
    if now >= deadline {
        return Next::Release(Some(Note::warning(
            "RuntimeRoleLeft",
            format!(
                "the schedule was deleted, and its login role {role} stays in the target: \
                 dropping it failed for {} s ({error}). Drop it as the target's admin user: \
                 {by_hand}",
                GIVE_UP_AFTER.as_secs()
            ),
        )));
    }
    let message = format!(
        "the schedule is being deleted; dropping its login role {role} failed: {error}. The \
         controller tries again until {}; then the schedule goes and the role stays in the \
         target (drop it by hand: {by_hand})",
        deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Next::Retry {
        after: RETRY_EVERY,
        condition: ("RuntimeKey", "RoleNotDropped"),
        note: Note::warning("RuntimeRoleNotDropped", message.clone()),
        message,
    }
}

/// What change tracking on the source stays as when it cannot be removed, and how to remove it.
const TRACKING_BY_HAND: &str = "run `cloudmigrate disable-tracking -f FILE` with the schedule's \
     manifest, or, as the tables' owner, drop the triggers and functions named cloudmigrate_ct_* \
     and the tables cloudmigrate_ct_log, cloudmigrate_ct_clock and cloudmigrate_ct_tables";

/// What to do after trying to remove change tracking from the source of a schedule deleted at
/// `since`: how many tables had it, or why it failed. Pure.
pub fn after_untrack(
    removed: Result<usize, String>,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Next {
    let error = match removed {
        Ok(0) => return Next::Release(None),
        Ok(tables) => {
            return Next::Release(Some(Note::normal(
                "ChangeTrackingRemoved",
                format!(
                    "the schedule was deleted: change tracking was removed from {tables} tables \
                     of the source"
                ),
            )));
        }
        Err(e) => e,
    };
    let deadline = since + chrono::TimeDelta::seconds(GIVE_UP_AFTER.as_secs() as i64);
    if now >= deadline {
        return Next::Release(Some(Note::warning(
            "ChangeTrackingLeft",
            format!(
                "the schedule was deleted, and change tracking stays on its source: removing \
                 it failed for {} s ({error}). The ERP's writes keep working meanwhile (on \
                 MySQL and MariaDB only while the migration login exists). To remove it, \
                 {TRACKING_BY_HAND}",
                GIVE_UP_AFTER.as_secs()
            ),
        )));
    }
    let message = format!(
        "the schedule is being deleted; removing change tracking from the source failed: \
         {error}. The controller tries again until {}; then the schedule goes and change \
         tracking stays on the source (to remove it by hand, {TRACKING_BY_HAND})",
        deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    Next::Retry {
        after: RETRY_EVERY,
        condition: ("ChangeTracking", "NotRemoved"),
        note: Note::warning("ChangeTrackingNotRemoved", message.clone()),
        message,
    }
}

/// Puts the finalizer on a schedule that wants it, before its role is made. The list is
/// written whole, on the resourceVersion read: false when the schedule changed meanwhile (the
/// reconcile read a version the watch has since replaced), for the caller to look again soon.
pub async fn hold(ctx: &Context, schedule: &MigrationSchedule) -> Result<bool, Error> {
    let mut list = schedule.finalizers().to_vec();
    list.push(FINALIZER.to_string());
    write(ctx, schedule, list).await
}

/// Takes the finalizer off the schedule; false as for `hold`.
pub async fn release(ctx: &Context, schedule: &MigrationSchedule) -> Result<bool, Error> {
    let list = schedule
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    write(ctx, schedule, list).await
}

/// A deleted schedule: drops its role and removes change tracking from its source if it holds
/// the finalizer, then lets it go.
pub async fn finish(ctx: &Context, schedule: &MigrationSchedule) -> Result<Action, Error> {
    if !holds(schedule) {
        return Ok(Action::await_change());
    }
    // Database work waits for the namespace's share, without holding a reconcile slot.
    let Some(_share) = ctx.database_share(&schedule.namespace().unwrap_or_default()) else {
        return Ok(Action::requeue(super::super::context::SHARE_WAIT));
    };
    let since = schedule
        .metadata
        .deletion_timestamp
        .as_ref()
        .map(utc)
        .unwrap_or_else(Utc::now);
    let role = role_of(schedule);
    let dialect = Dialect::of_url(&schedule.spec.target.url).ok();
    let (dropped, removed) = tokio::join!(
        super::super::runtime_key::drop_role(ctx, schedule),
        remove_tracking(ctx, schedule)
    );
    let now = Utc::now();
    let steps = [
        after_drop(role.as_deref().zip(dialect), dropped, since, now),
        after_untrack(removed, since, now),
    ];
    let mut notes = vec![];
    let mut retry = vec![];
    for next in steps {
        match next {
            Next::Release(note) => notes.extend(note),
            Next::Retry {
                after,
                condition,
                message,
                note,
            } => {
                notes.push(note);
                retry.push((after, condition, message));
            }
        }
    }
    for note in notes.iter().filter(|n| n.warning) {
        tracing::warn!(reason = note.reason, "{}", note.message);
    }
    if retry.is_empty() {
        release(ctx, schedule).await?;
        ctx.publish(schedule, &notes).await;
        return Ok(Action::await_change());
    }
    let mut status = schedule.status.clone().unwrap_or_default();
    for (_, (type_, reason), message) in &retry {
        super::super::conditions::set(
            &mut status.conditions,
            type_,
            false,
            reason,
            message.clone(),
            schedule.metadata.generation,
            now,
        );
    }
    ctx.apply_status(schedule, &status).await?;
    ctx.publish(schedule, &notes).await;
    let after = retry
        .iter()
        .map(|(a, _, _)| *a)
        .min()
        .unwrap_or(RETRY_EVERY);
    Ok(Action::requeue(after))
}

/// Removes change tracking from a deleted schedule's source, as Disable does (the target's
/// state first, so that a schedule made again copies every table in full). Another schedule on
/// the same databases keeps it: it is theirs too. Ok(tables that had it).
async fn remove_tracking(ctx: &Context, schedule: &MigrationSchedule) -> Result<usize, String> {
    if !ctx.caches.sharing_a_database(schedule).is_empty() {
        return Ok(0);
    }
    let source =
        crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Source).await?;
    let objects = crate::engine::tracking::objects(&source).await;
    let installed = crate::engine::tracking::installed(&source).await;
    if matches!((&objects, &installed), (Ok(o), Ok(false)) if o.is_empty()) {
        source.close().await;
        return Ok(0);
    }
    // The target's state is marked first; a target that is gone with its namespace holds up
    // nothing on the source.
    if let Ok(target) =
        crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Target).await
    {
        let _ = crate::engine::reset::mark_disabled(&target).await;
        target.close().await;
    }
    let removed = crate::engine::tracking::disable_all(&source).await;
    source.close().await;
    removed.map_err(|e| format!("source database: {e}"))
}

/// Writes the schedule's finalizers; false when its resourceVersion is no longer the latest.
async fn write(
    ctx: &Context,
    schedule: &MigrationSchedule,
    list: Vec<String>,
) -> Result<bool, Error> {
    let name = schedule.name_any();
    let api: Api<MigrationSchedule> = Api::namespaced(
        ctx.client.clone(),
        &schedule.namespace().unwrap_or_default(),
    );
    let body = json!({"metadata": {
        "finalizers": list,
        "resourceVersion": schedule.resource_version(),
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(body))
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(Error::Act(
            format!("writing the finalizers of MigrationSchedule {name}"),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    #[test]
    fn the_finalizer_is_wanted_while_a_role_may_exist() {
        let schedule = |target: &str| -> MigrationSchedule {
            serde_json::from_value(json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
                "metadata": {"name": "erp", "namespace": "shop"},
                "spec": {"source": {"url": "postgres://erp.example/nav"},
                         "target": {"url": target}}
            }))
            .unwrap()
        };
        let pg = schedule("postgres://cloud.example/bc");
        assert!(
            wanted(role_of(&pg).is_some(), true, false),
            "about to make its key"
        );
        assert!(
            wanted(role_of(&pg).is_some(), false, true),
            "disabled, the key not revoked yet"
        );
        assert!(
            !wanted(role_of(&pg).is_some(), false, false),
            "revoked, or never made"
        );
        let file = schedule("sqlite:///var/lib/cloudmigrate/bc.db");
        assert!(
            !wanted(role_of(&file).is_some(), true, true),
            "a SQLite target has no roles"
        );
    }

    #[test]
    fn a_dropped_role_releases_the_schedule_with_a_normal_event() {
        let next = after_drop(
            Some(("cloudmigrate_rt_erp", Dialect::Postgres)),
            Ok(()),
            at(0),
            at(1),
        );
        let Next::Release(Some(note)) = next else {
            panic!("{next:?}")
        };
        assert!(!note.warning);
        assert_eq!(note.reason, "RuntimeRoleDropped");
        assert!(
            note.message.contains("cloudmigrate_rt_erp"),
            "{}",
            note.message
        );
    }

    #[test]
    fn a_target_without_roles_releases_at_once() {
        assert_eq!(
            after_drop(None, Err("never tried".into()), at(0), at(0)),
            Next::Release(None)
        );
    }

    #[test]
    fn a_silent_target_is_tried_again_until_the_deadline_then_the_role_is_left_with_a_warning() {
        let role = Some(("cloudmigrate_rt_erp", Dialect::Postgres));
        let failed = || Err("target database: connection refused".to_string());
        let Next::Retry {
            after,
            message,
            note,
            ..
        } = after_drop(role, failed(), at(0), at(60))
        else {
            panic!("a drop that failed a minute after deletion is tried again")
        };
        assert_eq!(after, RETRY_EVERY);
        assert!(message.contains("connection refused"), "{message}");
        assert!(message.contains("2026-12-02T10:02:00Z"), "{message}");
        assert!(
            message.contains(r#"DROP ROLE "cloudmigrate_rt_erp""#),
            "{message}"
        );
        assert!(note.warning);

        let Next::Release(Some(note)) = after_drop(role, failed(), at(0), at(120)) else {
            panic!("the schedule goes once the deadline has passed")
        };
        assert!(note.warning);
        assert_eq!(note.reason, "RuntimeRoleLeft");
        assert!(
            note.message.contains("stays in the target"),
            "{}",
            note.message
        );
        assert!(
            note.message
                .contains(r#"REASSIGN OWNED BY "cloudmigrate_rt_erp" TO CURRENT_USER"#),
            "{}",
            note.message
        );
    }

    #[test]
    fn tracking_left_on_a_silent_source_is_named_with_the_way_to_remove_it() {
        assert_eq!(after_untrack(Ok(0), at(0), at(0)), Next::Release(None));
        let Next::Release(Some(note)) = after_untrack(Ok(3), at(0), at(0)) else {
            panic!("removed: the schedule goes")
        };
        assert_eq!(note.reason, "ChangeTrackingRemoved");
        let failed = || Err("source database: connection refused".to_string());
        let Next::Retry {
            condition, message, ..
        } = after_untrack(failed(), at(0), at(30))
        else {
            panic!("tried again before the deadline")
        };
        assert_eq!(condition, ("ChangeTracking", "NotRemoved"));
        assert!(message.contains("connection refused"), "{message}");
        let Next::Release(Some(note)) = after_untrack(failed(), at(0), at(120)) else {
            panic!("the schedule goes once the deadline has passed")
        };
        assert!(note.warning);
        assert_eq!(note.reason, "ChangeTrackingLeft");
        assert!(
            note.message.contains("cloudmigrate disable-tracking"),
            "{}",
            note.message
        );
    }

    #[test]
    fn the_statements_by_hand_name_the_mysql_account() {
        let Next::Retry { message, .. } = after_drop(
            Some(("cloudmigrate_rt_erp", Dialect::MySql)),
            Err("refused".into()),
            at(0),
            at(1),
        ) else {
            panic!("tried again")
        };
        assert!(
            message.contains("DROP USER IF EXISTS `cloudmigrate_rt_erp`@'%'"),
            "{message}"
        );
    }
}
