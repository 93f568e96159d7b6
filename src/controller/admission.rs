//! The one rule that says whether a run may start now, however it was made: by its schedule,
//! by a person's `kubectl create`, by `cloudmigrate run` or by a GitOps tool. Two things hold a
//! run back:
//! - what holds every run of its schedule (`schedule_hold`): a conflict with another schedule,
//!   Disable Cloud Migration, a key rotation, a runtime key not in effect, a CloudReset;
//! - what holds this one run (`run_hold`): another run of the schedule or on the same target
//!   that is at work, or an older run of the schedule that is waiting too (first made, first
//!   started).
//!
//! The schedule asks before it creates a run, and every run asks again before it starts.
//! Because the caches can lag behind a start that was just decided, the target is also claimed
//! in memory (`claims::Claims`) at the moment a run starts: a second run of the same target
//! cannot start until the first has ended, was deleted, or the process restarted (then the
//! caches, filled before any reconcile, show the started run).
//!
//! The rules are pure; `schedule_gates`, `neighbours` and `conflict_in` read the caches.

use super::cache::Caches;
use super::context::Context;
use super::runtime_key::KeyView;
use crate::api::schedule::{MigrationScheduleSpec, ResolvedEndpoints};
use crate::api::{MigrationRun, MigrationSchedule};
use crate::clock::utc;
use crate::logins::{database_identity, role_identity};
use chrono::{DateTime, Utc};
use kube::ResourceExt;
use std::collections::BTreeSet;

/// Why a run may not start now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hold {
    /// The schedule's reason, on its `Ready` or `RunRequest` condition.
    pub reason: &'static str,
    /// The reason a waiting run shows on its `Running` condition.
    pub waiting: &'static str,
    pub message: String,
}

/// The reasons of a waiting run's `Running` condition, by what it waits for.
pub const WAITING_FOR_RUN: &str = "WaitingForRun";
pub const WAITING_FOR_KEY: &str = "WaitingForRuntimeKey";
pub const WAITING_FOR_ROTATION: &str = "WaitingForKeyRotation";
pub const WAITING_FOR_RESET: &str = "WaitingForCloudReset";
pub const WAITING_FOR_RUNNER: &str = "WaitingForRunner";

/// What holds an in-process run when the controller already runs `running` of them and its
/// operator allows `cap` at once: a run waits for a place, so that tenants' migrations cannot
/// take over the controller. Pure.
pub fn in_process_hold(running: usize, cap: usize) -> Option<Hold> {
    (running >= cap).then(|| Hold {
        reason: "RunnerBusy",
        waiting: WAITING_FOR_RUNNER,
        message: format!(
            "the controller runs {running} in-process runs, as many as its operator allows at \
             once (--max-in-process-runs); this one starts when one has ended"
        ),
    })
}
pub const SCHEDULE_IN_CONFLICT: &str = "ScheduleInConflict";
pub const SCHEDULE_DISABLED: &str = "ScheduleDisabled";

/// What holds every run of a schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScheduleGates {
    /// Another schedule uses the same source or target database, and how (`conflict`).
    pub conflict: Option<String>,
    pub disabled: bool,
    /// A RuntimeKeyRotation of the schedule that has not finished.
    pub rotating: Option<String>,
    /// Why the runtime key is not in effect (`key_waiting`); None when runs can log in.
    pub key_waiting: Option<String>,
    /// A CloudReset of the schedule that has not finished.
    pub resetting: Option<String>,
}

/// What holds every run of the schedule, if anything: a conflict first, then Disable, a key
/// rotation, a key not in effect, a CloudReset. Pure.
pub fn schedule_hold(g: &ScheduleGates) -> Option<Hold> {
    if let Some(why) = &g.conflict {
        return Some(Hold {
            reason: "Conflict",
            waiting: SCHEDULE_IN_CONFLICT,
            message: why.clone(),
        });
    }
    if g.disabled {
        return Some(Hold {
            reason: "Disabled",
            waiting: SCHEDULE_DISABLED,
            message: "the migration is disabled (spec.disabled: true): no run starts, change \
                      tracking leaves the source and the runtime key is revoked \
                      (status.checklist shows each step). Setting it back to false starts \
                      over with a full run of every table"
                .into(),
        });
    }
    if let Some(rotation) = &g.rotating {
        return Some(Hold {
            reason: "RotatingKey",
            waiting: WAITING_FOR_ROTATION,
            message: format!(
                "RuntimeKeyRotation {rotation} is replacing the runtime key: no run starts until \
                 it ends"
            ),
        });
    }
    if let Some(why) = &g.key_waiting {
        return Some(Hold {
            reason: "RuntimeKeyNotReady",
            waiting: WAITING_FOR_KEY,
            message: why.clone(),
        });
    }
    if let Some(reset) = &g.resetting {
        return Some(Hold {
            reason: "Resetting",
            waiting: WAITING_FOR_RESET,
            message: format!(
                "CloudReset {reset} is clearing the cloud data: no run starts until it ends"
            ),
        });
    }
    None
}

/// Why runs cannot log in with the runtime key yet; None when they can. Pure.
pub fn key_waiting(key: &KeyView) -> Option<String> {
    if key.ready() {
        return None;
    }
    Some(match &key.problem {
        Some(p) => format!("the runtime key could not be made: {p}"),
        None => format!(
            "the runtime key (Secret {}) is being made; runs start once the login role has it",
            key.secret
        ),
    })
}

/// A run that writes, or may write, the same target as the run that asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// `namespace/name`.
    pub name: String,
    /// Its schedule, `namespace/name`.
    pub schedule: String,
    pub created: Option<DateTime<Utc>>,
    pub started: bool,
    pub ended: bool,
    /// Its author or its schedule asked it to stop: it will not start.
    pub stop_asked: bool,
}

/// The run that asks: `namespace/name`, its schedule's `namespace/name`, and when it was made.
#[derive(Clone, Copy, Debug)]
pub struct Asking<'a> {
    pub name: &'a str,
    pub schedule: &'a str,
    pub created: Option<DateTime<Utc>>,
}

/// What holds this one run: another run on its target that started and has not ended; else an
/// older run of its schedule that waits to start too (first made, first started). Pure.
pub fn run_hold(me: Asking<'_>, neighbours: &[Neighbour]) -> Option<Hold> {
    let others = || neighbours.iter().filter(|n| n.name != me.name && !n.ended);
    let shown = |n: &Neighbour| shown_name(&n.name, me.name).to_string();
    if let Some(busy) = others().filter(|n| n.started).min_by_key(|n| &n.name) {
        let message = if busy.schedule == me.schedule {
            format!(
                "run {} of this schedule is at work; runs of one schedule never overlap, and \
                 this one starts when it has ended",
                shown(busy)
            )
        } else if shown_name(&busy.schedule, me.schedule).starts_with('(') {
            "a run of another namespace is writing the same target database; this one starts \
             when it has ended"
                .to_string()
        } else {
            format!(
                "run {} of MigrationSchedule {} is writing the same target database; this one \
                 starts when it has ended",
                shown(busy),
                shown_name(&busy.schedule, me.schedule)
            )
        };
        return Some(Hold {
            reason: "RunActive",
            waiting: WAITING_FOR_RUN,
            message,
        });
    }
    let mine = (me.created, me.name);
    let first = others()
        .filter(|n| n.schedule == me.schedule && !n.started && !n.stop_asked)
        .filter(|n| (n.created, n.name.as_str()) < mine)
        .min_by_key(|n| (n.created, n.name.clone()))?;
    Some(Hold {
        reason: "RunQueued",
        waiting: WAITING_FOR_RUN,
        message: format!(
            "run {} of this schedule was made first and starts first",
            shown(first)
        ),
    })
}

/// `namespace/name` without the namespace when it is the same as `me`'s.
/// An object (`namespace/name`) as a message to `me` may show it: by its name in `me`'s
/// namespace. An object of another namespace belongs to another tenant: its name and
/// namespace stay hidden.
fn shown_name<'a>(qualified: &'a str, me: &str) -> &'a str {
    match (qualified.split_once('/'), me.split_once('/')) {
        (Some((ns, short)), Some((my_ns, _))) if ns == my_ns => short,
        _ => "(in another namespace)",
    }
}

/// A schedule as a conflict sees it: `namespace/name`, when it was created, its spec, and the
/// addresses its databases resolved to (`status.endpoints`), if known.
pub type Claimant<'a> = (
    &'a str,
    DateTime<Utc>,
    &'a MigrationScheduleSpec,
    Option<&'a ResolvedEndpoints>,
);

/// The places a database URL stands for: its identity, and the addresses it resolved to.
fn places(url: &str, resolved: &[String]) -> BTreeSet<String> {
    std::iter::once(database_identity(url))
        .chain(resolved.iter().cloned())
        .collect()
}

/// The conflict of a schedule with others, if any: the same source or the same target as
/// another schedule, by URL or by an address the URLs resolved to. The older schedule keeps
/// running; the newer one (by creation time, then name) gets the condition. Names are
/// `namespace/name`; the message names a schedule of the same namespace, and hides one of
/// another namespace (another tenant's). Pure.
pub fn conflict<'a>(
    me: Claimant<'_>,
    others: impl IntoIterator<Item = Claimant<'a>>,
) -> Option<String> {
    let (name, created, spec, resolved) = me;
    let resolved = resolved.cloned().unwrap_or_default();
    let (src, dst) = (
        places(&spec.source.url, &resolved.source),
        places(&spec.target.url, &resolved.target),
    );
    let mut older: Vec<_> = others
        .into_iter()
        .filter(|(other, other_created, _, _)| {
            *other != name && (*other_created, *other) <= (created, name)
        })
        .collect();
    older.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    for (other, _, other_spec, other_resolved) in older {
        let other_resolved = other_resolved.cloned().unwrap_or_default();
        let other_shown = match shown_name(other, name) {
            hidden if hidden.starts_with('(') => hidden.to_string(),
            shown => format!("{shown:?}"),
        };
        if !places(&other_spec.source.url, &other_resolved.source).is_disjoint(&src) {
            return Some(format!(
                "MigrationSchedule {other_shown} already migrates the same source database; \
                 one source feeding two targets splits its change tracking between them. \
                 Delete one of the two schedules."
            ));
        }
        if let (Some(mine), Some(theirs)) = (
            role_identity(name, &spec.target.url),
            role_identity(other, &other_spec.target.url),
        ) && mine == theirs
        {
            return Some(format!(
                "MigrationSchedule {other_shown} has the same name on the same target server, \
                 so both would write as one login role ({}); rename one of the two schedules.",
                mine.rsplit(' ').next().unwrap_or_default()
            ));
        }
        if !places(&other_spec.target.url, &other_resolved.target).is_disjoint(&dst) {
            return Some(format!(
                "MigrationSchedule {other_shown} already writes to the same target database; \
                 two sources feeding one target overwrite each other's tables. Delete one of \
                 the two schedules."
            ));
        }
    }
    None
}

fn qualified<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

/// When `obj` was created; the epoch when it has no creation time (an object not stored yet).
pub fn created<K: ResourceExt>(obj: &K) -> DateTime<Utc> {
    obj.creation_timestamp()
        .map(|t| utc(&t))
        .unwrap_or_default()
}

/// The conflict of `schedule` with the schedules the caches show on its databases. Those
/// being deleted count for nothing, and so does one that has not shown it can log in to its
/// databases (`Ready` True, or a run that succeeded): being first on a database whose
/// password one does not have blocks nobody.
pub fn conflict_in(caches: &Caches, schedule: &MigrationSchedule) -> Option<String> {
    conflict_among(caches, schedule, true)
}

/// Whether an older schedule on one of `schedule`'s databases would be in conflict with it
/// once it has logged in: `schedule` then looks again soon, as nothing else wakes it.
pub fn conflict_pending(caches: &Caches, schedule: &MigrationSchedule) -> bool {
    conflict_among(caches, schedule, false).is_some()
}

/// The conflict with the schedules on `schedule`'s databases that have (`logged`) or have not
/// logged in yet.
fn conflict_among(caches: &Caches, schedule: &MigrationSchedule, logged: bool) -> Option<String> {
    let sharing = caches.sharing_a_database(schedule);
    let names: Vec<String> = sharing.iter().map(|s| qualified(s.as_ref())).collect();
    conflict(
        (
            &qualified(schedule),
            created(schedule),
            &schedule.spec,
            resolved(schedule),
        ),
        sharing
            .iter()
            .zip(&names)
            .filter(|(o, _)| o.metadata.deletion_timestamp.is_none() && logged_in(o) == logged)
            .map(|(o, n)| (n.as_str(), created(o.as_ref()), &o.spec, resolved(o))),
    )
}

/// The addresses a schedule's databases resolved to at its last probe, if known.
fn resolved(schedule: &MigrationSchedule) -> Option<&ResolvedEndpoints> {
    schedule.status.as_ref().and_then(|s| s.endpoints.as_ref())
}

/// Whether a schedule has shown that it can log in to its databases: its `Ready` is True (the
/// probe logged in to both), or a run of it succeeded.
fn logged_in(schedule: &MigrationSchedule) -> bool {
    schedule.status.as_ref().is_some_and(|s| {
        s.last_successful_time.is_some()
            || s.conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

/// What holds every run of `schedule`, as the caches show it.
pub fn schedule_gates(ctx: &Context, schedule: &MigrationSchedule) -> ScheduleGates {
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    ScheduleGates {
        conflict: conflict_in(&ctx.caches, schedule),
        disabled: schedule.spec.disabled,
        rotating: super::queries::pending_rotation(&ctx.caches, &ns, &name),
        key_waiting: key_waiting(&super::runtime_key::view(ctx, schedule)),
        resetting: super::queries::pending_reset(&ctx.caches, &ns, &name),
    }
}

/// The runs of `schedule` and of every other schedule on its target database, as the caches
/// show them.
pub fn neighbours(caches: &Caches, schedule: &MigrationSchedule) -> Vec<Neighbour> {
    let target = database_identity(&schedule.spec.target.url);
    let mut schedules = vec![qualified(schedule)];
    schedules.extend(
        caches
            .sharing_a_database(schedule)
            .iter()
            .filter(|s| database_identity(&s.spec.target.url) == target)
            .map(|s| qualified(s.as_ref())),
    );
    schedules
        .iter()
        .flat_map(|s| {
            let (ns, name) = s.split_once('/').unwrap_or_default();
            caches.runs_of(ns, name)
        })
        .map(|r| neighbour(&r))
        .collect()
}

fn neighbour(run: &MigrationRun) -> Neighbour {
    let status = run.status.as_ref();
    Neighbour {
        name: qualified(run),
        schedule: format!(
            "{}/{}",
            run.namespace().unwrap_or_default(),
            run.spec.schedule_ref.name
        ),
        created: run.creation_timestamp().map(|t| utc(&t)),
        started: status.is_some_and(|s| s.start_time.is_some()),
        ended: status.is_some_and(|s| s.result.is_some()),
        stop_asked: run.stop_asked(),
    }
}

/// Whether the run `name` (`namespace/name`) with `uid` is in the caches and has not ended.
pub fn still_at_work(caches: &Caches, name: &str, uid: &str) -> bool {
    let (ns, short) = name.split_once('/').unwrap_or_default();
    caches
        .runs
        .get(&kube::runtime::reflector::ObjectRef::new(short).within(ns))
        .is_some_and(|r| {
            r.uid().as_deref() == Some(uid) && r.status.as_ref().is_none_or(|s| s.result.is_none())
        })
}

/// Whether `run` of `schedule` may start now, by the whole rule: the schedule's gates, the
/// runs on its target, and the claim on the target, which it takes when the way is clear.
pub fn admit(ctx: &Context, schedule: &MigrationSchedule, run: &MigrationRun) -> Option<Hold> {
    if let Some(hold) = schedule_hold(&schedule_gates(ctx, schedule)) {
        return Some(hold);
    }
    let name = qualified(run);
    let schedule_name = qualified(schedule);
    let me = Asking {
        name: &name,
        schedule: &schedule_name,
        created: run.creation_timestamp().map(|t| utc(&t)),
    };
    if let Some(hold) = run_hold(me, &neighbours(&ctx.caches, schedule)) {
        return Some(hold);
    }
    let target = database_identity(&schedule.spec.target.url);
    let uid = run.uid().unwrap_or_default();
    ctx.claims
        .claim(&target, (&name, &uid), |holder, holder_uid| {
            still_at_work(&ctx.caches, holder, holder_uid)
        })
        .err()
        .map(|holder| Hold {
            reason: "RunActive",
            waiting: WAITING_FOR_RUN,
            message: format!(
                "run {} is writing the same target database; this one starts when it has ended",
                shown_name(&holder, &name)
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32) -> Option<DateTime<Utc>> {
        use chrono::TimeZone;
        Some(Utc.with_ymd_and_hms(2026, 12, day, 0, 0, 0).unwrap())
    }

    fn n(name: &str, schedule: &str, day: u32, started: bool, ended: bool) -> Neighbour {
        Neighbour {
            name: name.into(),
            schedule: schedule.into(),
            created: at(day),
            started,
            ended,
            stop_asked: false,
        }
    }

    fn me(day: u32) -> Asking<'static> {
        Asking {
            name: "shop/mine",
            schedule: "shop/erp",
            created: at(day),
        }
    }

    #[test]
    fn the_schedule_holds_its_runs_in_one_order() {
        assert_eq!(schedule_hold(&ScheduleGates::default()), None);
        let all = ScheduleGates {
            conflict: Some("shared".into()),
            disabled: true,
            rotating: Some("r".into()),
            key_waiting: Some("k".into()),
            resetting: Some("x".into()),
        };
        assert_eq!(schedule_hold(&all).unwrap().reason, "Conflict");
        let reset = ScheduleGates {
            resetting: Some("reset-1".into()),
            ..Default::default()
        };
        let hold = schedule_hold(&reset).unwrap();
        assert_eq!(
            (hold.reason, hold.waiting),
            ("Resetting", WAITING_FOR_RESET)
        );
        assert!(hold.message.contains("reset-1"), "{}", hold.message);
        let key = ScheduleGates {
            key_waiting: Some("being made".into()),
            resetting: Some("reset-1".into()),
            ..Default::default()
        };
        assert_eq!(schedule_hold(&key).unwrap().waiting, WAITING_FOR_KEY);
    }

    #[test]
    fn a_run_waits_for_a_started_run_on_its_target() {
        let hold = run_hold(
            me(2),
            &[
                n("shop/other", "shop/erp", 3, true, false),
                n("shop/mine", "shop/erp", 2, false, false),
            ],
        )
        .unwrap();
        assert_eq!((hold.reason, hold.waiting), ("RunActive", WAITING_FOR_RUN));
        assert!(
            hold.message.contains("run other of this schedule"),
            "{}",
            hold.message
        );
        // Another tenant's run is not named.
        let hold = run_hold(me(2), &[n("bi/nightly-1", "bi/nightly", 1, true, false)]).unwrap();
        assert!(
            hold.message
                .starts_with("a run of another namespace is writing the same target")
                && !hold.message.contains("bi/"),
            "{}",
            hold.message
        );
        // Ended runs and itself hold nothing.
        assert_eq!(
            run_hold(
                me(2),
                &[
                    n("shop/old", "shop/erp", 1, true, true),
                    n("shop/mine", "shop/erp", 2, true, false)
                ]
            ),
            None
        );
    }

    #[test]
    fn the_older_waiting_run_of_a_schedule_starts_first() {
        let older = n("shop/first", "shop/erp", 1, false, false);
        let hold = run_hold(me(2), std::slice::from_ref(&older)).unwrap();
        assert_eq!(hold.reason, "RunQueued");
        assert!(hold.message.contains("run first"), "{}", hold.message);
        // A newer one, one that is stopped, or one of another schedule does not go first.
        let newer = n("shop/later", "shop/erp", 3, false, false);
        let stopped = Neighbour {
            stop_asked: true,
            ..older.clone()
        };
        let elsewhere = n("bi/first", "bi/nightly", 1, false, false);
        assert_eq!(run_hold(me(2), &[newer, stopped, elsewhere]), None);
    }

    fn on_one_target(ns: &str, name: &str, created: &str, ready: bool) -> MigrationSchedule {
        let status = if ready {
            serde_json::json!({"conditions": [{"type": "Ready", "status": "True",
                "reason": "Valid", "message": "", "lastTransitionTime": created}]})
        } else {
            serde_json::json!({"conditions": [{"type": "Ready", "status": "False",
                "reason": "TargetUnreachable", "message": "", "lastTransitionTime": created}]})
        };
        serde_json::from_value(serde_json::json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"source": {"url": format!("postgres://{ns}.example/nav")},
                     "target": {"url": "postgres://cloud.example/bc"}},
            "status": status
        }))
        .unwrap()
    }

    /// Being first on a target blocks others only once it has shown it can log in there: a
    /// squatter without the password blocks nobody.
    #[test]
    fn an_older_schedule_that_never_logged_in_blocks_nobody() {
        let mine = on_one_target("victim", "erp", "2026-02-01T00:00:00Z", false);
        let squatter = on_one_target("rival", "erp", "2026-01-01T00:00:00Z", false);
        let caches = Caches::of(vec![squatter, mine.clone()], vec![]);
        assert_eq!(conflict_in(&caches, &mine), None);
        let proven = on_one_target("rival", "erp", "2026-01-01T00:00:00Z", true);
        let caches = Caches::of(vec![proven, mine.clone()], vec![]);
        let c = conflict_in(&caches, &mine).unwrap();
        assert!(
            c.contains("(in another namespace) already writes to the same target"),
            "{c}"
        );
    }

    #[test]
    fn in_process_runs_wait_for_a_place_under_the_cap() {
        assert_eq!(in_process_hold(3, 4), None);
        let hold = in_process_hold(4, 4).unwrap();
        assert_eq!(
            (hold.reason, hold.waiting),
            ("RunnerBusy", WAITING_FOR_RUNNER)
        );
        assert!(
            hold.message.contains("--max-in-process-runs"),
            "{}",
            hold.message
        );
    }
}
