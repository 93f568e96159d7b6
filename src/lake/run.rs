//! A run into a lake: the source's catalog and plan, change tracking and the run's snapshot as
//! for a database target (`engine`), then every table written as a Delta table (`table`),
//! `parallelism` at once, biggest first. Each table keeps its change tracking watermark in a
//! small file of its own beside its log (`_cloudmigrate/state.json`), written after the
//! table's commit, and only when the run changed the table, read changes, or found the old
//! watermark of no more use (`mark_due`).

use super::store::{self, Lake, LakeError, LakeTarget};
use super::table::{LakeTable, Written};
use crate::db::{ConnectSpec, Database, ReadProgress};
use crate::engine::catalog::{Catalog, SourceTable};
use crate::engine::copy::{decide, schema_hash};
use crate::engine::ledger::state::TableState as Mark;
use crate::engine::plan::{self, PlanOptions, PlannedTable};
use crate::engine::report::{CopyMode, RunReport, TableReport, TableResult};
use crate::engine::{EngineError, Observer, RunType, StopSignal, gp, tracking};
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

/// Everything a run into a lake needs.
#[derive(Clone, Debug)]
pub struct LakeRunConfig {
    pub run_id: String,
    pub source: ConnectSpec,
    pub lake: LakeTarget,
    pub plan: PlanOptions,
    /// Tables written at the same time.
    pub parallelism: usize,
    pub run_type: RunType,
    /// How long the source keeps changes.
    pub retention: std::time::Duration,
    pub stop: StopSignal,
    /// Rows in a data file: `files::ROWS_PER_FILE`; tests ask for small files to have many.
    pub rows_per_file: usize,
}

/// What every table of a lake run shares.
struct Context {
    lake: Lake,
    layout: Layout,
    source: Database,
    snapshot: Option<String>,
    tracking: crate::engine::changes::TrackingState,
    force_full: bool,
    diagnostic: bool,
    rows_per_file: usize,
}

/// The folder of a table in the lake (see `Layout`).
pub fn layout(t: &SourceTable, layout: &Layout) -> Vec<String> {
    match (layout, &t.company) {
        (
            Layout::Gp {
                database, system, ..
            },
            _,
        ) => vec![
            "gp-database".into(),
            database.clone(),
            gp::series(&t.def.name, *system).into(),
            t.def.name.clone(),
        ],
        (Layout::Companies, Some(c)) => vec!["companies".into(), c.clone(), t.display_name()],
        (Layout::Companies, None) => vec!["database".into(), t.display_name()],
    }
}

/// What stops a run into a lake before any table is written.
#[derive(Debug, thiserror::Error)]
pub enum LakeRunError {
    /// The source, or the plan, as for a database target.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The lake cannot be used.
    #[error("{0}")]
    Lake(#[from] LakeError),
}

/// Where a source database's tables go in the lake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Business Central and NAV: `companies/<company>/<table>`, `database/<table>`.
    Companies,
    /// Dynamics GP, as the vendor's export: `gp-database/<database>/<series>/<table>`.
    Gp {
        database: String,
        /// The system database (its `SY` tables are the System series).
        system: bool,
        /// The company's name, for the reports; None for the system database.
        company: Option<String>,
    },
}

/// One source database of a run: the one the URL names, or for GP also each company's.
struct SourceDb {
    spec: ConnectSpec,
    layout: Layout,
}

/// The databases a run reads: the source; for Dynamics GP the system database and the
/// selected companies' databases (all of `SY01500` when the selection is empty).
async fn sources(config: &LakeRunConfig) -> Result<Vec<SourceDb>, LakeRunError> {
    let mut spec = config.source.clone();
    spec.max_connections = config.parallelism.max(1) as u32 + 2;
    spec.create = false;
    if config.plan.product != crate::vocabulary::Product::Gp {
        return Ok(vec![SourceDb {
            spec,
            layout: Layout::Companies,
        }]);
    }
    let mut one = spec.clone();
    one.max_connections = 1;
    let system = Database::connect(&one).await.map_err(EngineError::Source)?;
    let companies = gp::companies(&system).await;
    system.close().await;
    let companies = companies.map_err(EngineError::Source)?;
    let selected =
        gp::selected(&companies, config.plan.companies.as_deref()).map_err(EngineError::from)?;
    let mut out = vec![SourceDb {
        layout: Layout::Gp {
            database: gp::database_of(&spec.url),
            system: true,
            company: None,
        },
        spec: spec.clone(),
    }];
    for c in &selected {
        let url = gp::database_url(&spec.url, &c.database)
            .map_err(|e| EngineError::Source(crate::db::DbError::Config(e)))?;
        out.push(SourceDb {
            spec: ConnectSpec {
                url,
                ..spec.clone()
            },
            layout: Layout::Gp {
                database: c.database.clone(),
                system: false,
                company: Some(c.name.clone()),
            },
        });
    }
    Ok(out)
}

/// Runs one migration from a database (for Dynamics GP, a server's GP databases) into a lake.
#[tracing::instrument(skip_all, fields(run_id = %config.run_id))]
pub async fn run(
    config: &LakeRunConfig,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<RunReport, LakeRunError> {
    let started = Instant::now();
    let lake = store::open(&config.lake)?;
    lake.check().await?;
    let mut tables = vec![];
    for source in sources(config).await? {
        // A GP company's tables carry its name, in the reports and for the observer.
        let company = match &source.layout {
            Layout::Gp {
                company: Some(name),
                ..
            } => name.clone(),
            _ => String::new(),
        };
        let in_company = gp::InCompany {
            observer,
            company: &company,
        };
        let observer: &dyn Observer = if company.is_empty() {
            observer
        } else {
            &in_company
        };
        let written = write_database(config, &lake, source, observer, progress.clone()).await?;
        tables.extend(written.into_iter().map(|mut t| {
            if !company.is_empty() {
                t.company = company.clone();
            }
            t
        }));
    }
    Ok(RunReport {
        run_id: config.run_id.clone(),
        tables,
        duration: started.elapsed(),
    })
}

/// Writes the tables of one source database.
async fn write_database(
    config: &LakeRunConfig,
    lake: &Lake,
    db: SourceDb,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> Result<Vec<TableReport>, LakeRunError> {
    let source = Database::connect(&db.spec)
        .await
        .map_err(EngineError::Source)?;
    let catalog = Catalog::read(&source).await.map_err(EngineError::Source)?;
    let mut options = config.plan.clone();
    if matches!(db.layout, Layout::Gp { .. }) {
        // A GP database's companies are its own database: every table of it is selected.
        options.companies = None;
    }
    let plan = plan::plan(&catalog, &options).map_err(EngineError::from)?;
    let diagnostic = config.run_type == RunType::Diagnostic;
    let tracking = if diagnostic {
        crate::engine::changes::peek_tracking(&source, &plan).await
    } else {
        crate::engine::changes::change_tracking_of(&source, &plan, config.retention).await
    };
    let snapshot = crate::engine::snapshot(&source, diagnostic).await?;
    let ctx = Context {
        lake: lake.clone(),
        layout: db.layout.clone(),
        source: source.clone(),
        snapshot: snapshot.as_ref().map(|s| s.id.clone()),
        tracking,
        force_full: config.run_type == RunType::Full,
        diagnostic,
        rows_per_file: config.rows_per_file,
    };
    let mut tables = crate::engine::copy_tables::left_out(&plan, observer);
    let to_copy = crate::engine::copy_tables::announced(&plan, None, observer);
    let written: Vec<TableReport> = futures_util::stream::iter(0..to_copy.len())
        .map(|i| write_and_report(&ctx, to_copy[i], progress.clone(), observer, &config.stop))
        .buffer_unordered(config.parallelism.max(1))
        .collect()
        .await;
    drop(snapshot);
    tables.extend(written);
    source.close().await;
    Ok(tables)
}

async fn write_and_report(
    ctx: &Context,
    t: &PlannedTable,
    progress: Arc<ReadProgress>,
    observer: &dyn Observer,
    stop: &StopSignal,
) -> TableReport {
    let r = if stop.is_stopped() {
        crate::engine::copy_tables::uncopied(
            t,
            TableResult::NotStarted,
            "the run was stopped before this table started".into(),
            Some("The next run writes it.".into()),
        )
    } else {
        write_table(ctx, t, progress).await
    };
    observer.table_done(&r);
    r
}

/// How one table is written this run.
enum Plan {
    Full(&'static str),
    /// Changes in `(after, upto]`.
    Changes {
        after: i64,
        upto: i64,
    },
}

/// Writes one table and reports it. Never fails: a problem is the table's result.
async fn write_table(ctx: &Context, t: &PlannedTable, progress: Arc<ReadProgress>) -> TableReport {
    let started = Instant::now();
    let mut r = crate::engine::copy::report(t, TableResult::Migrated, started);
    let table = LakeTable {
        lake: &ctx.lake,
        parts: layout(&t.source, &ctx.layout),
        source: &ctx.source,
        def: &t.source.def,
        snapshot: ctx.snapshot.clone(),
        progress,
        rows_per_file: ctx.rows_per_file,
    };
    let location = table_url(&ctx.lake, &table.parts);
    match write(ctx, &table).await {
        Ok((mode, full_reason, written, changes)) => {
            r.mode = mode;
            r.full_reason = full_reason.map(str::to_string);
            r.rows = written.rows;
            r.bytes = written.bytes;
            r.changes = changes.map(|c| (c.inserted, c.updated, c.deleted));
            r.lake = Some(crate::engine::report::LakeReport {
                location,
                version: written.version,
                files: written.files,
                rows: written.table_rows,
                added: written.added,
                removed: written.removed,
            });
        }
        Err(e) => {
            r.result = TableResult::Failed;
            r.guidance = Some(
                match &e {
                    LakeError::Denied(_) | LakeError::Invalid(_) | LakeError::Unreachable(_) => {
                        "Fix the lake target, then run again: nothing of this table was committed."
                    }
                    LakeError::Failed(_) => {
                        "The table stays at its previous version; the next run writes it again."
                    }
                }
                .into(),
            );
            r.message = Some(e.to_string());
            r.lake = Some(crate::engine::report::LakeReport {
                location,
                ..Default::default()
            });
        }
    }
    r.duration = started.elapsed();
    r
}

/// The URL of a table's folder, as DuckDB or Spark are given it.
fn table_url(lake: &Lake, parts: &[String]) -> String {
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    lake.url_of(&parts)
}

type Outcome = (
    CopyMode,
    Option<&'static str>,
    Written,
    Option<tracking::Changes>,
);

/// Decides, writes and commits one table, then records its watermark.
async fn write(ctx: &Context, table: &LakeTable<'_>) -> Result<Outcome, LakeError> {
    let def = table.def;
    let state = table.read_log().await?;
    // A mark without a table (its folder was removed) counts for nothing.
    let mark = match state.version {
        Some(_) => read_mark(table).await?,
        None => None,
    };
    let tracked =
        ctx.tracking.tracked.contains_key(&def.name) && !ctx.tracking.recreated.contains(&def.name);
    let clock = ctx.tracking.clock.as_ref().ok().copied();
    let plan = match decide(def, ctx.force_full, mark.as_ref(), clock, tracked) {
        Err(reason) => Plan::Full(reason),
        Ok((after, upto)) => {
            match tracking::pending(&ctx.source, &def.name, after, upto).await {
                Ok(p) if p.truncated => Plan::Full("Truncated"),
                Ok(p) if p.records == 0 => {
                    // Nothing changed: nothing is read, written or marked.
                    let unchanged = unchanged(&state);
                    return Ok((
                        CopyMode::Incremental,
                        None,
                        unchanged,
                        Some(Default::default()),
                    ));
                }
                Ok(_) => Plan::Changes { after, upto },
                Err(e) => return Err(LakeError::Failed(format!("source database: {e}"))),
            }
        }
    };
    if ctx.diagnostic {
        return Ok(match plan {
            Plan::Full(reason) => (CopyMode::Full, Some(reason), unchanged(&state), None),
            Plan::Changes { .. } => (CopyMode::Incremental, None, unchanged(&state), None),
        });
    }
    let (mode, reason, written, changes) = match plan {
        Plan::Full(reason) => (
            CopyMode::Full,
            Some(reason),
            table.write_full(&state).await?,
            None,
        ),
        Plan::Changes { after, upto } => {
            match changed_ranges(ctx, table, &state, after, upto).await? {
                Some((files, ranges, changes)) => (
                    CopyMode::Incremental,
                    None,
                    table.write_ranges(&state, &files, &ranges).await?,
                    Some(changes),
                ),
                None => (
                    CopyMode::Full,
                    Some("KeysNotOrdered"),
                    table.write_full(&state).await?,
                    None,
                ),
            }
        }
    };
    // The watermark: changes up to the run's version are in the table now, if change tracking
    // is on for it.
    let on = ctx.tracking.tracked.contains_key(&def.name)
        || (!def.primary_key.is_empty() && !ctx.tracking.enable_errors.contains_key(&def.name));
    let new_mark = Mark {
        ct_version: clock.filter(|_| on).map(|c| c.version),
        schema_hash: schema_hash(def),
    };
    if written.version.is_some() && mark_due(mark.as_ref(), &new_mark, &written, changes, clock) {
        write_mark(table, &new_mark).await?;
    }
    Ok((mode, reason, written, changes))
}

/// Whether a table's watermark is written after its run: when the run committed, read changes,
/// or found a watermark that no longer serves (none, another schema, change tracking turned on
/// or off, changes past it cleaned up). A run that found the table as it was keeps the old
/// watermark, so that it writes nothing: the changes after it are read again next time, and
/// give the same files. Pure.
fn mark_due(
    old: Option<&Mark>,
    new: &Mark,
    written: &Written,
    changes: Option<tracking::Changes>,
    clock: Option<tracking::Clock>,
) -> bool {
    if old == Some(new) {
        return false;
    }
    let Some(old) = old else {
        return true;
    };
    let expired = match (old.ct_version, clock) {
        (Some(v), Some(c)) => v < c.min_valid_version,
        _ => false,
    };
    written.committed
        || changes.is_some_and(|c| c != tracking::Changes::default())
        || old.schema_hash != new.schema_hash
        || old.ct_version.is_none() != new.ct_version.is_none()
        || expired
}

/// The table as it stands, for a run that writes nothing to it.
fn unchanged(state: &super::log::TableState) -> Written {
    Written {
        version: state.version,
        files: state.files.len() as u64,
        table_rows: state.files.values().map(super::table::records).sum(),
        ..Default::default()
    }
}

type Ranges = (
    Vec<(Vec<crate::db::Value>, super::log::Add)>,
    BTreeSet<usize>,
    tracking::Changes,
);

/// The table's ranges that hold a changed key, streaming the changes in batches. None when
/// the table's keys or files cannot be cut into ranges (then it is written whole).
async fn changed_ranges(
    ctx: &Context,
    table: &LakeTable<'_>,
    state: &super::log::TableState,
    after: i64,
    upto: i64,
) -> Result<Option<Ranges>, LakeError> {
    let Some(files) = table.ranges(state).filter(|f| !f.is_empty()) else {
        return Ok(None);
    };
    let kinds = table.key_kinds();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let stream = tracking::stream_changes(
        &ctx.source,
        (&table.def.name, &kinds),
        (after, upto),
        20_000,
        tx,
    );
    let find = async {
        let mut ranges = BTreeSet::new();
        while let Some(batch) = rx.recv().await {
            // A key that does not read ends the stream (its sender sees the channel close).
            LakeTable::ranges_of(&files, &kinds, &batch.keys, &mut ranges)?;
        }
        Some(ranges)
    };
    let (counted, ranges) = tokio::join!(stream, find);
    let counted = counted.map_err(|e| LakeError::Failed(format!("source database: {e}")))?;
    Ok(ranges.map(|r| (files, r, counted)))
}

/// The watermark file of a table.
fn mark_path(table: &LakeTable<'_>) -> object_store::path::Path {
    let mut parts: Vec<&str> = table.parts.iter().map(String::as_str).collect();
    parts.extend(["_cloudmigrate", "state.json"]);
    table.lake.path(&parts)
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MarkFile {
    change_version: Option<i64>,
    schema_hash: String,
}

async fn read_mark(table: &LakeTable<'_>) -> Result<Option<Mark>, LakeError> {
    match table.lake.store.get(&mark_path(table)).await {
        Ok(got) => {
            let bytes = got
                .bytes()
                .await
                .map_err(|e| table.lake.error("reading the table's watermark", e))?;
            // A file that does not read is no watermark: the table is written whole.
            Ok(serde_json::from_slice::<MarkFile>(&bytes)
                .ok()
                .map(|m| Mark {
                    ct_version: m.change_version,
                    schema_hash: m.schema_hash,
                }))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(table.lake.error("reading the table's watermark", e)),
    }
}

async fn write_mark(table: &LakeTable<'_>, mark: &Mark) -> Result<(), LakeError> {
    let file = MarkFile {
        change_version: mark.ct_version,
        schema_hash: mark.schema_hash.clone(),
    };
    let body = serde_json::to_vec(&file).unwrap_or_default();
    table
        .lake
        .store
        .put(&mark_path(table), PutPayload::from(body))
        .await
        .map_err(|e| table.lake.error("writing the table's watermark", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_changed_nothing_keeps_its_watermark() {
        let mark = |v: Option<i64>, h: &str| Mark {
            ct_version: v,
            schema_hash: h.into(),
        };
        let clock = Some(tracking::Clock {
            version: 20,
            min_valid_version: 5,
        });
        let quiet = Written::default();
        let committed = Written {
            committed: true,
            ..Default::default()
        };
        let changed = Some(tracking::Changes {
            updated: 1,
            ..Default::default()
        });
        let new = mark(Some(20), "h");
        // A full run that found every file as it was writes nothing.
        assert!(!mark_due(
            Some(&mark(Some(10), "h")),
            &new,
            &quiet,
            None,
            clock
        ));
        assert!(mark_due(
            Some(&mark(Some(10), "h")),
            &new,
            &committed,
            None,
            clock
        ));
        assert!(mark_due(
            Some(&mark(Some(10), "h")),
            &new,
            &quiet,
            changed,
            clock
        ));
        assert!(mark_due(None, &new, &quiet, None, clock));
        assert!(mark_due(
            Some(&mark(Some(10), "g")),
            &new,
            &quiet,
            None,
            clock
        ));
        assert!(mark_due(Some(&mark(None, "h")), &new, &quiet, None, clock));
        // Changes past the old watermark were cleaned up: it no longer serves.
        assert!(mark_due(
            Some(&mark(Some(4), "h")),
            &new,
            &quiet,
            None,
            clock
        ));
        assert!(!mark_due(Some(&new), &new, &committed, changed, clock));
    }
}
