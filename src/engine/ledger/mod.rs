//! The migration's ledger in the target: every `cloudmigrate_*` table that a run, a reset, an
//! initialization or the grants touch, their DDL in one `ensure`, and the one list (`TABLES`)
//! that the runtime role's grants and Reset Cloud Data read.
//!
//! - `state`: each table's watermark and schema fingerprint, the run log, the runs, and which
//!   worker of a shared run copies which table;
//! - `companies`: the companies' initialization records;
//! - `catalogs`: the source's catalog a run was granted on, which its workers plan from;
//! - `requests`: the one-shot requests (resets, key rotations) carried out on the target;
//! - `renames`: the cloud users' own names from before a UserMapping renamed them;
//! - `roles`: the login roles this project made, by the schedule they serve.

pub mod catalogs;
pub mod companies;
pub mod renames;
pub mod requests;
pub mod roles;
pub mod state;

use crate::db::{Database, DbError, Dialect, Statement, Value};

/// Each migrated table's watermark, schema fingerprint and last mode: one row per table.
pub const STATE_TABLE: &str = "cloudmigrate_table_state";
/// One line per table and run: how it ended, its counts and message.
pub const LOG_TABLE: &str = "cloudmigrate_table_log";
/// Which worker of a shared run copies which table: one row per table, so exactly one.
pub const CLAIMS_TABLE: &str = "cloudmigrate_run_claims";
/// One row per run: its type, state and result.
pub const RUNS_TABLE: &str = "cloudmigrate_runs";
/// One row per company that has an initialization record.
pub const COMPANIES_TABLE: &str = "cloudmigrate_companies";
/// The source's catalog that a run was planned and granted on, by run: its workers plan from
/// it instead of reading the source's catalog again.
pub const CATALOGS_TABLE: &str = "cloudmigrate_run_catalogs";

/// The one-shot requests carried out on this target, by schedule, kind and name. Not among
/// `TABLES` and not made by `ensure`: only the admin login writes it (`requests::ensure`), and
/// Reset Cloud Data keeps it.
pub const REQUESTS_TABLE: &str = "cloudmigrate_requests";

/// What Reset Cloud Data does to a ledger table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnReset {
    /// Every row goes.
    Emptied,
    /// The rows stay, marked so that the next run copies each table in full.
    MarkedForFullCopy,
}

/// Every table of the ledger, and what a reset does to it. The runtime role may write each.
pub const TABLES: &[(&str, OnReset)] = &[
    (STATE_TABLE, OnReset::MarkedForFullCopy),
    (LOG_TABLE, OnReset::Emptied),
    (RUNS_TABLE, OnReset::Emptied),
    (CLAIMS_TABLE, OnReset::Emptied),
    (COMPANIES_TABLE, OnReset::Emptied),
    (CATALOGS_TABLE, OnReset::Emptied),
];

/// A short text column that can be part of a key in every dialect.
pub fn key_text(d: Dialect) -> &'static str {
    if d == Dialect::MySql {
        "VARCHAR(255)"
    } else {
        "TEXT"
    }
}

/// A text column without a length limit.
pub fn long_text(d: Dialect) -> &'static str {
    if d == Dialect::MySql {
        "LONGTEXT"
    } else {
        "TEXT"
    }
}

/// Creates the ledger's tables where they are missing. A table that exists gets no `CREATE`: a
/// runtime role may write the state tables but not create tables.
pub async fn ensure(db: &Database) -> Result<(), DbError> {
    let d = db.dialect();
    let k = key_text(d);
    let long = long_text(d);
    let int = "BIGINT";
    let ddl = [
        (
            STATE_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (table_name {k} NOT NULL PRIMARY KEY, company {k} NOT NULL, \
             mode {k} NOT NULL, row_count {int} NOT NULL, ct_version {int}, schema_hash {k}, \
             run_id {k} NOT NULL, updated_at {k} NOT NULL)",
                d.quote(STATE_TABLE)
            ),
        ),
        (
            LOG_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_id {k} NOT NULL, table_name {k} NOT NULL, \
             company {k} NOT NULL, base_table {k} NOT NULL, result {k} NOT NULL, mode {k} NOT NULL, \
             full_reason {k}, row_count {int} NOT NULL, byte_count {int} NOT NULL, \
             duration_ms {int} NOT NULL, message {long}, guidance {long}, finished_at {k} NOT NULL, \
             PRIMARY KEY (run_id, table_name))",
                d.quote(LOG_TABLE)
            ),
        ),
        (
            RUNS_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_id {k} NOT NULL PRIMARY KEY, run_type {k} NOT NULL, \
             state {k} NOT NULL, started_at {k} NOT NULL, finished_at {k}, result {k})",
                d.quote(RUNS_TABLE)
            ),
        ),
        (
            CLAIMS_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_id {k} NOT NULL, table_name {k} NOT NULL, \
             worker {int} NOT NULL, PRIMARY KEY (run_id, table_name))",
                d.quote(CLAIMS_TABLE)
            ),
        ),
        (
            CATALOGS_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (run_id {k} NOT NULL PRIMARY KEY, \
                 catalog {long} NOT NULL, recorded_at {k} NOT NULL)",
                d.quote(CATALOGS_TABLE)
            ),
        ),
        (
            COMPANIES_TABLE,
            format!(
                "CREATE TABLE IF NOT EXISTS {} (company {k} NOT NULL PRIMARY KEY, state {k} NOT NULL, \
                 attempt {k} NOT NULL, after_run {k}, message {long}, detail {long}, \
                 updated_at {k} NOT NULL)",
                d.quote(COMPANIES_TABLE)
            ),
        ),
    ];
    for (name, sql) in ddl {
        if db.has_table(name).await? {
            continue;
        }
        db.execute(&Statement {
            sql,
            params: vec![],
        })
        .await?;
    }
    Ok(())
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

pub(crate) fn opt_text(s: &Option<String>) -> Value {
    s.as_ref()
        .map(|s| Value::Text(s.clone()))
        .unwrap_or(Value::Null)
}
