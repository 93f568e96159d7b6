//! What a tenant's connection may reach from a process that serves many tenants. The command
//! line (`run -f`, `demo`) and a Job's workers run as their own user, in their own pod, and
//! open what they are given. The controller serves every namespace, so at start-up it is
//! restricted (`restrict_to`), and every connection it makes is checked before anything
//! touches the file system or the network:
//! - a SQLite file, or a `file://` lake's folder, only under the directories its operator
//!   names (none by default);
//! - a server URL with only the parameters on the allowlist (`PARAMETERS`): none that name a
//!   host, a file, a password or session options;
//! - a server connection only with a password from a Secret, so that the controller's own
//!   `PGPASSWORD`, `.pgpass` or socket login never serve a tenant.

use super::ConnectSpec;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

/// The directories this process may open SQLite files under; unset: not restricted.
static ALLOWED: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// The query parameters a server URL may carry in a restricted process, by scheme: the port,
/// database and user are in the URL itself; these add only the application name, timeouts
/// and character sets. TLS is set apart from the URL (`ConnectSpec::tls`).
pub const PARAMETERS: &[(&str, &[&str])] = &[
    ("postgres", &["application_name", "connect_timeout"]),
    (
        "mysql",
        &[
            "charset",
            "collation",
            "timezone",
            "statement-cache-capacity",
        ],
    ),
];

/// Restricts this process as the controller is: SQLite files under `dirs` only (none: no
/// SQLite file at all), server URLs on the allowlist, passwords from Secrets. Set once, at
/// start-up; a second call changes nothing.
pub fn restrict_to(dirs: Vec<PathBuf>) {
    let dirs = dirs
        .into_iter()
        .map(|d| d.canonicalize().unwrap_or(d))
        .collect();
    let _ = ALLOWED.set(dirs);
}

/// Checks a connection against the restriction, if this process has one.
pub fn check(spec: &ConnectSpec) -> Result<(), String> {
    let Some(dirs) = ALLOWED.get() else {
        return Ok(());
    };
    if spec.url.starts_with("sqlite:") {
        return sqlite_allowed(&spec.url, dirs).map(|_| ());
    }
    server_url_allowed(&spec.url)?;
    if spec.tls.is_none() {
        return Err(
            "a server connection of the controller needs its TLS settled (tls, or the default \
             VerifyFull): this is a bug in cloudmigrate, please report it"
                .into(),
        );
    }
    if spec.password.is_none() {
        return Err(
            "a server database needs passwordSecretRef: the controller never logs in with a \
             password of its own environment or files"
                .into(),
        );
    }
    Ok(())
}

/// Checks the folder of a `file://` lake against the restriction, if this process has one:
/// as a SQLite file, it must lie under an allowed directory (its parent must exist there; the
/// folder itself may be made by the run). The message never tells whether a path exists.
pub fn lake_folder_allowed(folder: &str) -> Result<(), String> {
    let Some(dirs) = ALLOWED.get() else {
        return Ok(());
    };
    let url = format!("sqlite://{folder}");
    sqlite_allowed(&url, dirs)
        .map(|_| ())
        .map_err(|e| e.replacen("SQLite URL refused", "file:// lake refused", 1))
}

/// Whether a PostgreSQL or MySQL URL holds only parameters on the allowlist, and no password.
/// The message names the parameter, never its value.
pub fn server_url_allowed(url: &str) -> Result<(), String> {
    let parsed = url::Url::parse(url).map_err(|_| "the URL does not parse".to_string())?;
    if parsed.password().is_some() {
        return Err(
            "the URL holds a password: put it in a Secret named by passwordSecretRef".into(),
        );
    }
    let family = match parsed.scheme() {
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        other => return Err(format!("the scheme {other}:// is not a server database")),
    };
    let allowed = PARAMETERS
        .iter()
        .find(|(f, _)| *f == family)
        .map(|(_, p)| *p)
        .unwrap_or_default();
    for (name, _) in parsed.query_pairs() {
        if !allowed.contains(&name.as_ref()) {
            return Err(format!(
                "the URL parameter {name:?} is not allowed (allowed: {}); host, files, \
                 passwords and session options cannot be set by URL, and TLS is set with the \
                 tls field",
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

/// The file a SQLite URL names, when it lies under one of `dirs`. The message never tells
/// whether a path outside them exists.
pub fn sqlite_allowed(url: &str, dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let refused = |why: &str| {
        let fix = if dirs.is_empty() {
            "this controller opens no local file; the operator allows directories with \
             --sqlite-dir (the chart's controller.sqliteDirectories), or use runner: Job"
                .to_string()
        } else {
            format!(
                "this controller opens local files only under {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!("SQLite URL refused: {why}; {fix}")
    };
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| refused("not a sqlite: URL"))?;
    if rest.contains('?') || rest.contains('#') {
        return Err(refused("query parameters are not allowed"));
    }
    let path = Path::new(rest);
    if !path.is_absolute() {
        return Err(refused("the path must be absolute"));
    }
    if path
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(refused("the path must not contain . or .."));
    }
    let (Some(dir), Some(file)) = (path.parent(), path.file_name()) else {
        return Err(refused("the path names no file"));
    };
    // Symlinks resolved: a link inside an allowed directory that points out is refused. A
    // directory that does not resolve is refused with the same words as one outside.
    let outside = || refused("the path is not under an allowed directory");
    let real_dir = dir.canonicalize().map_err(|_| outside())?;
    let real = match real_dir.join(file).canonicalize() {
        Ok(p) => p,
        // A file not made yet (a target that a run creates) is its directory's.
        Err(_) => real_dir.join(file),
    };
    if dirs.iter().any(|d| real.starts_with(d) && real != *d) {
        Ok(real)
    } else {
        Err(outside())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_under_the_allowed_directories_open() {
        let base = std::env::temp_dir().join(format!("cloudmigrate-files-{}", std::process::id()));
        let allowed_dir = base.join("allowed");
        let other = base.join("other");
        std::fs::create_dir_all(&allowed_dir).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("secret.db"), b"x").unwrap();
        std::os::unix::fs::symlink(other.join("secret.db"), allowed_dir.join("link.db")).unwrap();
        let dirs = vec![allowed_dir.canonicalize().unwrap()];
        let url = |p: &Path| format!("sqlite://{}", p.display());

        assert!(sqlite_allowed(&url(&allowed_dir.join("erp.db")), &dirs).is_ok());
        for bad in [
            url(&other.join("secret.db")),
            url(&other.join("missing.db")),
            url(&allowed_dir.join("link.db")),
            format!("{}/../other/secret.db", url(&allowed_dir)),
            format!("{}?vfs=unix-dotfile", url(&allowed_dir.join("erp.db"))),
            "sqlite://relative.db".into(),
            "sqlite:///nowhere/at/all.db".into(),
        ] {
            let e = sqlite_allowed(&bad, &dirs).unwrap_err();
            assert!(e.starts_with("SQLite URL refused: "), "{bad}: {e}");
            assert!(!e.contains("exist"), "{bad}: {e}");
        }
        // A file that exists and one that does not get the same answer outside.
        assert_eq!(
            sqlite_allowed(&url(&other.join("secret.db")), &dirs),
            sqlite_allowed(&url(&other.join("missing.db")), &dirs)
        );
        let none = sqlite_allowed(&url(&allowed_dir.join("erp.db")), &[]).unwrap_err();
        assert!(none.contains("--sqlite-dir"), "{none}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn server_urls_carry_only_the_allowed_parameters_and_no_password() {
        for ok in [
            "postgres://erp@db.example:5432/bc",
            "postgres://erp@db/bc?connect_timeout=10&application_name=cm",
            "mysql://erp@db:3306/nav?charset=utf8mb4",
        ] {
            assert_eq!(server_url_allowed(ok), Ok(()), "{ok}");
        }
        for (bad, said) in [
            ("postgres://erp@db/bc?password=TopSecret123", "\"password\""),
            ("postgres://erp:TopSecret123@db/bc", "holds a password"),
            ("postgres://erp@db/bc?host=/var/run/postgresql", "\"host\""),
            ("postgres://erp@db/bc?hostaddr=10.0.0.9", "\"hostaddr\""),
            (
                "postgres://erp@db/bc?sslrootcert=/etc/shadow",
                "\"sslrootcert\"",
            ),
            (
                "postgres://erp@db/bc?options=-c%20search_path%3Devil",
                "\"options\"",
            ),
            ("mysql://erp@db/nav?socket=/run/mysqld.sock", "\"socket\""),
            ("mysql://erp@db/nav?ssl-key=/k.pem", "\"ssl-key\""),
            ("postgres://erp@db/bc?sslmode=disable", "\"sslmode\""),
            ("mysql://erp@db/nav?ssl-mode=DISABLED", "\"ssl-mode\""),
        ] {
            let e = server_url_allowed(bad).unwrap_err();
            assert!(e.contains(said), "{bad}: {e}");
            assert!(
                !e.contains("TopSecret123") && !e.contains("/etc/shadow"),
                "{e}"
            );
        }
    }
}
