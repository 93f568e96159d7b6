//! What a MigrationSchedule should do now, as a pure function of what the reconciler observed:
//! which run to start, which runs to stop or prune, and the status to write.

use super::clock::{time, utc as to_utc};
use super::conditions;
use super::cron::CronSchedule;
use crate::api::run::{RunResult, RunType};
use crate::api::schedule::{
    ConcurrencyPolicy, MigrationInformation, MigrationScheduleSpec, MigrationScheduleStatus,
    RunSummary,
};
use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// Annotation on a run that names the `spec.runRequest` token it was started for.
pub const RUN_REQUEST_ANNOTATION: &str = "cloudmigrate.io/run-request";
/// Annotation on a run: Scheduled, Manual or Immediate.
pub const TRIGGER_ANNOTATION: &str = "cloudmigrate.io/trigger";
/// Annotation on a scheduled run: the due time it was started for (RFC 3339, UTC).
pub const SCHEDULED_TIME_ANNOTATION: &str = "cloudmigrate.io/scheduled-time";

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
    pub owned: bool,
    pub counts: Counts,
}

/// Table counts of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub migrated: i64,
    pub with_warnings: i64,
    pub failed: i64,
    pub not_migrated: i64,
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
    pub now: DateTime<Utc>,
}

/// A run to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRun {
    pub name: String,
    /// Scheduled, Manual or Immediate.
    pub trigger: &'static str,
    pub scheduled_time: Option<DateTime<Utc>>,
    pub run_request: Option<String>,
}

/// A Kubernetes event to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub create: Option<NewRun>,
    /// Runs to adopt: a person created them for this schedule without an owner reference.
    pub adopt: Vec<String>,
    /// An active run to stop (concurrencyPolicy Replace).
    pub stop: Option<String>,
    /// Finished runs beyond the history limits.
    pub delete: Vec<String>,
    pub status: MigrationScheduleStatus,
    pub notes: Vec<Note>,
    /// When to look again even if nothing changes.
    pub requeue_after: Duration,
}

/// The name of a scheduled run: the schedule's name and the due minute in UTC.
pub fn run_name(schedule: &str, at: DateTime<Utc>) -> String {
    format!("{schedule}-{}", at.format("%Y%m%d%H%M"))
}

/// The name of a manual run: like a scheduled one, to the second.
pub fn manual_run_name(schedule: &str, at: DateTime<Utc>) -> String {
    format!("{schedule}-{}", at.format("%Y%m%d%H%M%S"))
}

/// How a schedule's database URL names its database, for spotting two schedules on one
/// database: scheme, host, port and database, without user or password; SQLite by file.
pub fn database_identity(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.scheme() == "sqlite" => {
            format!("sqlite:{}{}", u.host_str().unwrap_or_default(), u.path())
        }
        Ok(u) => {
            let scheme = match u.scheme() {
                "postgresql" => "postgres",
                "mariadb" => "mysql",
                s => s,
            };
            let port = u.port().unwrap_or(match scheme {
                "postgres" => 5432,
                _ => 3306,
            });
            let host = u.host_str().unwrap_or("localhost").to_lowercase();
            let host = if host == "127.0.0.1" || host == "::1" || host == "[::1]" {
                "localhost".to_string()
            } else {
                host
            };
            format!("{scheme}://{host}:{port}{}", u.path())
        }
        Err(_) => url.to_string(),
    }
}

/// The conflict of a schedule with others in the same namespace, if any: the same source or
/// the same target as another schedule. The older schedule keeps running; the newer one (by
/// creation time, then name) gets the condition.
pub fn conflict<'a>(
    me: (&str, DateTime<Utc>, &MigrationScheduleSpec),
    others: impl IntoIterator<Item = (&'a str, DateTime<Utc>, &'a MigrationScheduleSpec)>,
) -> Option<String> {
    let (name, created, spec) = me;
    let (src, dst) = (
        database_identity(&spec.source.url),
        database_identity(&spec.target.url),
    );
    for (other, other_created, other_spec) in others {
        if other == name || (other_created, other) > (created, name) {
            continue;
        }
        if database_identity(&other_spec.source.url) == src {
            return Some(format!(
                "MigrationSchedule {other:?} already migrates the same source database; one \
                 source feeding two targets splits its change tracking between them. Delete \
                 one of the two schedules."
            ));
        }
        if database_identity(&other_spec.target.url) == dst {
            return Some(format!(
                "MigrationSchedule {other:?} already writes to the same target database; two \
                 sources feeding one target overwrite each other's tables. Delete one of the \
                 two schedules."
            ));
        }
    }
    None
}

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
    let spec = o.spec;
    let now = o.now;
    let mut status = o.status.clone();
    status.observed_generation = o.generation;
    let mut notes = vec![];
    let mut create = None;
    let mut stop = None;
    let at = conditions::At {
        generation: o.generation,
        now,
    };
    let set =
        |status: &mut MigrationScheduleStatus, t: &str, ok: bool, reason: &str, msg: String| {
            at.set(&mut status.conditions, t, ok, reason, msg)
        };

    // Runs by age, newest first.
    let mut runs = o.runs.clone();
    runs.sort_by(|a, b| (b.created, &b.name).cmp(&(a.created, &a.name)));
    let active = runs.iter().find(|r| r.result.is_none());
    let adopt: Vec<String> = runs
        .iter()
        .filter(|r| !r.owned)
        .map(|r| r.name.clone())
        .collect();

    // Timing, conflict and the disabled switch decide whether runs may start at all.
    let timing = spec
        .schedule
        .as_deref()
        .map(|expr| CronSchedule::parse(expr, &spec.time_zone))
        .transpose();
    let blocked: Option<(&str, String)> = match (&timing, &o.conflict) {
        (Err(problem), _) => Some((problem.reason, problem.message.clone())),
        (_, Some(why)) => Some(("Conflict", why.clone())),
        _ if spec.disabled => Some((
            "Disabled",
            "the migration is disabled (spec.disabled: true): no run starts until it is false \
             again"
                .to_string(),
        )),
        _ => None,
    };
    set(
        &mut status,
        "Conflict",
        o.conflict.is_some(),
        if o.conflict.is_some() {
            "SharedDatabase"
        } else {
            "NoConflict"
        },
        o.conflict.clone().unwrap_or_default(),
    );
    set(
        &mut status,
        "Disabled",
        spec.disabled,
        if spec.disabled { "Disabled" } else { "Enabled" },
        if spec.disabled {
            "spec.disabled is true".into()
        } else {
            String::new()
        },
    );
    match &blocked {
        Some((reason, message)) if *reason != "Disabled" => {
            set(&mut status, "Ready", false, reason, message.clone())
        }
        _ => set(
            &mut status,
            "Ready",
            true,
            "Valid",
            "the schedule is valid".into(),
        ),
    }
    let may_run = blocked.is_none();

    // What is due: a run request, the first run, or a scheduled time.
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
    let schedule = timing.as_ref().ok().and_then(|t| t.as_ref());
    let due_time = schedule.and_then(|s| s.latest_due(cursor, now));

    enum Due {
        Request(String),
        Immediate,
        Scheduled(DateTime<Utc>),
    }
    let due = if let Some(token) = request {
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
    };

    if let Some(due) = due {
        let (label, token, scheduled) = match &due {
            Due::Request(t) => (
                format!("the run requested by runRequest {t:?}"),
                Some(t.clone()),
                None,
            ),
            Due::Immediate => ("the first run (runImmediately)".to_string(), None, None),
            Due::Scheduled(t) => (
                format!(
                    "the run due at {}",
                    schedule
                        .map(|s| s.local(*t))
                        .unwrap_or_else(|| t.to_rfc3339())
                ),
                None,
                Some(*t),
            ),
        };
        // Each due thing is handled once: acknowledged, whether it starts a run or not.
        let handled = |status: &mut MigrationScheduleStatus| {
            if let Some(t) = &token {
                status.last_handled_run_request = Some(t.clone());
            }
            if let Some(t) = scheduled {
                status.last_schedule_time = Some(time(t));
            }
        };
        let deadline_missed = match (scheduled, spec.starting_deadline_seconds) {
            (Some(t), Some(secs)) => (now - t).num_seconds() > secs,
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
        if already.is_some() {
            // Created before a restart that came before the acknowledgement: nothing to add.
            handled(&mut status);
        } else if !may_run {
            let (reason, why) = blocked.clone().unwrap_or_default();
            notes.push(Note {
                warning: true,
                reason: "RunSkipped",
                message: format!("{label} did not start: {why}"),
            });
            set(
                &mut status,
                "Scheduled",
                false,
                reason,
                format!("{label} did not start: {why}"),
            );
            handled(&mut status);
        } else if deadline_missed {
            let why = format!(
                "{label} was missed by more than startingDeadlineSeconds ({}s), while the \
                 controller was not running; the next one starts on time",
                spec.starting_deadline_seconds.unwrap_or_default()
            );
            notes.push(Note {
                warning: true,
                reason: "RunMissed",
                message: why.clone(),
            });
            set(&mut status, "Scheduled", false, "RunMissed", why);
            handled(&mut status);
        } else if let Some(a) = active {
            match spec.concurrency_policy {
                ConcurrencyPolicy::Forbid => {
                    let why = format!(
                        "{label} was skipped: run {} is still active, and runs of one schedule \
                         never overlap (concurrencyPolicy Forbid)",
                        a.name
                    );
                    notes.push(Note {
                        warning: true,
                        reason: "RunSkipped",
                        message: why.clone(),
                    });
                    set(&mut status, "Scheduled", false, "SkippedActiveRun", why);
                    handled(&mut status);
                }
                ConcurrencyPolicy::Replace => {
                    // Stop the active run; the due one starts once it has ended.
                    if !a.stop_requested {
                        stop = Some(a.name.clone());
                        notes.push(Note {
                            warning: false,
                            reason: "RunReplaced",
                            message: format!(
                                "stopping run {} so that {label} can start (concurrencyPolicy Replace)",
                                a.name
                            ),
                        });
                    }
                }
            }
        } else {
            let (name, trigger) = match &due {
                Due::Request(_) => (manual_run_name(o.name, now), "Manual"),
                Due::Immediate => (run_name(o.name, o.created), "Immediate"),
                Due::Scheduled(t) => (run_name(o.name, *t), "Scheduled"),
            };
            notes.push(Note {
                warning: false,
                reason: "RunCreated",
                message: format!("created MigrationRun {name} for {label}"),
            });
            create = Some(NewRun {
                name,
                trigger,
                scheduled_time: scheduled,
                run_request: token.clone(),
            });
            handled(&mut status);
        }
    }

    // The next due time, and the Scheduled condition when nothing above set it this time.
    let next = schedule.and_then(|s| {
        let from = status
            .last_schedule_time
            .as_ref()
            .map(to_utc)
            .unwrap_or(cursor)
            .max(now);
        s.next_after(from)
    });
    status.next_run_time = match (next, may_run && !spec.suspend) {
        (Some(t), true) => schedule.map(|s| s.local(t)),
        _ => None,
    };
    let scheduled_set_now = notes
        .iter()
        .any(|n| matches!(n.reason, "RunSkipped" | "RunMissed"));
    if !scheduled_set_now {
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
                blocked.as_ref().map(|b| b.0).unwrap_or("NoNextTime"),
                blocked
                    .as_ref()
                    .map(|b| b.1.clone())
                    .unwrap_or_else(|| "the cron expression has no future time".into()),
            ),
        };
        set(&mut status, "Scheduled", ok, reason, msg);
    }

    // The view of all runs: the newest, the active one, and the last success.
    status.active_run = match (&create, active) {
        (Some(new), _) => Some(new.name.clone()),
        (None, Some(a)) => Some(a.name.clone()),
        (None, None) => None,
    };
    if let Some(newest) = runs.first() {
        status.last_run = Some(summary(newest));
    }
    if let Some(done) = runs.iter().find(|r| r.result.is_some()) {
        status.migration = Some(MigrationInformation {
            tables_migrated: done.counts.migrated,
            tables_with_warnings: done.counts.with_warnings,
            tables_failed: done.counts.failed,
            tables_not_migrated: done.counts.not_migrated,
        });
    }
    let last_success = runs
        .iter()
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

    // History: the newest finished runs within the limits stay.
    let (mut ok, mut other) = (0, 0);
    let mut delete = vec![];
    let mut finished: Vec<&RunView> = runs.iter().filter(|r| r.result.is_some()).collect();
    finished.sort_by(|a, b| {
        let end = |r: &RunView| r.completion_time.as_ref().map(to_utc).or(r.created);
        (end(b), &b.name).cmp(&(end(a), &a.name))
    });
    for r in finished {
        let (count, limit) = if r.result == Some(RunResult::Succeeded) {
            (&mut ok, spec.history.successful)
        } else {
            (&mut other, spec.history.failed)
        };
        *count += 1;
        if *count > limit.max(0) {
            delete.push(r.name.clone());
        }
    }

    let requeue_after = match next {
        // A conflict ends when the other schedule goes, which wakes nothing here: look again
        // every minute.
        _ if o.conflict.is_some() => Duration::from_secs(60),
        Some(t) if may_run && !spec.suspend => {
            let secs = (t - now).num_seconds().clamp(1, 3600) as u64;
            Duration::from_secs(secs)
        }
        _ => Duration::from_secs(3600),
    };
    Decision {
        create,
        adopt,
        stop,
        delete,
        status,
        notes,
        requeue_after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::schedule::History;
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

    fn observe<'a>(spec: &'a MigrationScheduleSpec, now: DateTime<Utc>) -> Observed<'a> {
        Observed {
            name: "nightly",
            generation: Some(1),
            created: utc(2026, 5, 1, 0, 0),
            spec,
            status: MigrationScheduleStatus::default(),
            runs: vec![],
            conflict: None,
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
            owned: true,
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
    fn nothing_is_due_before_the_first_time() {
        let s = spec(Some("0 2 * * *"));
        let d = decide(observe(&s, utc(2026, 5, 1, 1, 59)));
        assert!(d.create.is_none());
        assert_eq!(d.requeue_after, Duration::from_secs(60));
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
            owned: true,
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
            owned: true,
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
            owned: true,
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
    fn a_restart_finds_the_scheduled_run_it_created_before() {
        let s = spec(Some("0 2 * * *"));
        let mut o = observe(&s, utc(2026, 5, 2, 2, 1));
        o.runs = vec![RunView {
            name: "nightly-202605020200".into(),
            owned: true,
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
            owned: true,
            ..Default::default()
        }];
        assert!(decide(o).create.is_none());
    }

    #[test]
    fn a_person_created_run_is_adopted() {
        let s = spec(None);
        let mut o = observe(&s, utc(2026, 5, 1, 0, 0));
        o.runs = vec![RunView {
            name: "by-hand".into(),
            owned: false,
            ..Default::default()
        }];
        let d = decide(o);
        assert_eq!(d.adopt, vec!["by-hand".to_string()]);
        assert_eq!(d.status.active_run.as_deref(), Some("by-hand"));
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
                owned: true,
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
        let older = ("a", utc(2026, 1, 1, 0, 0), &a);
        let why = conflict(("b", utc(2026, 2, 1, 0, 0), &b), [older]).unwrap();
        assert!(why.contains("same source"), "{why}");
        // The older one keeps running.
        assert!(conflict(older, [("b", utc(2026, 2, 1, 0, 0), &b)]).is_none());
        // Two sources into one target.
        let mut c = spec(None);
        c.source.url = "mysql://gp.example/gp".into();
        assert!(
            conflict(("c", utc(2026, 3, 1, 0, 0), &c), [older])
                .unwrap()
                .contains("same target")
        );
        // Different databases on one server are fine.
        let mut d = spec(None);
        d.source.url = "postgres://erp.example/other".into();
        d.target.url = "postgres://cloud.example/other".into();
        assert!(conflict(("d", utc(2026, 3, 1, 0, 0), &d), [older]).is_none());

        let mut o = observe(&b, utc(2026, 5, 2, 3, 0));
        o.conflict = Some(why);
        let dec = decide(o);
        assert!(dec.create.is_none());
        assert_eq!(dec.requeue_after, Duration::from_secs(60));
        assert_eq!(condition(&dec, "Conflict").0, "True");
        assert_eq!(
            condition(&dec, "Ready"),
            ("False".into(), "Conflict".into())
        );
    }
}
