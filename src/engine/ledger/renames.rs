//! The cloud users' own names, recorded before a UserMapping renamed them, so that removing or
//! changing a mapping can give a user its name back. Not among `TABLES`: Reset Cloud Data keeps
//! it, as it keeps the `User` table; only the admin login writes it.

use super::{key_text, now, text};
use crate::db::{Database, DbError, Kind, Statement, Value};

/// One row per renamed cloud user: the mapping that renamed it, its name now, and its own.
pub const RENAMES_TABLE: &str = "cloudmigrate_user_renames";

/// A cloud user that a mapping renamed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Renamed {
    /// The name the mapping gave it (the on-premises user name).
    pub current: String,
    /// Its name before.
    pub original: String,
}

/// Creates the table where it is missing (before the transaction that writes it: MySQL
/// commits at any DDL).
pub async fn ensure(db: &Database) -> Result<(), DbError> {
    if db.has_table(RENAMES_TABLE).await? {
        return Ok(());
    }
    let d = db.dialect();
    let k = key_text(d);
    db.execute(&Statement {
        sql: format!(
            "CREATE TABLE IF NOT EXISTS {} (mapping {k} NOT NULL, current_name {k} NOT NULL, \
             original_name {k} NOT NULL, renamed_at {k} NOT NULL, PRIMARY KEY (current_name))",
            d.quote(RENAMES_TABLE)
        ),
        params: vec![],
    })
    .await
    .map(|_| ())
}

/// The users that `mapping` (`namespace/name`) renamed; none before the table exists.
pub async fn read(db: &Database, mapping: &str) -> Result<Vec<Renamed>, DbError> {
    if !db.has_table(RENAMES_TABLE).await? {
        return Ok(vec![]);
    }
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT current_name, original_name FROM {} WHERE mapping = ? \
                     ORDER BY current_name",
                    db.dialect().quote(RENAMES_TABLE)
                ),
                params: vec![text(mapping)],
            },
            &[Kind::Text, Kind::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match (r.first(), r.get(1)) {
            (Some(Value::Text(current)), Some(Value::Text(original))) => Some(Renamed {
                current: current.clone(),
                original: original.clone(),
            }),
            _ => None,
        })
        .collect())
}

/// The statement that records a rename by `mapping`.
pub fn record(db: &Database, mapping: &str, r: &Renamed) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO {} (mapping, current_name, original_name, renamed_at) VALUES (?, ?, ?, ?)",
            db.dialect().quote(RENAMES_TABLE)
        ),
        params: vec![
            text(mapping),
            text(&r.current),
            text(&r.original),
            text(&now()),
        ],
    }
}

/// The statement that forgets a rename, once the user has its name back.
pub fn forget(db: &Database, current: &str) -> Statement {
    Statement {
        sql: format!(
            "DELETE FROM {} WHERE current_name = ?",
            db.dialect().quote(RENAMES_TABLE)
        ),
        params: vec![text(current)],
    }
}
