//! The SQL dialects: which one a URL names, how each quotes an identifier and how long one
//! may be, and a URL with its password taken out for messages.

use super::DbError;
use std::fmt;

/// The SQL dialects cloudmigrate reads and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL/MariaDB",
            Dialect::Sqlite => "SQLite",
        })
    }
}

impl Dialect {
    /// The dialect of a database URL, from its scheme.
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        let scheme = url
            .split("://")
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Dialect::Postgres),
            "mysql" | "mariadb" => Ok(Dialect::MySql),
            "sqlite" => Ok(Dialect::Sqlite),
            _ => Err(DbError::Config(format!(
                "unsupported database URL scheme {scheme:?} in {}: use postgres://, mysql:// (also for \
                 MariaDB) or sqlite://",
                redact_url(url)
            ))),
        }
    }

    /// Quotes an identifier: every table, column and company name goes through here.
    pub fn quote(self, ident: &str) -> String {
        let q = if self == Dialect::MySql { '`' } else { '"' };
        let mut out = String::with_capacity(ident.len() + 2);
        out.push(q);
        for c in ident.chars() {
            if c == q {
                out.push(q);
            }
            out.push(c);
        }
        out.push(q);
        out
    }

    /// Longest identifier the dialect keeps, in bytes (PostgreSQL) or characters (MySQL).
    pub fn max_identifier(self) -> Option<usize> {
        match self {
            Dialect::Postgres => Some(63),
            Dialect::MySql => Some(64),
            Dialect::Sqlite => None,
        }
    }
}

/// A URL with any password replaced by `***`, fit for messages and logs.
pub fn redact_url(url: &str) -> String {
    const SECRET: [&str; 3] = ["password", "sslpassword", "passfile"];
    match url::Url::parse(url) {
        Ok(u)
            if u.password().is_none()
                && !u.query_pairs().any(|(k, _)| SECRET.contains(&k.as_ref())) =>
        {
            url.to_string()
        }
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            if u.query_pairs().any(|(k, _)| SECRET.contains(&k.as_ref())) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if SECRET.contains(&k.as_ref()) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Unparseable: keep the scheme and host part only when it holds no credentials.
        Err(_) => match url.split_once('@') {
            Some((_, rest)) => format!("***@{rest}"),
            None => url.to_string(),
        },
    }
}
