//! The users of a database's `User` table, and the renames of user mapping: the SQL that a
//! UserMapping runs, for every dialect.

use crate::db::{Database, DbError, Kind, Statement, Value};

/// The users' table, as in Business Central.
pub const USER_TABLE: &str = "User";
pub const USER_NAME: &str = "User Name";
pub const USER_EMAIL: &str = "Authentication Email";

/// One user of a `User` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    /// Where the table has an `Authentication Email` column (cloud tenants do).
    pub email: Option<String>,
}

/// The users, and the declared length of `User Name` in characters where it has one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    pub users: Vec<User>,
    pub name_limit: Option<usize>,
}

/// Reads every user with a user name, ordered by it. The error says which table or column is
/// missing.
pub async fn read(db: &Database) -> Result<Users, DbError> {
    let d = db.dialect();
    let tables = db.tables().await?;
    let missing = |what: String| DbError::Config(what);
    let table = tables
        .iter()
        .find(|t| t.name == USER_TABLE)
        .ok_or_else(|| missing(format!("there is no {USER_TABLE:?} table")))?;
    let name = table.column(USER_NAME).ok_or_else(|| {
        missing(format!(
            "the {USER_TABLE:?} table has no {USER_NAME:?} column"
        ))
    })?;
    let email = match table.column(USER_EMAIL) {
        Some(_) => d.quote(USER_EMAIL),
        None => "NULL".to_string(),
    };
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT {n}, {email} FROM {t} WHERE {n} IS NOT NULL ORDER BY 1",
                    n = d.quote(USER_NAME),
                    t = d.quote(USER_TABLE)
                ),
                params: vec![],
            },
            &[Kind::Text, Kind::Text],
        )
        .await?;
    let text = |v: Option<&Value>| match v {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    Ok(Users {
        users: rows
            .iter()
            .filter_map(|r| {
                Some(User {
                    name: text(r.first())?,
                    email: text(r.get(1)),
                })
            })
            .collect(),
        name_limit: name.max_chars.map(|n| n as usize),
    })
}

/// A change of a cloud user's `User Name`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameChange {
    pub from: String,
    pub to: String,
}

/// Carries out a UserMapping's changes in one transaction, all of them or none: first it gives
/// users back their own names (`restores`, each forgetting its record), then it renames
/// (`renames`, each recording the user's name before, under `mapping`, so that it can be
/// given back later).
pub async fn apply(
    db: &Database,
    mapping: &str,
    restores: &[NameChange],
    renames: &[NameChange],
) -> Result<(), DbError> {
    use super::ledger::renames;
    renames::ensure(db).await?;
    let d = db.dialect();
    let update = |c: &NameChange| Statement {
        sql: format!(
            "UPDATE {} SET {name} = ? WHERE {name} = ?",
            d.quote(USER_TABLE),
            name = d.quote(USER_NAME)
        ),
        params: vec![Value::Text(c.to.clone()), Value::Text(c.from.clone())],
    };
    let mut stmts = Vec::with_capacity(2 * (restores.len() + renames.len()));
    for c in restores {
        stmts.push(update(c));
        stmts.push(renames::forget(db, &c.from));
    }
    for c in renames {
        stmts.push(update(c));
        // A record of the same name left from a user renamed since by hand goes first.
        stmts.push(renames::forget(db, &c.to));
        stmts.push(renames::record(
            db,
            mapping,
            &renames::Renamed {
                current: c.to.clone(),
                original: c.from.clone(),
            },
        ));
    }
    db.in_transaction(&stmts).await
}
