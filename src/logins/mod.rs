//! How a schedule reaches its databases: which login each side uses (the admin login of the
//! spec, or for a run on a server target the schedule's runtime role), where its password
//! comes from (a Secret through the API, a Job pod's environment), the names of the key
//! Secret and the role, and how two URLs are told to name the same database. The controller
//! and the workers both open their connections here; the runner never asks the controller.

pub mod passwords;
pub mod tls;

use crate::api::MigrationSchedule;
use crate::api::common::SecretKeyRef;
use crate::db::{ConnectSpec, Database, Dialect};
use kube::ResourceExt;

/// Connects to one database of a schedule (`side`: "source" or "target"), with the password
/// from the Secret that `secret` names: one connection, for a reconciler's reads and writes.
/// With `only_to_look` it connects as `Database::connect_to_look` does: a probe of a SQLite
/// file leaves it as it is. The error names the side and never holds the password.
pub async fn open_database(
    client: &kube::Client,
    namespace: &str,
    side: &str,
    connection: Connection<'_>,
    only_to_look: bool,
) -> Result<Database, String> {
    let password = match connection.secret {
        Some(r) => Some(passwords::password(client, namespace, side, r).await?),
        None => None,
    };
    let spec = ConnectSpec {
        url: connection.url.to_string(),
        password,
        tls: server_tls(client, namespace, side, connection).await?,
        max_connections: 1,
        create: false,
    };
    let db = if only_to_look {
        Database::connect_to_look(&spec).await
    } else {
        Database::connect(&spec).await
    };
    db.map_err(|e| format!("{side} database: {e}"))
}

/// How a schedule names one of its databases: the URL, the password's Secret key and the TLS.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    pub url: &'a str,
    pub secret: Option<&'a SecretKeyRef>,
    pub tls: Option<&'a crate::api::common::Tls>,
}

impl<'a> Connection<'a> {
    /// One side of a schedule's spec.
    pub fn of(spec: &'a crate::api::schedule::MigrationScheduleSpec, side: Side) -> Self {
        match side {
            Side::Source => Connection {
                url: &spec.source.url,
                secret: spec.source.password_secret_ref.as_ref(),
                tls: spec.source.tls.as_ref(),
            },
            Side::Target => Connection {
                url: &spec.target.url,
                secret: spec.target.password_secret_ref.as_ref(),
                tls: spec.target.tls.as_ref(),
            },
        }
    }
}

/// The TLS of one side of a schedule in the cluster; none for a SQLite file.
pub async fn tls_of(
    client: &kube::Client,
    schedule: &MigrationSchedule,
    side: Side,
) -> Result<Option<crate::db::tls::Tls>, String> {
    let name = match side {
        Side::Source => "source",
        Side::Target => "target",
    };
    let ns = schedule.namespace().unwrap_or_default();
    server_tls(client, &ns, name, Connection::of(&schedule.spec, side)).await
}

/// The TLS of a connection in the cluster; none for a SQLite file.
async fn server_tls(
    client: &kube::Client,
    namespace: &str,
    side: &str,
    connection: Connection<'_>,
) -> Result<Option<crate::db::tls::Tls>, String> {
    if matches!(Dialect::of_url(connection.url), Ok(Dialect::Sqlite)) {
        return Ok(None);
    }
    tls::settle(client, namespace, side, connection.tls)
        .await
        .map(Some)
}

/// One of a schedule's two databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

/// Connects to a schedule's source or target with the login its spec names (for the target,
/// the admin login, never the runtime key): one connection, for a reconciler's work.
pub async fn open_side(
    client: &kube::Client,
    schedule: &MigrationSchedule,
    side: Side,
) -> Result<Database, String> {
    let ns = schedule.namespace().unwrap_or_default();
    let name = match side {
        Side::Source => "source",
        Side::Target => "target",
    };
    open_database(
        client,
        &ns,
        name,
        Connection::of(&schedule.spec, side),
        false,
    )
    .await
}

/// Connects to a schedule's source and target with the logins its spec names (for the target,
/// the admin login), one connection each; with `database`, to the databases of that name on
/// their servers (a Dynamics GP company's, `engine::gp`). Neither stays open on an error.
pub async fn open_both(
    client: &kube::Client,
    schedule: &MigrationSchedule,
    database: Option<&str>,
) -> Result<(Database, Database), String> {
    let ns = schedule.namespace().unwrap_or_default();
    let open = async |side: Side, name: &str| {
        let connection = Connection::of(&schedule.spec, side);
        let url = match database {
            Some(db) => crate::engine::gp::database_url(connection.url, db)?,
            None => connection.url.to_string(),
        };
        let connection = Connection {
            url: &url,
            ..connection
        };
        open_database(client, &ns, name, connection, false).await
    };
    let source = open(Side::Source, "source").await?;
    match open(Side::Target, "target").await {
        Ok(target) => Ok((source, target)),
        Err(e) => {
            source.close().await;
            Err(e)
        }
    }
}

/// The target as a run logs in: as the runtime role, with the key from its Secret (or, for a
/// SQLite target, with the target's own login), and the target's TLS. One connection.
pub async fn run_target(
    client: &kube::Client,
    schedule: &MigrationSchedule,
) -> Result<ConnectSpec, String> {
    let ns = schedule.namespace().unwrap_or_default();
    let (_, target) = run_logins(schedule);
    let role = role_of(schedule);
    let password = match &target {
        Some(r) => Some(
            passwords::password(client, &ns, "target", r)
                .await
                .map_err(|e| match role {
                    Some(_) => format!(
                        "the runtime key: {e}. The schedule makes this Secret; its RuntimeKey \
                         condition says why it is missing"
                    ),
                    None => format!("the target password: {e}"),
                })?,
        ),
        None => None,
    };
    let mut url = schedule.spec.target.url.clone();
    if let Some(role) = &role {
        url = crate::engine::access::with_user(&url, role).map_err(|e| e.to_string())?;
    }
    let tls = server_tls(
        client,
        &ns,
        "target",
        Connection::of(&schedule.spec, Side::Target),
    )
    .await?;
    Ok(ConnectSpec {
        url,
        password,
        tls,
        max_connections: 1,
        create: false,
    })
}

/// The source as a run logs in: its password from its Secret, and its TLS.
pub async fn run_source(
    client: &kube::Client,
    schedule: &MigrationSchedule,
) -> Result<ConnectSpec, String> {
    let ns = schedule.namespace().unwrap_or_default();
    let connection = Connection::of(&schedule.spec, Side::Source);
    let password = match connection.secret {
        Some(r) => Some(
            passwords::password(client, &ns, "source", r)
                .await
                .map_err(|e| format!("the source password: {e}"))?,
        ),
        None => None,
    };
    Ok(ConnectSpec {
        url: connection.url.to_string(),
        password,
        tls: server_tls(client, &ns, "source", connection).await?,
        max_connections: 1,
        create: false,
    })
}

/// The data lake a schedule's target names, with the storage key from the target's Secret (in
/// a Job's pod, from its environment); None when the target is a database.
pub async fn lake_of(
    client: &kube::Client,
    namespace: &str,
    spec: &crate::api::schedule::MigrationScheduleSpec,
) -> Result<Option<crate::lake::store::LakeTarget>, String> {
    if !crate::lake::store::is_lake_url(&spec.target.url) {
        return Ok(None);
    }
    let secret = match &spec.target.password_secret_ref {
        Some(r) => Some(
            passwords::password(client, namespace, "target", r)
                .await
                .map_err(|e| format!("the lake's key: {e}"))?,
        ),
        None => None,
    };
    Ok(crate::convert::lake_target(spec, secret))
}

/// Connects to a schedule's target as its runs do (`run_target`). Company initialization
/// works in the target this way, so that its steps can do no more than a run may.
pub async fn open_target_as_run(
    client: &kube::Client,
    schedule: &MigrationSchedule,
) -> Result<Database, String> {
    let spec = run_target(client, schedule).await?;
    Database::connect(&spec)
        .await
        .map_err(|e| format!("target database: {e}"))
}

/// The name of a schedule's key Secret.
pub fn secret_name(schedule: &str) -> String {
    format!("{schedule}-runtime-key")
}

/// The login role of a schedule, or None when its target (SQLite) has no roles.
pub fn role_of(schedule: &MigrationSchedule) -> Option<String> {
    match Dialect::of_url(&schedule.spec.target.url) {
        Ok(Dialect::Sqlite) | Err(_) => None,
        Ok(d) => Some(crate::engine::access::role_name(
            &schedule.namespace().unwrap_or_default(),
            &schedule.name_any(),
            d,
        )),
    }
}

/// The environment that hands a worker or initializer pod what it logs in with: the passwords
/// of `run_logins`, and each side's CA when the schedule names one.
pub fn pod_env(schedule: &MigrationSchedule) -> Vec<k8s_openapi::api::core::v1::EnvVar> {
    let (source, target) = run_logins(schedule);
    let mut env = passwords::pod_env(source.as_ref(), target.as_ref());
    let spec = &schedule.spec;
    env.extend(tls::ca_env("source", spec.source.tls.as_ref()));
    env.extend(tls::ca_env("target", spec.target.tls.as_ref()));
    env
}

/// The Secret keys a run logs in with: the source's, and for the target the runtime key when
/// the target has login roles (the admin password of spec.target stays with the controller),
/// else the target's own. Pure.
pub fn run_logins(schedule: &MigrationSchedule) -> (Option<SecretKeyRef>, Option<SecretKeyRef>) {
    let spec = &schedule.spec;
    let target = match role_of(schedule) {
        Some(_) => Some(SecretKeyRef {
            name: secret_name(&schedule.name_any()),
            key: "password".into(),
        }),
        None => spec.target.password_secret_ref.clone(),
    };
    (spec.source.password_secret_ref.clone(), target)
}
/// How long resolving a database's host name may take in a probe.
const RESOLVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The addresses a server URL's host resolves to, each as `scheme://address:port/database`
/// (the form of `database_identity`), sorted. Empty for SQLite, a data lake, a URL that does not parse
/// and for a name that does not resolve within a few seconds: the URL alone then decides.
pub async fn resolved_endpoints(url: &str) -> Vec<String> {
    if crate::lake::store::is_lake_url(url) {
        return Vec::new();
    }
    let identity = database_identity(url);
    let Ok(u) = url::Url::parse(&identity) else {
        return Vec::new();
    };
    let (Some(host), Some(port)) = (u.host_str(), u.port()) else {
        return Vec::new();
    };
    if u.scheme() == "sqlite" {
        return Vec::new();
    }
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let lookup = tokio::net::lookup_host((host, port));
    let Ok(Ok(addresses)) = tokio::time::timeout(RESOLVE_LIMIT, lookup).await else {
        return Vec::new();
    };
    let mut endpoints: Vec<String> = addresses
        .map(|a| format!("{}://{a}{}", u.scheme(), u.path()))
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// How a database URL names its database, for spotting two schedules on one database:
/// scheme, host, port and database, without user or password; SQLite by file; a data lake
/// by its folder's URL.
pub fn database_identity(url: &str) -> String {
    if crate::lake::store::is_lake_url(url) {
        // A lake's folder: two schedules writing one folder are on one target.
        return url.trim().trim_end_matches('/').to_string();
    }
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "sqlite" => {
            format!("sqlite:{}{}", u.host_str().unwrap_or_default(), u.path())
        }
        Ok(u) => {
            let scheme = match u.scheme() {
                "postgresql" => "postgres",
                "mariadb" => "mysql",
                s => s,
            };
            let port = u.port().unwrap_or(match scheme {
                "postgres" => 5432,
                _ => 3306,
            });
            let host = u.host_str().unwrap_or("localhost").to_lowercase();
            let host = if host == "127.0.0.1" || host == "::1" || host == "[::1]" {
                "localhost".to_string()
            } else {
                host
            };
            format!("{scheme}://{host}:{port}{}", u.path())
        }
        Err(_) => url.to_string(),
    }
}

/// The schedule a runtime role serves, as `ledger::roles` records it: `namespace/name`.
pub fn role_owner(schedule: &MigrationSchedule) -> String {
    format!(
        "{}/{}",
        schedule.namespace().unwrap_or_default(),
        schedule.name_any()
    )
}

/// The runtime role the schedule `namespace/name` has on the server of its target, as
/// `server role`: login roles belong to the server, not to one database. None for SQLite.
pub fn role_identity(schedule: &str, target_url: &str) -> Option<String> {
    let (namespace, name) = schedule.split_once('/').unwrap_or(("", schedule));
    let dialect = crate::db::Dialect::of_url(target_url).ok()?;
    if dialect == crate::db::Dialect::Sqlite {
        return None;
    }
    let database = database_identity(target_url);
    // `scheme://host:port/database`: the server is all before the path.
    let server = match database.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => database,
    };
    Some(format!(
        "{server} {}",
        crate::engine::access::role_name(namespace, name, dialect)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_database_is_one_key_however_its_url_is_spelled() {
        assert_eq!(
            database_identity("postgresql://user:pw@LOCALHOST/erp"),
            database_identity("postgres://127.0.0.1:5432/erp")
        );
        assert_eq!(
            database_identity("mariadb://db.example/gp"),
            database_identity("mysql://other@db.example:3306/gp")
        );
        assert_ne!(
            database_identity("postgres://db.example/erp"),
            database_identity("postgres://db.example/erp2")
        );
        assert!(!database_identity("postgres://u:secret@db.example/erp").contains("secret"));
    }
}

#[cfg(test)]
mod admission_tests {
    /// The API server's rule and the controller's check allow the same URL parameters.
    #[test]
    fn admission_allows_the_parameters_the_controller_allows() {
        let rule = crate::api::common::URL_PARAMETERS_RULE;
        let names: Vec<&str> = crate::db::tenancy::PARAMETERS
            .iter()
            .flat_map(|(_, p)| p.iter().copied())
            .collect();
        let listed = rule
            .split_once("([?](")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(list, _)| list.split('|').collect::<Vec<_>>())
            .unwrap_or_default();
        assert_eq!(listed, names, "{rule}");
    }
}
