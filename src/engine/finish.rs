//! Phase 7 of a run: the log lines of the tables that did not load, the run's end in the
//! target, and the report.

use super::ledger::state;
use super::report::{CopyMode, RunReport, TableReport, TableResult};
use super::{EngineError, RunConfig, RunType};
use crate::db::Database;
use std::time::Instant;

/// Phase 7: the log lines of the tables that did not load, the run's end in the target, and
/// the report, sorted by company and table. A diagnostic run writes nothing.
pub(crate) async fn finish(
    config: &RunConfig,
    target: &Database,
    mut reports: Vec<TableReport>,
    copied: Vec<TableReport>,
    started: Instant,
) -> Result<RunReport, EngineError> {
    let diagnostic = config.run_type == RunType::Diagnostic;
    if !diagnostic {
        // Tables that did not load have no line in the log yet: add it now.
        let unlogged: Vec<TableReport> = reports
            .iter()
            .chain(&copied)
            .filter(|r| r.mode == CopyMode::None || r.result == TableResult::Failed)
            .cloned()
            .collect();
        for stmt in state::table_logs(target.dialect(), &config.run_id, &unlogged) {
            target.execute(&stmt).await.map_err(EngineError::Target)?;
        }
    }
    reports.extend(copied);
    reports.sort_by(|a, b| (&a.company, &a.table).cmp(&(&b.company, &b.table)));
    let report = RunReport {
        run_id: config.run_id.clone(),
        tables: reports,
        duration: started.elapsed(),
    };
    if !diagnostic {
        state::finish_run(target, &config.run_id, report.result())
            .await
            .map_err(EngineError::Target)?;
    }
    Ok(report)
}
