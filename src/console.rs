//! What a person sees in a terminal: a progress bar during a run, then the per-table results
//! and the summary tiles.

use crate::db::ReadProgress;
use crate::engine::Observer;
use crate::engine::report::{RunReport, TableResult, human_bytes, human_duration};
use comfy_table::{Cell, Color, ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// A progress bar over tables, with the rows read per second. Draws only on a terminal.
pub struct ProgressDisplay {
    bar: ProgressBar,
    rows: Arc<ReadProgress>,
}

impl ProgressDisplay {
    pub fn new(rows: Arc<ReadProgress>) -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        // The template is a constant; it parses.
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} tables  {msg}  ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        // No terminal, nothing drawn: then no thread ticks either.
        if !bar.is_hidden() {
            bar.enable_steady_tick(Duration::from_millis(200));
        }
        Self { bar, rows }
    }

    /// Refreshes the rows-per-second message; call it now and then.
    pub fn tick(&self) {
        let rows = self.rows.rows.load(Relaxed);
        let bytes = self.rows.bytes.load(Relaxed);
        let secs = self.bar.elapsed().as_secs_f64().max(0.001);
        self.bar.set_message(format!(
            "{rows} rows, {}  ({:.0} rows/s)",
            human_bytes(bytes),
            rows as f64 / secs
        ));
    }

    pub fn finish(&self) {
        self.tick();
        self.bar.finish_and_clear();
    }
}

impl Observer for ProgressDisplay {
    fn planned(&self, tables: u64, _rows: u64) {
        // A run of several databases (Dynamics GP) plans each in turn.
        self.bar.set_length(self.bar.position() + tables);
    }

    fn table_done(&self, report: &crate::engine::report::TableReport) {
        if !matches!(report.result, TableResult::Excluded | TableResult::Skipped) {
            self.bar.inc(1);
        }
        self.tick();
    }
}

fn result_cell(r: TableResult) -> Cell {
    let color = match r {
        TableResult::Migrated => Color::Green,
        TableResult::Warning => Color::Yellow,
        TableResult::Failed => Color::Red,
        TableResult::Excluded
        | TableResult::Skipped
        | TableResult::NotStarted
        | TableResult::InProgress => Color::DarkGrey,
    };
    Cell::new(r.as_str()).fg(color)
}

/// The per-table results: tables that migrated first, problems last, next to the summary.
pub fn results_table(report: &RunReport, only_problems: bool) -> String {
    let order = |r: TableResult| match r {
        TableResult::Migrated => 0,
        TableResult::Excluded | TableResult::Skipped => 1,
        TableResult::NotStarted | TableResult::InProgress => 2,
        TableResult::Warning => 2,
        TableResult::Failed => 3,
    };
    let mut rows: Vec<_> = report
        .tables
        .iter()
        .filter(|t| {
            !only_problems
                || matches!(
                    t.result,
                    TableResult::Warning | TableResult::Failed | TableResult::NotStarted
                )
        })
        .collect();
    rows.sort_by_key(|t| (order(t.result), t.company.clone(), t.table.clone()));
    // A lake target's tables get a column with their Delta version and files.
    let lake = report.tables.iter().any(|t| t.lake.is_some());
    let mut header = vec!["Company", "Table", "Result", "Copy", "Rows", "Size", "Time"];
    if lake {
        header.push("Delta table");
    }
    header.push("Message and guidance");
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    for t in rows {
        let mut note = t.message.clone().unwrap_or_default();
        if let Some(g) = &t.guidance {
            note.push_str(&format!("\n→ {g}"));
        }
        let company = if t.company.is_empty() {
            "(per database)".to_string()
        } else {
            t.company.clone()
        };
        let (rows, size, time) = if matches!(t.result, TableResult::Excluded | TableResult::Skipped)
        {
            (String::new(), String::new(), String::new())
        } else {
            (
                t.rows.to_string(),
                human_bytes(t.bytes),
                human_duration(t.duration),
            )
        };
        let copy = match (t.mode, t.changes, &t.full_reason) {
            (crate::engine::report::CopyMode::Incremental, Some((i, u, d)), _) => {
                format!("changes +{i} ~{u} -{d}")
            }
            (crate::engine::report::CopyMode::Full, _, Some(reason)) => format!("full: {reason}"),
            _ => String::new(),
        };
        let mut cells = vec![
            Cell::new(company),
            Cell::new(&t.table),
            result_cell(t.result),
            Cell::new(copy),
            Cell::new(rows),
            Cell::new(size),
            Cell::new(time),
        ];
        if lake {
            cells.push(Cell::new(
                t.lake.as_ref().map(lake_cell).unwrap_or_default(),
            ));
        }
        cells.push(Cell::new(note));
        table.add_row(cells);
    }
    table.to_string()
}

/// A lake table after the run: `v3: 12 files, 1500000 rows (+2 -1)`.
fn lake_cell(l: &crate::engine::report::LakeReport) -> String {
    let Some(version) = l.version else {
        return String::new();
    };
    let mut s = format!("v{version}: {} files, {} rows", l.files, l.rows);
    if l.added + l.removed > 0 {
        s.push_str(&format!(" (+{} -{})", l.added, l.removed));
    }
    s
}

/// The summary, as the vendor's tiles show it.
pub fn summary(report: &RunReport) -> String {
    let t = report.tiles();
    let rows = report.rows();
    let secs = report.duration.as_secs_f64().max(0.001);
    format!(
        "Run {} {} in {}: {} rows, {} ({:.0} rows/s)\n\
         \n  Tables migrated              {:>6}\
         \n  Tables with warnings         {:>6}\
         \n  Tables failed                {:>6}\
         \n  Not migrated (by design/filter) {:>3}\n",
        report.run_id,
        report.result(),
        human_duration(report.duration),
        rows,
        human_bytes(report.bytes()),
        rows as f64 / secs,
        t.migrated,
        t.with_warnings,
        t.failed,
        t.not_migrated,
    )
}

/// A company's data validation, table by table: differing tables last, with their first
/// differing keys.
pub fn validation_table(v: &crate::engine::initialize::Validation) -> String {
    let mut rows: Vec<_> = v.tables.iter().collect();
    rows.sort_by_key(|t| (!(t.matches && t.error.is_none()), t.table.clone()));
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["Table", "Result", "Source rows", "Target rows", "Notes"]);
    for t in rows {
        let ok = t.matches && t.error.is_none();
        let mut notes: Vec<String> = t
            .differences
            .iter()
            .map(|d| format!("{}: {:?}", d.key, d.difference))
            .collect();
        if let Some(e) = &t.error {
            notes.push(e.clone());
        }
        if !t.left_out.is_empty() {
            notes.push(format!(
                "not compared: {} ({})",
                t.left_out.join(", "),
                t.left_out_reason.as_deref().unwrap_or_default()
            ));
        }
        table.add_row([
            Cell::new(&t.table),
            if ok {
                Cell::new("Matches").fg(Color::Green)
            } else {
                Cell::new("Differs").fg(Color::Red)
            },
            Cell::new(t.source_rows),
            Cell::new(t.target_rows),
            Cell::new(notes.join("\n")),
        ]);
    }
    table.to_string()
}

/// The companies of a source with their estimated sizes.
pub fn companies_table(
    sizes: &std::collections::BTreeMap<String, crate::engine::catalog::CompanySize>,
) -> String {
    let mut table = Table::new();
    table
        .load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(["Company", "Tables", "Rows (estimated)", "Size (estimated)"]);
    for (name, s) in sizes {
        table.add_row([
            Cell::new(name),
            Cell::new(s.tables),
            Cell::new(s.rows),
            Cell::new(human_bytes(s.bytes.max(0) as u64)),
        ]);
    }
    table.to_string()
}

/// One paragraph on a company's validation: counts, and the tables that differ, if any.
pub fn validation_summary(company: &str, v: &crate::engine::initialize::Validation) -> String {
    let failed = v.failed();
    let rows: i64 = v.tables.iter().map(|t| t.source_rows).sum();
    let mut out = format!(
        "Validated {company}: {} tables, {rows} rows compared by checksum in each database; {} \
         match the source",
        v.tables.len(),
        v.tables.len() - failed.len()
    );
    out.push_str(&v.changed_since_run());
    if !v.not_migrated.is_empty() {
        out.push_str(&format!(
            ", {} not migrated ({})",
            v.not_migrated.len(),
            v.not_migrated.join(", ")
        ));
    }
    out.push('.');
    if !failed.is_empty() {
        let only = crate::engine::initialize::Validation {
            tables: failed.into_iter().cloned().collect(),
            not_migrated: vec![],
        };
        out.push('\n');
        out.push_str(&validation_table(&only));
    }
    out
}
