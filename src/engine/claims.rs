//! Phase 3 of a run: workers sharing a run settle who copies which table. Each claims its
//! preferred share (`share_of`), waits a little for the others, then claims every table still
//! unclaimed, and copies what it owns. Each table has exactly one owner, even when the
//! workers' catalogs saw slightly different sizes.

use super::copy_tables::tables_to_copy;
use super::ledger::state;
use super::{RunConfig, RunType, plan, share_of};
use crate::db::{Database, DbError};
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// How long a worker of a shared run waits for the others to claim their shares before it
/// takes every table still unclaimed.
const CLAIM_WAIT: Duration = Duration::from_secs(30);

/// The tables this worker owns, or None when it does not share the run (it copies them all).
pub async fn claim_share(
    config: &RunConfig,
    target: &Database,
    plan: &plan::Plan,
) -> Result<Option<HashSet<String>>, DbError> {
    let (index, count) = match config.share {
        Some((index, count)) if count > 1 && config.run_type != RunType::Diagnostic => {
            (index, count)
        }
        _ => return Ok(None),
    };
    let sorted = tables_to_copy(plan, None);
    let all: Vec<&str> = sorted.iter().map(|t| t.source.def.name.as_str()).collect();
    let mine: Vec<&str> = share_of(
        sorted.clone(),
        |t| t.source.def.est_bytes.max(0) as u64,
        index,
        count,
    )
    .into_iter()
    .map(|t| t.source.def.name.as_str())
    .collect();
    // A marker row says this worker has made its claims, even with an empty share.
    let marker = format!("#worker-{index}");
    state::claim(target, &config.run_id, index, &mine).await?;
    state::claim(target, &config.run_id, index, &[marker.as_str()]).await?;
    // Wait a little for the others, so that a worker that starts first does not take every
    // table; one that never comes leaves its tables to the rest.
    let waited = Instant::now();
    while state::claimants(target, &config.run_id).await? < count && waited.elapsed() < CLAIM_WAIT {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    state::claim(target, &config.run_id, index, &all).await?;
    state::claimed(target, &config.run_id, index)
        .await
        .map(Some)
}
