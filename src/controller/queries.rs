//! The questions that several reconcilers ask the caches about one schedule: its run at work,
//! its last successful run, its CloudReset or key rotation still pending, and the companies
//! being initialized. Each kind asks here rather than in another kind's module, so no
//! two kinds depend on each other.
//!
//! One-shot requests (CloudReset, RuntimeKeyRotation) go one at a time per schedule: the
//! oldest unfinished one goes first (by creation time, then name); a request being deleted
//! counts for nothing.

use super::cache::Caches;
use super::conditions::ended;
use crate::api::companies::InitializationState;
use crate::api::run::{RunResult, RunType};
use crate::api::{CloudReset, RuntimeKeyRotation};
use crate::clock::utc;
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use std::sync::Arc;

/// A run that ended successfully: its name, when, and the companies it migrated (empty: all).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LastRun {
    pub name: String,
    pub at: DateTime<Utc>,
    pub companies: Vec<String>,
}

/// A run of the schedule that started and has not ended. A run that waits to start
/// (`admission`) has touched nothing, and counts for nothing here: a reset or an
/// initialization it waits for must not wait for it in turn.
pub fn active_run(caches: &Caches, ns: &str, schedule: &str) -> Option<String> {
    caches
        .runs_of(ns, schedule)
        .iter()
        .filter(|r| {
            r.status
                .as_ref()
                .is_some_and(|s| s.start_time.is_some() && s.result.is_none())
        })
        .map(|r| r.name_any())
        .min()
}

/// The schedule's newest run that migrated data and succeeded (wholly or in part).
pub fn last_success(caches: &Caches, ns: &str, schedule: &str) -> Option<LastRun> {
    caches
        .runs_of(ns, schedule)
        .iter()
        .filter(|r| r.spec.r#type != RunType::Diagnostic)
        .filter_map(|r| {
            let s = r.status.as_ref()?;
            matches!(
                s.result,
                Some(RunResult::Succeeded | RunResult::PartiallySucceeded)
            )
            .then_some(())?;
            Some(LastRun {
                name: r.name_any(),
                at: utc(s.completion_time.as_ref()?),
                companies: r.spec.companies.clone(),
            })
        })
        .max_by_key(|r| r.at)
}

/// The companies whose initialization is scheduled or running, as the schedule's
/// CompanySelections show them, quoted and sorted.
pub fn initializing(caches: &Caches, ns: &str, schedule: &str) -> Vec<String> {
    use InitializationState::{Running, Scheduled};
    let mut out: Vec<String> = caches
        .selections_of(ns, schedule)
        .iter()
        .filter_map(|s| s.status.as_ref())
        .flat_map(|s| s.companies.iter())
        .filter(|c| matches!(c.initialization, Some(Scheduled | Running)))
        .map(|c| format!("{:?}", c.name))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The schedule's CloudReset that has not finished, if any: no run starts while it is there.
pub fn pending_reset(caches: &Caches, ns: &str, schedule: &str) -> Option<String> {
    pending(&caches.resets_of(ns, schedule), reset_ended)
}

/// The oldest other CloudReset of the same schedule that has not finished, if it is older than
/// `me`: it goes first.
pub fn older_reset(caches: &Caches, ns: &str, me: &CloudReset) -> Option<String> {
    let all = caches.resets_of(ns, &me.spec.schedule_ref.name);
    older_pending(&all, me, reset_ended)
}

/// The schedule's key rotation that has not finished, if any: no run starts while it works.
pub fn pending_rotation(caches: &Caches, ns: &str, schedule: &str) -> Option<String> {
    pending(&caches.rotations_of(ns, schedule), rotation_ended)
}

/// The oldest other key rotation of the same schedule that has not finished, if it is older
/// than `me`: it goes first.
pub fn older_rotation(caches: &Caches, ns: &str, me: &RuntimeKeyRotation) -> Option<String> {
    let all = caches.rotations_of(ns, &me.spec.schedule_ref.name);
    older_pending(&all, me, rotation_ended)
}

fn reset_ended(r: &CloudReset) -> bool {
    r.status.as_ref().is_some_and(|s| ended(&s.conditions))
}

fn rotation_ended(r: &RuntimeKeyRotation) -> bool {
    r.status.as_ref().is_some_and(|s| ended(&s.conditions))
}

/// `(creation time, name)` of the unfinished requests among `all`.
fn unfinished<K: ResourceExt>(
    all: &[Arc<K>],
    ended: impl Fn(&K) -> bool,
) -> impl Iterator<Item = (Option<DateTime<Utc>>, String)> {
    all.iter()
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .filter(move |r| !ended(r))
        .map(|r| (r.creation_timestamp().map(|t| utc(&t)), r.name_any()))
}

/// The oldest unfinished request among `all` that is older than `me`.
fn older_pending<K: ResourceExt>(
    all: &[Arc<K>],
    me: &K,
    ended: impl Fn(&K) -> bool,
) -> Option<String> {
    let mine = (me.creation_timestamp().map(|t| utc(&t)), me.name_any());
    unfinished(all, ended)
        .filter(|other| *other < mine)
        .min()
        .map(|(_, name)| name)
}

/// The oldest unfinished request among `all`, if any.
fn pending<K: ResourceExt>(all: &[Arc<K>], ended: impl Fn(&K) -> bool) -> Option<String> {
    unfinished(all, ended).min().map(|(_, name)| name)
}
