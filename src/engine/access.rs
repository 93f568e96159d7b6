//! The runtime key: the login role in the target that replication runs write as, its
//! password (the key), and what it may write. The admin connection of a schedule's target
//! manages the role; runs connect as the role.
//!
//! The key never travels in a statement's text: PostgreSQL gets a SCRAM-SHA-256 verifier and
//! MySQL/MariaDB a `mysql_native_password` hash, so a server log of a failed statement holds
//! no key either.

use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SecureRandom;
use std::collections::BTreeSet;
use std::fmt;
use std::num::NonZeroU32;

/// The start of every runtime role's name.
pub const ROLE_PREFIX: &str = "cloudmigrate_rt_";

/// A runtime key. Its `Debug` and `Display` show the fingerprint, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct RuntimeKey(String);

impl fmt::Debug for RuntimeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RuntimeKey({})", self.fingerprint())
    }
}

impl RuntimeKey {
    /// A new key: 32 bytes from the operating system's random source, base64url.
    pub fn generate() -> Result<Self, String> {
        let mut bytes = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| "the operating system's random source failed".to_string())?;
        Ok(RuntimeKey(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// A key read back from its Secret.
    pub fn from_secret(value: String) -> Self {
        RuntimeKey(value)
    }

    /// The key itself, for the Secret and for a login; nowhere else.
    pub fn reveal(&self) -> &str {
        &self.0
    }

    /// `sha256:` and the first 16 hex digits of the key's SHA-256: enough to compare two keys,
    /// useless to log in with.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

/// The fingerprint of a key's bytes (see `RuntimeKey::fingerprint`).
pub fn fingerprint(key: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key);
    let hex: String = digest.as_ref()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The login role of a schedule: `cloudmigrate_rt_<namespace>_<schedule>`. Login roles belong
/// to the server, which tenants of several namespaces may share: the namespace keeps their
/// roles apart. Both are DNS labels, so `_` cannot occur in either. A name longer than the
/// dialect allows (63 bytes on PostgreSQL, 32 characters for a MySQL user) keeps its start and
/// ends with 8 hex digits of its hash, so that it stays unique.
pub fn role_name(namespace: &str, schedule: &str, dialect: Dialect) -> String {
    let full = format!("{ROLE_PREFIX}{namespace}_{schedule}");
    let max = match dialect {
        Dialect::MySql => 32,
        _ => 63,
    };
    if full.len() <= max {
        return full;
    }
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{namespace}/{schedule}").as_bytes(),
    );
    let tail: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Namespace and schedule names are DNS names (ASCII), so any byte is a character boundary.
    let keep = max - tail.len() - 1;
    format!("{}_{tail}", &full[..keep])
}

/// The PostgreSQL SCRAM-SHA-256 verifier of a key, as `ALTER ROLE … PASSWORD` accepts it
/// (RFC 5802 and RFC 7677, 4096 iterations as PostgreSQL uses).
fn scram_verifier(key: &RuntimeKey) -> Result<String, String> {
    use ring::{digest, hmac, pbkdf2};
    const ITERATIONS: u32 = 4096;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| "the operating system's random source failed".to_string())?;
    let mut salted = [0u8; 32];
    // The invariant: ITERATIONS is not zero.
    let iterations = NonZeroU32::new(ITERATIONS).ok_or("zero iterations")?;
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        key.reveal().as_bytes(),
        &mut salted,
    );
    let mac = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&mac, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&mac, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    ))
}

/// The `mysql_native_password` hash of a key: `*` and SHA1(SHA1(key)) in upper-case hex.
fn mysql_native_hash(key: &RuntimeKey) -> String {
    use ring::digest::{SHA1_FOR_LEGACY_USE_ONLY as SHA1, digest};
    let once = digest(&SHA1, key.reveal().as_bytes());
    let twice = digest(&SHA1, once.as_ref());
    let hex: String = twice.as_ref().iter().map(|b| format!("{b:02X}")).collect();
    format!("*{hex}")
}

fn sql(sql: String) -> Statement {
    Statement {
        sql,
        params: vec![],
    }
}

/// The account of a role, as MySQL names it: the user at any host.
fn mysql_account(role: &str) -> String {
    format!("{}@'%'", Dialect::MySql.quote(role))
}

/// An error of role management, with what the admin user needs.
fn role_error(action: &str, role: &str, dialect: Dialect, e: DbError) -> DbError {
    let need = match dialect {
        Dialect::Postgres => "the CREATEROLE attribute",
        _ => "the CREATE USER privilege and GRANT OPTION on the target database",
    };
    DbError::Sql(format!(
        "{action} the runtime role {role:?} failed: {e}. The user of spec.target.url needs \
         {need}"
    ))
}

/// Whether a PostgreSQL role of this name exists.
async fn pg_role_exists(admin: &Database, role: &str) -> Result<bool, DbError> {
    Ok(!admin
        .query_text_set(&Statement {
            sql: "SELECT rolname::text FROM pg_roles WHERE rolname = ?".into(),
            params: vec![Value::Text(role.to_string())],
        })
        .await?
        .is_empty())
}

/// Creates the role, or sets its password, so that `key` logs in as `role` from now on. Other
/// sessions of the role keep their connections. `owner` is the schedule (`namespace/name`):
/// a role of that name that this project did not make for it (`ledger::roles`) is refused,
/// never taken over.
pub async fn set_key(
    admin: &Database,
    role: &str,
    owner: &str,
    key: &RuntimeKey,
) -> Result<(), DbError> {
    use super::ledger::roles;
    let d = admin.dialect();
    if d == Dialect::Sqlite {
        return Err(DbError::Config(
            "a SQLite target has no login roles, so it has no runtime key".into(),
        ));
    }
    roles::ensure(admin).await?;
    let not_ours = || {
        DbError::Config(format!(
            "a login role {role:?} exists on the target's server, and cloudmigrate did not make \
             it for this schedule: it is never taken over. Drop or rename that role, or rename \
             the schedule"
        ))
    };
    let ours = match roles::owner_of(admin, role).await? {
        Some(o) if o == owner => true,
        Some(_) => return Err(not_ours()),
        None => false,
    };
    let exists = match d {
        Dialect::Postgres => pg_role_exists(admin, role).await?,
        // MySQL tells only by refusing to create it again (below).
        _ => ours,
    };
    if exists && !ours {
        return Err(not_ours());
    }
    if !ours {
        roles::record(admin, role, owner).await?;
    }
    let statements = key_statements(d, role, key, exists)?;
    for (i, s) in statements.iter().enumerate() {
        if let Err(e) = admin.execute(s).await {
            // Made by someone else meanwhile, or on MySQL before: not ours to change.
            if !ours && i == 0 {
                roles::forget(admin, role).await?;
                let said = e.to_string();
                if said.contains("exist")
                    || said.contains("1396")
                    || said.contains("CREATE USER failed")
                {
                    return Err(not_ours());
                }
            }
            return Err(role_error("setting the key of", role, d, e));
        }
    }
    Ok(())
}

/// The statements that give `role` the key: it is created unless it `exists`.
fn key_statements(
    d: Dialect,
    role: &str,
    key: &RuntimeKey,
    exists: bool,
) -> Result<Vec<Statement>, DbError> {
    Ok(match d {
        Dialect::Postgres => {
            let verifier = scram_verifier(key).map_err(DbError::Config)?;
            let verb = if exists { "ALTER" } else { "CREATE" };
            // The verifier holds only base64 and `$:`, never a quote.
            vec![sql(format!(
                "{verb} ROLE {} WITH LOGIN NOINHERIT PASSWORD '{verifier}'",
                d.quote(role)
            ))]
        }
        _ => {
            let hash = mysql_native_hash(key);
            let account = mysql_account(role);
            let create = if exists {
                format!(
                    "CREATE USER IF NOT EXISTS {account} IDENTIFIED WITH mysql_native_password AS '{hash}'"
                )
            } else {
                // No IF NOT EXISTS: a user of this name that we did not make fails it.
                format!("CREATE USER {account} IDENTIFIED WITH mysql_native_password AS '{hash}'")
            };
            vec![
                sql(create),
                sql(format!(
                    "ALTER USER {account} IDENTIFIED WITH mysql_native_password AS '{hash}'"
                )),
            ]
        }
    })
}

/// The tables on which the role holds `privilege` (`INSERT`: the tables it may write), as the
/// target's catalog lists its grants.
async fn granted(
    admin: &Database,
    role: &str,
    privilege: &str,
) -> Result<BTreeSet<String>, DbError> {
    let stmt = match admin.dialect() {
        Dialect::Postgres => Statement {
            sql: "SELECT DISTINCT table_name::text FROM information_schema.role_table_grants \
                  WHERE grantee = ? AND table_schema = current_schema() AND privilege_type = ?"
                .into(),
            params: vec![
                Value::Text(role.to_string()),
                Value::Text(privilege.to_string()),
            ],
        },
        _ => Statement {
            sql:
                "SELECT DISTINCT CAST(table_name AS CHAR) FROM information_schema.table_privileges \
                  WHERE grantee = ? AND table_schema = DATABASE() AND privilege_type = ?"
                    .into(),
            params: vec![
                Value::Text(format!("'{role}'@'%'")),
                Value::Text(privilege.to_string()),
            ],
        },
    };
    Ok(admin.query_text_set(&stmt).await?.into_iter().collect())
}

/// What a grant changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    pub granted: usize,
    pub revoked: usize,
    /// Tables the admin created from the source's definition (createMissingTables).
    pub created: Vec<String>,
    /// Tables the admin could not create, with the database's reason.
    pub not_created: Vec<(String, String)>,
}

/// Lets the role read and write exactly `tables` (plus the replication state, which the
/// caller includes) and nothing else in the target's schema or database. The role never
/// creates anything: a missing table is created by the admin (`grant_for_run`), and a CREATE
/// that an older version granted is taken back. Only the differences to what the role has are
/// granted or revoked.
pub async fn grant(
    admin: &Database,
    role: &str,
    tables: &BTreeSet<String>,
) -> Result<Grants, DbError> {
    let d = admin.dialect();
    let have = granted(admin, role, "INSERT").await?;
    let add: Vec<&String> = tables.difference(&have).collect();
    let remove: Vec<&String> = have.difference(tables).collect();
    let mut statements = Vec::new();
    match d {
        Dialect::Postgres => {
            let r = d.quote(role);
            let schema = schema(admin).await?;
            statements.push(sql(format!("GRANT USAGE ON SCHEMA {schema} TO {r}")));
            statements.push(sql(format!("REVOKE CREATE ON SCHEMA {schema} FROM {r}")));
            for chunk in add.chunks(200) {
                let list: Vec<String> = chunk.iter().map(|t| d.quote(t)).collect();
                statements.push(sql(format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {} TO {r}",
                    list.join(", ")
                )));
            }
            for chunk in remove.chunks(200) {
                let list: Vec<String> = chunk.iter().map(|t| d.quote(t)).collect();
                statements.push(sql(format!("REVOKE ALL ON {} FROM {r}", list.join(", "))));
            }
        }
        Dialect::MySql => {
            let account = mysql_account(role);
            // MySQL grants one object per statement.
            for t in &add {
                statements.push(sql(format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {account}",
                    d.quote(t)
                )));
            }
            for t in &remove {
                statements.push(sql(format!(
                    "REVOKE ALL PRIVILEGES ON {} FROM {account}",
                    d.quote(t)
                )));
            }
            // A CREATE that an older version granted on a table the role keeps goes.
            let creatable = granted(admin, role, "CREATE").await?;
            for t in tables.intersection(&creatable) {
                statements.push(sql(format!(
                    "REVOKE CREATE ON {} FROM {account}",
                    d.quote(t)
                )));
            }
        }
        Dialect::Sqlite => return Ok(Grants::default()),
    }
    if d == Dialect::Postgres {
        // All or nothing on PostgreSQL, where grants are transactional.
        admin
            .in_transaction(&statements)
            .await
            .map_err(|e| role_error("granting the tables to", role, d, e))?;
    } else {
        for s in &statements {
            admin
                .execute(s)
                .await
                .map_err(|e| role_error("granting the tables to", role, d, e))?;
        }
    }
    Ok(Grants {
        granted: add.len(),
        revoked: remove.len(),
        ..Grants::default()
    })
}

/// Why a run's grants could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The run asks for what the source does not have (a company) or cannot be planned (a
    /// pattern that is no glob): trying again cannot help.
    #[error(transparent)]
    Plan(#[from] super::plan::PlanError),
    /// A database refused or did not answer; the message names the side.
    #[error("{0}")]
    Database(String),
}

/// Makes the target ready for run `run_id`, which writes as `role`: the ledger's tables exist
/// (created by the admin user), the source's catalog is recorded for the run's workers to plan
/// from, with `create_missing` the tables the plan copies that the target lacks are created by
/// the admin from the source's definition, and the role may write exactly the tables the
/// run's plan copies that exist in the target, and the ledger's tables. A table that cannot be
/// created is left out and named in the result; the run reports it. Errors name the side.
pub async fn grant_for_run(
    source: &Database,
    admin: &Database,
    run_id: &str,
    options: &super::plan::PlanOptions,
    role: &str,
    create_missing: bool,
) -> Result<Grants, GrantError> {
    let target_side = |e: DbError| GrantError::Database(format!("target database: {e}"));
    super::ledger::ensure(admin).await.map_err(target_side)?;
    let catalog = super::catalog::Catalog::read(source)
        .await
        .map_err(|e| GrantError::Database(format!("source database: {e}")))?;
    let mut options = options.clone();
    options.target = Some(admin.dialect());
    let plan = super::plan::plan(&catalog, &options)?;
    let mut existing: BTreeSet<String> = admin
        .tables()
        .await
        .map_err(target_side)?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let (mut created, mut not_created) = (Vec::new(), Vec::new());
    if create_missing {
        let (sd, td) = (source.dialect(), admin.dialect());
        let missing: Vec<_> = plan
            .to_copy()
            .filter(|t| !existing.contains(&t.target_name))
            .collect();
        for t in missing {
            let create = sql(crate::db::create_table_sql(
                td,
                sd,
                &t.source.def,
                &t.target_name,
            ));
            match admin.execute(&create).await {
                Ok(_) => {
                    existing.insert(t.target_name.clone());
                    created.push(t.target_name.clone());
                }
                Err(e) => not_created.push((t.target_name.clone(), e.to_string())),
            }
        }
    }
    // The run's workers plan from this same catalog: read once, and they copy exactly what
    // was granted, and report the tables created for them. Where it cannot be recorded (a
    // MySQL server whose max_allowed_packet is smaller than a very large catalog), they read
    // the source again.
    let recorded = super::ledger::catalogs::Recorded {
        created: created
            .iter()
            .map(|t| (t.clone(), None))
            .chain(
                not_created
                    .iter()
                    .map(|(t, e)| (t.clone(), Some(e.clone()))),
            )
            .collect(),
        catalog,
    };
    if let Err(e) = super::ledger::catalogs::record(admin, run_id, &recorded).await {
        tracing::warn!(error = %e, "the source's catalog was not recorded for the run; its workers read it again");
    }
    let mut tables: BTreeSet<String> = plan
        .to_copy()
        .map(|t| t.target_name.clone())
        .filter(|n| existing.contains(n))
        .collect();
    tables.extend(super::ledger::TABLES.iter().map(|(own, _)| own.to_string()));
    let grants = grant(admin, role, &tables).await.map_err(target_side)?;
    Ok(Grants {
        created,
        not_created,
        ..grants
    })
}

async fn schema(admin: &Database) -> Result<String, DbError> {
    let rows = admin
        .query(&sql("SELECT current_schema()::text".into()), &[Kind::Text])
        .await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(s)) => Ok(Dialect::Postgres.quote(s)),
        _ => Err(DbError::Sql(
            "the target has no current schema: set search_path for the user of \
             spec.target.url"
                .into(),
        )),
    }
}

/// Drops the role and everything granted to it, if this project made it for `owner` (the
/// schedule, `namespace/name`); a role of that name made by someone else stays. Missing
/// already is fine.
pub async fn drop_role(admin: &Database, role: &str, owner: &str) -> Result<(), DbError> {
    use super::ledger::roles;
    let d = admin.dialect();
    // A role this project did not make for the schedule is not ours to drop.
    if roles::owner_of(admin, role).await?.as_deref() != Some(owner) {
        return Ok(());
    }
    if d == Dialect::Postgres && !pg_role_exists(admin, role).await? {
        return roles::forget(admin, role).await;
    }
    for s in drop_statements(d, role) {
        admin.execute(&sql(s)).await.map_err(|e| {
            let hint = if d == Dialect::Postgres {
                format!(
                    "; where the role has privileges in another database of the server, run \
                     DROP OWNED BY {} there; the controller tries again",
                    d.quote(role)
                )
            } else {
                String::new()
            };
            DbError::Sql(format!("{}{hint}", role_error("dropping", role, d, e)))
        })?;
    }
    roles::forget(admin, role).await
}

/// The statements that drop `role`, for the admin user of the target. On PostgreSQL the
/// tables the role created belong to the migration: they are reassigned to the admin user
/// first, and DROP OWNED then revokes the role's grants in this database.
pub fn drop_statements(d: Dialect, role: &str) -> Vec<String> {
    match d {
        Dialect::Postgres => vec![
            format!("REASSIGN OWNED BY {} TO CURRENT_USER", d.quote(role)),
            format!("DROP OWNED BY {}", d.quote(role)),
            format!("DROP ROLE {}", d.quote(role)),
        ],
        Dialect::MySql => vec![format!("DROP USER IF EXISTS {}", mysql_account(role))],
        Dialect::Sqlite => vec![],
    }
}

/// Whether `key` logs in as `role` to the database of `url` (whose own user is replaced),
/// with `tls`.
/// Ok(false): the server refused the login; Err: anything else went wrong.
pub async fn logs_in(
    url: &str,
    tls: Option<crate::db::tls::Tls>,
    role: &str,
    key: &RuntimeKey,
) -> Result<bool, DbError> {
    let spec = crate::db::ConnectSpec {
        url: with_user(url, role)?,
        password: Some(key.reveal().to_string()),
        tls,
        max_connections: 1,
        create: false,
    };
    match Database::connect(&spec).await {
        Ok(db) => {
            db.close().await;
            Ok(true)
        }
        Err(DbError::Connect { message, .. }) if refused_login(&message) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether a connection error is a refused login (wrong password or unknown user).
fn refused_login(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("password authentication failed")
        || m.contains("access denied")
        || m.contains("28p01")
        || m.contains("1045")
}

/// The URL with its user replaced by `user` (and no password in it).
pub fn with_user(url: &str, user: &str) -> Result<String, DbError> {
    let mut u = url::Url::parse(url).map_err(|e| {
        DbError::Config(format!(
            "invalid database URL {}: {e}",
            crate::db::redact_url(url)
        ))
    })?;
    u.set_username(user)
        .and_then(|_| u.set_password(None))
        .map_err(|_| {
            DbError::Config(format!(
                "the URL {} cannot carry a user name",
                crate::db::redact_url(url)
            ))
        })?;
    Ok(u.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_32_random_bytes_in_base64url_and_shows_only_its_fingerprint() {
        let a = RuntimeKey::generate().unwrap();
        let b = RuntimeKey::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.reveal().len(), 43);
        assert!(
            a.reveal()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        let shown = format!("{a:?}");
        assert!(!shown.contains(a.reveal()), "{shown}");
        assert!(shown.contains(&a.fingerprint()), "{shown}");
        assert_eq!(a.fingerprint().len(), "sha256:".len() + 16);
    }

    #[test]
    fn role_names_fit_the_dialect_and_stay_distinct() {
        assert_eq!(
            role_name("erp", "bc-prod", Dialect::Postgres),
            "cloudmigrate_rt_erp_bc-prod"
        );
        // Two tenants with the same schedule name get roles of their own.
        assert_ne!(
            role_name("tenant-a", "erp", Dialect::Postgres),
            role_name("tenant-b", "erp", Dialect::Postgres)
        );
        let long_a = role_name("shop", "contoso-nightly-migration-a", Dialect::MySql);
        let long_b = role_name("shop", "contoso-nightly-migration-b", Dialect::MySql);
        assert_eq!(long_a.len(), 32, "{long_a}");
        assert!(long_a.starts_with("cloudmigrate_rt_shop_co"), "{long_a}");
        assert_ne!(long_a, long_b);
        // The hash covers the namespace too: `a-b`/`c` and `a`/`b-c` differ.
        assert_ne!(
            role_name(&"a-b".repeat(20), "c", Dialect::MySql),
            role_name(&"a-b".repeat(20), "d", Dialect::MySql)
        );
        let pg = role_name("shop", &"x".repeat(100), Dialect::Postgres);
        assert_eq!(pg.len(), 63);
    }

    #[test]
    fn the_mysql_hash_is_the_native_password_format() {
        // The well-known native hash of "password".
        let key = RuntimeKey::from_secret("password".into());
        assert_eq!(
            mysql_native_hash(&key),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
    }

    #[test]
    fn the_scram_verifier_has_postgres_shape() {
        let v = scram_verifier(&RuntimeKey::from_secret("k".into())).unwrap();
        assert!(v.starts_with("SCRAM-SHA-256$4096:"), "{v}");
        assert!(!v.contains('\''));
        let (_, keys) = v.split_once('$').unwrap();
        let (_, pair) = keys.split_once('$').unwrap();
        assert_eq!(pair.split(':').count(), 2);
    }

    #[test]
    fn a_url_gets_the_role_as_its_user() {
        assert_eq!(
            with_user("postgres://admin@db:5432/bc", "cloudmigrate_rt_x").unwrap(),
            "postgres://cloudmigrate_rt_x@db:5432/bc"
        );
    }
}
