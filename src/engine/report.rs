//! What happened to each table, and to the run as a whole.

use std::time::Duration;

pub use crate::vocabulary::{CopyMode, TableResult};

/// One table's outcome.
#[derive(Clone, Debug, PartialEq)]
pub struct TableReport {
    /// The company, empty for per-database tables.
    pub company: String,
    /// The table name without company.
    pub table: String,
    /// The full name in the source.
    pub source_name: String,
    pub result: TableResult,
    pub mode: CopyMode,
    /// Why the table was copied in full: FirstRun, Requested, ...
    pub full_reason: Option<String>,
    /// Why the run left the table out (`plan::Skip::kind`): ByDesign, Filtered,
    /// CompanyNotSelected, NameConflict or BeingInitialized. None for a table it copied or
    /// tried to.
    pub left_out: Option<&'static str>,
    pub rows: u64,
    /// Rows inserted, updated and deleted by an incremental copy.
    pub changes: Option<(u64, u64, u64)>,
    pub bytes: u64,
    pub duration: Duration,
    pub message: Option<String>,
    pub guidance: Option<String>,
    /// Where a lake target holds the table, and what it holds after the run.
    pub lake: Option<LakeReport>,
}

/// A table of a lake target after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LakeReport {
    /// The table's folder, which Delta readers are given.
    pub location: String,
    /// The table's Delta version; None for a table without a commit.
    pub version: Option<u64>,
    /// Data files in the table.
    pub files: u64,
    /// Rows in the table.
    pub rows: u64,
    /// Files this run added and removed.
    pub added: u64,
    pub removed: u64,
}

/// The counts that the vendor shows as tiles.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tiles {
    pub migrated: u64,
    pub with_warnings: u64,
    pub failed: u64,
    pub not_migrated: u64,
    /// Left unstarted because the run was stopped.
    pub not_started: u64,
}

/// A whole run.
#[derive(Clone, Debug, Default)]
pub struct RunReport {
    pub run_id: String,
    pub tables: Vec<TableReport>,
    pub duration: Duration,
}

impl RunReport {
    pub fn tiles(&self) -> Tiles {
        let mut t = Tiles::default();
        for r in &self.tables {
            match r.result {
                TableResult::Migrated => t.migrated += 1,
                TableResult::Warning => t.with_warnings += 1,
                TableResult::Failed => t.failed += 1,
                TableResult::Excluded | TableResult::Skipped => t.not_migrated += 1,
                // A report is made once a table is done or skipped: never in progress.
                TableResult::NotStarted | TableResult::InProgress => t.not_started += 1,
            }
        }
        t
    }

    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.tables.iter().map(|t| t.bytes).sum()
    }

    /// Succeeded, PartiallySucceeded, Failed or Stopped, as the MigrationRun reports it.
    pub fn result(&self) -> &'static str {
        let t = self.tiles();
        if t.not_started > 0 {
            "Stopped"
        } else if t.failed == 0 {
            "Succeeded"
        } else if t.migrated + t.with_warnings > 0 {
            "PartiallySucceeded"
        } else {
            "Failed"
        }
    }
}

/// Cuts a text for a status to at most `max` characters, marking the cut with `…`.
pub fn shorten(text: &mut String, max: usize) {
    if let Some((at, _)) = text.char_indices().nth(max) {
        text.truncate(at);
        text.push('…');
    }
}

/// Bytes, readable: `12.4 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A duration, readable: `4m12s`, `850ms`.
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(13_000_000), "12.4 MiB");
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_secs(252)), "4m12s");
        assert_eq!(human_duration(Duration::from_secs(7300)), "2h01m");
    }
}
