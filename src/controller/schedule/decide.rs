//! What a MigrationSchedule should do now, as a pure function of what the reconciler observed:
//! which run to start, which runs to stop or prune, and the status to write. Its steps, in
//! order:
//! 1. `gate`: may runs start at all (a valid cron and time zone, no conflict, not disabled)?
//! 2. `due`: what is due now: a run request, the first run, or a scheduled time;
//! 3. `admit`: does the due run start, by the gate, the deadline and the concurrency policy?
//! 4. `summarize`: the next due time, the active and last runs, the migration counts;
//! 5. `prune`: which finished runs fall outside the history limits.

use super::super::admission::{ScheduleGates, key_waiting, schedule_hold};
use super::super::conditions::At;
use super::super::cron::{CronSchedule, TimingProblem};
use super::super::note::Note;
use super::super::runtime_key::{KEY_IN_EFFECT, KeyStep, KeyView};
use super::checklist::{ChecklistObserved, CompanyView, DisableStep};
use crate::api::companies::{CompanySelectionSpec, CompanySelectionStatus};
use crate::api::run::{RunResult, RunType};
use crate::api::schedule::{
    ConcurrencyPolicy, History, MigrationInformation, MigrationScheduleSpec,
    MigrationScheduleStatus, PendingRunRequest, RunSummary, RuntimeStatus,
};
use crate::clock::{time, utc as to_utc};
use crate::engine::ledger::state::Standing;
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// What the schedule's reconciler sees of one of the schedule's runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunView {
    pub name: String,
    pub created: Option<DateTime<Utc>>,
    pub run_type: RunType,
    /// The run-request token it was started for.
    pub run_request: Option<String>,
    /// None while the run has not ended.
    pub result: Option<RunResult>,
    pub start_time: Option<Time>,
    pub completion_time: Option<Time>,
    pub stop_requested: bool,
    /// The controller created it (it carries the trigger annotation); a run a person made is
    /// theirs, and never pruned.
    pub made_here: bool,
    pub counts: Counts,
}

/// Table counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub migrated: i64,
    pub with_warnings: i64,
    pub failed: i64,
    /// Not migrated by design or by the table filter.
    pub excluded: i64,
}

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub name: &'a str,
    pub generation: Option<i64>,
    pub created: DateTime<Utc>,
    pub spec: &'a MigrationScheduleSpec,
    pub status: MigrationScheduleStatus,
    pub runs: Vec<RunView>,
    /// Another schedule that uses the same source or target database, and how.
    pub conflict: Option<String>,
    /// An older schedule on one of the databases has not logged in yet: it would be in
    /// conflict once it has, so this one looks again soon.
    pub conflict_pending: bool,
    /// The companies a new run migrates (`selected_companies`): None without a
    /// CompanySelection (every company). An error, with its reason, when the selection selects
    /// none, names a company the source lacks, or was not checked against the source yet
    /// (`selection_checked`): no run starts then.
    pub companies: Result<Option<Vec<String>>, (&'static str, String)>,
    /// A CloudReset of the schedule that has not finished: no run starts meanwhile.
    pub resetting: Option<String>,
    /// What the last probe of the databases found; None before the first one ended.
    pub reach: Option<super::super::reach::Reach>,
    /// A RuntimeKeyRotation of the schedule that has not finished: no run starts meanwhile.
    pub rotating: Option<String>,
    /// The runtime key: its role, its Secret, and whether runs can write as the role.
    pub key: KeyView,
    /// The selected companies and their initialization, from the CompanySelection's status.
    pub company_views: Vec<CompanyView>,
    /// A UserMapping of the schedule applied every mapping.
    pub users_mapped: bool,
    /// Why the schedule's runner may not run here (`runner: InProcess` where the operator did
    /// not allow it): no run starts.
    pub runner_refused: Option<String>,
    /// What the registry said of the runtime image's repository; None while it has not.
    pub release: Option<crate::controller::releases::Answer>,
    pub now: DateTime<Utc>,
}

/// The companies that the schedule's CompanySelection selects, for its next run. Of several
/// selections for one schedule, the oldest counts (then the first by name); the others are
/// ignored. Without a selection, None: every company migrates. A selection that selects no
/// company is an error that says what to do. Pure.
pub fn selected_companies(
    selections: &[(&str, DateTime<Utc>, &CompanySelectionSpec)],
) -> Result<Option<Vec<String>>, String> {
    let Some((name, _, spec)) = selections
        .iter()
        .min_by_key(|(name, created, _)| (*created, *name))
    else {
        return Ok(None);
    };
    let mut chosen: Vec<String> = spec
        .companies
        .iter()
        .filter(|c| c.migrate)
        .map(|c| c.name.clone())
        .collect();
    chosen.sort();
    chosen.dedup();
    if chosen.is_empty() {
        return Err(format!(
            "CompanySelection {name} selects no company: set migrate: true on at least one \
             company, or delete the selection to migrate every company"
        ));
    }
    Ok(Some(chosen))
}

/// A run to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub name: String,
    /// Scheduled, Manual or Immediate.
    pub trigger: &'static str,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub run_request: Option<String>,
    /// The companies it migrates, as the schedule's CompanySelection says; empty: every one.
    pub companies: Vec<String>,
}

/// When the reconciler looks at the schedule again, if nothing wakes it before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// At the next due time: on time, not spread.
    At(Duration),
    /// A periodic recheck, spread a little so that many schedules do not come back together.
    Recheck(Duration),
    /// Only when the schedule, one of its runs, or a resource pointing at it changes.
    OnChange,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub create: Option<NewRun>,
    /// The next step of Disable Cloud Migration that the controller takes.
    pub disable: Option<DisableStep>,
    /// An active run to stop (concurrencyPolicy Replace).
    pub stop: Option<String>,
    /// Finished runs beyond the history limits.
    pub delete: Vec<String>,
    pub status: MigrationScheduleStatus,
    pub notes: Vec<Note>,
    pub requeue: Requeue,
}

/// The name of a scheduled run: the schedule's name and the due minute in UTC.
pub fn run_name(schedule: &str, at: DateTime<Utc>) -> String {
    format!("{schedule}-{}", at.format("%Y%m%d%H%M"))
}

/// The name of a manual run: like a scheduled one, to the second.
pub fn manual_run_name(schedule: &str, at: DateTime<Utc>) -> String {
    format!("{schedule}-{}", at.format("%Y%m%d%H%M%S"))
}

/// `name`, or `name-2`, `name-3`, ... if a run of that name exists: two run requests within
/// one second get two runs.
fn free_name(name: String, runs: &[RunView]) -> String {
    let taken = |n: &str| runs.iter().any(|r| r.name == n);
    if !taken(&name) {
        return name;
    }
    let mut i = 2;
    loop {
        let candidate = format!("{name}-{i}");
        if !taken(&candidate) {
            return candidate;
        }
        i += 1;
    }
}

/// The name of a schedule without its namespace.
fn summary(run: &RunView) -> RunSummary {
    RunSummary {
        name: run.name.clone(),
        r#type: Some(format!("{:?}", run.run_type)),
        result: run.result.map(|r| format!("{r:?}")),
        start_time: run.start_time.clone(),
        completion_time: run.completion_time.clone(),
        tables_migrated: run.counts.migrated,
        tables_with_warnings: run.counts.with_warnings,
        tables_failed: run.counts.failed,
    }
}

/// Decides. Pure: the same observation always gives the same decision.
pub fn decide(o: Observed<'_>) -> Decision {
    let mut status = o.status.clone();
    status.observed_generation = o.generation;
    let at = At {
        generation: o.generation,
        now: o.now,
    };
    // Runs by age, newest first.
    let mut runs = o.runs.clone();
    runs.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));

    let gate = gate(&o, at, &mut status);
    let due = due(&o, &runs, gate.schedule.as_ref(), &mut status);
    let admitted = match due {
        Some(due) => admit(&o, &runs, &gate, due, at, &mut status),
        None => Admission::default(),
    };
    let next = summarize(&o, &runs, &gate, &admitted, at, &mut status);
    let image = o
        .spec
        .runtime
        .image
        .clone()
        .unwrap_or_else(crate::runner::job::default_image);
    let (runtime, newer, reason, message) = super::update::check(
        status.runtime.as_ref(),
        super::update::UpdateFacts {
            image: &image,
            pinned: o.spec.runtime.image.is_some(),
            in_process: o.spec.runtime.runner == crate::api::schedule::Runner::InProcess,
            controller: super::update::CONTROLLER_VERSION,
            registry: o.release.as_ref(),
        },
    );
    status.runtime = Some(key_status(&o, runtime, at, &mut status.conditions));
    let (checklist, disable) = super::checklist::checklist(&ChecklistObserved {
        disabled: o.spec.disabled,
        // Disable waits for a run at work; one that waits to start is held by Disable itself.
        active_run: runs
            .iter()
            .find(|r| r.result.is_none() && r.start_time.is_some())
            .map(|r| r.name.clone()),
        companies: o.company_views.clone(),
        not_migrated: o.reach.as_ref().and_then(|r| r.not_migrated.clone()),
        set_up_by_hand: o.spec.tables.set_up_by_hand.clone(),
        tracking: o.reach.as_ref().and_then(|r| r.tracking),
        source_silent: o
            .reach
            .as_ref()
            .and_then(|r| r.source.as_ref().err().cloned()),
        users_mapped: o.users_mapped,
        key: o.key.clone(),
    });
    status.checklist = checklist;
    at.set(
        &mut status.conditions,
        "UpdateAvailable",
        newer,
        reason,
        message,
    );
    let requeue = match next {
        // A conflict ends when the other schedule goes, which wakes nothing here.
        _ if o.conflict.is_some() => Requeue::Recheck(Duration::from_secs(60)),
        _ if o.conflict_pending => Requeue::Recheck(Duration::from_secs(10)),
        Some(t) if gate.blocked.is_none() && !o.spec.suspend => {
            // Rounded up, so that the wake-up never comes just before the due time.
            let ms = (t - o.now).num_milliseconds().max(0) as u64;
            Requeue::At(Duration::from_secs(ms.div_ceil(1000).max(1)))
        }
        _ => Requeue::OnChange,
    };
    Decision {
        create: admitted.create,
        disable,
        stop: admitted.stop,
        delete: prune(&o.spec.history, &runs),
        status,
        notes: admitted.notes,
        requeue,
    }
}

/// The runtime key's part of `status.runtime`, and the `RuntimeKey` condition.
fn key_status(
    o: &Observed<'_>,
    mut runtime: RuntimeStatus,
    at: At,
    conditions: &mut crate::api::common::Conditions,
) -> RuntimeStatus {
    let key = &o.key;
    let stored = key.stored.clone().unwrap_or_default();
    runtime.key_role = key.role.clone();
    runtime.key_secret_name = key.stored.as_ref().map(|_| key.secret.clone());
    runtime.key_fingerprint = stored.fingerprint.clone();
    runtime.key_rotated_at = stored
        .rotated_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| time(t.with_timezone(&Utc)));
    let (ok, reason, message) = match (&key.role, &key.problem) {
        (None, _) if crate::lake::store::is_lake_url(&o.spec.target.url) => (
            false,
            "NoLoginRoles",
            "the target is a data lake, which has no login roles: runs write it with the key \
             in the Secret that spec.target.passwordSecretRef names, and there is no runtime key"
                .to_string(),
        ),
        (None, _) => (
            false,
            "NoLoginRoles",
            "the target is a SQLite file, which has no login roles: runs write it with the \
             target's own access, and there is no runtime key"
                .to_string(),
        ),
        (Some(_), _) if o.spec.disabled && key.stored.is_none() => (
            false,
            "Revoked",
            "the migration is disabled: the login role was dropped and its Secret deleted".into(),
        ),
        (Some(_), Some(problem)) => (false, "KeyNotMade", problem.clone()),
        (Some(role), None) if key.ready() => (
            true,
            KEY_IN_EFFECT,
            format!(
                "runs write to the target as {role}; the key is in Secret {} (username, password)",
                key.secret
            ),
        ),
        (Some(_), None) => (
            false,
            "Pending",
            format!(
                "the key in Secret {} is not set on the login role yet",
                key.secret
            ),
        ),
    };
    at.set(conditions, "RuntimeKey", ok, reason, message);
    runtime
}

/// What the gate found: the parsed timing, and why runs may not start, if they may not.
struct Gate {
    schedule: Option<CronSchedule>,
    blocked: Option<(&'static str, String)>,
}

/// Step 1: whether runs may start at all. Sets Conflict, Disabled and Ready.
fn gate(o: &Observed<'_>, at: At, status: &mut MigrationScheduleStatus) -> Gate {
    let spec = o.spec;
    let timing = spec
        .schedule
        .as_deref()
        .map(|expr| CronSchedule::parse(expr, &spec.time_zone))
        .transpose();
    let blocked = blocked(o, &timing);
    request_conditions(o, at, status);
    ready_condition(o, at, status, &blocked);
    tracking_condition(o, at, status);
    transport_condition(o.spec, at, status);
    Gate {
        schedule: timing.ok().flatten(),
        blocked,
    }
}

/// Why no run may start now, if something stops it: a bad schedule; then what holds every
/// run of the schedule (`admission::schedule_hold`: a conflict, Disable Cloud Migration, a key
/// rotation, a key not in effect, a CloudReset); then a selection that selects no company.
fn blocked(
    o: &Observed<'_>,
    timing: &Result<Option<CronSchedule>, TimingProblem>,
) -> Option<(&'static str, String)> {
    if let Err(problem) = timing {
        return Some((problem.reason, problem.message.clone()));
    }
    if let Some(why) = &o.runner_refused {
        return Some(("RunnerNotAllowed", why.clone()));
    }
    let gates = ScheduleGates {
        conflict: o.conflict.clone(),
        disabled: o.spec.disabled,
        rotating: o.rotating.clone(),
        key_waiting: key_waiting(&o.key),
        resetting: o.resetting.clone(),
    };
    if let Some(hold) = schedule_hold(&gates) {
        return Some((hold.reason, hold.message));
    }
    o.companies.as_ref().err().cloned()
}

/// Whether the CompanySelection `name` that runs use was checked against the source, in its
/// current generation, and found every company it selects there. Its own `Ready` says so; a
/// source it could not read holds nothing here (the run would say so itself). Pure.
pub fn selection_checked(
    name: &str,
    generation: Option<i64>,
    status: Option<&CompanySelectionStatus>,
) -> Result<(), (&'static str, String)> {
    let checked = status.filter(|s| s.observed_generation == generation);
    let Some(status) = checked else {
        return Err((
            "CompanySelectionNotChecked",
            format!(
                "CompanySelection {name} has not been checked against the source yet; runs \
                 start once it has"
            ),
        ));
    };
    match status.conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) if c.reason == "UnknownCompany" => Err((
            "UnknownCompany",
            format!(
                "CompanySelection {name}: {}; no run starts until it is fixed",
                c.message
            ),
        )),
        _ => Ok(()),
    }
}

/// The conditions that show a pending CloudReset, a conflict and Disable Cloud Migration.
fn request_conditions(o: &Observed<'_>, at: At, status: &mut MigrationScheduleStatus) {
    let spec = o.spec;
    at.set(
        &mut status.conditions,
        "Resetting",
        o.resetting.is_some(),
        if o.resetting.is_some() {
            "CloudReset"
        } else {
            "NoReset"
        },
        o.resetting
            .as_ref()
            .map(|r| format!("CloudReset {r} is pending: no run starts until it ends"))
            .unwrap_or_default(),
    );
    let conflicted = o.conflict.is_some();
    at.set(
        &mut status.conditions,
        "Conflict",
        conflicted,
        if conflicted {
            "SharedDatabase"
        } else {
            "NoConflict"
        },
        o.conflict.clone().unwrap_or_default(),
    );
    at.set(
        &mut status.conditions,
        "Disabled",
        spec.disabled,
        if spec.disabled { "Disabled" } else { "Enabled" },
        if spec.disabled {
            "spec.disabled is true".into()
        } else {
            String::new()
        },
    );
}

/// `Ready`: what stops runs, or a database that does not answer, or that all is well.
fn ready_condition(
    o: &Observed<'_>,
    at: At,
    status: &mut MigrationScheduleStatus,
    blocked: &Option<(&'static str, String)>,
) {
    let unreachable = o.reach.as_ref().and_then(|r| {
        let fix = "check the URL, the password Secret and the network path from the controller; \
                   the controller tries again every 5 minutes";
        match (&r.source, &r.target, r.target_reason) {
            (Err(e), _, _) => Some(("SourceUnreachable", format!("{e}. Fix: {fix}"))),
            // A lake's message names its fix.
            (_, Err(e), Some(reason)) => Some((
                reason,
                format!("{e}; the controller tries again every 5 minutes"),
            )),
            (_, Err(e), None) => Some(("TargetUnreachable", format!("{e}. Fix: {fix}"))),
            _ => None,
        }
    });
    match (blocked, unreachable) {
        // A key that cannot be made because the target does not answer: the target is named.
        (Some((reason, message)), _)
            if !matches!(
                *reason,
                "Disabled" | "Resetting" | "RotatingKey" | "RuntimeKeyNotReady"
            ) =>
        {
            at.set(
                &mut status.conditions,
                "Ready",
                false,
                reason,
                message.clone(),
            )
        }
        (_, Some((reason, message))) => {
            at.set(&mut status.conditions, "Ready", false, reason, message)
        }
        (Some(("RuntimeKeyNotReady", message)), None) => at.set(
            &mut status.conditions,
            "Ready",
            false,
            "RuntimeKeyNotReady",
            message.clone(),
        ),
        _ => at.set(
            &mut status.conditions,
            "Ready",
            true,
            "Valid",
            if o.reach.is_some() && crate::lake::store::is_lake_url(&o.spec.target.url) {
                "the schedule is valid, the source answers and the data lake's folder can be \
                 read with the key"
                    .into()
            } else if o.reach.is_some() {
                "the schedule is valid and both databases answer".into()
            } else {
                "the schedule is valid; the databases are being checked".into()
            },
        ),
    }
}

/// `TransportVerified`: a warning when a server connection does not verify its certificate
/// (`tls.mode` Disable or Require). Runs go on: the operator chose it. Pure.
fn transport_condition(spec: &MigrationScheduleSpec, at: At, status: &mut MigrationScheduleStatus) {
    let sides = [
        ("source", &spec.source.url, spec.source.tls.as_ref()),
        ("target", &spec.target.url, spec.target.tls.as_ref()),
    ];
    let mut unverified: Vec<String> = sides
        .iter()
        .filter(|(_, url, _)| !url.starts_with("sqlite:") && !crate::lake::store::is_lake_url(url))
        .filter_map(|(side, _, tls)| {
            let mode = tls.map(|t| t.mode).unwrap_or_default();
            (!mode.verifies()).then(|| format!("spec.{side}.tls.mode is {}", mode.as_str()))
        })
        .collect();
    let lake_endpoint = spec
        .target
        .lake
        .as_ref()
        .and_then(|l| l.endpoint.as_deref());
    if lake_endpoint.is_some_and(|e| e.starts_with("http://")) {
        unverified.push("spec.target.lake.endpoint is http:// (no TLS at all)".into());
    }
    if unverified.is_empty() {
        at.set(
            &mut status.conditions,
            "TransportVerified",
            true,
            "Verified",
            "every database server is reached over TLS with its certificate verified".into(),
        );
    } else {
        at.set(
            &mut status.conditions,
            "TransportVerified",
            false,
            "VerificationOff",
            format!(
                "{}: without a verified certificate an attacker on the network path can pose \
                 as the server and read or change the data (with Disable, anyone on the path \
                 reads it). Set tls.mode VerifyFull, with tls.caSecretRef for a private CA",
                unverified.join(", ")
            ),
        );
    }
}

/// `ChangeTracking`: whether the source has it, as the last probe saw.
fn tracking_condition(o: &Observed<'_>, at: At, status: &mut MigrationScheduleStatus) {
    if let Some(lacks) = o.reach.as_ref().and_then(|r| r.source_lacks.as_ref()) {
        return at.set(
            &mut status.conditions,
            "ChangeTracking",
            false,
            "MissingPrivileges",
            format!("{lacks}. Until then a run may copy tables in full or fail to track them"),
        );
    }
    match o.reach.as_ref().and_then(|r| r.tracking) {
        Some(true) => at.set(
            &mut status.conditions,
            "ChangeTracking",
            true,
            "Installed",
            "change tracking is installed in the source: runs copy what changed".into(),
        ),
        Some(false) => at.set(
            &mut status.conditions,
            "ChangeTracking",
            false,
            "NotInstalled",
            "change tracking is not in the source yet: the first run installs it".into(),
        ),
        None => at.unknown(
            &mut status.conditions,
            "ChangeTracking",
            "NotChecked",
            "the source has not answered yet".into(),
        ),
    }
}

/// Whether change tracking may be on the schedule's source: the probe saw it, or a run that
/// may install it is active, or runs were made and the source has not told otherwise. Then the
/// finalizer holds a deleted schedule until tracking is removed. Pure.
pub fn tracking_may_be_on(
    runs: &[RunView],
    reach: Option<&super::super::reach::Reach>,
    ran_before: bool,
) -> bool {
    let active = runs.iter().any(|r| r.result.is_none());
    match reach.and_then(|r| r.tracking) {
        Some(true) => true,
        Some(false) => active,
        None => !runs.is_empty() || ran_before,
    }
}

/// What the schedule needs in place before it decides its runs: its finalizer, put on before
/// its login role can exist and taken off once none can; and its runtime key. Pure.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prerequisites {
    /// Some(true): put the finalizer on; Some(false): take it off.
    pub finalizer: Option<bool>,
    pub key: Option<KeyStep>,
}

/// The prerequisites of a live schedule. It may make its key only while it is enabled, in no
/// conflict, and its target answers (a silent target is named by the probe, not tried here);
/// the finalizer holds it while a role may exist (`deletion::wanted`).
pub fn prerequisites(
    spec: &MigrationScheduleSpec,
    conflict: bool,
    target_silent: bool,
    key: &KeyView,
    holds_finalizer: bool,
    tracking_may_be_on: bool,
) -> Prerequisites {
    let may_act = !spec.disabled && !conflict && !target_silent;
    let wanted = super::deletion::wanted(key.role.is_some(), may_act, key.stored.is_some())
        || tracking_may_be_on;
    Prerequisites {
        finalizer: (wanted != holds_finalizer).then_some(wanted),
        key: key.step().filter(|_| may_act),
    }
}

/// Something that asks for a run now.
enum Due {
    Request(String),
    Immediate,
    Scheduled(DateTime<Utc>),
}

/// Step 2: what is due: a new run request, the first run (runImmediately), or the latest
/// scheduled time since the last one. A suspended schedule lets its due times pass.
fn due(
    o: &Observed<'_>,
    runs: &[RunView],
    schedule: Option<&CronSchedule>,
    status: &mut MigrationScheduleStatus,
) -> Option<Due> {
    let spec = o.spec;
    let cursor = status
        .last_schedule_time
        .as_ref()
        .map(to_utc)
        .unwrap_or(o.created);
    let request = spec
        .run_request
        .as_ref()
        .filter(|r| status.last_handled_run_request.as_ref() != Some(*r))
        .cloned();
    let immediate = spec.run_immediately
        && status.last_run.is_none()
        && runs.is_empty()
        && status.last_schedule_time.is_none();
    let due_time = schedule.and_then(|s| s.latest_due(cursor, o.now));
    if request.is_none() && status.pending_run_request.take().is_some() {
        // The request was taken back: nothing waits any more.
        status
            .conditions
            .retain(|c| !(c.type_ == "RunRequest" && c.reason == REQUEST_WAITING));
    }
    if let Some(token) = request {
        Some(Due::Request(token))
    } else if immediate {
        Some(Due::Immediate)
    } else if spec.suspend {
        // Suspended: due times pass without a run, and are not caught up afterwards.
        if let Some(t) = due_time {
            status.last_schedule_time = Some(time(t));
        }
        None
    } else {
        due_time.map(Due::Scheduled)
    }
}

/// What admit decided.
#[derive(Default)]
struct Admission {
    create: Option<NewRun>,
    stop: Option<String>,
    notes: Vec<Note>,
    /// Admit set the Scheduled condition (a run skipped or missed).
    scheduled_set: bool,
}

/// Step 3: whether the due run starts now. It does unless the gate blocks it, its starting
/// deadline has passed, or another run is active (Forbid skips a scheduled run; Replace stops
/// the active run and waits). A scheduled time is acknowledged once, whether it starts a run
/// or not; a run request is kept, waiting in `status.pendingRunRequest`, until its run starts.
fn admit(
    o: &Observed<'_>,
    runs: &[RunView],
    gate: &Gate,
    due: Due,
    at: At,
    status: &mut MigrationScheduleStatus,
) -> Admission {
    let spec = o.spec;
    let now = o.now;
    let mut out = Admission::default();
    let label = due_label(&due, gate);
    let skip = |status: &mut MigrationScheduleStatus,
                out: &mut Admission,
                event: &'static str,
                reason: &str,
                why: String| {
        out.notes.push(Note::warning(event, why.clone()));
        at.set(&mut status.conditions, "Scheduled", false, reason, why);
        out.scheduled_set = true;
        handled(&due, status);
    };
    let deadline_missed = match (&due, spec.starting_deadline_seconds) {
        (Due::Scheduled(t), Some(secs)) => (now - *t).num_seconds() > secs,
        _ => false,
    };
    let already = match &due {
        Due::Request(t) => runs.iter().find(|r| r.run_request.as_ref() == Some(t)),
        Due::Immediate => None,
        Due::Scheduled(t) => {
            let name = run_name(o.name, *t);
            runs.iter().find(|r| r.name == name)
        }
    };
    let active = runs.iter().find(|r| r.result.is_none());
    if let Some(run) = already {
        // Created before a restart that came before the acknowledgement: nothing to add.
        request_started(&due, &run.name, at, status);
        handled(&due, status);
    } else if let (Due::Request(token), Some((reason, why))) = (&due, &gate.blocked) {
        wait(token, (*reason, why), at, status, &mut out);
    } else if let Some((reason, why)) = &gate.blocked {
        let why = format!("{label} did not start: {why}");
        skip(status, &mut out, "RunSkipped", reason, why);
    } else if deadline_missed {
        let why = format!(
            "{label} was missed by more than startingDeadlineSeconds ({}s), while the \
             controller was not running; the next one starts on time",
            spec.starting_deadline_seconds.unwrap_or_default()
        );
        skip(status, &mut out, "RunMissed", "RunMissed", why);
    } else if let Some(a) = active {
        let replace = spec.concurrency_policy == ConcurrencyPolicy::Replace;
        if replace && !a.stop_requested {
            // Stop the active run; the due one starts once it has ended.
            out.stop = Some(a.name.clone());
            out.notes.push(Note::normal(
                "RunReplaced",
                format!(
                    "stopping run {} so that {label} can start (concurrencyPolicy Replace)",
                    a.name
                ),
            ));
        }
        if let Due::Request(token) = &due {
            let how = if replace {
                "is being stopped (concurrencyPolicy Replace)"
            } else {
                "is still active, and runs of one schedule never overlap"
            };
            let why = format!(
                "run {} {how}; the requested run starts once it has ended",
                a.name
            );
            wait(token, ("RunActive", &why), at, status, &mut out);
        } else if !replace {
            let why = format!(
                "{label} was skipped: run {} is still active, and runs of one schedule \
                 never overlap (concurrencyPolicy Forbid)",
                a.name
            );
            skip(status, &mut out, "RunSkipped", "SkippedActiveRun", why);
        }
    } else {
        let (name, trigger) = match &due {
            Due::Request(_) => (free_name(manual_run_name(o.name, now), runs), "Manual"),
            Due::Immediate => (run_name(o.name, o.created), "Immediate"),
            Due::Scheduled(t) => (run_name(o.name, *t), "Scheduled"),
        };
        out.notes.push(Note::normal(
            "RunCreated",
            format!("created MigrationRun {name} for {label}"),
        ));
        request_started(&due, &name, at, status);
        out.create = Some(NewRun {
            name,
            trigger,
            scheduled_time: match &due {
                Due::Scheduled(t) => Some(*t),
                _ => None,
            },
            run_request: match &due {
                Due::Request(t) => Some(t.clone()),
                _ => None,
            },
            companies: o.companies.clone().ok().flatten().unwrap_or_default(),
        });
        handled(&due, status);
    }
    out
}

/// How messages name what is due.
fn due_label(due: &Due, gate: &Gate) -> String {
    match due {
        Due::Request(t) => format!("the run requested by runRequest {t:?}"),
        Due::Immediate => "the first run (runImmediately)".to_string(),
        Due::Scheduled(t) => format!(
            "the run due at {}",
            gate.schedule
                .as_ref()
                .map(|s| s.local(*t))
                .unwrap_or_else(|| t.to_rfc3339())
        ),
    }
}

/// Marks what is due as handled: a run request as the last one handled, a scheduled time as
/// the last one.
fn handled(due: &Due, status: &mut MigrationScheduleStatus) {
    match due {
        Due::Request(t) => {
            status.last_handled_run_request = Some(t.clone());
            status.pending_run_request = None;
        }
        Due::Scheduled(t) => status.last_schedule_time = Some(time(*t)),
        Due::Immediate => {}
    }
}

/// The `RunRequest` condition of a request that started run `run`.
fn request_started(due: &Due, run: &str, at: At, status: &mut MigrationScheduleStatus) {
    if let Due::Request(token) = due {
        at.set(
            &mut status.conditions,
            "RunRequest",
            true,
            "RunStarted",
            format!("runRequest {token:?} started run {run}"),
        );
    }
}

/// The reason of the `RunRequest` condition while a request waits.
pub const REQUEST_WAITING: &str = "RunRequestWaiting";

/// Keeps the run request `token` waiting, held by `(reason, why)`: in
/// `status.pendingRunRequest` and the `RunRequest` condition, with an event when the wait
/// begins or what holds it changes.
fn wait(
    token: &str,
    (reason, why): (&'static str, &str),
    at: At,
    status: &mut MigrationScheduleStatus,
    out: &mut Admission,
) {
    let since = match &status.pending_run_request {
        Some(p) if p.token == token => {
            if p.reason != reason {
                out.notes.push(Note::normal(
                    REQUEST_WAITING,
                    format!("runRequest {token:?} now waits: {why}"),
                ));
            }
            p.since.clone()
        }
        _ => {
            out.notes.push(Note::normal(
                REQUEST_WAITING,
                format!("runRequest {token:?} waits: {why}"),
            ));
            Some(time(at.now))
        }
    };
    status.pending_run_request = Some(PendingRunRequest {
        token: token.to_string(),
        reason: reason.to_string(),
        message: why.to_string(),
        since,
    });
    at.set(
        &mut status.conditions,
        "RunRequest",
        false,
        REQUEST_WAITING,
        format!("runRequest {token:?} waits ({reason}): {why}"),
    );
}

/// Step 4: the next due time and the Scheduled condition (unless admit set it), the active
/// and newest runs, the tiles from the target's run log (for a data lake, from the newest run
/// that ended), and the last success. Returns the next due time.
fn summarize(
    o: &Observed<'_>,
    runs: &[RunView],
    gate: &Gate,
    admitted: &Admission,
    at: At,
    status: &mut MigrationScheduleStatus,
) -> Option<DateTime<Utc>> {
    let spec = o.spec;
    let schedule = gate.schedule.as_ref();
    let next = schedule.and_then(|s| {
        let from = status
            .last_schedule_time
            .as_ref()
            .map(to_utc)
            .unwrap_or(o.created)
            .max(o.now);
        s.next_after(from)
    });
    status.next_run_time = match (next, gate.blocked.is_none() && !spec.suspend) {
        (Some(t), true) => schedule.map(|s| s.local(t)),
        _ => None,
    };
    if !admitted.scheduled_set {
        let (ok, reason, msg) = match (&status.next_run_time, spec.schedule.is_some()) {
            (Some(t), _) => (true, "Scheduled", format!("the next run starts at {t}")),
            (None, false) => (
                false,
                "NoSchedule",
                "spec.schedule is empty: runs start only on spec.runRequest".to_string(),
            ),
            (None, true) if spec.suspend => (
                false,
                "Suspended",
                "spec.suspend is true: no scheduled run starts; runRequest still does".to_string(),
            ),
            (None, true) => (
                false,
                gate.blocked.as_ref().map(|b| b.0).unwrap_or("NoNextTime"),
                gate.blocked
                    .as_ref()
                    .map(|b| b.1.clone())
                    .unwrap_or_else(|| "the cron expression has no future time".into()),
            ),
        };
        at.set(&mut status.conditions, "Scheduled", ok, reason, msg);
    }

    let active = runs.iter().find(|r| r.result.is_none());
    status.active_run = match (&admitted.create, active) {
        (Some(new), _) => Some(new.name.clone()),
        (None, Some(a)) => Some(a.name.clone()),
        (None, None) => None,
    };
    if let Some(newest) = runs.first() {
        status.last_run = Some(summary(newest));
    }
    // The tiles come from the target's run log, through the probe of the databases; while the
    // probe has no answer, they stay as they were.
    if let Some(standing) = o.reach.as_ref().and_then(|r| r.standing) {
        status.migration = Some(tiles(&standing));
    } else if crate::lake::store::is_lake_url(&spec.target.url)
        && let Some(last) = runs
            .iter()
            .find(|r| r.result.is_some() && r.run_type != RunType::Diagnostic)
    {
        // A lake keeps no run log: its tiles are those of the newest run that ended.
        status.migration = Some(MigrationInformation {
            tables_migrated: last.counts.migrated,
            tables_with_warnings: last.counts.with_warnings,
            tables_failed: last.counts.failed,
            tables_not_migrated: last.counts.excluded,
            ..Default::default()
        });
    }
    if let Some(reach) = &o.reach {
        let e = &reach.endpoints;
        status.endpoints = (!e.source.is_empty() || !e.target.is_empty()).then(|| e.clone());
    }
    // A diagnostic run migrates nothing: it does not count as a success.
    let migrations = || runs.iter().filter(|r| r.run_type != RunType::Diagnostic);
    let last_success = migrations()
        .filter(|r| r.result == Some(RunResult::Succeeded))
        .filter_map(|r| r.completion_time.clone())
        .max_by_key(to_utc);
    if let Some(t) = last_success
        && status
            .last_successful_time
            .as_ref()
            .is_none_or(|old| to_utc(old) < to_utc(&t))
    {
        status.last_successful_time = Some(t);
    }
    next
}

/// The Migration Information tiles of a standing.
fn tiles(s: &Standing) -> MigrationInformation {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    MigrationInformation {
        tables_migrated: n(s.migrated),
        tables_with_warnings: n(s.with_warnings),
        tables_failed: n(s.failed),
        tables_not_migrated: n(s.by_design),
        tables_of_unselected_companies: n(s.company_not_selected),
        tables_filtered_out: n(s.filtered_out),
        tables_skipped_for_initialization: n(s.being_initialized),
        tables_not_started: n(s.not_started),
    }
}

/// Step 5: the finished runs the controller created beyond the history limits, oldest first
/// out: the newest `successful` succeeded runs and the newest `failed` others stay. A run a
/// person made is never deleted (a GitOps tool would only make it again).
fn prune(history: &History, runs: &[RunView]) -> Vec<String> {
    let (mut ok, mut other) = (0, 0);
    let mut delete = vec![];
    let mut finished: Vec<&RunView> = runs
        .iter()
        .filter(|r| r.result.is_some() && r.made_here)
        .collect();
    finished.sort_by(|a, b| {
        let end = |r: &RunView| r.completion_time.as_ref().map(to_utc).or(r.created);
        (end(b), &b.name).cmp(&(end(a), &a.name))
    });
    for r in finished {
        let (count, limit) = if r.result == Some(RunResult::Succeeded) {
            (&mut ok, history.successful)
        } else {
            (&mut other, history.failed)
        };
        *count += 1;
        if *count > limit.max(0) {
            delete.push(r.name.clone());
        }
    }
    delete
}

#[cfg(test)]
mod tests {
    use super::super::super::admission::conflict;
    use super::*;
    use crate::api::schedule::ResolvedEndpoints;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    fn spec(schedule: Option<&str>) -> MigrationScheduleSpec {
        serde_json::from_value(serde_json::json!({
            "source": {"url": "postgres://erp.example:5432/nav"},
            "target": {"url": "postgres://cloud.example:5432/bc"},
            "schedule": schedule,
        }))
        .unwrap()
    }

    #[test]
    fn the_finalizer_comes_before_the_key_and_goes_once_no_role_can_exist() {
        use super::super::super::runtime_key::SecretView;
        let enabled = spec(None);
        let no_key = KeyView {
            role: Some("cloudmigrate_rt_erp".into()),
            secret: "erp-runtime-key".into(),
            ..Default::default()
        };
        // A new schedule: the finalizer goes on, and the key is made.
        assert_eq!(
            prerequisites(&enabled, false, false, &no_key, false, false),
            Prerequisites {
                finalizer: Some(true),
                key: Some(KeyStep::Create),
            }
        );
        // A stored key the role does not have yet is set on it; one in effect needs nothing.
        let mut stored = no_key.clone();
        stored.stored = Some(SecretView {
            fingerprint: Some("sha256:1".into()),
            ..Default::default()
        });
        let set = prerequisites(&enabled, false, false, &stored, true, false);
        assert_eq!(set.key, Some(KeyStep::SetOnRole));
        assert_eq!(set.finalizer, None);
        let mut in_effect = stored.clone();
        if let Some(s) = in_effect.stored.as_mut() {
            s.applied = s.fingerprint.clone();
        }
        assert_eq!(
            prerequisites(&enabled, false, false, &in_effect, true, false),
            Prerequisites::default()
        );
        // In conflict, or with a silent target, nothing is made; the finalizer stays while the
        // key Secret does.
        for (conflict, silent) in [(true, false), (false, true)] {
            let p = prerequisites(&enabled, conflict, silent, &stored, true, false);
            assert_eq!(p, Prerequisites::default(), "{conflict} {silent}");
            let p = prerequisites(&enabled, conflict, silent, &no_key, true, false);
            assert_eq!(p.finalizer, Some(false), "{conflict} {silent}");
        }
        // Disabled and revoked: the finalizer comes off. A SQLite target needs neither.
        let mut disabled = spec(None);
        disabled.disabled = true;
        assert_eq!(
            prerequisites(&disabled, false, false, &no_key, true, false).finalizer,
            Some(false)
        );
        let file = KeyView::default();
        assert_eq!(
            prerequisites(&enabled, false, false, &file, false, false),
            Prerequisites::default()
        );
        // Change tracking may be on the source: the finalizer holds even a SQLite target's
        // schedule, and a disabled one, until it is removed.
        assert_eq!(
            prerequisites(&enabled, false, false, &file, false, true).finalizer,
            Some(true)
        );
        assert_eq!(
            prerequisites(&disabled, false, false, &no_key, true, true).finalizer,
            None
        );
    }

    fn observe<'a>(spec: &'a MigrationScheduleSpec, now: DateTime<Utc>) -> Observed<'a> {
        Observed {
            name: "nightly",
            generation: Some(1),
            created: utc(2026, 5, 1, 0, 0),
            spec,
            status: MigrationScheduleStatus::default(),
            runs: vec![],
            conflict: None,
            conflict_pending: false,
            companies: Ok(None),
            resetting: None,
            reach: None,
            rotating: None,
            key: KeyView::default(),
            company_views: vec![],
            users_mapped: false,
            runner_refused: None,
            release: None,
            now,
        }
    }

    fn condition(d: &Decision, t: &str) -> (String, String) {
        let c = d.status.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone())
    }

    fn done(name: &str, result: RunResult, end: DateTime<Utc>) -> RunView {
        RunView {
            name: name.into(),
            created: Some(end - chrono::Duration::minutes(5)),
            result: Some(result),
            completion_time: Some(time(end)),
            made_here: true,
            ..Default::default()
        }
    }

    #[test]
    fn an_invalid_cron_is_not_ready_and_starts_nothing() {
        let s = spec(Some("0 2 * *"));
        let d = decide(observe(&s, utc(2026, 5, 2, 3, 0)));
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "InvalidSchedule".into())
        );
        assert!(d.create.is_none());
        assert!(d.status.next_run_time.is_none());
        let mut s = spec(Some("0 2 * * *"));
        s.time_zone = "Nowhere/Special".into();
        let d = decide(observe(&s, utc(2026, 5, 2, 3, 0)));
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "InvalidTimeZone".into())
        );
    }

    #[test]
    fn ready_and_change_tracking_follow_the_probe_of_the_databases() {
        use super::super::super::reach::Reach;
        let s = spec(Some("0 2 * * *"));
        let d = decide(observe(&s, utc(2026, 5, 2, 3, 0)));
        assert_eq!(condition(&d, "Ready"), ("True".into(), "Valid".into()));
        assert_eq!(
            condition(&d, "ChangeTracking"),
            ("Unknown".into(), "NotChecked".into())
        );
        let mut o = observe(&s, utc(2026, 5, 2, 3, 0));
        o.reach = Some(Reach {
            source: Ok(()),
            target: Err(
                "target database: cannot connect to postgres://cloud.example:5432/bc: \
                         connection refused"
                    .into(),
            ),
            target_reason: None,
            tracking: Some(false),
            source_lacks: None,
            not_migrated: None,
            standing: None,
            endpoints: Default::default(),
        });
        let d = decide(o);
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "TargetUnreachable".into())
        );
        let ready = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert!(
            ready.message.contains("connection refused"),
            "{}",
            ready.message
        );
        assert!(
            ready.message.contains("Fix: check the URL"),
            "{}",
            ready.message
        );
        assert_eq!(
            condition(&d, "ChangeTracking"),
            ("False".into(), "NotInstalled".into())
        );
        let mut o = observe(&s, utc(2026, 5, 2, 3, 0));
        o.reach = Some(Reach {
            source: Ok(()),
            target: Ok(()),
            target_reason: None,
            tracking: Some(true),
            source_lacks: None,
            not_migrated: None,
            standing: None,
            endpoints: Default::default(),
        });
        let d = decide(o);
        assert_eq!(condition(&d, "Ready"), ("True".into(), "Valid".into()));
        assert_eq!(
            condition(&d, "ChangeTracking"),
            ("True".into(), "Installed".into())
        );
        let mut o = observe(&s, utc(2026, 5, 2, 3, 0));
        o.reach = Some(Reach {
            source: Ok(()),
            target: Ok(()),
            target_reason: None,
            tracking: Some(false),
            source_lacks: Some("the migration login lacks ... (`GRANT \"erp\" TO \"mig\"`)".into()),
            not_migrated: None,
            standing: None,
            endpoints: Default::default(),
        });
        let d = decide(o);
        assert_eq!(
            condition(&d, "ChangeTracking"),
            ("False".into(), "MissingPrivileges".into())
        );
    }

    #[test]
    fn a_pending_reset_holds_every_run_and_says_so() {
        let mut s = spec(Some("0 2 * * *"));
        s.run_request = Some("now".into());
        let mut o = observe(&s, utc(2026, 5, 2, 2, 0));
        o.resetting = Some("again".into());
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            condition(&d, "Resetting"),
            ("True".into(), "CloudReset".into())
        );
        assert_eq!(condition(&d, "Ready").0, "True");
        let d = decide(observe(&s, utc(2026, 5, 2, 2, 0)));
        assert!(d.create.is_some());
        assert_eq!(condition(&d, "Resetting").0, "False");
    }

    #[test]
    fn a_due_time_creates_one_named_run_and_advances() {
        let s = spec(Some("0 2 * * *"));
        let d = decide(observe(&s, utc(2026, 5, 2, 2, 0)));
        let new = d.create.clone().unwrap();
        assert_eq!(new.name, "nightly-202605020200");
        assert_eq!(new.trigger, "Scheduled");
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 2, 2, 0)))
        );
        assert_eq!(
            d.status.next_run_time.as_deref(),
            Some("2026-05-03T02:00:00+00:00")
        );
        assert_eq!(d.status.active_run.as_deref(), Some("nightly-202605020200"));
        assert_eq!(condition(&d, "Scheduled").0, "True");
    }

    #[test]
    fn a_run_records_the_companies_of_the_oldest_selection() {
        let selection = |companies: serde_json::Value| -> CompanySelectionSpec {
            serde_json::from_value(serde_json::json!({
                "scheduleRef": {"name": "nightly"}, "companies": companies
            }))
            .unwrap()
        };
        let older = selection(serde_json::json!([
            {"name": "FABRIKAM"}, {"name": "CRONUS"}, {"name": "ADATUM", "migrate": false}
        ]));
        let newer = selection(serde_json::json!([{"name": "ADATUM"}]));
        let none = selection(serde_json::json!([{"name": "CRONUS", "migrate": false}]));
        assert_eq!(selected_companies(&[]), Ok(None));
        let chosen = selected_companies(&[
            ("b-newer", utc(2026, 5, 2, 0, 0), &newer),
            ("a-older", utc(2026, 5, 1, 0, 0), &older),
        ]);
        assert_eq!(chosen, Ok(Some(vec!["CRONUS".into(), "FABRIKAM".into()])));

        let s = spec(Some("0 2 * * *"));
        let mut o = observe(&s, utc(2026, 5, 2, 2, 0));
        o.companies = chosen.map_err(|e| ("NoCompanySelected", e));
        let d = decide(o);
        assert_eq!(d.create.unwrap().companies, vec!["CRONUS", "FABRIKAM"]);

        // A selection of none starts nothing, and says what to do.
        let refused = selected_companies(&[("only", utc(2026, 5, 1, 0, 0), &none)]);
        let why = refused.clone().unwrap_err();
        assert!(
            why.contains("CompanySelection only selects no company"),
            "{why}"
        );
        let mut o = observe(&s, utc(2026, 5, 2, 2, 0));
        o.companies = refused.map_err(|e| ("NoCompanySelected", e));
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "NoCompanySelected".into())
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_time() {
        let s = spec(Some("0 2 * * *"));
        let d = decide(observe(&s, utc(2026, 5, 1, 1, 59)));
        assert!(d.create.is_none());
        assert_eq!(d.requeue, Requeue::At(Duration::from_secs(60)));
    }

    #[test]
    fn after_downtime_only_the_latest_missed_run_starts() {
        let s = spec(Some("0 * * * *"));
        let mut o = observe(&s, utc(2026, 5, 1, 14, 10));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 9, 0)));
        let d = decide(o);
        assert_eq!(d.create.unwrap().name, "nightly-202605011400");
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 1, 14, 0)))
        );
    }

    #[test]
    fn a_missed_run_past_its_deadline_is_skipped() {
        let mut s = spec(Some("0 * * * *"));
        s.starting_deadline_seconds = Some(300);
        let mut o = observe(&s, utc(2026, 5, 1, 14, 10));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 9, 0)));
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            condition(&d, "Scheduled"),
            ("False".into(), "RunMissed".into())
        );
        assert_eq!(d.notes[0].reason, "RunMissed");
        // The missed time is consumed: the next look does not start it.
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 1, 14, 0)))
        );
        // Within the deadline it starts.
        let mut o = observe(&s, utc(2026, 5, 1, 14, 4));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 9, 0)));
        assert!(decide(o).create.is_some());
    }

    #[test]
    fn a_due_run_while_one_is_active_is_skipped_with_a_reason() {
        let s = spec(Some("0 * * * *"));
        let mut o = observe(&s, utc(2026, 5, 1, 14, 0));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 13, 0)));
        o.runs = vec![RunView {
            name: "nightly-202605011300".into(),
            created: Some(utc(2026, 5, 1, 13, 0)),
            ..Default::default()
        }];
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            condition(&d, "Scheduled"),
            ("False".into(), "SkippedActiveRun".into())
        );
        assert!(d.notes[0].message.contains("nightly-202605011300"));
        assert_eq!(d.status.active_run.as_deref(), Some("nightly-202605011300"));
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 1, 14, 0)))
        );
    }

    #[test]
    fn replace_stops_the_active_run_and_waits_for_it() {
        let mut s = spec(Some("0 * * * *"));
        s.concurrency_policy = ConcurrencyPolicy::Replace;
        let mut o = observe(&s, utc(2026, 5, 1, 14, 0));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 13, 0)));
        o.runs = vec![RunView {
            name: "old".into(),
            ..Default::default()
        }];
        let d = decide(o.clone());
        assert_eq!(d.stop.as_deref(), Some("old"));
        assert!(d.create.is_none());
        // Not consumed: once the old run has ended, the due run starts.
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 1, 13, 0)))
        );
        o.runs[0].result = Some(RunResult::Stopped);
        assert_eq!(decide(o).create.unwrap().name, "nightly-202605011400");
    }

    #[test]
    fn suspend_stops_new_runs_and_does_not_catch_up() {
        let mut s = spec(Some("0 * * * *"));
        s.suspend = true;
        let mut o = observe(&s, utc(2026, 5, 1, 14, 0));
        o.status.last_schedule_time = Some(time(utc(2026, 5, 1, 13, 0)));
        let d = decide(o);
        assert!(d.create.is_none());
        assert!(d.status.next_run_time.is_none());
        assert_eq!(
            condition(&d, "Scheduled"),
            ("False".into(), "Suspended".into())
        );
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 1, 14, 0)))
        );
    }

    #[test]
    fn a_new_run_request_starts_exactly_one_run() {
        let mut s = spec(None);
        s.run_request = Some("2026-05-01 please".into());
        let now = utc(2026, 5, 1, 10, 30);
        let d = decide(observe(&s, now));
        let new = d.create.clone().unwrap();
        assert_eq!(new.trigger, "Manual");
        assert_eq!(new.run_request.as_deref(), Some("2026-05-01 please"));
        assert_eq!(
            d.status.last_handled_run_request.as_deref(),
            Some("2026-05-01 please")
        );
        // Acknowledged: the same token starts nothing more.
        let mut o = observe(&s, now);
        o.status = d.status.clone();
        assert!(decide(o).create.is_none());
        // Created, but the acknowledgement was lost in a restart: the run is found, not doubled.
        let mut o = observe(&s, now + chrono::Duration::minutes(1));
        o.runs = vec![RunView {
            name: new.name.clone(),
            run_request: Some("2026-05-01 please".into()),
            ..Default::default()
        }];
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            d.status.last_handled_run_request.as_deref(),
            Some("2026-05-01 please")
        );
        assert_eq!(
            condition(&d, "Scheduled"),
            ("False".into(), "NoSchedule".into())
        );
    }

    #[test]
    fn a_run_request_waits_for_the_active_run_then_starts_exactly_one() {
        let mut s = spec(None);
        s.run_request = Some("t1".into());
        let now = utc(2026, 5, 1, 10, 30);
        let mut o = observe(&s, now);
        o.runs = vec![RunView {
            name: "by-hand".into(),
            created: Some(now - chrono::Duration::minutes(3)),
            ..Default::default()
        }];
        let d = decide(o.clone());
        assert!(d.create.is_none());
        assert_eq!(d.status.last_handled_run_request, None, "not used up");
        let pending = d.status.pending_run_request.clone().unwrap();
        assert_eq!(
            (pending.token.as_str(), pending.reason.as_str()),
            ("t1", "RunActive")
        );
        assert!(pending.message.contains("by-hand"), "{}", pending.message);
        assert_eq!(
            condition(&d, "RunRequest"),
            ("False".into(), REQUEST_WAITING.into())
        );
        assert_eq!(d.notes.len(), 1);
        // Seen again while it waits: the same wait, no new event.
        o.status = d.status.clone();
        o.now = now + chrono::Duration::minutes(1);
        let again = decide(o.clone());
        assert!(again.notes.is_empty() && again.create.is_none());
        assert_eq!(
            again.status.pending_run_request.unwrap().since,
            pending.since
        );
        // The active run ended: one run starts, and the request is handled.
        o.runs[0].result = Some(RunResult::Succeeded);
        let d = decide(o.clone());
        let new = d.create.clone().unwrap();
        assert_eq!(new.run_request.as_deref(), Some("t1"));
        assert_eq!(d.status.last_handled_run_request.as_deref(), Some("t1"));
        assert_eq!(d.status.pending_run_request, None);
        assert_eq!(
            condition(&d, "RunRequest"),
            ("True".into(), "RunStarted".into())
        );
        o.status = d.status;
        assert!(decide(o).create.is_none(), "exactly one");
    }

    #[test]
    fn a_run_request_waits_while_the_schedule_is_held_and_can_be_taken_back() {
        let mut s = spec(None);
        s.run_request = Some("t2".into());
        let mut o = observe(&s, utc(2026, 5, 1, 10, 30));
        o.rotating = Some("rotate-1".into());
        let d = decide(o.clone());
        assert!(d.create.is_none());
        let pending = d.status.pending_run_request.clone().unwrap();
        assert_eq!(pending.reason, "RotatingKey");
        assert!(pending.message.contains("rotate-1"), "{}", pending.message);
        // The rotation ended: the run starts.
        o.status = d.status.clone();
        o.rotating = None;
        assert_eq!(
            decide(o.clone()).create.unwrap().run_request.as_deref(),
            Some("t2")
        );
        // Taken back while it waits: nothing is pending, and nothing starts.
        let mut withdrawn = s.clone();
        withdrawn.run_request = None;
        let mut o2 = observe(&withdrawn, utc(2026, 5, 1, 10, 31));
        o2.status = d.status;
        o2.rotating = Some("rotate-1".into());
        let d = decide(o2);
        assert!(d.create.is_none() && d.status.pending_run_request.is_none());
        assert!(!d.status.conditions.iter().any(|c| c.type_ == "RunRequest"));
    }

    #[test]
    fn a_selection_with_an_unknown_company_holds_every_run() {
        let status = |generation: i64, reason: &str| -> CompanySelectionStatus {
            serde_json::from_value(serde_json::json!({
                "observedGeneration": generation,
                "conditions": [{"type": "Ready", "status": "False", "reason": reason,
                    "message": "the source has no company \"My Compny\" (did you mean \"My Company\"?)",
                    "lastTransitionTime": "2026-12-01T00:00:00Z"}]
            }))
            .unwrap()
        };
        let unknown = status(2, "UnknownCompany");
        let err = selection_checked("pick", Some(2), Some(&unknown)).unwrap_err();
        assert_eq!(err.0, "UnknownCompany");
        assert!(err.1.contains("did you mean \"My Company\""), "{}", err.1);
        // Checked in an older generation, or not at all: not yet known.
        assert_eq!(
            selection_checked("pick", Some(3), Some(&unknown))
                .unwrap_err()
                .0,
            "CompanySelectionNotChecked"
        );
        assert_eq!(
            selection_checked("pick", Some(1), None).unwrap_err().0,
            "CompanySelectionNotChecked"
        );
        // A source it could not read holds nothing here.
        assert!(selection_checked("pick", Some(2), Some(&status(2, "SourceUnreadable"))).is_ok());

        let mut s = spec(None);
        s.run_request = Some("t4".into());
        let mut o = observe(&s, utc(2026, 5, 2, 2, 0));
        o.companies = Err(err);
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "UnknownCompany".into())
        );
        assert_eq!(
            d.status.pending_run_request.unwrap().reason,
            "UnknownCompany"
        );
    }

    #[test]
    fn a_suspended_schedule_still_starts_a_requested_run() {
        let mut s = spec(Some("0 * * * *"));
        s.suspend = true;
        s.run_request = Some("t3".into());
        let d = decide(observe(&s, utc(2026, 5, 1, 14, 0)));
        assert_eq!(d.create.unwrap().trigger, "Manual");
    }

    #[test]
    fn a_restart_finds_the_scheduled_run_it_created_before() {
        let s = spec(Some("0 2 * * *"));
        let mut o = observe(&s, utc(2026, 5, 2, 2, 1));
        o.runs = vec![RunView {
            name: "nightly-202605020200".into(),
            ..Default::default()
        }];
        let d = decide(o);
        assert!(d.create.is_none());
        assert_eq!(
            d.status.last_schedule_time,
            Some(time(utc(2026, 5, 2, 2, 0)))
        );
    }

    #[test]
    fn run_immediately_starts_the_first_run_once() {
        let mut s = spec(Some("0 2 * * *"));
        s.run_immediately = true;
        let d = decide(observe(&s, utc(2026, 5, 1, 0, 0)));
        let new = d.create.unwrap();
        assert_eq!(
            (new.name.as_str(), new.trigger),
            ("nightly-202605010000", "Immediate")
        );
        let mut o = observe(&s, utc(2026, 5, 1, 0, 1));
        o.runs = vec![RunView {
            name: new.name,
            ..Default::default()
        }];
        assert!(decide(o).create.is_none());
    }

    #[test]
    fn a_person_created_run_counts_and_is_never_pruned() {
        let mut s = spec(None);
        s.history = History {
            successful: 0,
            failed: 0,
        };
        let mut o = observe(&s, utc(2026, 5, 1, 0, 0));
        o.runs = vec![RunView {
            name: "by-hand".into(),
            ..Default::default()
        }];
        let d = decide(o);
        assert_eq!(d.status.active_run.as_deref(), Some("by-hand"));
        let mut o = observe(&s, utc(2026, 5, 1, 0, 0));
        o.runs = vec![RunView {
            made_here: false,
            ..done("by-hand", RunResult::Succeeded, utc(2026, 5, 1, 0, 0))
        }];
        assert!(decide(o).delete.is_empty());
    }

    #[test]
    fn history_keeps_the_newest_within_each_limit() {
        let mut s = spec(None);
        s.history = History {
            successful: 2,
            failed: 1,
        };
        let mut o = observe(&s, utc(2026, 5, 10, 0, 0));
        o.runs = vec![
            done("s1", RunResult::Succeeded, utc(2026, 5, 1, 0, 0)),
            done("s2", RunResult::Succeeded, utc(2026, 5, 2, 0, 0)),
            done("s3", RunResult::Succeeded, utc(2026, 5, 3, 0, 0)),
            done("f1", RunResult::Failed, utc(2026, 5, 4, 0, 0)),
            done("p1", RunResult::PartiallySucceeded, utc(2026, 5, 5, 0, 0)),
            RunView {
                name: "active".into(),
                created: Some(utc(2026, 5, 9, 0, 0)),
                ..Default::default()
            },
        ];
        let d = decide(o);
        let mut deleted = d.delete.clone();
        deleted.sort();
        assert_eq!(deleted, vec!["f1".to_string(), "s1".to_string()]);
        assert_eq!(d.status.last_run.as_ref().unwrap().name, "active");
        assert_eq!(
            d.status.last_successful_time,
            Some(time(utc(2026, 5, 3, 0, 0)))
        );
    }

    #[test]
    fn a_second_schedule_on_the_same_database_is_in_conflict() {
        let a = spec(Some("0 2 * * *"));
        let mut b = spec(Some("0 3 * * *"));
        b.target.url = "postgres://other.example/bc".into();
        b.source.url = "postgresql://erp.example/nav".into(); // same database, other spelling
        let older = ("a", utc(2026, 1, 1, 0, 0), &a, None);
        let why = conflict(("b", utc(2026, 2, 1, 0, 0), &b, None), [older]).unwrap();
        assert!(why.contains("same source"), "{why}");
        // The older one keeps running.
        assert!(conflict(older, [("b", utc(2026, 2, 1, 0, 0), &b, None)]).is_none());
        // Two sources into one target.
        let mut c = spec(None);
        c.source.url = "mysql://gp.example/gp".into();
        assert!(
            conflict(("c", utc(2026, 3, 1, 0, 0), &c, None), [older])
                .unwrap()
                .contains("same target")
        );
        // Different databases on one server are fine.
        let mut d = spec(None);
        d.source.url = "postgres://erp.example/other".into();
        d.target.url = "postgres://cloud.example/other".into();
        assert!(conflict(("d", utc(2026, 3, 1, 0, 0), &d, None), [older]).is_none());

        // Two names of one server: the addresses they resolved to decide.
        let mut e = spec(None);
        e.source.url = "postgres://erp-alias.example/nav".into();
        e.target.url = "postgres://cloud-alias.example/bc2".into();
        let resolved = |source: &str, target: &str| ResolvedEndpoints {
            source: vec![format!("postgres://{source}:5432/nav")],
            target: vec![format!("postgres://{target}:5432/bc2")],
        };
        let (a_at, e_at) = (
            resolved("10.0.0.5", "10.0.1.9"),
            resolved("10.0.0.5", "10.0.1.7"),
        );
        let older_at = ("a", utc(2026, 1, 1, 0, 0), &a, Some(&a_at));
        let newer = ("e", utc(2026, 3, 1, 0, 0), &e, Some(&e_at));
        let why_e = conflict(newer, [older_at]).unwrap();
        assert!(why_e.contains("same source"), "{why_e}");
        // Unknown addresses: the URLs alone decide, and these differ.
        assert!(conflict(("e", utc(2026, 3, 1, 0, 0), &e, None), [older]).is_none());
        // The same address, another database: no conflict.
        let other_db = resolved("10.0.0.5", "10.0.1.9");
        let mut f = spec(None);
        f.source.url = "postgres://erp-alias.example/other".into();
        f.target.url = "postgres://cloud-alias.example/other".into();
        let f_at = ResolvedEndpoints {
            source: other_db
                .source
                .iter()
                .map(|s| s.replace("/nav", "/other"))
                .collect(),
            target: other_db
                .target
                .iter()
                .map(|s| s.replace("/bc2", "/other"))
                .collect(),
        };
        assert!(conflict(("f", utc(2026, 3, 1, 0, 0), &f, Some(&f_at)), [older_at]).is_none());

        let mut o = observe(&b, utc(2026, 5, 2, 3, 0));
        o.conflict = Some(why);
        let dec = decide(o);
        assert!(dec.create.is_none());
        assert_eq!(dec.requeue, Requeue::Recheck(Duration::from_secs(60)));
        assert_eq!(condition(&dec, "Conflict").0, "True");
        assert_eq!(
            condition(&dec, "Ready"),
            ("False".into(), "Conflict".into())
        );
    }

    #[test]
    fn two_run_requests_in_one_second_get_two_runs() {
        let mut s = spec(None);
        s.run_request = Some("second".into());
        let now = utc(2026, 5, 1, 10, 30);
        let mut o = observe(&s, now);
        o.status.last_handled_run_request = Some("first".into());
        o.runs = vec![done(
            &manual_run_name("nightly", now),
            RunResult::Succeeded,
            now,
        )];
        let d = decide(o);
        assert_eq!(d.create.unwrap().name, "nightly-20260501103000-2");
    }

    #[test]
    fn a_diagnostic_run_is_not_a_migration() {
        let s = spec(None);
        let mut o = observe(&s, utc(2026, 5, 10, 0, 0));
        let mut diagnostic = done("diag", RunResult::Succeeded, utc(2026, 5, 9, 0, 0));
        diagnostic.run_type = RunType::Diagnostic;
        let migration = done("full", RunResult::Failed, utc(2026, 5, 8, 0, 0));
        o.runs = vec![diagnostic, migration];
        let d = decide(o);
        assert!(d.status.last_successful_time.is_none());
        // It is still the last run.
        assert_eq!(d.status.last_run.unwrap().name, "diag");
    }

    #[test]
    fn the_tiles_come_from_the_run_log_and_stay_while_the_probe_has_none() {
        use super::super::super::reach::Reach;
        let s = spec(None);
        let mut o = observe(&s, utc(2026, 5, 10, 0, 0));
        o.runs = vec![done("full", RunResult::Failed, utc(2026, 5, 8, 0, 0))];
        o.status.migration = Some(MigrationInformation {
            tables_migrated: 7,
            ..Default::default()
        });
        // No answer from the probe yet: the tiles stay as they were.
        let d = decide(o.clone());
        assert_eq!(d.status.migration.as_ref().unwrap().tables_migrated, 7);
        o.reach = Some(Reach {
            source: Ok(()),
            target: Ok(()),
            target_reason: None,
            tracking: Some(true),
            source_lacks: None,
            not_migrated: None,
            standing: Some(Standing {
                migrated: 40,
                with_warnings: 2,
                failed: 1,
                by_design: 3,
                company_not_selected: 20,
                filtered_out: 4,
                being_initialized: 10,
                not_started: 5,
            }),
            endpoints: Default::default(),
        });
        let m = decide(o).status.migration.unwrap();
        assert_eq!(
            (
                m.tables_migrated,
                m.tables_with_warnings,
                m.tables_failed,
                m.tables_not_migrated,
                m.tables_of_unselected_companies,
                m.tables_filtered_out,
                m.tables_skipped_for_initialization,
                m.tables_not_started
            ),
            (40, 2, 1, 3, 20, 4, 10, 5),
            "each count in its own tile"
        );
    }

    #[test]
    fn a_runner_the_operator_did_not_allow_holds_every_run() {
        let s = spec(Some("0 2 * * *"));
        let mut o = observe(&s, utc(2026, 5, 2, 3, 0));
        o.runner_refused = Some("runner: InProcess is not allowed in namespace shop".into());
        let d = decide(o);
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "RunnerNotAllowed".into())
        );
        assert!(d.create.is_none());
    }

    #[test]
    fn a_lake_target_says_why_its_key_fails_and_takes_its_tiles_from_the_newest_run() {
        use super::super::super::reach::Reach;
        let mut s = spec(None);
        s.target.url = "az://lake/bc".into();
        s.target.lake = Some(crate::api::common::LakeOptions {
            account: Some("devstoreaccount1".into()),
            endpoint: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            ..Default::default()
        });
        let mut o = observe(&s, utc(2026, 5, 10, 0, 0));
        o.reach = Some(Reach {
            source: Ok(()),
            target: Err("target data lake: the lake refused the credentials".into()),
            target_reason: Some("LakeAccessDenied"),
            tracking: Some(true),
            source_lacks: None,
            not_migrated: None,
            standing: None,
            endpoints: Default::default(),
        });
        let mut newest = done("second", RunResult::Succeeded, utc(2026, 5, 9, 0, 0));
        newest.counts = Counts {
            migrated: 12,
            with_warnings: 1,
            failed: 0,
            excluded: 4,
        };
        let mut diagnostic = done("diag", RunResult::Succeeded, utc(2026, 5, 9, 1, 0));
        diagnostic.run_type = RunType::Diagnostic;
        diagnostic.counts.migrated = 99;
        o.runs = vec![
            diagnostic,
            newest,
            done("first", RunResult::Failed, utc(2026, 5, 8, 0, 0)),
        ];
        let d = decide(o);
        assert_eq!(
            condition(&d, "Ready"),
            ("False".into(), "LakeAccessDenied".into())
        );
        assert_eq!(
            condition(&d, "RuntimeKey"),
            ("False".into(), "NoLoginRoles".into())
        );
        assert_eq!(
            condition(&d, "TransportVerified"),
            ("False".into(), "VerificationOff".into())
        );
        let m = d.status.migration.unwrap();
        assert_eq!(
            (
                m.tables_migrated,
                m.tables_with_warnings,
                m.tables_not_migrated
            ),
            (12, 1, 4)
        );
    }

    #[test]
    fn a_run_a_person_made_is_never_pruned() {
        let mut s = spec(None);
        s.history = History {
            successful: 0,
            failed: 0,
        };
        let mut o = observe(&s, utc(2026, 5, 10, 0, 0));
        let mut by_hand = done("by-hand", RunResult::Succeeded, utc(2026, 5, 1, 0, 0));
        by_hand.made_here = false;
        o.runs = vec![
            by_hand,
            done("made", RunResult::Succeeded, utc(2026, 5, 2, 0, 0)),
        ];
        assert_eq!(decide(o).delete, vec!["made".to_string()]);
    }
}
