//! The one-shot requests of a schedule (CloudReset, RuntimeKeyRotation): which of them goes
//! first, and whether one is still pending. The oldest unfinished request of a kind goes first
//! (by creation time, then name); a request being deleted counts for nothing.

use crate::clock::utc;
use kube::ResourceExt;
use std::sync::Arc;

/// `(creation time, name)` of the unfinished requests among `all`.
fn unfinished<K: ResourceExt>(
    all: &[Arc<K>],
    ended: impl Fn(&K) -> bool,
) -> impl Iterator<Item = (Option<chrono::DateTime<chrono::Utc>>, String)> {
    all.iter()
        .filter(|r| r.meta().deletion_timestamp.is_none())
        .filter(move |r| !ended(r))
        .map(|r| (r.creation_timestamp().map(|t| utc(&t)), r.name_any()))
}

/// The oldest unfinished request among `all` that is older than `me`: it goes first.
pub fn older_pending<K: ResourceExt>(
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
pub fn pending<K: ResourceExt>(all: &[Arc<K>], ended: impl Fn(&K) -> bool) -> Option<String> {
    unfinished(all, ended).min().map(|(_, name)| name)
}
