//! Reset Cloud Data: clears, in the target, every table that a run wrote (the tables the
//! replication state names) and nothing else, and the replication state with it: watermarks,
//! the run log, claims and the companies' initialization. All in one transaction, so a failure
//! leaves everything as it was and the reset can simply run again.
//!
//! The state rows of the cleared tables stay, marked as reset, so that the next run copies
//! each in full and says `Reset` as the reason.
//!
//! A reset happens once per target: the same transaction records it in `ledger::requests`, by
//! schedule and name, and the same request seen again clears nothing. It also removes the
//! record of every running run, so a run that read its watermarks before the reset cannot
//! commit a table after it (`state::still_running` fails its transaction).

use super::ledger::requests::{self, Request};
use super::ledger::{self, COMPANIES_TABLE, OnReset, STATE_TABLE};
use crate::db::{Database, DbError, Kind, Statement, Value};

/// The schema fingerprint that marks a table's state as reset.
pub const RESET_MARK: &str = "reset";

/// The schema fingerprint that marks a table's state after Disable Cloud Migration: change
/// tracking left the source, so the next run copies the table in full and says `ReEnabled`.
pub const DISABLED_MARK: &str = "disabled";

/// Marks every table of the replication state for a full copy on the next run, after change
/// tracking was removed from the source (Disable Cloud Migration). The data stays.
pub async fn mark_disabled(target: &Database) -> Result<u64, DbError> {
    super::ledger::ensure(target).await?;
    let d = target.dialect();
    target
        .execute(&Statement {
            sql: format!(
                "UPDATE {} SET ct_version = NULL, schema_hash = ? WHERE schema_hash IS NULL OR \
                 schema_hash <> ?",
                d.quote(STATE_TABLE)
            ),
            params: vec![
                Value::Text(DISABLED_MARK.into()),
                Value::Text(RESET_MARK.into()),
            ],
        })
        .await
}

/// What a reset cleared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cleared {
    pub tables: i64,
    pub companies: i64,
}

/// What a reset request came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Cleared(Cleared),
    /// The same request cleared this target before: nothing was cleared now.
    AlreadyDone(requests::Done),
}

/// The target names of the tables a schedule copies from `source` (any company, the table
/// filter applied): the only tables a reset may clear. The runtime role may write the
/// replication state, so its table names alone are not trusted: a name planted there that
/// the source does not copy is never cleared.
pub async fn copied_tables(
    source: &Database,
    options: &super::plan::PlanOptions,
    target: crate::db::Dialect,
) -> Result<std::collections::HashSet<String>, String> {
    let catalog = super::catalog::Catalog::read(source)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    let mut options = options.clone();
    options.companies = None;
    options.target = Some(target);
    let plan = super::plan::plan(&catalog, &options).map_err(|e| e.to_string())?;
    Ok(plan.to_copy().map(|t| t.target_name.clone()).collect())
}

/// Clears the migrated data and the replication state of a target, once per request: the
/// tables the replication state names that exist in the target and that the schedule copies
/// (`copied`, from `copied_tables`).
pub async fn clear(
    target: &Database,
    request: &Request<'_>,
    copied: &std::collections::HashSet<String>,
) -> Result<Outcome, DbError> {
    super::ledger::ensure(target).await?;
    requests::ensure(target).await?;
    if let Some(done) = requests::done(target, request).await? {
        return Ok(Outcome::AlreadyDone(done));
    }
    match clear_now(target, request, copied).await {
        Ok(cleared) => Ok(Outcome::Cleared(cleared)),
        // Recorded meanwhile by another attempt: its record made this transaction fail.
        Err(e) => match requests::done(target, request).await {
            Ok(Some(done)) => Ok(Outcome::AlreadyDone(done)),
            _ => Err(e),
        },
    }
}

async fn clear_now(
    target: &Database,
    request: &Request<'_>,
    copied: &std::collections::HashSet<String>,
) -> Result<Cleared, DbError> {
    let d = target.dialect();
    let migrated = target
        .query_text_set(&Statement {
            sql: format!("SELECT table_name FROM {}", d.quote(STATE_TABLE)),
            params: vec![],
        })
        .await?;
    let existing: std::collections::HashSet<String> =
        target.tables().await?.into_iter().map(|t| t.name).collect();
    let companies = target
        .query(
            &Statement {
                sql: format!("SELECT COUNT(*) FROM {}", d.quote(COMPANIES_TABLE)),
                params: vec![],
            },
            &[Kind::Int],
        )
        .await?;
    let companies = match companies.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => *n,
        _ => 0,
    };
    let mut names: Vec<String> = migrated
        .iter()
        .map(|n| super::plan::target_name(Some(d), n))
        .filter(|n| existing.contains(n) && copied.contains(n))
        .collect();
    names.sort();
    let sql = |sql: String| Statement {
        sql,
        params: vec![],
    };
    let summary = format!(
        "{} migrated tables cleared, {companies} companies reset",
        names.len()
    );
    // The record first: a second attempt fails here, before anything is cleared. Then the
    // runs' records, so that a run still copying cannot commit a table after the reset.
    let mut statements = vec![requests::record(d, request, &summary)];
    for (table, _) in ledger::TABLES
        .iter()
        .filter(|(_, r)| *r == OnReset::Emptied)
    {
        statements.push(sql(format!("DELETE FROM {}", d.quote(table))));
    }
    statements.extend(
        names
            .iter()
            .map(|n| sql(format!("DELETE FROM {}", d.quote(n)))),
    );
    statements.push(Statement {
        sql: format!(
            "UPDATE {} SET row_count = 0, ct_version = NULL, schema_hash = ?, mode = 'Reset'",
            d.quote(STATE_TABLE)
        ),
        params: vec![Value::Text(RESET_MARK.into())],
    });
    target.in_transaction(&statements).await?;
    Ok(Cleared {
        tables: names.len() as i64,
        companies,
    })
}
