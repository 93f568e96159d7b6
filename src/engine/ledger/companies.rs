//! The companies' initialization records (`cloudmigrate_companies`): one row per company
//! that has one, written by whoever schedules or runs an initialization, and read by every run
//! (a company being initialized is skipped).

use super::{COMPANIES_TABLE, ensure, now, text};
use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};
use crate::vocabulary::InitializationState;
use std::collections::HashSet;

/// What the target records of a company's initialization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompanyRecord {
    pub company: String,
    pub state: InitializationState,
    /// The attempt that wrote the record: who scheduled it, and when.
    pub attempt: String,
    /// The last run that had migrated the company when the initialization was scheduled.
    pub after_run: Option<String>,
    pub message: Option<String>,
    /// The validation's result, as JSON (`Validation`).
    pub detail: Option<String>,
    pub updated_at: String,
}

fn state_text(s: InitializationState) -> &'static str {
    match s {
        InitializationState::NotInitialized => "NotInitialized",
        InitializationState::Scheduled => "Scheduled",
        InitializationState::Running => "Running",
        InitializationState::Initialized => "Initialized",
        InitializationState::Failed => "Failed",
    }
}

fn state_of(s: &str) -> InitializationState {
    match s {
        "Scheduled" => InitializationState::Scheduled,
        "Running" => InitializationState::Running,
        "Initialized" => InitializationState::Initialized,
        "Failed" => InitializationState::Failed,
        _ => InitializationState::NotInitialized,
    }
}

/// Every company record; none when the table does not exist yet.
pub async fn read(db: &Database) -> Result<Vec<CompanyRecord>, DbError> {
    let d = db.dialect();
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT company, state, attempt, after_run, message, detail, updated_at FROM {}",
                    d.quote(COMPANIES_TABLE)
                ),
                params: vec![],
            },
            &[Kind::Text; 7],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            return if db.has_table(COMPANIES_TABLE).await? {
                Err(e)
            } else {
                Ok(vec![])
            };
        }
    };
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let t = |i: usize| match r.get(i) {
                Some(Value::Text(s)) => Some(s.clone()),
                _ => None,
            };
            Some(CompanyRecord {
                company: t(0)?,
                state: state_of(&t(1)?),
                attempt: t(2).unwrap_or_default(),
                after_run: t(3),
                message: t(4),
                detail: t(5),
                updated_at: t(6).unwrap_or_default(),
            })
        })
        .collect())
}

/// The companies whose initialization is scheduled or running: no run may write to them. One
/// query for their names only: every run asks.
pub async fn busy(db: &Database) -> Result<HashSet<String>, DbError> {
    db.query_text_set(&Statement {
        sql: format!(
            "SELECT company FROM {} WHERE state IN ('Scheduled', 'Running')",
            db.dialect().quote(COMPANIES_TABLE)
        ),
        params: vec![],
    })
    .await
}

/// The statement that writes a company's record whatever it held.
fn upsert(d: Dialect, r: &CompanyRecord) -> Statement {
    let update = match d {
        Dialect::MySql => {
            " ON DUPLICATE KEY UPDATE state = VALUES(state), attempt = VALUES(attempt), \
             after_run = VALUES(after_run), message = VALUES(message), detail = VALUES(detail), \
             updated_at = VALUES(updated_at)"
        }
        _ => {
            " ON CONFLICT (company) DO UPDATE SET state = excluded.state, attempt = \
             excluded.attempt, after_run = excluded.after_run, message = excluded.message, \
             detail = excluded.detail, updated_at = excluded.updated_at"
        }
    };
    Statement {
        sql: format!(
            "INSERT INTO {} (company, state, attempt, after_run, message, detail, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?){update}",
            d.quote(COMPANIES_TABLE)
        ),
        params: vec![
            text(&r.company),
            text(state_text(r.state)),
            text(&r.attempt),
            opt(r.after_run.as_deref()),
            opt(r.message.as_deref()),
            opt(r.detail.as_deref()),
            text(&r.updated_at),
        ],
    }
}

/// Writes a company's record: scheduled, or marked initialized without running anything.
pub async fn record(
    db: &Database,
    company: &str,
    state: InitializationState,
    attempt: &str,
    after_run: Option<&str>,
    message: Option<&str>,
) -> Result<(), DbError> {
    ensure(db).await?;
    db.execute(&upsert(
        db.dialect(),
        &CompanyRecord {
            company: company.to_string(),
            state,
            attempt: attempt.to_string(),
            after_run: after_run.map(str::to_string),
            message: message.map(str::to_string),
            detail: None,
            updated_at: now(),
        },
    ))
    .await
    .map(|_| ())
}

/// The statement that moves an attempt on: it changes nothing once another attempt has taken
/// the company's record.
pub fn progress(
    d: Dialect,
    company: &str,
    attempt: &str,
    state: InitializationState,
    message: Option<&str>,
    detail: Option<&str>,
) -> Statement {
    Statement {
        sql: format!(
            "UPDATE {} SET state = ?, message = ?, detail = ?, updated_at = ? WHERE company = ? \
             AND attempt = ?",
            d.quote(COMPANIES_TABLE)
        ),
        params: vec![
            text(state_text(state)),
            opt(message),
            opt(detail),
            text(&now()),
            text(company),
            text(attempt),
        ],
    }
}

/// Records how an attempt stands. Returns false when the record belongs to another attempt.
pub async fn set_state(
    db: &Database,
    company: &str,
    attempt: &str,
    state: InitializationState,
    message: Option<&str>,
    detail: Option<&str>,
) -> Result<bool, DbError> {
    let n = db
        .execute(&progress(
            db.dialect(),
            company,
            attempt,
            state,
            message,
            detail,
        ))
        .await?;
    Ok(n > 0)
}

fn opt(s: Option<&str>) -> Value {
    s.map(text).unwrap_or(Value::Null)
}
