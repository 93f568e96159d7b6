//! Phases 4 and 5 of a run: change tracking on the source (the log and the clock, triggers on
//! every table that lacks them, the run's version), and after the snapshot, which tables have
//! changes at all.

use super::copy_tables::tables_to_copy;
use super::ledger::state::TableState;
use super::{RunConfig, RunType, plan, privileges, tracking, with_retries};
use crate::db::{Database, Dialect};
use std::collections::HashMap;
use std::time::Instant;

/// What change tracking looks like for a run.
pub(crate) struct TrackingState {
    /// The run's versions, or why change tracking is not available.
    pub clock: Result<tracking::Clock, String>,
    /// Tables tracked before this run, with the key columns their triggers record.
    pub tracked: HashMap<String, String>,
    /// Tables whose triggers could not be installed, and why.
    pub enable_errors: HashMap<String, String>,
    /// Tables made anew since they were registered (a TRUNCATE on MySQL or MariaDB).
    pub recreated: std::collections::HashSet<String>,
}

impl TrackingState {
    /// The run's versions and the tables tracked before it; nothing installed, nothing made anew.
    pub(crate) fn new(
        clock: Result<tracking::Clock, String>,
        tracked: HashMap<String, String>,
    ) -> Self {
        Self {
            clock,
            tracked,
            enable_errors: HashMap::new(),
            recreated: Default::default(),
        }
    }
}

/// Installs change tracking where it is missing (and again on tables made anew), then fixes
/// the run's version (see `tracking`). With `install` false it installs nothing: when
/// something is missing it returns `None` and leaves the source as it was.
pub(crate) async fn prepare_tracking(
    source: &Database,
    plan: &plan::Plan,
    owned: Option<&std::collections::HashSet<String>>,
    retention: std::time::Duration,
    install: bool,
) -> Option<TrackingState> {
    let mut st = TrackingState::new(Err(String::new()), HashMap::new());
    // Installed already (the usual case): no DDL. Otherwise install, then read again.
    let registered = match tracking::enabled(source).await {
        Ok(r) => r,
        Err(_) if !install => return None,
        Err(_) => match with_retries(|| tracking::install(source)).await {
            Err(e) => {
                st.clock = Err(unavailable(source, e).await);
                return Some(st);
            }
            Ok(()) => match tracking::enabled(source).await {
                Ok(r) => r,
                Err(e) => {
                    st.clock = Err(unavailable(source, e).await);
                    return Some(st);
                }
            },
        },
    };
    let names: Vec<&str> = plan.to_copy().map(|t| t.source.def.name.as_str()).collect();
    let ids = match tracking::table_ids(source, &names).await {
        Ok(ids) => ids,
        Err(e) => {
            st.clock = Err(unavailable(source, e).await);
            return Some(st);
        }
    };
    // Capture functions of an earlier version, which ran as the writer, go in again.
    let outdated = match tracking::outdated(source, &names).await {
        Ok(o) => o,
        Err(e) => {
            st.clock = Err(unavailable(source, e).await);
            return Some(st);
        }
    };
    // Each worker enables change tracking on its own share only.
    let mut to_enable = vec![];
    for t in tables_to_copy(plan, owned)
        .into_iter()
        .map(|t| &t.source.def)
    {
        if t.primary_key.is_empty() {
            continue;
        }
        let id = ids.get(&t.name).copied();
        if let Some(r) = registered
            .get(&t.name)
            .filter(|r| r.key_columns == tracking::key_columns(t))
        {
            st.tracked.insert(t.name.clone(), r.key_columns.clone());
            if r.table_id == id {
                if outdated.contains(&t.name) {
                    to_enable.push((t, id));
                }
                continue;
            }
            // Tracked, but made anew: the triggers go in again and the table is copied in full.
            st.recreated.insert(t.name.clone());
        }
        to_enable.push((t, id));
    }
    if !to_enable.is_empty() && !install {
        return None;
    }
    st.enable_errors = tracking::enable(source, &to_enable).await;
    // A refusal is most often a missing privilege: the check names it once, with its GRANT.
    if !st.enable_errors.is_empty()
        && let Ok(missing) = privileges::missing(source).await
        && let Some(lacks) = privileges::sentence(&missing)
    {
        for e in st.enable_errors.values_mut() {
            e.push_str(&format!("; {lacks}"));
        }
    }
    let started = Instant::now();
    st.clock = match tracking::stamp(source, retention).await {
        Ok(clock) => Ok(clock),
        Err(e) => Err(unavailable(source, e).await),
    };
    tracing::debug!(ms = started.elapsed().as_millis() as u64, "changes stamped");
    Some(st)
}

/// Why change tracking is not available, with the grants the migration login lacks.
async fn unavailable(source: &Database, e: crate::db::DbError) -> String {
    let fix = match privileges::missing(source).await {
        Ok(m) => privileges::sentence(&m),
        Err(_) => None,
    }
    .unwrap_or_else(|| "see the source login's needs in docs/operations.md".into());
    format!(
        "change tracking is not available on the source, so every run copies every table in \
         full: {e}. Fix: {fix}"
    )
}

/// A diagnostic run's view of change tracking: what is in place, and what the migration
/// login would lack to put it on the tables that do not have it yet.
pub(crate) async fn peek_tracking(source: &Database, plan: &plan::Plan) -> TrackingState {
    let (clock, tracked) = tracking::peek(source).await;
    let mut st = TrackingState::new(clock, tracked);
    let lacks = match privileges::missing(source).await {
        Ok(m) => privileges::sentence(&m),
        Err(_) => None,
    };
    if let Some(lacks) = lacks {
        if st.clock.is_err() {
            st.clock = Err(format!(
                "change tracking is not installed on the source, and cannot be: {lacks}"
            ));
        }
        for t in plan.to_copy() {
            let def = &t.source.def;
            if !def.primary_key.is_empty() && !st.tracked.contains_key(&def.name) {
                st.enable_errors.insert(def.name.clone(), lacks.clone());
            }
        }
    }
    st
}

/// Phase 4: change tracking: the log and the clock, then triggers on every table that lacks
/// them, then the run's version, and only then (phase 5) the snapshot the tables are read in.
/// In this order nothing that changes during the run can be missed.
pub(crate) async fn change_tracking(
    config: &RunConfig,
    source: &Database,
    plan: &plan::Plan,
    ready: Option<TrackingState>,
    owned: Option<&std::collections::HashSet<String>>,
) -> TrackingState {
    if let Some(st) = ready {
        return st;
    }
    // Allowed to install, prepare_tracking always answers; were it not to, the tables go in
    // full, as without change tracking.
    prepare_tracking(source, plan, owned, config.retention, true)
        .await
        .unwrap_or_else(|| {
            TrackingState::new(
                Err("change tracking could not be prepared on the source".into()),
                HashMap::new(),
            )
        })
}

/// Change tracking for a run that has the source to itself (a lake target): installed where
/// it is missing, then the run's version.
pub(crate) async fn change_tracking_of(
    source: &Database,
    plan: &plan::Plan,
    retention: std::time::Duration,
) -> TrackingState {
    prepare_tracking(source, plan, None, retention, true)
        .await
        .unwrap_or_else(|| {
            TrackingState::new(
                Err("change tracking could not be prepared on the source".into()),
                HashMap::new(),
            )
        })
}

/// Phase 5, after the snapshot: one query finds the tables with change records since the
/// lowest watermark among this run's tables; the others have nothing to read. Not on MySQL and
/// MariaDB: under a case-insensitive collation DISTINCT would return one of two names that
/// differ only in case, and the other table would miss its changes.
pub(crate) async fn changed_tables(
    config: &RunConfig,
    source: &Database,
    plan: &plan::Plan,
    target_state: &HashMap<String, TableState>,
    tracking: &TrackingState,
) -> Option<std::collections::HashSet<String>> {
    match (&tracking.clock, config.run_type) {
        (Ok(_), RunType::Auto | RunType::Diagnostic) if source.dialect() != Dialect::MySql => {
            let lowest = plan
                .to_copy()
                .filter_map(|t| target_state.get(&t.source.def.name))
                .filter_map(|s| s.ct_version)
                .min();
            match lowest {
                Some(v) => tracking::changed_tables(source, v).await.ok(),
                None => None,
            }
        }
        _ => None,
    }
}
