//! Phase 2 of a run: the source side (the catalog, the plan, change tracking already in place)
//! and the target side (the ledger, the run's start, the target's tables) at once: they are
//! independent until the copies start.

use super::catalog::Catalog;
use super::changes::{TrackingState, peek_tracking, prepare_tracking};
use super::ledger::{self, state};
use super::{EngineError, RunConfig, RunType, plan, tracking, with_retries};
use crate::db::Database;
use std::collections::HashMap;
use std::time::Instant;

/// What phase 2 found on both sides.
pub(crate) struct Prepared {
    pub plan: plan::Plan,
    /// Change tracking that was in place already, ready for this run; None: still to do.
    pub ready_tracking: Option<TrackingState>,
    pub target_tables: HashMap<String, crate::db::TableDef>,
    pub target_state: HashMap<String, state::TableState>,
    /// Missing tables that the controller's admin login created for this run (`None`) or
    /// could not create (the reason).
    pub created_by_admin: std::collections::BTreeMap<String, Option<String>>,
}

/// Phase 2: the source side (catalog, plan, change tracking already in place) and the target
/// side (replication state, the run's start, the target's tables) at once: they are
/// independent until the copies start.
pub(crate) async fn prepare(
    config: &RunConfig,
    source: &Database,
    target: &Database,
    started: Instant,
) -> Result<Prepared, EngineError> {
    let diagnostic = config.run_type == RunType::Diagnostic;
    let shared = config.share.is_some_and(|(_, count)| count > 1);
    let source_side = async {
        // The catalog the controller granted the run on, else the source's own.
        let (catalog, created_by_admin) = match ledger::catalogs::read(target, &config.run_id).await
        {
            Some(recorded) => (recorded.catalog, recorded.created),
            None => (
                Catalog::read(source).await.map_err(EngineError::Source)?,
                Default::default(),
            ),
        };
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            tables = catalog.tables.len(),
            "catalog read"
        );
        let mut options = config.plan.clone();
        options.target = Some(target.dialect());
        let plan = plan::plan(&catalog, &options)?;
        // Change tracking that is in place already needs nothing from the target, so it gets
        // ready meanwhile. Installing waits until the target has answered, so that a run that
        // cannot use its target leaves no trigger behind; workers sharing a run wait for their
        // claims.
        let tracking = if diagnostic {
            Some(peek_tracking(source, &plan).await)
        } else if shared {
            None
        } else {
            prepare_tracking(source, &plan, None, config.retention, false).await
        };
        Ok::<_, EngineError>((plan, tracking, created_by_admin))
    };
    let target_side = async {
        let bookkeeping = async {
            if !diagnostic {
                remove_orphan_triggers(target).await?;
                with_retries(|| ledger::ensure(target)).await?;
                state::start_run(target, &config.run_id, config.run_type.as_str(), shared).await?;
            }
            // Read after the run is recorded as running: an initialization scheduled from now
            // on waits for this run, and one scheduled before is seen here.
            let busy = match ledger::companies::busy(target).await {
                Ok(b) => b,
                // A diagnostic run may meet a target that no run has written to yet.
                Err(_) if diagnostic => Default::default(),
                Err(e) => return Err(e),
            };
            match state::read_table_states(target).await {
                Ok(s) => Ok((s, busy)),
                // A diagnostic run may meet a target that no run has written to yet.
                Err(_) if diagnostic => Ok((HashMap::new(), busy)),
                Err(e) => Err(e),
            }
        };
        let (tables, states) = tokio::join!(target.tables(), bookkeeping);
        let tables: HashMap<_, _> = tables?.into_iter().map(|t| (t.name.clone(), t)).collect();
        Ok((tables, states?))
    };
    let (source_side, target_side) = tokio::join!(source_side, target_side);
    let (target_tables, (target_state, busy)) = target_side.map_err(EngineError::Target)?;
    match source_side {
        Ok((mut plan, ready_tracking, created_by_admin)) => {
            skip_busy_companies(&mut plan, &busy);
            Ok(Prepared {
                plan,
                ready_tracking,
                target_tables,
                target_state,
                created_by_admin,
            })
        }
        Err(e) => {
            // The run was recorded as started in the target: record that it ended.
            if !diagnostic {
                let _ = state::finish_run(target, &config.run_id, "Failed").await;
            }
            Err(e)
        }
    }
}

/// Capture triggers of ours in the target without their log (a schema copied from a tracked
/// source carries them) would fail every load into their tables: they go before anything is
/// written, or the error names them and the statements that remove them.
async fn remove_orphan_triggers(target: &Database) -> Result<(), crate::db::DbError> {
    let orphans = tracking::orphans(target).await?;
    if orphans.is_empty() {
        return Ok(());
    }
    tracing::info!(
        objects = orphans.len(),
        "removing capture triggers that came into the target with a copied schema"
    );
    tracking::remove(target, &orphans).await.map_err(|e| {
        crate::db::DbError::Sql(format!(
            "the target carries change tracking triggers of a source (a schema copied with \
             them), which would fail every write into their tables: {e}"
        ))
    })
}

/// The tables of companies that are being initialized are skipped, whatever else the plan
/// said about them.
pub(crate) fn skip_busy_companies(plan: &mut plan::Plan, busy: &std::collections::HashSet<String>) {
    for t in &mut plan.tables {
        if t.skip.is_none() && t.source.company.as_ref().is_some_and(|c| busy.contains(c)) {
            t.skip = Some(plan::Skip::BeingInitialized);
        }
    }
}
