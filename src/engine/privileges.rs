//! What the migration login needs on the source, checked before it is needed: each missing
//! privilege comes with the statement that grants it.
//!
//! A run reads every table, creates change tracking's tables and functions in the source's
//! schema, and puts triggers on the ERP's tables, which it must be able to remove again:
//! - PostgreSQL: SELECT on the tables, CREATE on the schema, and membership of the role that
//!   owns the tables (only a table's owner may drop a trigger on it, even where the TRIGGER
//!   privilege let the trigger be created);
//! - MySQL and MariaDB: SELECT, CREATE, DROP, INSERT, UPDATE, DELETE and TRIGGER on the
//!   database, and PROCESS, without which a TRUNCATE cannot be told apart from no change. With
//!   the binary log on, creating a trigger also needs SUPER, or
//!   `log_bin_trust_function_creators`.
//!
//! The ERP's own login needs nothing of ours: on PostgreSQL the capture functions run as their
//! owner, on MySQL and MariaDB the triggers run as their definer.

use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};

/// One privilege the login lacks, and how to grant it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Missing {
    pub what: String,
    pub grant: String,
}

impl std::fmt::Display for Missing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (`{}`)", self.what, self.grant)
    }
}

/// The missing privileges as one sentence, or None when nothing is missing.
pub fn sentence(missing: &[Missing]) -> Option<String> {
    (!missing.is_empty()).then(|| {
        let list: Vec<String> = missing.iter().map(|m| m.to_string()).collect();
        format!(
            "the migration login lacks what change tracking needs on the source: {}",
            list.join("; ")
        )
    })
}

async fn texts(db: &Database, sql: &str, columns: usize) -> Result<Vec<Vec<String>>, DbError> {
    let rows = db
        .query(
            &Statement {
                sql: sql.to_string(),
                params: vec![],
            },
            &vec![Kind::Text; columns],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    Value::Text(s) => s,
                    Value::Int(i) => i.to_string(),
                    _ => String::new(),
                })
                .collect()
        })
        .collect())
}

/// The privileges the login lacks on the source (none on SQLite, which has no logins).
pub async fn missing(db: &Database) -> Result<Vec<Missing>, DbError> {
    match db.dialect() {
        Dialect::Postgres => postgres(db).await,
        Dialect::MySql => mysql(db).await,
        Dialect::Sqlite => Ok(vec![]),
    }
}

async fn postgres(db: &Database) -> Result<Vec<Missing>, DbError> {
    let d = Dialect::Postgres;
    let head = texts(
        db,
        "SELECT current_user::text, coalesce(current_schema()::text, ''), \
                has_schema_privilege(current_schema(), 'CREATE')::text",
        3,
    )
    .await?;
    let Some([user, schema, create]) = head
        .into_iter()
        .next()
        .and_then(|r| <[String; 3]>::try_from(r).ok())
    else {
        return Ok(vec![]);
    };
    let (login, on) = (d.quote(&user), d.quote(&schema));
    let mut missing = vec![];
    if create != "true" {
        missing.push(Missing {
            what: format!("CREATE on schema {on}"),
            grant: format!("GRANT CREATE ON SCHEMA {on} TO {login}"),
        });
    }
    let tables = texts(
        db,
        "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text, \
                has_table_privilege(c.oid, 'SELECT')::text, pg_has_role(c.relowner, 'USAGE')::text \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') \
           AND c.relname NOT LIKE 'cloudmigrate\\_%' ORDER BY 1",
        4,
    )
    .await?;
    let unreadable = tables.iter().filter(|t| t[2] != "true").count();
    if unreadable > 0 {
        missing.push(Missing {
            what: format!("SELECT on {unreadable} of the tables"),
            grant: format!("GRANT SELECT ON ALL TABLES IN SCHEMA {on} TO {login}"),
        });
    }
    let mut owners: Vec<&str> = tables
        .iter()
        .filter(|t| t[3] != "true")
        .map(|t| t[1].as_str())
        .collect();
    owners.sort_unstable();
    owners.dedup();
    for owner in owners {
        missing.push(Missing {
            what: format!(
                "membership of {}, which owns tables to track (only an owner may remove a trigger)",
                d.quote(owner)
            ),
            grant: format!("GRANT {} TO {login}", d.quote(owner)),
        });
    }
    Ok(missing)
}

/// The database-wide privileges a run needs on MySQL and MariaDB.
const MYSQL_NEEDS: [&str; 7] = [
    "SELECT", "CREATE", "DROP", "INSERT", "UPDATE", "DELETE", "TRIGGER",
];

async fn mysql(db: &Database) -> Result<Vec<Missing>, DbError> {
    // Privileges given through roles do not show in information_schema: a login with roles is
    // not judged.
    let roles = texts(
        db,
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.APPLICABLE_ROLES",
        1,
    )
    .await?;
    if roles
        .first()
        .and_then(|r| r.first())
        .is_some_and(|n| n != "0")
    {
        return Ok(vec![]);
    }
    let grantee = "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', \
                   SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''')";
    let held = texts(
        db,
        &format!(
            "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = {grantee} \
             UNION SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.SCHEMA_PRIVILEGES \
             WHERE GRANTEE = {grantee} AND TABLE_SCHEMA = DATABASE()"
        ),
        1,
    )
    .await?;
    let global = texts(
        db,
        &format!(
            "SELECT CAST(PRIVILEGE_TYPE AS CHAR) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = {grantee}"
        ),
        1,
    )
    .await?;
    let has = |set: &Vec<Vec<String>>, p: &str| set.iter().any(|r| r[0] == p);
    let head = texts(
        db,
        &format!(
            "SELECT CAST(DATABASE() AS CHAR), CAST({grantee} AS CHAR), \
                    CAST(@@log_bin AS CHAR), CAST(@@log_bin_trust_function_creators AS CHAR)"
        ),
        4,
    )
    .await?;
    let Some([database, login, log_bin, trust]) = head
        .into_iter()
        .next()
        .and_then(|r| <[String; 4]>::try_from(r).ok())
    else {
        return Ok(vec![]);
    };
    let mut missing = vec![];
    let lacking: Vec<&str> = MYSQL_NEEDS.into_iter().filter(|p| !has(&held, p)).collect();
    if !lacking.is_empty() {
        missing.push(Missing {
            what: format!("{} on the database", lacking.join(", ")),
            grant: format!(
                "GRANT {} ON {}.* TO {login}",
                lacking.join(", "),
                Dialect::MySql.quote(&database)
            ),
        });
    }
    if !has(&global, "PROCESS") {
        missing.push(Missing {
            what: "PROCESS, to tell a TRUNCATE from no change".into(),
            grant: format!("GRANT PROCESS ON *.* TO {login}"),
        });
    }
    if log_bin == "1" && trust == "0" && !has(&global, "SUPER") {
        missing.push(Missing {
            what: "with the binary log on, the right to create triggers".into(),
            grant: "SET GLOBAL log_bin_trust_function_creators = 1".into(),
        });
    }
    Ok(missing)
}
