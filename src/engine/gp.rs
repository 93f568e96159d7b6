//! Dynamics GP as a source: each company is a database of its own, listed in the system
//! database's company master `SY01500` (`CMPANYID`, `CMPNYNAM`, `INTERID`: the company's id,
//! name and database), on the same server. A table belongs to a GP series by its name's
//! prefix (`GL00100` is Financial), which the vendor's data lake export uses as its folders.

use crate::db::{Database, DbError, Kind, Statement, Value};

/// One GP company.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpCompany {
    pub id: i64,
    /// `CMPNYNAM`, without GP's padding.
    pub name: String,
    /// `INTERID`: the company's database.
    pub database: String,
}

/// The companies of the system database's `SY01500`, by id.
pub async fn companies(system: &Database) -> Result<Vec<GpCompany>, DbError> {
    let d = system.dialect();
    // CMPANYID is a smallint: widened, so that every dialect reads it as the one integer kind.
    let id = match d {
        crate::db::Dialect::Postgres => format!("CAST({} AS bigint)", d.quote("CMPANYID")),
        crate::db::Dialect::MySql => format!("CAST({} AS SIGNED)", d.quote("CMPANYID")),
        crate::db::Dialect::Sqlite => format!("CAST({} AS INTEGER)", d.quote("CMPANYID")),
    };
    let rows = system
        .query(
            &Statement {
                sql: format!(
                    "SELECT {id}, {}, {} FROM {} ORDER BY {}",
                    d.quote("CMPNYNAM"),
                    d.quote("INTERID"),
                    d.quote("SY01500"),
                    d.quote("CMPANYID")
                ),
                params: vec![],
            },
            &[Kind::Int, Kind::Text, Kind::Text],
        )
        .await
        .map_err(|e| {
            DbError::Config(format!(
                "a Dynamics GP source's URL names its system database (DYNAMICS by default), \
                 whose company master SY01500 lists the companies; reading it failed: {e}"
            ))
        })?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.as_slice() {
            [Value::Int(id), Value::Text(name), Value::Text(db)] => Some(GpCompany {
                id: *id,
                name: name.trim_end().to_string(),
                database: db.trim().to_string(),
            }),
            _ => None,
        })
        .filter(|c| !c.database.is_empty())
        .collect())
}

/// The companies of `SY01500` that a run takes: all of them without `names`, else those named
/// by `CMPNYNAM` or `INTERID`. A name `SY01500` does not list is an error that lists the
/// names it has.
pub fn selected(
    companies: &[GpCompany],
    names: Option<&[String]>,
) -> Result<Vec<GpCompany>, crate::engine::plan::PlanError> {
    let Some(names) = names else {
        return Ok(companies.to_vec());
    };
    let unknown: Vec<String> = names
        .iter()
        .filter(|n| !companies.iter().any(|c| &c.name == *n || &c.database == *n))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(crate::engine::plan::PlanError::UnknownCompanies(
            unknown,
            companies.iter().map(|c| c.name.clone()).collect(),
        ));
    }
    Ok(companies
        .iter()
        .filter(|c| names.iter().any(|n| n == &c.name || n == &c.database))
        .cloned()
        .collect())
}

/// The URL of another database on the server of `system_url`: the same login, host and
/// parameters, the database swapped. A SQLite file's sibling `DATABASE.db` stands for it.
pub fn database_url(system_url: &str, database: &str) -> Result<String, String> {
    if database.contains(['/', '?', '#', '\\']) {
        return Err(format!(
            "the GP company database name {database:?} is not a name"
        ));
    }
    if let Some(path) = system_url.strip_prefix("sqlite://") {
        let (file, params) = path
            .split_once('?')
            .map_or((path, None), |(f, p)| (f, Some(p)));
        let dir = std::path::Path::new(file)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let sibling = if dir.is_empty() {
            format!("{database}.db")
        } else {
            format!("{dir}/{database}.db")
        };
        return Ok(match params {
            Some(p) => format!("sqlite://{sibling}?{p}"),
            None => format!("sqlite://{sibling}"),
        });
    }
    let mut url = url::Url::parse(system_url).map_err(|e| format!("{system_url}: {e}"))?;
    url.set_path(&format!("/{database}"));
    Ok(url.to_string())
}

/// Whether the server of `system` (a database of the server, as its URL `system_url` names
/// it) has the database `database`: for SQLite, whether its sibling file exists.
pub async fn has_database(
    system: &Database,
    system_url: &str,
    database: &str,
) -> Result<bool, DbError> {
    let sql = match system.dialect() {
        crate::db::Dialect::Sqlite => {
            let url = database_url(system_url, database).map_err(DbError::Config)?;
            let file = url.trim_start_matches("sqlite://");
            let file = file.split('?').next().unwrap_or(file);
            return Ok(std::path::Path::new(file).exists());
        }
        crate::db::Dialect::Postgres => "SELECT datname::text FROM pg_database WHERE datname = ?",
        crate::db::Dialect::MySql => {
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?"
        }
    };
    Ok(!system
        .query_text_set(&Statement {
            sql: sql.into(),
            params: vec![Value::Text(database.to_string())],
        })
        .await?
        .is_empty())
}

/// The company databases of `SY01500` (read from `system`) that the server of `target`
/// (a database of it, named by `target_url`) has: a company never migrated has none there.
pub async fn databases_on(
    system: &Database,
    target: &Database,
    target_url: &str,
) -> Result<Vec<String>, DbError> {
    let mut present = vec![];
    for c in companies(system).await? {
        if has_database(target, target_url, &c.database).await? {
            present.push(c.database);
        }
    }
    Ok(present)
}

/// The source's and the target's URLs of the GP company database `database`, beside the
/// system databases that the run's URLs name.
pub fn database_urls(
    config: &crate::engine::RunConfig,
    database: &str,
) -> Result<(String, String), crate::engine::EngineError> {
    use crate::engine::EngineError;
    Ok((
        database_url(&config.source.url, database)
            .map_err(|e| EngineError::Source(DbError::Config(e)))?,
        database_url(&config.target.url, database)
            .map_err(|e| EngineError::Target(DbError::Config(e)))?,
    ))
}

/// A company database's error, naming the company and, for the target, what it needs.
pub fn in_company(e: crate::engine::EngineError, c: &GpCompany) -> crate::engine::EngineError {
    use crate::engine::EngineError;
    match e {
        EngineError::Source(e) => EngineError::Source(DbError::Config(format!(
            "{e} (GP company {:?}, database {})",
            c.name, c.database
        ))),
        EngineError::Target(e) => EngineError::Target(DbError::Config(format!(
            "{e} (GP company {:?}: its tables go into the database {} on the target's server, \
             which must exist; createMissingTables makes tables, not databases)",
            c.name, c.database
        ))),
        other => other,
    }
}

/// An observer of one GP company database's run: each table it reports carries the
/// company's name, before the run's own observer sees it.
pub struct InCompany<'a> {
    pub observer: &'a dyn crate::engine::Observer,
    pub company: &'a str,
}

impl crate::engine::Observer for InCompany<'_> {
    fn planned(&self, tables: u64, rows: u64) {
        self.observer.planned(tables, rows)
    }

    fn table_done(&self, report: &crate::engine::report::TableReport) {
        let mut report = report.clone();
        report.company = self.company.to_string();
        self.observer.table_done(&report)
    }
}

/// The database a URL names (its path, or a SQLite file's stem).
pub fn database_of(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    match url.strip_prefix("sqlite://") {
        Some(_) => last.trim_end_matches(".db").to_string(),
        None => last.to_string(),
    }
}

/// The GP series of a table, as the vendor's export names its folders: by the name's prefix;
/// `SY` tables are System in the system database and Company in a company's; anything else
/// is `3rd Party`.
pub fn series(table: &str, system: bool) -> &'static str {
    let upper = table.to_ascii_uppercase();
    let prefixes: &[(&str, &str)] = &[
        ("SOP", "Sales"),
        ("POP", "Purchasing"),
        ("UPR", "Payroll"),
        ("GL", "Financial"),
        ("MC", "Financial"),
        ("CM", "Financial"),
        ("RM", "Sales"),
        ("PM", "Purchasing"),
        ("IV", "Inventory"),
        ("PA", "Project"),
    ];
    if upper.starts_with("SY") {
        return if system { "System" } else { "Company" };
    }
    prefixes
        .iter()
        .find(|(prefix, _)| {
            upper.starts_with(prefix)
                && upper[prefix.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
        })
        .map_or("3rd Party", |(_, series)| series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_go_to_their_series() {
        assert_eq!(series("GL00100", false), "Financial");
        assert_eq!(series("RM00101", false), "Sales");
        assert_eq!(series("SOP10100", false), "Sales");
        assert_eq!(series("PM00200", false), "Purchasing");
        assert_eq!(series("POP10100", false), "Purchasing");
        assert_eq!(series("IV00101", false), "Inventory");
        assert_eq!(series("UPR00100", false), "Payroll");
        assert_eq!(series("PA01201", false), "Project");
        assert_eq!(series("SY01500", true), "System");
        assert_eq!(series("SY00300", false), "Company");
        assert_eq!(series("XYZ10100", false), "3rd Party");
        // A prefix counts only before the number: PAYMENTS is no Project table.
        assert_eq!(series("PAYMENTS", false), "3rd Party");
    }

    #[test]
    fn a_company_database_is_reached_as_the_system_database() {
        assert_eq!(
            database_url(
                "postgres://gp@db.local:5432/DYNAMICS?connect_timeout=5",
                "TWO"
            )
            .unwrap(),
            "postgres://gp@db.local:5432/TWO?connect_timeout=5"
        );
        assert_eq!(
            database_url("mysql://gp@127.0.0.1:3306/DYNAMICS", "TWO").unwrap(),
            "mysql://gp@127.0.0.1:3306/TWO"
        );
        assert_eq!(
            database_url("sqlite://gp/DYNAMICS.db", "TWO").unwrap(),
            "sqlite://gp/TWO.db"
        );
        assert!(database_url("postgres://h/DYNAMICS", "a/b").is_err());
        assert_eq!(database_of("postgres://gp@h:5432/DYNAMICS?x=1"), "DYNAMICS");
        assert_eq!(database_of("sqlite://gp/DYNAMICS.db"), "DYNAMICS");
    }
}
