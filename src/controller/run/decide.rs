//! What a MigrationRun should do now, as a pure function of what the reconciler observed:
//! start (or restart) its runner, stop it, or end the run; and the status the controller
//! writes. The workers write their own parts of the status (`workers`, `tables`).

use super::super::admission::Hold;
use super::super::conditions::At;
use super::super::note::Note;
use crate::api::run::{
    MigrationRunSpec, MigrationRunStatus, RunProgress, RunResult, WorkerPhase, WorkerStatus,
};
use crate::clock::{time, utc};
use crate::runner::startup::Blocked;
use chrono::{DateTime, Utc};

/// What the run's reconciler knows about its schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleFacts {
    pub workers: i32,
    pub backoff_limit: i32,
    /// What holds the run back, by the one admission rule (`admission::admit`); None when it
    /// may start. Only asked of a run that has not started.
    pub hold: Option<Hold>,
    /// Why no run of the schedule may start here, with its reason: `RunnerNotAllowed`
    /// (`runner: InProcess` in a namespace the operator did not allow); None when runs may.
    pub refused: Option<(&'static str, String)>,
    /// How long a worker pod may take to start (`runtime.startDeadlineSeconds`).
    pub start_deadline_seconds: i64,
}

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct RunObserved<'a> {
    pub generation: Option<i64>,
    pub spec: &'a MigrationRunSpec,
    pub status: MigrationRunStatus,
    /// Scheduled, Manual or Immediate, from the annotation the schedule set; None for a run a
    /// person created.
    pub trigger: Option<String>,
    /// None: the schedule does not exist.
    pub schedule: Option<ScheduleFacts>,
    /// The runner of the current attempt is still at work.
    pub runner_alive: bool,
    /// The runner of the current attempt failed for good, and why: a Job that used up its
    /// backoffLimit or passed its activeDeadlineSeconds.
    pub runner_failure: Option<String>,
    /// Workers of the current attempt that have not started, and why (`runner::startup`).
    pub workers_blocked: Option<Blocked>,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAction {
    /// Start the runner for this attempt.
    Start {
        attempt: i32,
    },
    /// Tell the runner to stop after the tables in progress.
    Stop,
    /// Delete the Job of this attempt: its workers never started, and the run ended.
    DeleteJob {
        attempt: i32,
    },
    Nothing,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RunDecision {
    pub action: RunAction,
    /// The controller's part of the status (no `workers`, no `tables`).
    pub status: MigrationRunStatus,
    /// Set when the run ends now.
    pub finished: Option<RunResult>,
    pub notes: Vec<Note>,
}

/// Adds up the workers of one attempt.
pub fn progress(workers: &[&WorkerStatus]) -> RunProgress {
    let mut p = RunProgress::default();
    for w in workers {
        p.tables_total += w.tables_total;
        p.tables_done += w.tables_done;
        p.tables_migrated += w.tables_migrated;
        p.tables_with_warnings += w.tables_with_warnings;
        p.tables_failed += w.tables_failed;
        p.tables_excluded += w.tables_excluded;
        p.rows_copied += w.rows_copied;
        p.bytes_copied += w.bytes_copied;
    }
    p.tables = format!("{}/{}", p.tables_done, p.tables_total);
    p
}

fn human(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The decision for a run that ends now with `result`.
fn ends_now(status: MigrationRunStatus, result: RunResult, notes: Vec<Note>) -> RunDecision {
    RunDecision {
        action: RunAction::Nothing,
        status,
        finished: Some(result),
        notes,
    }
}

/// Whether the run is to stop: its author's `spec.stop`, or the schedule's
/// `status.stopRequested`.
fn stop_asked(o: &RunObserved<'_>) -> bool {
    o.spec.stop || o.status.stop_requested.is_some()
}

/// Ends the run in `status`: its result, completion time and duration, and the Running and
/// Succeeded conditions.
fn end(status: &mut MigrationRunStatus, at: At, result: RunResult, reason: &str, msg: String) {
    status.result = Some(result);
    status.completion_time = Some(time(at.now));
    if let Some(start) = &status.start_time {
        status.duration = Some(human(at.now - utc(start)));
    }
    at.set(
        &mut status.conditions,
        "Running",
        false,
        "Ended",
        format!("the run ended {result:?}"),
    );
    at.set(
        &mut status.conditions,
        "Succeeded",
        result == RunResult::Succeeded,
        reason,
        msg,
    );
}

/// The run's state in one word (`status.reason`): the reason of its `Succeeded` condition once
/// it ended, of its `Running` condition before.
pub fn summarize(mut status: MigrationRunStatus) -> MigrationRunStatus {
    let of = |t: &str| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.reason.clone())
    };
    status.reason = if status.result.is_some() {
        of("Succeeded")
    } else {
        of("Running")
    };
    status
}

/// Decides (`decide_steps`), and sums the state up in `status.reason`. Pure.
pub fn decide(o: RunObserved<'_>) -> RunDecision {
    let mut d = decide_steps(o);
    d.status = summarize(d.status);
    d
}

/// Decides, in steps: a run that has not started starts (or is refused: `start`); a started
/// one adds up its workers, and ends once all of them have (`outcome`); one whose runner is
/// gone goes again or ends (`runner_lost`); one whose workers cannot start says why, and ends
/// at the start deadline (`not_starting`); a stop is passed on.
fn decide_steps(o: RunObserved<'_>) -> RunDecision {
    let mut status = o.status.clone();
    // The workers' parts are theirs: never sent back by the controller.
    let workers = std::mem::take(&mut status.workers);
    let tables_listed = std::mem::take(&mut status.tables).len() as i64;
    status.observed_generation = o.generation;
    if status.trigger.is_none() {
        status.trigger = Some(o.trigger.clone().unwrap_or_else(|| "Manual".into()));
    }
    let at = At {
        generation: o.generation,
        now: o.now,
    };

    // Ended already: nothing changes any more.
    if status.result.is_some() {
        return RunDecision {
            action: RunAction::Nothing,
            status,
            finished: None,
            notes: vec![],
        };
    }
    if status.start_time.is_none() {
        return start(&o, at, status);
    }

    // Started: add up the workers of this attempt.
    let attempt = status.attempts.unwrap_or(0);
    let expected = o.schedule.as_ref().map(|s| s.workers.max(1)).unwrap_or(1) as usize;
    let current: Vec<&WorkerStatus> = workers.iter().filter(|w| w.attempt == attempt).collect();
    let p = progress(&current);
    status.tables_omitted =
        (p.tables_done > tables_listed).then_some(p.tables_done - tables_listed);
    status.progress = Some(p.clone());
    let ended = current
        .iter()
        .filter(|w| w.phase != WorkerPhase::Running)
        .count();
    if ended >= expected {
        let (result, reason, msg) = outcome(&current, &p);
        let note = format!("the run ended {result:?}: {msg}");
        let notes = vec![if result == RunResult::Failed {
            Note::warning("RunFailed", note)
        } else if result == RunResult::Succeeded {
            Note::normal("RunFinished", note)
        } else {
            Note::warning("RunFinished", note)
        }];
        end(&mut status, at, result, reason, msg);
        return ends_now(status, result, notes);
    }
    if let Some(why) = &o.runner_failure {
        let msg = format!(
            "{why}; each worker's own message is in status.workers and the rest is in its pod's \
             log; start a new run once the cause is fixed: it goes on from the state saved in \
             the target"
        );
        end(
            &mut status,
            at,
            RunResult::Failed,
            "RunnerFailed",
            msg.clone(),
        );
        return ends_now(
            status,
            RunResult::Failed,
            vec![Note::warning("RunFailed", msg)],
        );
    }
    if !o.runner_alive {
        return runner_lost(&o, at, status, attempt);
    }
    let at_work = current.iter().any(|w| w.phase == WorkerPhase::Running);
    if let Some(b) = &o.workers_blocked
        && let Some(d) = not_starting(&o, at, &mut status, b, (attempt, at_work))
    {
        return d;
    }
    if status
        .conditions
        .iter()
        .any(|c| c.type_ == "Running" && c.reason == WORKERS_NOT_STARTING)
    {
        at.set(
            &mut status.conditions,
            "Running",
            true,
            "Started",
            "the workers started".into(),
        );
    }
    let action = if stop_asked(&o) {
        at.set(
            &mut status.conditions,
            "Running",
            true,
            "Stopping",
            "stopping after the tables in progress".into(),
        );
        RunAction::Stop
    } else {
        RunAction::Nothing
    };
    RunDecision {
        action,
        status,
        finished: None,
        notes: vec![],
    }
}

/// The reason of a run whose worker pods do not start (the `Running` condition while it
/// waits, the `Succeeded` condition once it failed at the deadline).
pub const WORKERS_NOT_STARTING: &str = "WorkersNotStarting";

/// Workers of the current attempt that have not started (`b`). Once no worker of the attempt
/// is at work (`at_work`: a running worker finishes its tables first), a run past the start
/// deadline ends `Failed` and its Job is deleted, and a run asked to stop ends `Stopped` (the
/// workers that never started would never read the stop). Before, a known cause shows on the
/// `Running` condition (with a Warning event when it first does). None: nothing to say yet.
fn not_starting(
    o: &RunObserved<'_>,
    at: At,
    status: &mut MigrationRunStatus,
    b: &Blocked,
    (attempt, at_work): (i32, bool),
) -> Option<RunDecision> {
    let secs = o
        .schedule
        .as_ref()
        .map_or(600, |s| s.start_deadline_seconds)
        .max(1);
    let deadline = b.since + chrono::Duration::seconds(secs);
    let ended = |mut status: MigrationRunStatus, result, reason: &str, msg: String| {
        end(&mut status, at, result, reason, msg.clone());
        let note = if result == RunResult::Failed {
            Note::warning("RunFailed", msg)
        } else {
            Note::normal("RunFinished", msg)
        };
        RunDecision {
            action: RunAction::DeleteJob { attempt },
            status,
            finished: Some(result),
            notes: vec![note],
        }
    };
    if stop_asked(o) && !at_work {
        let msg = format!(
            "stopped before its workers started ({}); its Job was deleted",
            b.cause
        );
        return Some(ended(status.clone(), RunResult::Stopped, "Stopped", msg));
    }
    if at.now >= deadline && !at_work {
        let msg = format!(
            "{} (for {}, past spec.runtime.startDeadlineSeconds, {secs}s); nothing more was              copied, and the Job of attempt {attempt} was deleted: fix the cause, then start a              new run, which goes on from the state saved in the target",
            b.message,
            human(at.now - b.since)
        );
        return Some(ended(
            status.clone(),
            RunResult::Failed,
            WORKERS_NOT_STARTING,
            msg,
        ));
    }
    if !b.known {
        return None;
    }
    let was = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Running")
        .map(|c| c.reason.clone());
    let msg = format!(
        "{}; the run fails if they have not started by {}",
        b.message,
        deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    at.set(
        &mut status.conditions,
        "Running",
        true,
        WORKERS_NOT_STARTING,
        msg.clone(),
    );
    let notes = if was.as_deref() == Some(WORKERS_NOT_STARTING) {
        vec![]
    } else {
        vec![Note::warning(WORKERS_NOT_STARTING, msg)]
    };
    Some(RunDecision {
        action: RunAction::Nothing,
        status: status.clone(),
        finished: None,
        notes,
    })
}

/// A run that has not started: refused when its schedule is missing, ended when it was
/// stopped before it started, held while the admission rule holds it (`ScheduleFacts::hold`),
/// started otherwise.
fn start(o: &RunObserved<'_>, at: At, mut status: MigrationRunStatus) -> RunDecision {
    let refuse = match &o.schedule {
        None => Some((
            "ScheduleNotFound",
            format!(
                "MigrationSchedule {:?} does not exist in this namespace; create it, or \
                 point spec.scheduleRef at an existing one in a new MigrationRun",
                o.spec.schedule_ref.name
            ),
        )),
        _ if stop_asked(o) => Some(("Stopped", "stopped before it started".to_string())),
        Some(ScheduleFacts {
            refused: Some((reason, why)),
            ..
        }) => Some((*reason, format!("nothing was copied: {why}"))),
        _ => None,
    };
    if let Some((reason, msg)) = refuse {
        let result = if reason == "Stopped" {
            RunResult::Stopped
        } else {
            RunResult::Failed
        };
        let notes = vec![Note {
            warning: result == RunResult::Failed,
            reason: "RunFailed",
            message: msg.clone(),
        }];
        end(&mut status, at, result, reason, msg);
        return ends_now(status, result, notes);
    }
    if let Some(hold) = o.schedule.as_ref().and_then(|s| s.hold.as_ref()) {
        // Not an attempt yet: nothing is written anywhere until the way is clear.
        let was = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .map(|c| c.reason.clone());
        let message = format!("waiting to start: {}", hold.message);
        at.set(
            &mut status.conditions,
            "Running",
            false,
            hold.waiting,
            message.clone(),
        );
        let notes = if was.as_deref() == Some(hold.waiting) {
            vec![]
        } else {
            vec![Note::normal("RunWaiting", message)]
        };
        return RunDecision {
            action: RunAction::Nothing,
            status,
            finished: None,
            notes,
        };
    }
    status.start_time = Some(time(at.now));
    status.attempts = Some(1);
    status.progress = Some(RunProgress {
        tables: "0/?".into(),
        ..Default::default()
    });
    at.set(
        &mut status.conditions,
        "Running",
        true,
        "Started",
        "the run started".into(),
    );
    at.set(
        &mut status.conditions,
        "Succeeded",
        false,
        "Running",
        "the run has not ended yet".into(),
    );
    RunDecision {
        action: RunAction::Start { attempt: 1 },
        status,
        finished: None,
        notes: vec![Note::normal(
            "RunStarted",
            format!("{:?} run started", o.spec.r#type),
        )],
    }
}

/// The reason of a run's Running condition when the API server refused its runner.
pub const REFUSED: &str = "RunnerRefused";

/// The API server refused to create the Job `job` (HTTP `code`, its `message`): the
/// run says why and what to do on its Running condition. The next reconcile counts the attempt
/// as lost (`runner_lost`), so the run goes again up to its limit, then fails with this reason.
pub fn refused(
    mut status: MigrationRunStatus,
    at: At,
    job: &str,
    code: u16,
    message: &str,
) -> MigrationRunStatus {
    // The Job's name is `<run>-<attempt>`.
    let suffix = job.rfind('-').map_or(0, |i| job.len() - i);
    let fix = match code {
        401 | 403 => {
            "give the controller's service account create on jobs (batch) in this namespace"
                .to_string()
        }
        // "characters" before Kubernetes 1.36, "bytes" since.
        _ if message.contains("must be no more than 63 ") => format!(
            "the Job's name is the run's name and the attempt; Kubernetes labels each pod with \
             it, so it must fit in 63 characters: create the run again with a name of at most \
             {} characters",
            63usize.saturating_sub(suffix)
        ),
        _ => "fix what the API server names, in the schedule's spec.runtime or the run".to_string(),
    };
    at.set(
        &mut status.conditions,
        "Running",
        true,
        REFUSED,
        format!("the API server refused Job {job} ({code}): {message}; {fix}"),
    );
    summarize(status)
}

/// The reason of a run's Running condition when the runtime role's grants failed.
pub const NOT_GRANTED: &str = "AccessNotGranted";
/// The schedule's runner may not run in this namespace (the operator's choice).
pub const RUNNER_NOT_ALLOWED: &str = "RunnerNotAllowed";

/// The controller could not let the runtime role write the run's tables (`message` says
/// why): like a refusal, the attempt counts as lost and the run goes again up to its limit.
pub fn not_granted(mut status: MigrationRunStatus, at: At, message: &str) -> MigrationRunStatus {
    at.set(
        &mut status.conditions,
        "Running",
        true,
        NOT_GRANTED,
        format!("before starting, granting the run's tables to the runtime role failed: {message}"),
    );
    summarize(status)
}

/// Tables the run copies that the cloud lacks and the target's admin login could not create
/// (`createMissingTables`): the event that names them, with the first database reason. The
/// tables themselves end `Failed` in the run's results with the same reason.
pub fn tables_not_created(not_created: &[(String, String)]) -> Option<Note> {
    let ((first, why), rest) = not_created.split_first()?;
    let more = match rest.len() {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    Some(Note::warning(
        "TablesNotCreated",
        format!(
            "the target's admin login could not create {first:?}{more}, missing in the cloud: \
             {why}; create them by hand or give the admin login CREATE on the target schema, \
             then run again"
        ),
    ))
}

/// A run that cannot be planned (a company the source lacks, a table pattern that is no glob)
/// ends `Failed` before it starts, with the fix; the status and the event to publish.
pub fn cannot_plan(
    mut status: MigrationRunStatus,
    at: At,
    e: &crate::engine::plan::PlanError,
) -> (MigrationRunStatus, Note) {
    use crate::engine::plan::PlanError;
    let (reason, fix) = match e {
        PlanError::UnknownCompanies(..) => (
            "UnknownCompany",
            "correct the company names in the run's spec.companies (or in the CompanySelection \
             that a scheduled run takes them from), then start a new run",
        ),
        PlanError::Pattern { .. } => (
            "InvalidTablePattern",
            "correct spec.tables of the MigrationSchedule, then start a new run",
        ),
    };
    let msg = format!("nothing was copied: {e}; {fix}");
    end(&mut status, at, RunResult::Failed, reason, msg.clone());
    (summarize(status), Note::warning("RunFailed", msg))
}

/// How a run ends once all the workers of its attempt have: the result, the reason of the
/// Succeeded condition, and its message.
fn outcome(current: &[&WorkerStatus], p: &RunProgress) -> (RunResult, &'static str, String) {
    let ended: Vec<&&WorkerStatus> = current
        .iter()
        .filter(|w| w.phase != WorkerPhase::Running)
        .collect();
    let failed_to_run: Vec<&&&WorkerStatus> = ended
        .iter()
        .filter(|w| w.phase == WorkerPhase::Failed)
        .collect();
    let stopped = ended.iter().any(|w| w.phase == WorkerPhase::Stopped)
        || current.iter().any(|w| w.tables_not_started > 0);
    let copied = p.tables_migrated + p.tables_with_warnings;
    if let Some(w) = failed_to_run.first()
        && copied == 0
    {
        (
            RunResult::Failed,
            "RunnerFailed",
            w.message
                .clone()
                .unwrap_or_else(|| "the worker could not run".into()),
        )
    } else if stopped {
        (
            RunResult::Stopped,
            "Stopped",
            "stopped after the tables in progress; the next run goes on from the state saved \
             in the target"
                .to_string(),
        )
    } else if p.tables_failed > 0 || !failed_to_run.is_empty() {
        let r = if copied > 0 {
            RunResult::PartiallySucceeded
        } else {
            RunResult::Failed
        };
        (
            r,
            "TablesFailed",
            format!(
                "{} of {} tables failed; each has its message and guidance in status.tables",
                p.tables_failed, p.tables_total
            ),
        )
    } else {
        (
            RunResult::Succeeded,
            "Succeeded",
            format!(
                "{} tables migrated, {} with warnings, {} not migrated by design",
                p.tables_migrated, p.tables_with_warnings, p.tables_excluded
            ),
        )
    }
}

/// Running, but its runner is gone (a controller restart, a lost pod): go again from the state
/// saved in the target, up to the schedule's backoffLimit; a run asked to stop ends Stopped.
fn runner_lost(
    o: &RunObserved<'_>,
    at: At,
    mut status: MigrationRunStatus,
    attempt: i32,
) -> RunDecision {
    let limit = o.schedule.as_ref().map(|s| s.backoff_limit).unwrap_or(0) + 1;
    if stop_asked(o) {
        let msg = "stopped; its runner was gone, so the tables in progress did not finish and \
                   stay as they were"
            .to_string();
        end(&mut status, at, RunResult::Stopped, "Stopped", msg.clone());
        return ends_now(
            status,
            RunResult::Stopped,
            vec![Note::normal("RunFinished", msg)],
        );
    }
    // The runner of this attempt was refused by the API server (`refused`): say so.
    let refusal = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Running" && (c.reason == REFUSED || c.reason == NOT_GRANTED))
        .map(|c| {
            (
                if c.reason == REFUSED {
                    REFUSED
                } else {
                    NOT_GRANTED
                },
                c.message.clone(),
            )
        });
    if attempt < limit {
        let next = attempt + 1;
        status.attempts = Some(next);
        let mut msg = format!("attempt {next} of at most {limit}");
        if let Some((_, why)) = &refusal {
            msg.push_str(&format!("; attempt {attempt}: {why}"));
        }
        at.set(&mut status.conditions, "Running", true, "Restarted", msg);
        return RunDecision {
            action: RunAction::Start { attempt: next },
            status,
            finished: None,
            notes: vec![Note::warning(
                "RunnerLost",
                format!(
                    "the runner of attempt {attempt} is gone; attempt {next} goes on from the \
                     state saved in the target"
                ),
            )],
        };
    }
    let (reason, msg) = match refusal {
        Some((reason, why)) => (
            reason,
            format!(
                "the runner was refused {attempt} times, the limit of spec.runtime.backoffLimit + 1: {why}"
            ),
        ),
        None => (
            "RunnerLost",
            format!(
                "the runner was lost {attempt} times, the limit of spec.runtime.backoffLimit + 1; \
                 look at the controller's log, then start a new run"
            ),
        ),
    };
    end(&mut status, at, RunResult::Failed, reason, msg.clone());
    ends_now(
        status,
        RunResult::Failed,
        vec![Note::warning("RunFailed", msg)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::ScheduleRef;

    #[test]
    fn tables_the_admin_could_not_create_are_named_once_with_the_first_reason() {
        assert_eq!(tables_not_created(&[]), None);
        let note = tables_not_created(&[
            (
                "CRONUS$Vendor".into(),
                "permission denied for schema public".into(),
            ),
            (
                "CRONUS$Item".into(),
                "permission denied for schema public".into(),
            ),
        ])
        .expect("two tables were not created");
        assert_eq!(note.reason, "TablesNotCreated");
        assert!(
            note.message.contains("\"CRONUS$Vendor\" and 1 more"),
            "{}",
            note.message
        );
        assert!(
            note.message.contains("permission denied"),
            "{}",
            note.message
        );
        assert!(
            note.message.contains("create them by hand"),
            "{}",
            note.message
        );
    }
    use crate::controller::conditions;
    use chrono::TimeZone;

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 2, min, 0).unwrap()
    }

    fn spec() -> MigrationRunSpec {
        MigrationRunSpec {
            schedule_ref: ScheduleRef {
                name: "nightly".into(),
            },
            r#type: Default::default(),
            companies: vec![],
            stop: false,
        }
    }

    fn facts() -> Option<ScheduleFacts> {
        Some(ScheduleFacts {
            refused: None,
            workers: 1,
            backoff_limit: 1,
            hold: None,
            start_deadline_seconds: 600,
        })
    }

    fn observe(spec: &MigrationRunSpec, status: MigrationRunStatus, now: u32) -> RunObserved<'_> {
        RunObserved {
            generation: Some(1),
            spec,
            status,
            trigger: Some("Scheduled".into()),
            schedule: facts(),
            runner_alive: true,
            runner_failure: None,
            workers_blocked: None,
            now: at(now),
        }
    }

    #[test]
    fn workers_that_cannot_start_say_why_then_fail_the_run_at_the_deadline() {
        let s = spec();
        let blocked = Blocked {
            since: at(0),
            cause: "ImagePullBackOff".into(),
            message: "worker pod nightly-1-1-0-x cannot pull image \"cm:9\"".into(),
            known: true,
        };
        let mut o = observe(&s, started(&s), 1);
        o.workers_blocked = Some(blocked.clone());
        let d = decide(o);
        assert_eq!(d.action, RunAction::Nothing);
        assert_eq!(d.finished, None);
        assert_eq!(d.status.reason.as_deref(), Some(WORKERS_NOT_STARTING));
        let running = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .unwrap();
        assert!(
            running.message.contains("cannot pull image"),
            "{}",
            running.message
        );
        assert!(
            running.message.contains("2026-05-01T02:10:00Z"),
            "{}",
            running.message
        );
        assert_eq!(d.notes[0].reason, WORKERS_NOT_STARTING);
        // Said once: the next look adds no event.
        let mut o = observe(&s, d.status.clone(), 2);
        o.workers_blocked = Some(blocked.clone());
        assert!(decide(o).notes.is_empty());
        // Past the deadline: Failed, and the Job goes.
        let mut o = observe(&s, d.status.clone(), 10);
        o.workers_blocked = Some(blocked.clone());
        let d2 = decide(o);
        assert_eq!(d2.action, RunAction::DeleteJob { attempt: 1 });
        assert_eq!(d2.finished, Some(RunResult::Failed));
        assert_eq!(d2.status.reason.as_deref(), Some(WORKERS_NOT_STARTING));
        assert!(
            succeeded(&d2).message.contains("startDeadlineSeconds"),
            "{}",
            succeeded(&d2).message
        );
        // A worker at work (another index) finishes first: no end yet, only the word.
        let mut busy = d.status.clone();
        busy.workers = vec![worker(WorkerPhase::Running, 0, 0)];
        let mut o = observe(&s, busy, 10);
        o.workers_blocked = Some(blocked.clone());
        let held = decide(o);
        assert_eq!((held.action, held.finished), (RunAction::Nothing, None));
        // Started after all: the condition says so.
        let d3 = decide(observe(&s, d.status.clone(), 3));
        assert_eq!(d3.status.reason.as_deref(), Some("Started"));
        // Only Pending with no reason: nothing to say before the deadline.
        let quiet = Blocked {
            known: false,
            cause: "Pending".into(),
            ..blocked
        };
        let mut o = observe(&s, started(&s), 5);
        o.workers_blocked = Some(quiet.clone());
        assert_eq!(decide(o).status.reason.as_deref(), Some("Started"));
        let mut o = observe(&s, started(&s), 11);
        o.workers_blocked = Some(quiet);
        assert_eq!(decide(o).action, RunAction::DeleteJob { attempt: 1 });
    }

    fn worker(phase: WorkerPhase, migrated: i64, failed: i64) -> WorkerStatus {
        WorkerStatus {
            index: 0,
            phase,
            attempt: 1,
            tables_total: migrated + failed,
            tables_done: migrated + failed,
            tables_migrated: migrated,
            tables_failed: failed,
            rows_copied: 1000,
            ..Default::default()
        }
    }

    fn succeeded(d: &RunDecision) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        d.status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap()
    }

    fn started(s: &MigrationRunSpec) -> MigrationRunStatus {
        decide(observe(s, MigrationRunStatus::default(), 0)).status
    }

    #[test]
    fn a_new_run_starts_its_runner() {
        let s = spec();
        let d = decide(observe(&s, MigrationRunStatus::default(), 0));
        assert_eq!(d.action, RunAction::Start { attempt: 1 });
        assert_eq!(d.status.trigger.as_deref(), Some("Scheduled"));
        assert!(d.status.start_time.is_some());
        assert_eq!(
            conditions::is_true(&d.status.conditions, "Running"),
            Some(true)
        );
        assert_eq!(d.notes[0].reason, "RunStarted");
    }

    #[test]
    fn a_held_run_waits_without_using_an_attempt_then_starts() {
        use super::super::super::admission::{Hold, WAITING_FOR_KEY};
        let s = spec();
        let mut o = observe(&s, MigrationRunStatus::default(), 0);
        if let Some(f) = o.schedule.as_mut() {
            f.hold = Some(Hold {
                reason: "RuntimeKeyNotReady",
                waiting: WAITING_FOR_KEY,
                message: "the schedule has not made its key yet".into(),
            });
        }
        let d = decide(o.clone());
        assert_eq!(d.notes[0].reason, "RunWaiting");
        assert_eq!(d.action, RunAction::Nothing);
        assert_eq!(d.finished, None);
        assert!(d.status.start_time.is_none() && d.status.attempts.is_none());
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", WAITING_FOR_KEY)
        );
        assert!(
            c.message.contains("has not made its key yet"),
            "{}",
            c.message
        );
        // Looked at again while still held: no new event.
        o.status = d.status;
        assert!(decide(o.clone()).notes.is_empty());
        // Stopped while it waits: it ends Stopped, and nothing started.
        let mut stopped = o.clone();
        let stop_spec = MigrationRunSpec {
            stop: true,
            ..s.clone()
        };
        stopped.spec = &stop_spec;
        let d = decide(stopped);
        assert_eq!(
            (d.action, d.finished),
            (RunAction::Nothing, Some(RunResult::Stopped))
        );
        // Once the way is clear, the run starts with its first attempt.
        if let Some(f) = o.schedule.as_mut() {
            f.hold = None;
        }
        assert_eq!(decide(o).action, RunAction::Start { attempt: 1 });
    }

    #[test]
    fn a_run_without_its_schedule_fails_with_guidance() {
        let s = spec();
        let mut o = observe(&s, MigrationRunStatus::default(), 0);
        o.schedule = None;
        o.trigger = None;
        let d = decide(o);
        assert_eq!(d.finished, Some(RunResult::Failed));
        assert_eq!(d.status.trigger.as_deref(), Some("Manual"));
        let c = succeeded(&d);
        assert_eq!(c.reason, "ScheduleNotFound");
        assert!(c.message.contains("nightly"));
    }

    #[test]
    fn workers_are_added_up_and_the_result_follows_the_tables() {
        let s = spec();
        let mut st = started(&s);
        st.workers = vec![worker(WorkerPhase::Running, 3, 0)];
        let d = decide(observe(&s, st.clone(), 1));
        assert_eq!(d.action, RunAction::Nothing);
        assert_eq!(d.status.progress.as_ref().unwrap().tables, "3/3");
        assert!(d.status.workers.is_empty(), "the workers' part is theirs");

        for (w, result) in [
            (worker(WorkerPhase::Finished, 3, 0), RunResult::Succeeded),
            (
                worker(WorkerPhase::Finished, 2, 1),
                RunResult::PartiallySucceeded,
            ),
            (worker(WorkerPhase::Finished, 0, 2), RunResult::Failed),
            (worker(WorkerPhase::Stopped, 1, 0), RunResult::Stopped),
        ] {
            let mut st = st.clone();
            st.workers = vec![w];
            let d = decide(observe(&s, st, 5));
            assert_eq!(d.finished, Some(result));
            assert_eq!(d.status.result, Some(result));
            assert_eq!(d.status.duration.as_deref(), Some("5m00s"));
            assert_eq!(
                conditions::is_true(&d.status.conditions, "Running"),
                Some(false)
            );
        }
    }

    #[test]
    fn a_worker_that_could_not_run_fails_the_run_with_its_message() {
        let s = spec();
        let mut st = started(&s);
        let mut w = worker(WorkerPhase::Failed, 0, 0);
        w.message = Some("Secret \"erp\" has no key \"password\"".into());
        st.workers = vec![w];
        let d = decide(observe(&s, st, 1));
        assert_eq!(d.finished, Some(RunResult::Failed));
        let c = succeeded(&d);
        assert!(c.message.contains("Secret"));
    }

    #[test]
    fn a_lost_runner_is_restarted_up_to_the_limit() {
        let s = spec();
        let st = started(&s);
        let mut o = observe(&s, st, 1);
        o.runner_alive = false;
        let d = decide(o.clone());
        assert_eq!(d.action, RunAction::Start { attempt: 2 });
        assert_eq!(d.status.attempts, Some(2));
        // The old attempt's worker entry does not count for the new one.
        let mut again = d.status.clone();
        again.workers = vec![worker(WorkerPhase::Running, 1, 0)];
        let mut o2 = observe(&s, again, 2);
        o2.runner_alive = false;
        let d2 = decide(o2);
        assert_eq!(d2.finished, Some(RunResult::Failed));
        let c = succeeded(&d2);
        assert_eq!(c.reason, "RunnerLost");
    }

    #[test]
    fn a_job_that_failed_for_good_fails_the_run_with_its_reason() {
        let s = spec();
        let mut st = started(&s);
        // The killed worker's entry still says Running.
        st.workers = vec![worker(WorkerPhase::Running, 1, 0)];
        let mut o = observe(&s, st, 3);
        o.runner_alive = false;
        o.runner_failure = Some(
            "Job nightly-1 failed (BackoffLimitExceeded): Job has reached the specified backoff \
             limit"
                .into(),
        );
        let d = decide(o);
        // No other attempt: the Job had its retries.
        assert_eq!(d.action, RunAction::Nothing);
        assert_eq!(d.finished, Some(RunResult::Failed));
        let c = succeeded(&d);
        assert_eq!(c.reason, "RunnerFailed");
        assert!(c.message.contains("BackoffLimitExceeded"), "{}", c.message);
        assert!(c.message.contains("pod's log"), "{}", c.message);
    }

    #[test]
    fn a_refused_runner_goes_again_then_fails_saying_why() {
        let s = spec();
        let now = conditions::At {
            generation: Some(1),
            now: at(1),
        };
        let long = "r".repeat(62);
        let st = refused(
            started(&s),
            now,
            &format!("{long}-1"),
            422,
            "Job.batch \"x\" is invalid: spec.template.metadata.labels: Invalid value: \"x\": \
             must be no more than 63 characters",
        );
        let running = st.conditions.iter().find(|c| c.type_ == "Running").unwrap();
        assert_eq!(running.reason, REFUSED);
        assert!(
            running.message.contains("at most 61 characters"),
            "{}",
            running.message
        );
        // The attempt is lost: the next one starts, and says why the last one did not.
        let mut o = observe(&s, st, 2);
        o.runner_alive = false;
        let d = decide(o);
        assert_eq!(d.action, RunAction::Start { attempt: 2 });
        let restarted = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Running")
            .unwrap();
        assert!(
            restarted.message.contains("63 characters"),
            "{}",
            restarted.message
        );
        // Refused again at the limit: the run fails with the API server's reason.
        let st2 = refused(
            d.status,
            now,
            &format!("{long}-2"),
            403,
            "jobs.batch is forbidden",
        );
        let mut o2 = observe(&s, st2, 3);
        o2.runner_alive = false;
        let d2 = decide(o2);
        assert_eq!(d2.finished, Some(RunResult::Failed));
        let c = succeeded(&d2);
        assert_eq!(c.reason, REFUSED);
        assert!(c.message.contains("forbidden"), "{}", c.message);
        assert!(
            c.message.contains("service account create on jobs"),
            "{}",
            c.message
        );
    }

    #[test]
    fn stop_is_passed_to_the_runner() {
        let mut s = spec();
        let st = started(&spec());
        s.stop = true;
        assert_eq!(decide(observe(&s, st, 1)).action, RunAction::Stop);
        // Before it started, a stopped run just ends.
        let d = decide(observe(&s, MigrationRunStatus::default(), 0));
        assert_eq!(d.finished, Some(RunResult::Stopped));
    }

    #[test]
    fn an_ended_run_stays_ended() {
        let s = spec();
        let mut st = started(&s);
        st.workers = vec![worker(WorkerPhase::Finished, 3, 0)];
        let ended = decide(observe(&s, st, 1)).status;
        let mut o = observe(&s, ended.clone(), 9);
        o.runner_alive = false;
        let d = decide(o);
        assert_eq!(d.action, RunAction::Nothing);
        assert_eq!(d.finished, None);
        assert_eq!(d.status.completion_time, ended.completion_time);
    }

    #[test]
    fn a_run_that_cannot_be_planned_ends_failed_with_the_fix() {
        use crate::engine::plan::PlanError;
        let at = At {
            generation: Some(1),
            now: chrono::Utc::now(),
        };
        let e = PlanError::UnknownCompanies(vec!["NOPE".into()], vec!["CRONUS".into()]);
        let (status, note) = cannot_plan(MigrationRunStatus::default(), at, &e);
        assert_eq!(status.result, Some(RunResult::Failed));
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "UnknownCompany")
        );
        assert!(c.message.contains("run's spec.companies"), "{}", c.message);
        assert_eq!(note.reason, "RunFailed");
    }

    #[test]
    fn a_run_whose_runner_is_not_allowed_ends_before_it_starts() {
        let s = spec();
        let mut o = observe(&s, MigrationRunStatus::default(), 0);
        if let Some(f) = o.schedule.as_mut() {
            f.refused = Some((
                RUNNER_NOT_ALLOWED,
                "runner: InProcess is not allowed in namespace shop".into(),
            ));
        }
        let d = decide(o);
        assert_eq!(
            (d.action, d.finished),
            (RunAction::Nothing, Some(RunResult::Failed))
        );
        assert!(d.status.start_time.is_none());
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap();
        assert_eq!(c.reason, RUNNER_NOT_ALLOWED);
        assert!(
            c.message.contains("not allowed in namespace shop"),
            "{}",
            c.message
        );
    }
}
