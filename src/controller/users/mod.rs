//! The UserMapping reconciler: read the users of both databases' `User` tables, decide the
//! renames and the status (`decide`), then act: rename the cloud users in one transaction in
//! the target, and write the status when it changed.

pub mod decide;

use super::context::Context;
use super::error::Error;
use crate::api::UserMapping;
use crate::api::run::{RunResult, RunType};
use crate::api::schedule::MigrationSchedule;
use crate::db::{Database, Kind, Statement, Value};
use decide::{CloudUser, MappingObserved, Rename, Users};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use std::sync::Arc;
use std::time::Duration;

/// The users' table, as in Business Central.
const USER_TABLE: &str = "User";
const USER_NAME: &str = "User Name";
const USER_EMAIL: &str = "Authentication Email";

/// How often the users are read again when nothing wakes the mapping.
const RECHECK: Duration = Duration::from_secs(600);

#[tracing::instrument(skip_all, fields(mapping = %format!("{}/{}", mapping.namespace().unwrap_or_default(), mapping.name_any())))]
pub async fn reconcile(mapping: Arc<UserMapping>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = format!(
        "UserMapping/{}/{}",
        mapping.namespace().unwrap_or_default(),
        mapping.name_any()
    );
    ctx.measured(&key, async {
        let ns = mapping
            .namespace()
            .ok_or_else(|| Error::Invalid("a UserMapping is namespaced".into()))?;
        let schedule_name = &mapping.spec.schedule_ref.name;
        let schedule = ctx.caches.schedule(&ns, schedule_name);
        let migrated = ctx.caches.runs_of(&ns, schedule_name).iter().any(|r| {
            r.spec.r#type != RunType::Diagnostic
                && r.status.as_ref().is_some_and(|s| {
                    matches!(
                        s.result,
                        Some(RunResult::Succeeded | RunResult::PartiallySucceeded)
                    )
                })
        });
        let (users, target) = match &schedule {
            Some(s) => match open_both(&ctx.client, &ns, s).await {
                Ok((source, target)) => {
                    let users = read_users(&source, &target).await;
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
            migrated,
            users,
            now: chrono::Utc::now(),
        });
        if let Some(target) = target {
            if !decision.renames.is_empty()
                && let Err(e) = rename(&target, &decision.renames).await
            {
                decision.status = decide::failed(decision.status, &e, chrono::Utc::now());
            } else if !decision.renames.is_empty() {
                tracing::info!(renamed = decision.renames.len(), "cloud users renamed");
            }
            target.close().await;
        }
        if mapping.status.is_none() || decision.status != status {
            ctx.apply_status(mapping.as_ref(), &decision.status).await?;
        }
        Ok(Action::requeue(super::jitter::spread(RECHECK, &key)))
    })
    .await
}

/// Connects to both databases of the schedule.
async fn open_both(
    client: &kube::Client,
    ns: &str,
    schedule: &MigrationSchedule,
) -> Result<(Database, Database), String> {
    let (s, t) = (&schedule.spec.source, &schedule.spec.target);
    let open = crate::runner::open_database;
    let source = open(client, ns, "source", &s.url, s.password_secret_ref.as_ref()).await?;
    match open(client, ns, "target", &t.url, t.password_secret_ref.as_ref()).await {
        Ok(target) => Ok((source, target)),
        Err(e) => {
            source.close().await;
            Err(e)
        }
    }
}

/// The users of both sides, and the length of the cloud's user name column.
async fn read_users(source: &Database, target: &Database) -> Result<Users, String> {
    let (source_names, _, _) = users_of(source)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    let (cloud_names, emails, name_limit) = users_of(target)
        .await
        .map_err(|e| format!("target database: {e}"))?;
    Ok(Users {
        source: source_names,
        cloud: cloud_names
            .into_iter()
            .zip(emails)
            .map(|(name, email)| CloudUser { name, email })
            .collect(),
        name_limit,
    })
}

/// The `User Name` (and `Authentication Email`, where the table has it) of every user in a
/// database's `User` table, and the declared length of `User Name`.
#[allow(clippy::type_complexity)]
async fn users_of(
    db: &Database,
) -> Result<(Vec<String>, Vec<Option<String>>, Option<usize>), String> {
    let d = db.dialect();
    let tables = db.tables().await.map_err(|e| e.to_string())?;
    let table = tables
        .iter()
        .find(|t| t.name == USER_TABLE)
        .ok_or_else(|| format!("there is no {USER_TABLE:?} table"))?;
    let name = table
        .column(USER_NAME)
        .ok_or_else(|| format!("the {USER_TABLE:?} table has no {USER_NAME:?} column"))?;
    let limit = name.max_chars.map(|n| n as usize);
    let has_email = table.column(USER_EMAIL).is_some();
    let email = if has_email {
        d.quote(USER_EMAIL)
    } else {
        "NULL".to_string()
    };
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT {}, {email} FROM {} ORDER BY 1",
                    d.quote(USER_NAME),
                    d.quote(USER_TABLE)
                ),
                params: vec![],
            },
            &[Kind::Text, Kind::Text],
        )
        .await
        .map_err(|e| e.to_string())?;
    let text = |v: &Value| match v {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    };
    // Rows without a user name are of no use to a mapping.
    let named: Vec<(String, Option<String>)> = rows
        .iter()
        .filter_map(|r| Some((r.first().and_then(text)?, r.get(1).and_then(text))))
        .collect();
    let (names, emails) = named.into_iter().unzip();
    Ok((names, emails, limit))
}

/// Renames the cloud users, all in one transaction.
async fn rename(target: &Database, renames: &[Rename]) -> Result<(), String> {
    let d = target.dialect();
    let stmts: Vec<Statement> = renames
        .iter()
        .map(|r| Statement {
            sql: format!(
                "UPDATE {} SET {name} = ? WHERE {name} = ?",
                d.quote(USER_TABLE),
                name = d.quote(USER_NAME)
            ),
            params: vec![Value::Text(r.to.clone()), Value::Text(r.from.clone())],
        })
        .collect();
    target.in_transaction(&stmts).await.map_err(|e| {
        format!("renaming the cloud users in the target failed, and nothing was renamed: {e}")
    })
}
