//! Company initialization in the target: its record in the migration's own table
//! (`cloudmigrate_companies`), and the steps that initialize a migrated company: wait for the
//! runs that write to the target, validate the company's data against the source, check the
//! company's row, refresh the planner statistics of its tables, run the user's steps, and mark
//! it initialized. The user's steps and the mark commit in one transaction.

use super::catalog::{Catalog, company_sql_name};
use super::ledger::companies;
use super::ledger::{COMPANIES_TABLE, RUNS_TABLE, STATE_TABLE, text};
use super::validate::{TableValidation, validate_table};
use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};
use crate::vocabulary::{InitializationState, InitializationStep};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How many differing keys are named per table.
pub const KEYS_PER_TABLE: usize = 5;

/// How long an initialization waits for runs that are still writing to the target.
const WAIT_FOR_RUNS: Duration = Duration::from_secs(3600);

/// The result of validating a company's data.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Validation {
    pub tables: Vec<TableValidation>,
    /// Tables of the company in the source that no run has written to the target.
    pub not_migrated: Vec<String>,
}

impl Validation {
    pub fn failed(&self) -> Vec<&TableValidation> {
        self.tables
            .iter()
            .filter(|t| !t.matches || t.error.is_some())
            .collect()
    }

    /// Keys that changed in the source after the run, left out of the comparison, over all
    /// tables; in words when there are any: `; 12 keys changed in the source since the run`.
    pub fn changed_since_run(&self) -> String {
        match self.tables.iter().map(|t| t.changed_since_run).sum::<u64>() {
            0 => String::new(),
            1 => "; 1 key changed in the source since the run (not compared; the next run \
                  copies it)"
                .into(),
            n => format!(
                "; {n} keys changed in the source since the run (not compared; the next run \
                 copies them)"
            ),
        }
    }
}

/// How an initialization ended, in words for the company's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub state: InitializationState,
    pub message: String,
    pub validation: Validation,
}

/// Initializes one company: every step in order, the record kept up to date as it goes. The
/// record must have been written for `attempt` first (`record` with `Scheduled`). Returns how it
/// ended; the record says the same.
pub async fn initialize(
    source: &Database,
    target: &Database,
    company: &str,
    attempt: &str,
    steps: &[InitializationStep],
    say: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, DbError> {
    // 1. No run may be writing to the target.
    if let Some(ended) = wait_for_runs(target, company, attempt, say).await? {
        return Ok(ended);
    }
    let running = |m: String| {
        say(&m);
        async move {
            companies::set_state(
                target,
                company,
                attempt,
                InitializationState::Running,
                Some(&m),
                None,
            )
            .await
        }
    };
    if !running("validating the company's data".into()).await? {
        return Ok(Outcome {
            state: InitializationState::Failed,
            message: "another attempt took over this company's initialization".into(),
            validation: Validation::default(),
        });
    }
    // 2. Validation, table by table.
    let validation = validate_company(source, target, company, &|i, n, table| {
        say(&format!("validating table {i} of {n}: {table}"));
    })
    .await?;
    let detail = serde_json::to_string(&validation).ok();
    let differing = validation.failed();
    if !differing.is_empty() {
        let named: Vec<String> = differing.iter().take(10).map(|t| describe(t)).collect();
        let message = format!(
            "data validation found {} of {} tables that differ from the source: {}. Copy these \
             tables again with a full run (`cloudmigrate run --type full`, or a MigrationRun of \
             type Full), or look for writes made in the cloud company; the initialization goes \
             again after the next run that migrates the company",
            differing.len(),
            validation.tables.len(),
            named.join("; ")
        );
        return failed(target, company, attempt, message, detail)
            .await
            .map(|mut o| {
                o.validation = validation;
                o
            });
    }
    // 3. The company's row in the target's Company table.
    if let Some(problem) = company_row_missing(target, company).await? {
        return failed(target, company, attempt, problem, detail).await;
    }
    // 4. Fresh planner statistics for the company's tables.
    running("refreshing the statistics of the company's tables".into()).await?;
    refresh_statistics(target, &validation).await?;
    // 5. The user's steps and the mark, in one transaction.
    running(format!("running {} initialization steps", steps.len())).await?;
    run_steps(target, company, attempt, steps, validation, detail, say).await
}

/// Step 1: waits until no run is writing to the target (runs that start from now on skip the
/// company). Returns how the initialization ended when a run stays marked running too long.
async fn wait_for_runs(
    target: &Database,
    company: &str,
    attempt: &str,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Option<Outcome>, DbError> {
    let d = target.dialect();
    let waited = tokio::time::Instant::now();
    loop {
        let running = target
            .query_text_set(&Statement {
                sql: format!(
                    "SELECT run_id FROM {} WHERE state = 'Running'",
                    d.quote(RUNS_TABLE)
                ),
                params: vec![],
            })
            .await
            .unwrap_or_default();
        let Some(run) = running.iter().min() else {
            break;
        };
        if waited.elapsed() >= WAIT_FOR_RUNS {
            let message = format!(
                "run {run} has been marked as running in the target for over an hour; if it was \
                 killed, start a new run (it marks the old one interrupted), then initialize again"
            );
            return failed(target, company, attempt, message, None)
                .await
                .map(Some);
        }
        let message = format!("waiting for run {run} to finish writing to the target");
        say(&message);
        companies::set_state(
            target,
            company,
            attempt,
            InitializationState::Scheduled,
            Some(&message),
            None,
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    Ok(None)
}

/// Step 4: fresh planner statistics for the company's tables.
async fn refresh_statistics(target: &Database, validation: &Validation) -> Result<(), DbError> {
    let d = target.dialect();
    for t in &validation.tables {
        let table = super::plan::target_name(Some(d), &t.table);
        let sql = match d {
            Dialect::MySql => format!("ANALYZE TABLE {}", d.quote(&table)),
            _ => format!("ANALYZE {}", d.quote(&table)),
        };
        target
            .execute(&Statement {
                sql,
                params: vec![],
            })
            .await?;
    }
    Ok(())
}

/// Step 5: the user's steps and the mark, in one transaction.
async fn run_steps(
    target: &Database,
    company: &str,
    attempt: &str,
    steps: &[InitializationStep],
    validation: Validation,
    detail: Option<String>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<Outcome, DbError> {
    let d = target.dialect();
    let summary = format!(
        "initialized: {} tables validated ({} rows{}), {} of the CompanySelection's steps run",
        validation.tables.len(),
        validation.tables.iter().map(|t| t.source_rows).sum::<i64>(),
        validation.changed_since_run(),
        steps.len()
    );
    let mut last: Vec<Statement> = steps
        .iter()
        .map(|s| step_statement(d, company, s))
        .collect();
    last.push(companies::progress(
        d,
        company,
        attempt,
        InitializationState::Initialized,
        Some(&summary),
        detail.as_deref(),
    ));
    if let Err(e) = target.in_transaction(&last).await {
        let message = match e {
            DbError::InTransaction { index, message } if index < steps.len() => format!(
                "initialization step {:?} failed: {message}. Nothing of the steps was kept; \
                 correct its SQL in spec.initializationSteps",
                steps[index].name
            ),
            e => format!(
                "marking the company initialized failed: {e}; nothing of the steps was kept"
            ),
        };
        return failed(target, company, attempt, message, detail).await;
    }
    say(&summary);
    Ok(Outcome {
        state: InitializationState::Initialized,
        message: summary,
        validation,
    })
}

/// Ends the attempt as failed with `message`: the record says so, and the initialization is
/// tried again after a run that starts after this (the runs that started before may have
/// skipped the company while it waited).
async fn failed(
    target: &Database,
    company: &str,
    attempt: &str,
    message: String,
    detail: Option<String>,
) -> Result<Outcome, DbError> {
    let state = InitializationState::Failed;
    companies::set_state(
        target,
        company,
        attempt,
        state,
        Some(&message),
        detail.as_deref(),
    )
    .await?;
    if let Some(run) = latest_run(target).await? {
        target
            .execute(&Statement {
                sql: format!(
                    "UPDATE {} SET after_run = ? WHERE company = ? AND attempt = ?",
                    target.dialect().quote(COMPANIES_TABLE)
                ),
                params: vec![text(&run), text(company), text(attempt)],
            })
            .await?;
    }
    let validation = detail
        .and_then(|d| serde_json::from_str(&d).ok())
        .unwrap_or_default();
    Ok(Outcome {
        state,
        message,
        validation,
    })
}

/// The run that started last, in the target's run log.
async fn latest_run(target: &Database) -> Result<Option<String>, DbError> {
    let rows = target
        .query(
            &Statement {
                sql: format!(
                    "SELECT run_id FROM {} ORDER BY started_at DESC LIMIT 1",
                    target.dialect().quote(RUNS_TABLE)
                ),
                params: vec![],
            },
            &[Kind::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|r| match r.into_iter().next() {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }))
}

/// One table's problem in a few words.
fn describe(t: &TableValidation) -> String {
    if let Some(e) = &t.error {
        return format!("{} ({e})", t.table);
    }
    let keys: Vec<String> = t
        .differences
        .iter()
        .map(|d| format!("{} {:?}", d.key, d.difference))
        .collect();
    let changed = match t.changed_since_run {
        0 => String::new(),
        n => format!("; {n} keys changed in the source since the run were not compared"),
    };
    format!(
        "{} ({} rows in the source, {} in the target; first differing keys: {}{changed})",
        t.table,
        t.source_rows,
        t.target_rows,
        if keys.is_empty() {
            "none found".to_string()
        } else {
            keys.join(", ")
        }
    )
}

/// Validates every table of a company that a run wrote to the target.
pub async fn validate_company(
    source: &Database,
    target: &Database,
    company: &str,
    progress: &(dyn Fn(usize, usize, &str) + Sync),
) -> Result<Validation, DbError> {
    let catalog = Catalog::read(source).await?;
    if !catalog.companies.iter().any(|c| c.name == company) {
        return Err(DbError::Config(format!(
            "the source has no company {company:?} in its Company table"
        )));
    }
    let migrated = migrated_tables(target, company).await?;
    let target_tables: HashMap<String, crate::db::TableDef> = target
        .tables()
        .await?
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect();
    let mut out = Validation::default();
    let mine: Vec<_> = catalog
        .tables
        .iter()
        .filter(|t| t.company.as_deref() == Some(company))
        .collect();
    let to_check: Vec<_> = mine
        .iter()
        .filter(|t| migrated.contains(&t.def.name))
        .collect();
    out.not_migrated = mine
        .iter()
        .filter(|t| !migrated.contains(&t.def.name))
        .map(|t| t.def.name.clone())
        .collect();
    let watermarks = watermarks(source, target).await?;
    for (i, t) in to_check.iter().enumerate() {
        progress(i + 1, to_check.len(), &t.def.name);
        let name = super::plan::target_name(Some(target.dialect()), &t.def.name);
        let unvalidated = |error: String| TableValidation {
            table: t.def.name.clone(),
            error: Some(error),
            ..Default::default()
        };
        let Some(tt) = target_tables.get(&name) else {
            out.tables.push(unvalidated(
                "a run wrote it, and the target no longer has it".into(),
            ));
            continue;
        };
        let since = watermarks.get(&t.def.name).copied();
        let result = validate_table(source, target, (&t.def, tt), since, KEYS_PER_TABLE).await;
        out.tables.push(result);
    }
    Ok(out)
}

/// The version up to which the target holds each table's changes (its watermark), by source
/// name, where the source has change tracking: the change log has the keys changed since.
async fn watermarks(source: &Database, target: &Database) -> Result<HashMap<String, i64>, DbError> {
    if !super::tracking::installed(source).await? {
        return Ok(HashMap::new());
    }
    Ok(super::ledger::state::read_table_states(target)
        .await?
        .into_iter()
        .filter_map(|(name, s)| s.ct_version.map(|v| (name, v)))
        .collect())
}

/// The source names of the company's tables that a run has written to the target.
async fn migrated_tables(target: &Database, company: &str) -> Result<HashSet<String>, DbError> {
    target
        .query_text_set(&Statement {
            sql: format!(
                "SELECT table_name FROM {} WHERE company = ?",
                target.dialect().quote(STATE_TABLE)
            ),
            params: vec![text(company)],
        })
        .await
}

/// The built-in check that the company exists in the target's `Company` table (where the target
/// has one); the problem in words, or None.
async fn company_row_missing(target: &Database, company: &str) -> Result<Option<String>, DbError> {
    if !target.has_table("Company").await? {
        return Ok(None);
    }
    let d = target.dialect();
    let found = target
        .query_text_set(&Statement {
            sql: format!(
                "SELECT {n} FROM {c} WHERE {n} = ?",
                n = d.quote("Name"),
                c = d.quote("Company")
            ),
            params: vec![text(company)],
        })
        .await?;
    Ok(found.is_empty().then(|| {
        format!(
            "the target's Company table has no row {company:?}; the per-database tables were not \
             migrated: start a run that copies them, then initialize again"
        )
    }))
}

/// A step's SQL for one company: `{{company}}` becomes a parameter holding the company's name,
/// `{{table:Name}}` the company's table `Name`, quoted for the target.
pub fn step_statement(d: Dialect, company: &str, step: &InitializationStep) -> Statement {
    let mut sql = String::with_capacity(step.sql.len());
    let mut params = Vec::new();
    let mut rest = step.sql.as_str();
    while let Some(at) = rest.find("{{") {
        sql.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let Some(end) = after.find("}}") else {
            sql.push_str(&rest[at..]);
            rest = "";
            break;
        };
        let token = after[..end].trim();
        if token == "company" {
            sql.push('?');
            params.push(text(company));
        } else if let Some(table) = token.strip_prefix("table:") {
            let name = format!("{}${}", company_sql_name(company), table.trim());
            sql.push_str(&d.quote(&super::plan::target_name(Some(d), &name)));
        } else {
            sql.push_str(&rest[at..at + 2 + end + 2]);
        }
        rest = &after[end + 2..];
    }
    sql.push_str(rest);
    Statement { sql, params }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_a_parameter_and_quoted_tables() {
        let step = InitializationStep {
            name: "setup".into(),
            sql: "UPDATE {{table:Sales Setup}} SET x = {{ company }} WHERE {{other}} = 1".into(),
        };
        let s = step_statement(Dialect::Postgres, "CRONUS Ltd.", &step);
        assert_eq!(
            s.sql,
            r#"UPDATE "CRONUS Ltd_$Sales Setup" SET x = ? WHERE {{other}} = 1"#
        );
        assert_eq!(s.params, vec![Value::Text("CRONUS Ltd.".into())]);
        let s = step_statement(Dialect::MySql, "A`B", &step);
        assert!(s.sql.starts_with("UPDATE `A``B$Sales Setup`"), "{}", s.sql);
    }
}
