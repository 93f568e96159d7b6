//! The login roles this project made on a target's server, by the schedule they serve
//! (`namespace/name`): a role of the same name that is not recorded here was made by someone
//! else, and is never taken over or dropped. Not among `TABLES`: only the admin login writes
//! it, and Reset Cloud Data keeps it.

use super::{key_text, now, text};
use crate::db::{Database, DbError, Statement};

pub const ROLES_TABLE: &str = "cloudmigrate_roles";

/// Creates the table where it is missing.
pub async fn ensure(db: &Database) -> Result<(), DbError> {
    if db.has_table(ROLES_TABLE).await? {
        return Ok(());
    }
    let d = db.dialect();
    let k = key_text(d);
    db.execute(&Statement {
        sql: format!(
            "CREATE TABLE IF NOT EXISTS {} (role_name {k} NOT NULL PRIMARY KEY, \
             owner {k} NOT NULL, created_at {k} NOT NULL)",
            d.quote(ROLES_TABLE)
        ),
        params: vec![],
    })
    .await
    .map(|_| ())
}

/// The schedule (`namespace/name`) whose role `role` is, if this project made it here.
pub async fn owner_of(db: &Database, role: &str) -> Result<Option<String>, DbError> {
    if !db.has_table(ROLES_TABLE).await? {
        return Ok(None);
    }
    Ok(db
        .query_text_set(&Statement {
            sql: format!(
                "SELECT owner FROM {} WHERE role_name = ?",
                db.dialect().quote(ROLES_TABLE)
            ),
            params: vec![text(role)],
        })
        .await?
        .into_iter()
        .next())
}

/// Records `role` as made for `owner`, before it is made: a role made and not recorded would
/// look like someone else's ever after.
pub async fn record(db: &Database, role: &str, owner: &str) -> Result<(), DbError> {
    db.execute(&Statement {
        sql: format!(
            "INSERT INTO {} (role_name, owner, created_at) VALUES (?, ?, ?)",
            db.dialect().quote(ROLES_TABLE)
        ),
        params: vec![text(role), text(owner), text(&now())],
    })
    .await
    .map(|_| ())
}

/// Forgets `role`, once it is dropped (or could not be made).
pub async fn forget(db: &Database, role: &str) -> Result<(), DbError> {
    if !db.has_table(ROLES_TABLE).await? {
        return Ok(());
    }
    db.execute(&Statement {
        sql: format!(
            "DELETE FROM {} WHERE role_name = ?",
            db.dialect().quote(ROLES_TABLE)
        ),
        params: vec![text(role)],
    })
    .await
    .map(|_| ())
}
