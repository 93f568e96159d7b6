//! The replication state of each table (its watermark and schema fingerprint, written in the
//! same transaction as its data), the run log, the runs, and the claims of a shared run.

use super::{
    CATALOGS_TABLE, CLAIMS_TABLE, LOG_TABLE, RUNS_TABLE, STATE_TABLE, now, opt_text, text,
};
use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};
use crate::engine::report::TableReport;

/// What the target recorded of a table: its watermark and its schema fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableState {
    pub ct_version: Option<i64>,
    pub schema_hash: String,
}

/// Records the start of a run. Runs still marked Running from before were interrupted: they
/// are marked so.
///
/// `shared`: several workers run under this id at once, so none of them starts the log over;
/// each table's line replaces the one an earlier attempt wrote.
pub async fn start_run(
    db: &Database,
    run_id: &str,
    run_type: &str,
    shared: bool,
) -> Result<(), DbError> {
    let d = db.dialect();
    let runs = d.quote(RUNS_TABLE);
    db.execute(&Statement {
        sql: format!(
            "UPDATE {runs} SET state = 'Interrupted' WHERE state = 'Running' AND run_id <> ?"
        ),
        params: vec![text(run_id)],
    })
    .await?;
    // The claims of runs that no longer run are of no use, nor the catalogs they were planned
    // on.
    for table in [CLAIMS_TABLE, CATALOGS_TABLE] {
        db.execute(&Statement {
            sql: format!(
                "DELETE FROM {} WHERE run_id <> ? AND run_id NOT IN \
                 (SELECT run_id FROM {runs} WHERE state = 'Running')",
                d.quote(table)
            ),
            params: vec![text(run_id)],
        })
        .await?;
    }
    // A run started again under the same id (a retried run, say) starts its log over, unless
    // other workers share it.
    if !shared {
        db.execute(&Statement {
            sql: format!("DELETE FROM {} WHERE run_id = ?", d.quote(LOG_TABLE)),
            params: vec![text(run_id)],
        })
        .await?;
    }
    // Workers of a shared run start at once: the run's row is an upsert, never a DELETE and an
    // INSERT that two of them could interleave.
    let upsert = match d {
        Dialect::MySql => {
            " ON DUPLICATE KEY UPDATE run_type = VALUES(run_type), state = 'Running', \
             started_at = VALUES(started_at), finished_at = NULL, result = NULL"
        }
        _ => {
            " ON CONFLICT (run_id) DO UPDATE SET run_type = excluded.run_type, state = 'Running', \
             started_at = excluded.started_at, finished_at = NULL, result = NULL"
        }
    };
    db.execute(&Statement {
        sql: format!(
            "INSERT INTO {runs} (run_id, run_type, state, started_at) VALUES (?, ?, 'Running', ?){upsert}"
        ),
        params: vec![text(run_id), text(run_type), text(&now())],
    })
    .await?;
    Ok(())
}

/// The statement that fails a table's load transaction when the run's record is gone (a
/// CloudReset removed it: the table's watermark was read before the reset, and must not be
/// written after it) or marked interrupted (a later run started on the target). A record that
/// another worker of the same run marked completed still counts. It goes after the table's
/// state, whose row a reset locks until it commits. The failure is a duplicate key: two equal
/// claims, an error in every dialect and every SQL mode.
pub fn still_running(d: Dialect, run_id: &str, table: &str) -> Statement {
    Statement {
        sql: format!(
            "INSERT INTO {claims} (run_id, table_name, worker) \
             SELECT ?, ?, 0 FROM (SELECT 1 AS n UNION ALL SELECT 2) two \
             WHERE NOT EXISTS (SELECT 1 FROM {runs} WHERE run_id = ? AND state <> 'Interrupted')",
            claims = d.quote(CLAIMS_TABLE),
            runs = d.quote(RUNS_TABLE)
        ),
        params: vec![text(run_id), text(table), text(run_id)],
    }
}

/// Whether the run's record is there and not interrupted (after a table failed: was it a
/// reset?).
pub async fn is_running(db: &Database, run_id: &str) -> Result<bool, DbError> {
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT COUNT(*) FROM {} WHERE run_id = ? AND state <> 'Interrupted'",
                    db.dialect().quote(RUNS_TABLE)
                ),
                params: vec![text(run_id)],
            },
            &[crate::db::Kind::Int],
        )
        .await?;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0))
}

/// Records the end of a run.
pub async fn finish_run(db: &Database, run_id: &str, result: &str) -> Result<(), DbError> {
    let runs = db.dialect().quote(RUNS_TABLE);
    db.execute(&Statement {
        sql: format!(
            "UPDATE {runs} SET state = 'Completed', finished_at = ?, result = ? WHERE run_id = ?"
        ),
        params: vec![text(&now()), text(result), text(run_id)],
    })
    .await?;
    Ok(())
}

/// The statement that records a table's state; it runs inside the table's load transaction.
pub fn table_state(
    d: Dialect,
    run_id: &str,
    report: &TableReport,
    ct_version: Option<i64>,
    schema_hash: &str,
) -> Statement {
    let cols = "table_name, company, mode, row_count, ct_version, schema_hash, run_id, updated_at";
    let upsert = match d {
        Dialect::MySql => {
            " ON DUPLICATE KEY UPDATE company = VALUES(company), mode = VALUES(mode), \
             row_count = VALUES(row_count), ct_version = VALUES(ct_version), \
             schema_hash = VALUES(schema_hash), run_id = VALUES(run_id), updated_at = VALUES(updated_at)"
        }
        _ => {
            " ON CONFLICT (table_name) DO UPDATE SET company = excluded.company, mode = excluded.mode, \
             row_count = excluded.row_count, ct_version = excluded.ct_version, \
             schema_hash = excluded.schema_hash, run_id = excluded.run_id, updated_at = excluded.updated_at"
        }
    };
    Statement {
        sql: format!(
            "INSERT INTO {} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?){upsert}",
            d.quote(STATE_TABLE)
        ),
        params: vec![
            text(&report.source_name),
            text(&report.company),
            text(report.mode.as_str()),
            Value::Int(report.rows as i64),
            ct_version.map(Value::Int).unwrap_or(Value::Null),
            text(schema_hash),
            text(run_id),
            text(&now()),
        ],
    }
}

const LOG_COLUMNS: &str = "run_id, table_name, company, base_table, result, mode, full_reason, \
     row_count, byte_count, duration_ms, message, guidance, finished_at";

fn log_values(run_id: &str, report: &TableReport, finished_at: &str) -> Vec<Value> {
    vec![
        text(run_id),
        text(&report.source_name),
        text(&report.company),
        text(&report.table),
        text(report.result.as_str()),
        text(report.mode.as_str()),
        // The one reason column: why in full for a copied table, why left out for the rest.
        opt_text(
            &report
                .full_reason
                .clone()
                .or(report.left_out.map(String::from)),
        ),
        Value::Int(report.rows as i64),
        Value::Int(report.bytes as i64),
        Value::Int(report.duration.as_millis() as i64),
        opt_text(&report.message),
        opt_text(&report.guidance),
        text(finished_at),
    ]
}

/// The statement that adds a table's line to the run log.
pub fn table_log(d: Dialect, run_id: &str, report: &TableReport) -> Vec<Statement> {
    table_logs(d, run_id, std::slice::from_ref(report))
}

/// Statements that add many tables' lines to the run log, a few hundred lines each: 20,000
/// excluded tables must not cost 20,000 round trips.
/// A line written before for the same run and table (a retried worker) is replaced.
pub fn table_logs(d: Dialect, run_id: &str, reports: &[TableReport]) -> Vec<Statement> {
    let now = now();
    // An upsert, not a delete and an insert: parallel loads into InnoDB deadlock on the gap
    // locks of deletes that find nothing.
    let updated: Vec<&str> = LOG_COLUMNS
        .split(',')
        .map(str::trim)
        .filter(|c| !matches!(*c, "run_id" | "table_name"))
        .collect();
    let on_conflict = match d {
        Dialect::MySql => format!(
            " ON DUPLICATE KEY UPDATE {}",
            updated
                .iter()
                .map(|c| format!("{c} = VALUES({c})"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Dialect::Postgres | Dialect::Sqlite => format!(
            " ON CONFLICT (run_id, table_name) DO UPDATE SET {}",
            updated
                .iter()
                .map(|c| format!("{c} = excluded.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    reports
        .chunks(200)
        .map(|group| {
            let one = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
            Statement {
                sql: format!(
                    "INSERT INTO {} ({LOG_COLUMNS}) VALUES {}{on_conflict}",
                    d.quote(LOG_TABLE),
                    vec![one; group.len()].join(", ")
                ),
                params: group
                    .iter()
                    .flat_map(|r| log_values(run_id, r, &now))
                    .collect(),
            }
        })
        .collect()
}

/// What the target recorded of each table: its watermark and schema fingerprint.
pub async fn read_table_states(
    db: &Database,
) -> Result<std::collections::HashMap<String, TableState>, DbError> {
    let d = db.dialect();
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT table_name, ct_version, schema_hash FROM {}",
                    d.quote(STATE_TABLE)
                ),
                params: vec![],
            },
            &[Kind::Text, Kind::Int, Kind::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let name = match it.next() {
                Some(Value::Text(n)) => n,
                _ => return None,
            };
            let ct_version = match it.next() {
                Some(Value::Int(v)) => Some(v),
                _ => None,
            };
            let schema_hash = match it.next() {
                Some(Value::Text(h)) => h,
                _ => String::new(),
            };
            Some((
                name,
                TableState {
                    ct_version,
                    schema_hash,
                },
            ))
        })
        .collect())
}

/// A table that the last run that ended did not migrate: company (empty for a per-database
/// table), table, and result (`Excluded`, `Failed`, `Skipped`, `NotStarted`, or `Warning` for
/// a table missing in the cloud).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotMigrated {
    pub company: String,
    pub table: String,
    pub result: String,
    /// Why the run left it out (`plan::Skip::kind`, such as `ByDesign`); empty otherwise.
    pub reason: String,
}

/// The tables not in the cloud as they stand over the runs so far (ranked as in `Standing`),
/// by company and name: each table whose deciding line is not a clean copy. A table copied
/// with a warning migrated; one left out with a warning (missing in the cloud) did not. Empty
/// before any run (or before the ledger exists).
pub async fn not_migrated(db: &Database) -> Result<Vec<NotMigrated>, DbError> {
    if !db.has_table(RUNS_TABLE).await? || !db.has_table(LOG_TABLE).await? {
        return Ok(vec![]);
    }
    let sql = format!(
        "SELECT company, base_table, line_result, line_reason FROM ({}) ranked \
         WHERE line_rank = 1 AND NOT (line_result = 'Migrated' OR (line_result = 'Warning' AND \
         line_mode <> 'None')) ORDER BY company, base_table",
        ranked_lines(db.dialect())
    );
    let rows = db
        .query(
            &Statement {
                sql,
                params: vec![],
            },
            &[Kind::Text, Kind::Text, Kind::Text, Kind::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter().map(|v| match v {
                Value::Text(t) => t,
                _ => String::new(),
            });
            NotMigrated {
                company: it.next().unwrap_or_default(),
                table: it.next().unwrap_or_default(),
                result: it.next().unwrap_or_default(),
                reason: it.next().unwrap_or_default(),
            }
        })
        .collect())
}

/// Every line of the run log (diagnostic runs aside), each table's deciding line ranked 1
/// (`line_rank`): a copy's result or a skip for an initialization outranks any later line that
/// only says a run left the table alone; within a rank, the latest line wins.
fn ranked_lines(d: Dialect) -> String {
    format!(
        "SELECT l.company AS company, l.base_table AS base_table, l.result AS line_result, \
         l.mode AS line_mode, l.full_reason AS line_reason, ROW_NUMBER() OVER (\
         PARTITION BY l.table_name ORDER BY \
         CASE WHEN l.result IN ('Migrated', 'Warning', 'Failed', 'Skipped') THEN 1 ELSE 0 END \
         DESC, l.finished_at DESC, l.run_id DESC) AS line_rank \
         FROM {log} l JOIN {runs} r ON r.run_id = l.run_id WHERE r.run_type <> 'Diagnostic'",
        log = d.quote(LOG_TABLE),
        runs = d.quote(RUNS_TABLE),
    )
}

/// The kinds of `plan::Skip`, as the run log records them.
const LEFT_OUT_KINDS: [&str; 5] = [
    "ByDesign",
    "Filtered",
    "CompanyNotSelected",
    "NameConflict",
    "BeingInitialized",
];

/// The left-out kind that a run log line's reason names, if it names one.
fn left_out_kind(reason: &str) -> Option<&'static str> {
    LEFT_OUT_KINDS.into_iter().find(|k| *k == reason)
}

/// Where every table stands, over the runs so far: each table counts once, by its deciding
/// line in the run log (diagnostic runs aside), which is its latest line, except that a line
/// that only says a run left the table alone (not selected by that run, filtered out, not
/// migrated by design, or not started) does not replace an earlier copy's result: a run of one
/// company leaves the others as they were. A skip for an initialization does replace it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Standing {
    pub migrated: u64,
    pub with_warnings: u64,
    pub failed: u64,
    /// Not migrated by design (permissions, users): to set up in the cloud by hand.
    pub by_design: u64,
    /// Never copied: their company is not selected.
    pub company_not_selected: u64,
    /// Never copied: the schedule's table filter leaves them out.
    pub filtered_out: u64,
    /// Skipped by the latest run that reached them: their company was being initialized.
    pub being_initialized: u64,
    /// Never copied: the runs that got to them were stopped first.
    pub not_started: u64,
}

impl Standing {
    /// The standing of two databases' tables together (a GP system database and its
    /// company databases, each with its own run log).
    pub fn add(&mut self, other: &Standing) {
        self.migrated += other.migrated;
        self.with_warnings += other.with_warnings;
        self.failed += other.failed;
        self.by_design += other.by_design;
        self.company_not_selected += other.company_not_selected;
        self.filtered_out += other.filtered_out;
        self.being_initialized += other.being_initialized;
        self.not_started += other.not_started;
    }
}

/// Each table's standing over the runs so far (`Standing`), counted in the target in one
/// statement: all zero after a reset emptied the run log; None before the ledger exists.
pub async fn standing(db: &Database) -> Result<Option<Standing>, DbError> {
    if !db.has_table(RUNS_TABLE).await? || !db.has_table(LOG_TABLE).await? {
        return Ok(None);
    }
    let d = db.dialect();
    let sql = format!(
        "SELECT line_result, line_reason, COUNT(*) FROM ({}) ranked WHERE line_rank = 1 \
         GROUP BY line_result, line_reason",
        ranked_lines(d)
    );
    let rows = db
        .query(
            &Statement {
                sql,
                params: vec![],
            },
            &[Kind::Text, Kind::Text, Kind::Int],
        )
        .await?;
    let mut out = Standing::default();
    for row in rows {
        let text = |v: Option<&Value>| match v {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let (result, reason) = (text(row.first()), text(row.get(1)));
        let n = match row.get(2) {
            Some(Value::Int(n)) => (*n).max(0) as u64,
            _ => 0,
        };
        let tile = match (result.as_str(), reason.as_str()) {
            ("Migrated", _) => &mut out.migrated,
            ("Warning", _) => &mut out.with_warnings,
            ("Skipped", _) => &mut out.being_initialized,
            ("NotStarted", _) => &mut out.not_started,
            ("Excluded", "ByDesign") => &mut out.by_design,
            ("Excluded", "CompanyNotSelected") => &mut out.company_not_selected,
            // Lines of earlier versions carry no reason: the next run writes them again.
            ("Excluded", _) => &mut out.filtered_out,
            _ => &mut out.failed,
        };
        *tile += n;
    }
    Ok(Some(out))
}

/// The run log of one run: every table's line, as the run recorded it (without the change
/// counts, which only the run's status keeps).
pub async fn read_run_log(db: &Database, run_id: &str) -> Result<Vec<TableReport>, DbError> {
    use crate::engine::report::{CopyMode, TableResult};
    let d = db.dialect();
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT table_name, company, base_table, result, mode, full_reason, row_count, \
                     byte_count, duration_ms, message, guidance FROM {} WHERE run_id = ? \
                     ORDER BY company, base_table",
                    d.quote(LOG_TABLE)
                ),
                params: vec![text(run_id)],
            },
            &[
                Kind::Text,
                Kind::Text,
                Kind::Text,
                Kind::Text,
                Kind::Text,
                Kind::Text,
                Kind::Int,
                Kind::Int,
                Kind::Int,
                Kind::Text,
                Kind::Text,
            ],
        )
        .await?;
    let s = |v: &Value| match v {
        Value::Text(t) => Some(t.clone()),
        _ => None,
    };
    let n = |v: &Value| match v {
        Value::Int(i) => (*i).max(0) as u64,
        _ => 0,
    };
    Ok(rows
        .iter()
        .map(|r| TableReport {
            source_name: s(&r[0]).unwrap_or_default(),
            company: s(&r[1]).unwrap_or_default(),
            table: s(&r[2]).unwrap_or_default(),
            result: match s(&r[3]).as_deref() {
                Some("Migrated") => TableResult::Migrated,
                Some("Warning") => TableResult::Warning,
                Some("Excluded") => TableResult::Excluded,
                Some("Skipped") => TableResult::Skipped,
                Some("NotStarted") => TableResult::NotStarted,
                _ => TableResult::Failed,
            },
            mode: match s(&r[4]).as_deref() {
                Some("Full") => CopyMode::Full,
                Some("Incremental") => CopyMode::Incremental,
                _ => CopyMode::None,
            },
            full_reason: s(&r[5]).filter(|_| s(&r[4]).as_deref() == Some("Full")),
            left_out: s(&r[5]).and_then(|reason| left_out_kind(&reason)),
            rows: n(&r[6]),
            changes: None,
            bytes: n(&r[7]),
            duration: std::time::Duration::from_millis(n(&r[8])),
            message: s(&r[9]),
            guidance: s(&r[10]),
            lake: None,
        })
        .collect())
}

/// Claims tables of a shared run for a worker: each table that no worker has claimed yet
/// becomes this worker's. A claim never moves, so a worker started again gets its tables back.
pub async fn claim(
    db: &Database,
    run_id: &str,
    worker: usize,
    tables: &[&str],
) -> Result<(), DbError> {
    let d = db.dialect();
    let claims = d.quote(CLAIMS_TABLE);
    for group in tables.chunks(200) {
        let values = vec!["(?, ?, ?)"; group.len()].join(", ");
        let sql = match d {
            Dialect::Postgres | Dialect::Sqlite => format!(
                "INSERT INTO {claims} (run_id, table_name, worker) VALUES {values} \
                 ON CONFLICT (run_id, table_name) DO NOTHING"
            ),
            Dialect::MySql => {
                format!("INSERT IGNORE INTO {claims} (run_id, table_name, worker) VALUES {values}")
            }
        };
        let params = group
            .iter()
            .flat_map(|t| [text(run_id), text(t), Value::Int(worker as i64)])
            .collect();
        db.execute(&Statement { sql, params }).await?;
    }
    Ok(())
}

/// The tables a worker of a shared run owns.
pub async fn claimed(
    db: &Database,
    run_id: &str,
    worker: usize,
) -> Result<std::collections::HashSet<String>, DbError> {
    db.query_text_set(&Statement {
        sql: format!(
            "SELECT table_name FROM {} WHERE run_id = ? AND worker = ?",
            db.dialect().quote(CLAIMS_TABLE)
        ),
        params: vec![text(run_id), Value::Int(worker as i64)],
    })
    .await
}

/// How many workers of a shared run have made their claims so far.
pub async fn claimants(db: &Database, run_id: &str) -> Result<usize, DbError> {
    let d = db.dialect();
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT COUNT(DISTINCT worker) FROM {} WHERE run_id = ?",
                    d.quote(CLAIMS_TABLE)
                ),
                params: vec![text(run_id)],
            },
            &[Kind::Int],
        )
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Int(n)) => (*n).max(0) as usize,
        _ => 0,
    })
}
