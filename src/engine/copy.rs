//! The full copy of one table: match it to the target, pick the fastest path, stream it
//! through a bounded channel, and turn the outcome into a per-table result.

use super::plan::PlannedTable;
use super::report::{Mode, TableReport, TableResult};
use super::state;
use crate::db::{
    CHANNEL_CHUNKS, Database, DbError, Dialect, LoadColumn, LoadSpec, LoadStats, ReadProgress,
    ReadSpec, Statement, TableDef, create_table_sql,
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
    pub run_id: String,
    /// The source snapshot every reader joins (PostgreSQL sources).
    pub snapshot: Option<String>,
}

/// A stable fingerprint of a table's columns, to notice schema changes between runs.
pub fn schema_hash(t: &TableDef) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in &t.columns {
        for b in c
            .name
            .bytes()
            .chain([0])
            .chain(c.type_name.bytes())
            .chain([0])
        {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

fn report(t: &PlannedTable, result: TableResult, started: Instant) -> TableReport {
    TableReport {
        company: t.source.company.clone().unwrap_or_default(),
        table: t.source.display_name(),
        source_name: t.source.def.name.clone(),
        result,
        mode: Mode::None,
        full_reason: None,
        rows: 0,
        bytes: 0,
        duration: started.elapsed(),
        message: None,
        guidance: None,
    }
}

fn problem(mut r: TableReport, message: String, guidance: &str) -> TableReport {
    r.message = Some(message);
    r.guidance = Some(guidance.to_string());
    r
}

/// Copies one planned table in full. Never fails: every problem becomes the table's result.
pub async fn copy_table(
    ctx: &CopyContext,
    t: &PlannedTable,
    progress: Arc<ReadProgress>,
) -> TableReport {
    let started = Instant::now();
    let src = &t.source.def;
    let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
    let mut warning = None;
    let target_def = match ctx.target_tables.get(&t.target_name) {
        Some(def) => def.clone(),
        None if ctx.create_missing_tables => {
            let sql = create_table_sql(td, sd, src, &t.target_name);
            if let Err(e) = ctx
                .target
                .execute(&Statement {
                    sql,
                    params: vec![],
                })
                .await
            {
                return problem(
                    report(t, TableResult::Failed, started),
                    format!("the table is missing in the cloud and creating it failed: {e}"),
                    "Create the table in the cloud database by hand, then run again.",
                );
            }
            warning = Some(format!(
                "the table was missing in the cloud and was created from the on-premises definition ({td} types)"
            ));
            let mut def = src.clone();
            def.name = t.target_name.clone();
            def
        }
        None => {
            return problem(
                report(t, TableResult::Warning, started),
                "not migrated: the table does not exist in the cloud database".into(),
                "Install the extension that owns this table in the cloud tenant (same version as \
                 on-premises), or set spec.target.createMissingTables: true to create it from the \
                 on-premises definition.",
            );
        }
    };

    // Every source column must exist in the target, under the name the target keeps.
    let mut columns = Vec::with_capacity(src.columns.len());
    for c in &src.columns {
        let name = super::plan::target_name(Some(td), &c.name);
        let Some(tc) = target_def.column(&name) else {
            return problem(
                report(t, TableResult::Failed, started),
                format!(
                    "column {:?} of the on-premises table does not exist in the cloud table",
                    c.name
                ),
                "Bring the cloud schema to the same version as on-premises (update the extension \
                 that owns the table), or exclude the table with spec.tables.exclude.",
            );
        };
        columns.push(LoadColumn {
            name: tc.name.clone(),
            kind: tc.kind,
            max_chars: tc.max_chars,
        });
    }
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
    };
    let read = ReadSpec {
        table: src.name.clone(),
        columns: src.columns.clone(),
        raw,
        snapshot: ctx.snapshot.clone(),
        progress,
    };

    let mut done = report(t, TableResult::Migrated, started);
    done.mode = Mode::Full;
    done.full_reason = Some("FirstRun".into());
    done.message = warning.clone();
    if warning.is_some() {
        done.result = TableResult::Warning;
        done.guidance =
            Some("Check that the created table matches the cloud product's schema.".into());
    }
    let hash = schema_hash(src);
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    let source = ctx.source.clone();
    let reader = tokio::spawn(async move { source.read_table(&read, tx).await });
    let finish = |stats: &LoadStats| {
        let mut r = done.clone();
        r.rows = stats.rows;
        r.bytes = stats.bytes;
        r.duration = started.elapsed();
        vec![
            state::table_state(td, &ctx.run_id, &r, None, &hash),
            state::table_log(td, &ctx.run_id, &r),
        ]
    };
    let loaded = ctx.target.load_table(&load, rx, &finish).await;
    let read = match reader.await {
        Ok(r) => r,
        Err(e) => Err(DbError::Sql(format!("the reader stopped: {e}"))),
    };
    let mut r = done.clone();
    r.duration = started.elapsed();
    match (read, loaded) {
        (Ok(_), Ok(stats)) => {
            r.rows = stats.rows;
            r.bytes = stats.bytes;
            r
        }
        (Err(e), _) => failed(r, format!("reading the on-premises table failed: {e}"), &e),
        (_, Err(e)) => failed(r, format!("writing to the cloud failed: {e}"), &e),
    }
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
