//! One-shot requests carried out on this target (a CloudReset, a key rotation), by schedule,
//! kind and name: "once" holds for the target, not only for the object that asked. The same
//! request seen again, however it came back (deleted and applied again from git, a cluster
//! rebuilt, a namespace restored), finds its row here and does nothing.
//!
//! Reset Cloud Data keeps these rows: they are what stops a reset from running twice.

use super::{REQUESTS_TABLE, now, text};
use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};

/// One request, as the ledger keys it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// The schedule, as `namespace/name`.
    pub schedule: &'a str,
    /// The kind of the object that asked: `CloudReset`, `RuntimeKeyRotation`.
    pub kind: &'a str,
    pub name: &'a str,
}

/// A request that was carried out: when, and what it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Done {
    pub at: String,
    pub summary: String,
}

/// Creates the table where it is missing (as the admin login: a runtime role may not).
pub async fn ensure(db: &Database) -> Result<(), DbError> {
    let d = db.dialect();
    if db.has_table(REQUESTS_TABLE).await? {
        return Ok(());
    }
    let (k, long) = (super::key_text(d), super::long_text(d));
    db.execute(&Statement {
        sql: format!(
            "CREATE TABLE IF NOT EXISTS {} (schedule {k} NOT NULL, kind {k} NOT NULL, \
             name {k} NOT NULL, done_at {k} NOT NULL, summary {long} NOT NULL, \
             PRIMARY KEY (schedule, kind, name))",
            d.quote(REQUESTS_TABLE)
        ),
        params: vec![],
    })
    .await
    .map(|_| ())
}

impl Done {
    /// When it was carried out, as a time; None for a text that is not RFC 3339.
    pub fn time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// The statement that records a request as carried out. It fails when the request was
/// recorded already: put it first in the transaction that carries the request out, and a
/// second attempt changes nothing.
pub fn record(d: Dialect, request: &Request<'_>, summary: &str) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO {} (schedule, kind, name, done_at, summary) VALUES (?, ?, ?, ?, ?)",
            d.quote(REQUESTS_TABLE)
        ),
        params: vec![
            text(request.schedule),
            text(request.kind),
            text(request.name),
            text(&now()),
            text(summary),
        ],
    }
}

/// Whether the request was carried out on this target, and when.
pub async fn done(db: &Database, request: &Request<'_>) -> Result<Option<Done>, DbError> {
    if !db.has_table(REQUESTS_TABLE).await? {
        return Ok(None);
    }
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT done_at, summary FROM {} WHERE schedule = ? AND kind = ? AND name = ?",
                    db.dialect().quote(REQUESTS_TABLE)
                ),
                params: vec![
                    text(request.schedule),
                    text(request.kind),
                    text(request.name),
                ],
            },
            &[Kind::Text, Kind::Text],
        )
        .await?;
    Ok(rows.into_iter().next().map(|r| {
        let mut it = r.into_iter().map(|v| match v {
            Value::Text(s) => s,
            _ => String::new(),
        });
        Done {
            at: it.next().unwrap_or_default(),
            summary: it.next().unwrap_or_default(),
        }
    }))
}
