//! Phase 6 of a run: the tables that are not copied are reported, then the tables to copy go,
//! biggest first, `parallelism` at once, each through `copy`.

use super::report::{TableReport, TableResult};
use super::{Observer, RunConfig, StopSignal, copy, plan};
use crate::db::ReadProgress;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Instant;

/// The tables this run copies, biggest first: all of the plan's, or one worker's share.
pub(crate) fn tables_to_copy<'p>(
    plan: &'p plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
) -> Vec<&'p plan::PlannedTable> {
    let mut to_copy: Vec<_> = plan.to_copy().collect();
    to_copy.sort_by(|a, b| {
        let key = |t: &plan::PlannedTable| {
            (
                std::cmp::Reverse((t.source.def.est_bytes, t.source.def.est_rows)),
                t.source.def.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    if let Some(owned) = owned {
        to_copy.retain(|t| owned.contains(&t.source.def.name));
    }
    to_copy
}

/// The report of a table that was not copied, and why.
pub(crate) fn uncopied(
    t: &plan::PlannedTable,
    result: TableResult,
    message: String,
    guidance: Option<String>,
) -> TableReport {
    let mut r = copy::report(t, result, Instant::now());
    r.duration = Default::default();
    r.message = Some(message);
    r.guidance = guidance;
    r
}

/// Copies one table and tells the observer. A named function rather than a closure, so that the
/// run's future stays `Send` and can be spawned (the in-process runner does).
pub(crate) async fn copy_and_report(
    ctx: &copy::CopyContext,
    t: &plan::PlannedTable,
    progress: Arc<ReadProgress>,
    observer: &dyn Observer,
    stop: &StopSignal,
) -> TableReport {
    let r = if stop.is_stopped() {
        uncopied(
            t,
            TableResult::NotStarted,
            "the run was stopped before this table started".into(),
            Some("The next run copies it.".into()),
        )
    } else {
        copy::copy_table(ctx, t, progress).await
    };
    observer.table_done(&r);
    r
}

/// Phase 6: the tables that are not copied are reported (by the first worker of a shared
/// run), then the tables to copy go, biggest first, `parallelism` at once. Returns the two
/// lists of reports.
pub(crate) async fn copy_tables(
    config: &RunConfig,
    ctx: &copy::CopyContext,
    plan: &plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
    observer: &dyn Observer,
    progress: Arc<ReadProgress>,
) -> (Vec<TableReport>, Vec<TableReport>) {
    let reports_skipped = config.share.is_none_or(|(index, _)| index == 0);
    let skipped = if reports_skipped {
        left_out(plan, observer)
    } else {
        vec![]
    };
    let to_copy = announced(plan, owned, observer);
    // By index: a closure over `&PlannedTable` would make the future not `Send` (the compiler
    // cannot prove it for every lifetime).
    let copied: Vec<TableReport> = futures_util::stream::iter(0..to_copy.len())
        .map(|i| copy_and_report(ctx, to_copy[i], progress.clone(), observer, &config.stop))
        .buffer_unordered(config.parallelism.max(1))
        .collect()
        .await;
    (skipped, copied)
}

/// The tables to copy, biggest first (so that the last minutes are not spent on one large
/// table alone), told to the observer with their estimated rows.
pub(crate) fn announced<'p>(
    plan: &'p plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
    observer: &dyn Observer,
) -> Vec<&'p plan::PlannedTable> {
    let to_copy = tables_to_copy(plan, owned);
    observer.planned(
        to_copy.len() as u64,
        to_copy
            .iter()
            .map(|t| t.source.def.est_rows.max(0) as u64)
            .sum(),
    );
    to_copy
}

/// The reports of the tables the plan leaves out, each told to the observer.
pub(crate) fn left_out(plan: &plan::Plan, observer: &dyn Observer) -> Vec<TableReport> {
    let mut skipped = Vec::with_capacity(plan.tables.len());
    for (t, skip) in plan
        .tables
        .iter()
        .filter_map(|t| t.skip.as_ref().map(|s| (t, s)))
    {
        let mut r = uncopied(
            t,
            skip.result(),
            skip.message(&t.source),
            skip.is_error().then(|| {
                "Rename one of the tables in the source so that the names differ within the \
                 target's identifier limit, or exclude one with spec.tables.exclude."
                    .to_string()
            }),
        );
        r.left_out = Some(skip.kind());
        observer.table_done(&r);
        skipped.push(r);
    }
    skipped
}
