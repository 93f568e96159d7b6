//! The copy of one table, full or of its changes: match it to the target, decide, pick the
//! fastest path, stream it through a bounded channel, and turn the outcome into a per-table
//! result.

use super::ledger::state;
use super::ledger::state::TableState;
use super::plan::PlannedTable;
use super::report::{CopyMode, TableReport, TableResult};
use super::tracking::{self, ChangeBatch, Changes, Clock};
use crate::db::{
    CHANNEL_CHUNKS, Database, DbError, Dialect, KeyFilter, LoadColumn, LoadSpec, LoadStats,
    ReadProgress, ReadSpec, Statement, TableDef, create_table_sql,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// What every table of a run shares.
pub struct CopyContext {
    pub source: Database,
    pub target: Database,
    /// The target's tables, by name, read once at the start of the run.
    pub target_tables: HashMap<String, TableDef>,
    pub create_missing_tables: bool,
    /// Missing tables that the controller's admin login created for this run (`None`) or
    /// could not create (the reason): a run that writes as the runtime role creates none.
    pub created_by_admin: std::collections::BTreeMap<String, Option<String>>,
    pub run_id: String,
    /// The source snapshot every reader joins (PostgreSQL sources).
    pub snapshot: Option<String>,
    /// Change tracking on the source: the run's versions, or why it is not available.
    pub tracking: Result<Clock, String>,
    /// Tables whose triggers were in place before this run, with the key columns they record.
    pub tracked: HashMap<String, String>,
    /// Tables whose triggers could not be installed, and why.
    pub enable_errors: HashMap<String, String>,
    /// Tables made anew since change tracking was enabled (a TRUNCATE on MySQL or MariaDB).
    pub recreated: std::collections::HashSet<String>,
    /// The tables with change records above the run's lowest watermark, read in one query: a
    /// table not among them has no change to read. `None`: each table reads its own.
    pub changed: Option<std::collections::HashSet<String>>,
    /// What the target recorded of each table after its last successful copy.
    pub target_state: HashMap<String, TableState>,
    /// Copy every table in full, whatever the state.
    pub force_full: bool,
    /// Write nothing: report what a run would do.
    pub diagnostic: bool,
}

/// How one table is copied this run.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// Every row; the reason is reported.
    Full(&'static str),
    /// Only the changes with versions in `(after, upto]`, of which there are `records`
    /// change records; they are streamed in batches of keys.
    Incremental { after: i64, upto: i64, records: u64 },
}

/// Keys per batch of an incremental copy: the source reads their rows, the target removes
/// their old rows, and memory holds about one batch.
const KEYS_PER_BATCH: usize = 20_000;

/// Past this share of the table's rows (by the database's estimate), change records make the
/// copy full: reading and replacing that many rows one key at a time costs more than copying
/// every row in bulk. See docs/benchmarks.md for the measurements behind it.
const FULL_COPY_SHARE: f64 = 0.3;

/// A table with fewer change records than this is copied by its changes, whatever its size.
const FEW_RECORDS: u64 = 10_000;

/// Whether this many change records make a full copy cheaper than the changes.
pub fn too_many_changes(records: u64, est_rows: i64) -> bool {
    records >= FEW_RECORDS && est_rows > 0 && records as f64 > FULL_COPY_SHARE * est_rows as f64
}

/// Decides between a full and an incremental copy. Pure: what the source and the target
/// recorded in; out, the versions to read changes between, or why the copy must be full.
pub fn decide(
    table: &TableDef,
    force_full: bool,
    state: Option<&TableState>,
    clock: Option<Clock>,
    tracked: bool,
) -> Result<(i64, i64), &'static str> {
    if force_full {
        return Err("Requested");
    }
    if table.primary_key.is_empty() {
        return Err("NoPrimaryKey");
    }
    let Some(state) = state else {
        return Err("FirstRun");
    };
    if state.schema_hash == super::reset::RESET_MARK {
        return Err("Reset");
    }
    if state.schema_hash == super::reset::DISABLED_MARK {
        return Err("ReEnabled");
    }
    if state.schema_hash != schema_hash(table) {
        return Err("SchemaChanged");
    }
    let (Some(clock), Some(watermark)) = (clock, state.ct_version) else {
        return Err("NoChangeTracking");
    };
    if !tracked {
        return Err("NoChangeTracking");
    }
    if watermark < clock.min_valid_version {
        return Err("RetentionExpired");
    }
    Ok((watermark, clock.version))
}

/// A stable fingerprint of a table's columns, to notice schema changes between runs.
pub fn schema_hash(t: &TableDef) -> String {
    super::tracking::fingerprint(
        t.columns
            .iter()
            .flat_map(|c| [c.name.as_str(), c.type_name.as_str()]),
    )
}

/// A table's report before any copying: its names and result, nothing counted yet.
pub(crate) fn report(t: &PlannedTable, result: TableResult, started: Instant) -> TableReport {
    TableReport {
        company: t.source.company.clone().unwrap_or_default(),
        table: t.source.display_name(),
        source_name: t.source.def.name.clone(),
        result,
        mode: CopyMode::None,
        full_reason: None,
        left_out: None,
        rows: 0,
        changes: None,
        bytes: 0,
        duration: started.elapsed(),
        message: None,
        guidance: None,
        lake: None,
    }
}

fn problem(mut r: TableReport, message: String, guidance: &str) -> TableReport {
    r.message = Some(message);
    r.guidance = Some(guidance.to_string());
    r
}

/// Copies one planned table, in full or by its changes. Never fails: every problem becomes the
/// table's result. Its steps: the cloud table (`target_table`), the columns to load
/// (`load_columns`), full or incremental (`full_or_incremental`), then the read and the load
/// in one transaction with the table's watermark and log line.
pub async fn copy_table(
    ctx: &CopyContext,
    t: &PlannedTable,
    progress: Arc<ReadProgress>,
) -> TableReport {
    let started = Instant::now();
    let src = &t.source.def;
    let td = ctx.target.dialect();
    let (target_def, mut warning) = match target_table(ctx, t, started).await {
        Ok(found) => found,
        Err(report) => return *report,
    };
    let columns = match load_columns(t, &target_def, td, started) {
        Ok(columns) => columns,
        Err(report) => return *report,
    };
    let clock = ctx.tracking.as_ref().ok().copied();
    let decision = match full_or_incremental(ctx, t, clock, started).await {
        Ok(d) => d,
        Err(report) => return *report,
    };
    if ctx.diagnostic {
        return diagnose(ctx, t, &target_def, &decision, started).await;
    }
    tracing::debug!(table = %src.name, ms = started.elapsed().as_millis() as u64, "decided");
    // A table without working change tracking is copied in full on every run; say so.
    let mut watermark = clock.map(|c| c.version);
    if let Decision::Full(_) = decision
        && let Some(why) = always_full(ctx, src)
    {
        watermark = None;
        warning = Some(match warning {
            Some(w) => format!("{w}; {why}"),
            None => why,
        });
    }
    // Nothing changed: no rows to read or write.
    let unchanged = matches!(&decision, Decision::Incremental { records: 0, .. });
    let (read, load) = transfer_specs(ctx, t, &target_def, columns, &decision, progress);

    let mut done = report(t, TableResult::Migrated, started);
    // What an incremental copy's changes add up to, known once the reader has streamed them.
    let counted = Arc::new(std::sync::Mutex::new(Changes::default()));
    match &decision {
        Decision::Full(reason) => {
            done.mode = CopyMode::Full;
            done.full_reason = Some((*reason).into());
        }
        Decision::Incremental { .. } => {
            done.mode = CopyMode::Incremental;
            done.changes = Some((0, 0, 0));
        }
    }
    done.message = warning.clone();
    if warning.is_some() {
        done.result = TableResult::Warning;
        done.guidance = Some(
            "Check the message: a created table must match the cloud product's schema, and a \
             table without change tracking is copied in full on every run."
                .into(),
        );
    }
    let hash = schema_hash(src);
    let rows_of = |r: &TableReport, stats: &LoadStats| match r.changes {
        Some((i, u, d)) => i + u + d,
        None => stats.rows,
    };
    let with_counts = |r: TableReport| with_counts(r, &counted);
    let finish = |stats: &LoadStats| {
        let mut r = with_counts(done.clone());
        r.rows = rows_of(&r, stats);
        r.bytes = stats.bytes;
        r.duration = started.elapsed();
        let mut stmts = vec![state::table_state(td, &ctx.run_id, &r, watermark, &hash)];
        stmts.extend(state::table_log(td, &ctx.run_id, &r));
        stmts.push(state::still_running(td, &ctx.run_id, &src.name));
        stmts
    };
    // Nothing changed: only the new watermark and the log line are written. Most tables of an
    // ERP database are like this on most runs.
    if unchanged {
        let mut r = done.clone();
        return match ctx
            .target
            .in_transaction(&finish(&LoadStats::default()))
            .await
        {
            Ok(()) => {
                r.duration = started.elapsed();
                r
            }
            Err(e) => write_failed(ctx, r, &e).await,
        };
    }
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let reader = start_reader(ctx, read, &decision, tx, &counted);
    tracing::debug!(table = %src.name, ms = started.elapsed().as_millis() as u64, "loading");
    let loaded = ctx.target.load_table(&load, rx, &finish).await;
    tracing::debug!(table = %src.name, ms = started.elapsed().as_millis() as u64, "loaded");
    let read = match reader.await {
        Ok(r) => r,
        Err(e) => Err(DbError::Sql(format!("the reader stopped: {e}"))),
    };
    tracing::debug!(table = %src.name, ms = started.elapsed().as_millis() as u64, "reader joined");
    let mut r = with_counts(done.clone());
    r.duration = started.elapsed();
    match (read, loaded) {
        (Ok(_), Ok(stats)) => {
            r.rows = rows_of(&r, &stats);
            r.bytes = stats.bytes;
            r
        }
        (Err(e), _) => failed(r, format!("reading the on-premises table failed: {e}"), &e),
        (_, Err(e)) => write_failed(ctx, r, &e).await,
    }
}

/// A table's load transaction failed: because the run no longer counts as running (a
/// CloudReset, or a later run, took over the target), or for the database's own reason.
async fn write_failed(ctx: &CopyContext, r: TableReport, e: &DbError) -> TableReport {
    if matches!(state::is_running(&ctx.target, &ctx.run_id).await, Ok(false)) {
        let mut r = failed(r, "not kept: the target was reset (or another run started on it) while this run copied the table".into(), e);
        r.guidance =
            Some("Nothing of this table was written. The next run copies it in full.".into());
        return r;
    }
    failed(r, format!("writing to the cloud failed: {e}"), e)
}

/// The cloud table to load into, and a warning when it had to be created; or the table's
/// report when it is missing and may not (or could not) be created.
async fn target_table(
    ctx: &CopyContext,
    t: &PlannedTable,
    started: Instant,
) -> Result<(TableDef, Option<String>), Box<TableReport>> {
    let src = &t.source.def;
    let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
    let created = || {
        format!(
            "the table was missing in the cloud and was created from the on-premises \
             definition ({td} types)"
        )
    };
    let by_admin = ctx.created_by_admin.get(&t.target_name);
    match (ctx.target_tables.get(&t.target_name), by_admin) {
        (Some(def), Some(None)) => Ok((def.clone(), Some(created()))),
        (Some(def), _) => Ok((def.clone(), None)),
        (None, Some(Some(why))) => Err(Box::new(problem(
            report(t, TableResult::Failed, started),
            format!(
                "the table is missing in the cloud and the target's admin login could not \
                     create it: {why}"
            ),
            "Create the table in the cloud database by hand, then run again.",
        ))),
        (None, _) if ctx.create_missing_tables && ctx.diagnostic => Err(Box::new(problem(
            report(t, TableResult::Warning, started),
            "diagnostic: the table does not exist in the cloud database; a run would create it \
             from the on-premises definition"
                .into(),
            "Check that a created table would match the cloud product's schema.",
        ))),
        (None, _) if ctx.create_missing_tables => {
            let sql = create_table_sql(td, sd, src, &t.target_name);
            if let Err(e) = ctx
                .target
                .execute(&Statement {
                    sql,
                    params: vec![],
                })
                .await
            {
                return Err(Box::new(problem(
                    report(t, TableResult::Failed, started),
                    format!("the table is missing in the cloud and creating it failed: {e}"),
                    "Create the table in the cloud database by hand, then run again.",
                )));
            }
            let mut def = src.clone();
            def.name = t.target_name.clone();
            Ok((def, Some(created())))
        }
        (None, _) => Err(Box::new(problem(
            report(t, TableResult::Warning, started),
            "not migrated: the table does not exist in the cloud database".into(),
            "Install the extension that owns this table in the cloud tenant (same version as \
             on-premises), or set spec.target.createMissingTables: true to create it from the \
             on-premises definition.",
        ))),
    }
}

/// Every source column must exist in the target, under the name the target keeps: the columns
/// to load, or the table's report naming the first that is missing.
fn load_columns(
    t: &PlannedTable,
    target_def: &TableDef,
    td: Dialect,
    started: Instant,
) -> Result<Vec<LoadColumn>, Box<TableReport>> {
    let src = &t.source.def;
    let mut columns = Vec::with_capacity(src.columns.len());
    for c in &src.columns {
        let name = super::plan::target_name(Some(td), &c.name);
        let Some(tc) = target_def.column(&name) else {
            return Err(Box::new(problem(
                report(t, TableResult::Failed, started),
                format!(
                    "column {:?} of the on-premises table does not exist in the cloud table",
                    c.name
                ),
                "Bring the cloud schema to the same version as on-premises (update the extension \
                 that owns the table), or exclude the table with spec.tables.exclude.",
            )));
        };
        columns.push(LoadColumn {
            name: tc.name.clone(),
            kind: tc.kind,
            max_chars: tc.max_chars,
        });
    }
    Ok(columns)
}

/// Full or incremental: the pure decision (`decide`), then the changes where it says
/// incremental; or the table's report when the changes cannot be read.
async fn full_or_incremental(
    ctx: &CopyContext,
    t: &PlannedTable,
    clock: Option<Clock>,
    started: Instant,
) -> Result<Decision, Box<TableReport>> {
    let src = &t.source.def;
    let tracked = ctx.tracked.get(&src.name) == Some(&tracking::key_columns(src));
    Ok(
        match decide(
            src,
            ctx.force_full,
            ctx.target_state.get(&src.name),
            clock,
            tracked,
        ) {
            Err(reason) => Decision::Full(reason),
            Ok(_) if ctx.recreated.contains(&src.name) => Decision::Full("Truncated"),
            Ok((after, upto)) if ctx.changed.as_ref().is_some_and(|c| !c.contains(&src.name)) => {
                Decision::Incremental {
                    after,
                    upto,
                    records: 0,
                }
            }
            Ok((after, upto)) => {
                match tracking::pending(&ctx.source, &src.name, after, upto).await {
                    Ok(p) if p.truncated => Decision::Full("Truncated"),
                    Ok(p) if too_many_changes(p.records, src.est_rows) => {
                        Decision::Full("ManyChanges")
                    }
                    Ok(p) => Decision::Incremental {
                        after,
                        upto,
                        records: p.records,
                    },
                    Err(e) => {
                        return Err(Box::new(problem(
                            report(t, TableResult::Failed, started),
                            format!("reading the changes of the on-premises table failed: {e}"),
                            "Check that the source is reachable and that its cloudmigrate_ct_* \
                             tables are intact; run a Full run to start over.",
                        )));
                    }
                }
            }
        },
    )
}

/// Why a table is copied in full on every run, when it is: no primary key, no change tracking
/// on the source, or none on this table.
fn always_full(ctx: &CopyContext, src: &TableDef) -> Option<String> {
    match (&ctx.tracking, src.primary_key.is_empty()) {
        (_, true) => {
            Some("the table has no primary key, so every run copies it in full".to_string())
        }
        (Err(why), _) => Some(why.clone()),
        (Ok(_), false) => ctx.enable_errors.get(&src.name).map(|e| {
            format!(
                "change tracking could not be enabled on the table, so every run copies it in \
                 full: {e}"
            )
        }),
    }
}

/// What the reader reads and what the loader writes. An incremental copy moves the changed
/// keys out of `decision` into the two key filters.
fn transfer_specs(
    ctx: &CopyContext,
    t: &PlannedTable,
    target_def: &TableDef,
    columns: Vec<LoadColumn>,
    decision: &Decision,
    progress: Arc<ReadProgress>,
) -> (ReadSpec, LoadSpec) {
    let src = &t.source.def;
    let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
    let key_filter = |def: &TableDef, names: &[String]| KeyFilter {
        columns: names
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    def.column(k)
                        .map(|c| c.type_name.clone())
                        .unwrap_or_default(),
                )
            })
            .collect(),
        keys: vec![],
    };
    let target_keys: Vec<String> = src
        .primary_key
        .iter()
        .map(|k| super::plan::target_name(Some(td), k))
        .collect();
    // An incremental copy's keys arrive in batches (`read_changes`): the filters name the key
    // columns and start empty.
    let (read_keys, replace) = match decision {
        Decision::Incremental { .. } => (
            Some(key_filter(src, &src.primary_key)),
            Some(key_filter(target_def, &target_keys)),
        ),
        Decision::Full(_) => (None, None),
    };
    let raw = sd == Dialect::Postgres
        && td == Dialect::Postgres
        && src.columns.iter().zip(&columns).all(|(s, l)| {
            target_def
                .column(&l.name)
                .is_some_and(|tc| tc.type_name == s.type_name)
        });
    let key = src
        .primary_key
        .iter()
        .filter_map(|k| src.columns.iter().position(|c| &c.name == k))
        .collect();
    let load = LoadSpec {
        table: t.target_name.clone(),
        columns,
        key,
        raw,
        replace,
    };
    let read = ReadSpec {
        table: src.name.clone(),
        columns: src.columns.clone(),
        raw,
        snapshot: ctx.snapshot.clone(),
        progress,
        keys: read_keys,
        range: None,
    };
    (read, load)
}

/// What a run would do with a table, and the problems it would meet, found without writing:
/// values longer than their cloud column are looked for in the source.
async fn diagnose(
    ctx: &CopyContext,
    t: &PlannedTable,
    target_def: &TableDef,
    decision: &Decision,
    started: Instant,
) -> TableReport {
    let src = &t.source.def;
    let d = ctx.source.dialect();
    let length = match d {
        Dialect::Postgres => "char_length",
        Dialect::MySql => "CHAR_LENGTH",
        Dialect::Sqlite => "length",
    };
    for c in src
        .columns
        .iter()
        .filter(|c| c.kind == crate::db::Kind::Text)
    {
        let name = super::plan::target_name(Some(ctx.target.dialect()), &c.name);
        let Some(max) = target_def.column(&name).and_then(|tc| tc.max_chars) else {
            continue;
        };
        if c.max_chars.is_some_and(|m| m <= max) {
            continue;
        }
        let keys: Vec<String> = src.primary_key.iter().map(|k| d.quote(k)).collect();
        let mut select = keys.clone();
        select.push(format!("{length}({})", d.quote(&c.name)));
        let sql = format!(
            "SELECT {} FROM {} WHERE {length}({}) > ? LIMIT 1",
            select
                .iter()
                .map(|e| format!(
                    "CAST({e} AS {})",
                    if d == Dialect::MySql { "CHAR" } else { "TEXT" }
                ))
                .collect::<Vec<_>>()
                .join(", "),
            d.quote(&src.name),
            d.quote(&c.name)
        );
        let kinds = vec![crate::db::Kind::Text; select.len()];
        match ctx
            .source
            .query(
                &Statement {
                    sql,
                    params: vec![crate::db::Value::Int(max)],
                },
                &kinds,
            )
            .await
        {
            Ok(rows) if !rows.is_empty() => {
                let row = &rows[0];
                let key: Vec<String> = src
                    .primary_key
                    .iter()
                    .zip(row)
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                return problem(
                    report(t, TableResult::Failed, started),
                    format!(
                        "diagnostic: value too long for column {:?}: {} characters, the cloud column holds {max} \
                         (first offending row: {})",
                        c.name,
                        row.last().and_then(|v| v.to_text()).unwrap_or_default(),
                        key.join(", ")
                    ),
                    "Correct the value in the on-premises database or widen the cloud column before the run.",
                );
            }
            Ok(_) => {}
            Err(e) => {
                return problem(
                    report(t, TableResult::Failed, started),
                    format!("diagnostic: reading the on-premises table failed: {e}"),
                    "Check that the migration login may read the table.",
                );
            }
        }
    }
    let mut r = report(t, TableResult::Migrated, started);
    r.message = Some(match decision {
        Decision::Full(reason) => match always_full(ctx, &t.source.def) {
            Some(why) => format!(
                "diagnostic: a run would copy the table in full ({reason}), and so would every \
                 later run: {why}"
            ),
            None => format!("diagnostic: a run would copy the table in full ({reason})"),
        },
        Decision::Incremental { after, upto, .. } => {
            match tracking::count_changes(&ctx.source, &src.name, (*after, *upto)).await {
                Ok(c) => format!(
                    "diagnostic: a run would copy changes only: +{} ~{} -{} so far",
                    c.inserted, c.updated, c.deleted
                ),
                Err(e) => {
                    format!("diagnostic: a run would copy changes only; reading them failed: {e}")
                }
            }
        }
    });
    r
}

/// An incremental copy's report with what its changes added up to.
fn with_counts(mut r: TableReport, counted: &std::sync::Mutex<Changes>) -> TableReport {
    if r.changes.is_some() {
        // The lock is only ever held to copy three numbers; a poisoned one still holds them.
        let c = *counted.lock().unwrap_or_else(|p| p.into_inner());
        r.changes = Some((c.inserted, c.updated, c.deleted));
    }
    r
}

/// Starts the table's reader: every row, or the changes batch by batch (`read_changes`).
fn start_reader(
    ctx: &CopyContext,
    read: ReadSpec,
    decision: &Decision,
    tx: mpsc::Sender<crate::db::Chunk>,
    counted: &Arc<std::sync::Mutex<Changes>>,
) -> tokio::task::JoinHandle<Result<u64, DbError>> {
    let source = ctx.source.clone();
    match *decision {
        Decision::Full(_) => tokio::spawn(async move { source.read_table(&read, tx).await }),
        Decision::Incremental { after, upto, .. } => {
            let counted = counted.clone();
            tokio::spawn(
                async move { read_changes(&source, &read, (after, upto), tx, &counted).await },
            )
        }
    }
}

/// The reader of an incremental copy: streams the table's changed keys in batches
/// (`tracking::stream_changes`), and for each batch sends the keys (the loader removes their
/// rows) and then the rows the source has of them, read by key. `read` names the key columns
/// in its (empty) key filter. Sends `Chunk::End` only when every batch went through; `counted`
/// gets what the changes add up to.
async fn read_changes(
    source: &Database,
    read: &ReadSpec,
    versions: (i64, i64),
    out: mpsc::Sender<crate::db::Chunk>,
    counted: &std::sync::Mutex<Changes>,
) -> Result<u64, DbError> {
    use crate::db::Chunk;
    let key_kinds: Vec<crate::db::Kind> = read
        .keys
        .iter()
        .flat_map(|f| &f.columns)
        .map(|(name, _)| {
            read.columns
                .iter()
                .find(|c| &c.name == name)
                .map_or(crate::db::Kind::Text, |c| c.kind)
        })
        .collect();
    let (batches_tx, mut batches) = mpsc::channel::<ChangeBatch>(1);
    let stream = tracking::stream_changes(
        source,
        (&read.table, &key_kinds),
        versions,
        KEYS_PER_BATCH,
        batches_tx,
    );
    let apply = async {
        let mut rows = 0u64;
        while let Some(batch) = batches.recv().await {
            if out.send(Chunk::Keys(batch.keys)).await.is_err() {
                break;
            }
            if batch.present.is_empty() {
                continue;
            }
            let mut spec = read.clone();
            if let Some(filter) = spec.keys.as_mut() {
                filter.keys = batch.present;
            }
            let (tx, mut rx) = mpsc::channel(CHANNEL_CHUNKS);
            let forward = async {
                while let Some(chunk) = rx.recv().await {
                    if !matches!(chunk, Chunk::End) && out.send(chunk).await.is_err() {
                        break;
                    }
                }
            };
            let (read, ()) = tokio::join!(source.read_table(&spec, tx), forward);
            rows += read?;
        }
        Ok::<_, DbError>(rows)
    };
    let (streamed, applied) = tokio::join!(stream, apply);
    let counts = streamed?;
    let rows = applied?;
    *counted.lock().unwrap_or_else(|p| p.into_inner()) = counts;
    let _ = out.send(Chunk::End).await;
    Ok(rows)
}

fn failed(mut r: TableReport, message: String, e: &DbError) -> TableReport {
    r.result = TableResult::Failed;
    r.rows = 0;
    r.bytes = 0;
    r.message = Some(message);
    r.guidance = Some(
        match e {
            DbError::Data(_) => "Correct the value in the on-premises database or widen the cloud column, then run again. The cloud table kept its previous content.",
            _ => "Check that both databases are reachable and the table is not locked, then run again. The cloud table kept its previous content.",
        }
        .into(),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{ColumnDef, Kind};

    fn table(key: bool) -> TableDef {
        TableDef {
            name: "CRONUS$Item".into(),
            columns: vec![ColumnDef {
                name: "No_".into(),
                kind: Kind::Text,
                type_name: "varchar(20)".into(),
                nullable: false,
                max_chars: Some(20),
                precision: None,
                scale: None,
            }],
            primary_key: if key { vec!["No_".into()] } else { vec![] },
            est_rows: 0,
            est_bytes: 0,
        }
    }

    #[test]
    fn every_reason_for_a_full_copy() {
        let t = table(true);
        let state = |v: Option<i64>| TableState {
            ct_version: v,
            schema_hash: schema_hash(&t),
        };
        let clock = Some(Clock {
            version: 9,
            min_valid_version: 4,
        });
        let ok = state(Some(5));
        assert_eq!(decide(&t, false, Some(&ok), clock, true), Ok((5, 9)));
        assert_eq!(decide(&t, true, Some(&ok), clock, true), Err("Requested"));
        assert_eq!(
            decide(&table(false), false, Some(&ok), clock, true),
            Err("NoPrimaryKey")
        );
        assert_eq!(decide(&t, false, None, clock, true), Err("FirstRun"));
        let drifted = TableState {
            ct_version: Some(5),
            schema_hash: "other".into(),
        };
        assert_eq!(
            decide(&t, false, Some(&drifted), clock, true),
            Err("SchemaChanged")
        );
        assert_eq!(
            decide(&t, false, Some(&state(None)), clock, true),
            Err("NoChangeTracking")
        );
        assert_eq!(
            decide(&t, false, Some(&ok), None, true),
            Err("NoChangeTracking")
        );
        assert_eq!(
            decide(&t, false, Some(&ok), clock, false),
            Err("NoChangeTracking")
        );
        assert_eq!(
            decide(&t, false, Some(&state(Some(3))), clock, true),
            Err("RetentionExpired")
        );
    }
}
