//! What a CloudReset's status should say and whether to clear now, as a pure function of what
//! the reconciler observed: a finished reset stays as it is; a pending one waits for its
//! schedule, for an older pending reset of the same schedule, and for the schedule's active
//! run; then it clears.

use super::super::conditions::At;
use crate::api::reset::CloudResetStatus;
use crate::clock::time;
use crate::engine::reset::{Cleared, Outcome};
use chrono::{DateTime, Utc};

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct ResetObserved {
    pub name: String,
    pub schedule: String,
    /// `spec.confirm` as written; it must repeat the schedule's name.
    pub confirm: String,
    pub generation: Option<i64>,
    pub status: CloudResetStatus,
    pub schedule_exists: bool,
    /// The schedule's target is a data lake, which a reset does not clear.
    pub lake_target: bool,
    /// An older CloudReset of the same schedule that has not finished: it goes first.
    pub older_pending: Option<String>,
    /// A run of the schedule that has not ended.
    pub active_run: Option<String>,
    /// Companies whose initialization is scheduled or running (from the CompanySelections'
    /// status): the reset waits for them.
    pub initializing: Vec<String>,
    pub now: DateTime<Utc>,
}

/// The status to write, and whether to clear the target now.
#[derive(Clone, Debug, PartialEq)]
pub struct ResetDecision {
    pub status: CloudResetStatus,
    pub clear: bool,
}

/// Whether a reset has ended, for good: `Succeeded` is True or False.
pub fn finished(status: &CloudResetStatus) -> bool {
    super::super::conditions::ended(&status.conditions)
}

/// Why a reset ends at once, clearing nothing: its confirm does not repeat the schedule's
/// name (the API server checks this too; an older CRD may not have), or the schedule writes a
/// data lake, which has no tables to clear.
fn refusal(o: &ResetObserved) -> Option<(&'static str, String)> {
    if o.confirm != o.schedule {
        return Some((
            "NotConfirmed",
            format!(
                "spec.confirm is {:?}, not the schedule's name {:?}: nothing was cleared. \
                 Create a new CloudReset whose confirm repeats the schedule's name",
                o.confirm, o.schedule
            ),
        ));
    }
    o.lake_target.then(|| {
        (
            crate::lake::NOT_FOR_LAKE,
            format!(
                "MigrationSchedule {:?} writes a data lake, and a CloudReset clears tables of a \
                 target database: nothing was cleared. To write every Delta table anew, start a \
                 run with type: Full; to start from nothing, delete the lake's folder",
                o.schedule
            ),
        )
    })
}

/// The decision. Pure.
pub fn decide(o: &ResetObserved) -> ResetDecision {
    let mut status = o.status.clone();
    if finished(&status) {
        return ResetDecision {
            status,
            clear: false,
        };
    }
    status.observed_generation = o.generation;
    let at = At {
        generation: o.generation,
        now: o.now,
    };
    let wait = |status: &mut CloudResetStatus, reason: &str, message: String| {
        at.unknown(&mut status.conditions, "Succeeded", reason, message);
    };
    if let Some((reason, message)) = refusal(o) {
        status.completion_time = Some(time(o.now));
        at.set(&mut status.conditions, "Succeeded", false, reason, message);
        return ResetDecision {
            status,
            clear: false,
        };
    }
    if !o.schedule_exists {
        wait(
            &mut status,
            "ScheduleNotFound",
            format!(
                "MigrationSchedule {:?} does not exist in this namespace; the reset waits for it \
                 (delete this CloudReset if it names the wrong schedule)",
                o.schedule
            ),
        );
        return ResetDecision {
            status,
            clear: false,
        };
    }
    if let Some(other) = &o.older_pending {
        wait(
            &mut status,
            "WaitingForReset",
            format!("CloudReset {other} of the same schedule goes first"),
        );
        return ResetDecision {
            status,
            clear: false,
        };
    }
    if let Some(run) = &o.active_run {
        wait(
            &mut status,
            "WaitingForRun",
            format!(
                "run {run} is active; the reset starts when it ends, and no new run starts \
                 meanwhile"
            ),
        );
        return ResetDecision {
            status,
            clear: false,
        };
    }
    if !o.initializing.is_empty() {
        wait(
            &mut status,
            "WaitingForInitialization",
            format!(
                "the initialization of {} is in progress; the reset starts when it ends",
                o.initializing.join(", ")
            ),
        );
        return ResetDecision {
            status,
            clear: false,
        };
    }
    if status.start_time.is_none() {
        status.start_time = Some(time(o.now));
    }
    wait(
        &mut status,
        "Resetting",
        "clearing the migrated tables and the replication state in the target".into(),
    );
    ResetDecision {
        status,
        clear: true,
    }
}

/// The status after clearing: the outcome, for good.
pub fn ended(
    mut status: CloudResetStatus,
    at: At,
    outcome: Result<Outcome, String>,
) -> CloudResetStatus {
    status.completion_time = Some(time(at.now));
    match outcome {
        Ok(Outcome::AlreadyDone(done)) => {
            // When it ran is when it completed.
            if let Some(when) = done.time() {
                status.completion_time = Some(time(when));
            }
            at.set(
                &mut status.conditions,
                "Succeeded",
                true,
                "AlreadyDone",
                format!(
                    "this reset ran on the target at {} ({}); seen again, it cleared nothing. \
                     A CloudReset with a new name clears again",
                    done.at, done.summary
                ),
            );
        }
        Ok(Outcome::Cleared(Cleared { tables, companies })) => {
            status.tables_cleared = Some(tables);
            status.companies_reset = Some(companies);
            at.set(
                &mut status.conditions,
                "Succeeded",
                true,
                "Reset",
                format!(
                    "{tables} migrated tables cleared and the replication state reset; \
                     {companies} companies' initialization reset; the next run copies every \
                     table in full"
                ),
            );
        }
        Err(e) => at.set(
            &mut status.conditions,
            "Succeeded",
            false,
            "Failed",
            format!(
                "{e}; nothing was cleared (it is one transaction). Create a new CloudReset to \
                 try again"
            ),
        ),
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()
    }

    fn observed() -> ResetObserved {
        ResetObserved {
            name: "again".into(),
            schedule: "erp".into(),
            confirm: "erp".into(),
            generation: Some(1),
            status: Default::default(),
            schedule_exists: true,
            lake_target: false,
            older_pending: None,
            active_run: None,
            initializing: vec![],
            now: now(),
        }
    }

    fn succeeded(s: &CloudResetStatus) -> (String, String) {
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn a_reset_waits_for_the_active_run_then_clears() {
        let mut o = observed();
        o.active_run = Some("erp-1".into());
        let d = decide(&o);
        assert!(!d.clear);
        assert_eq!(
            succeeded(&d.status),
            ("Unknown".into(), "WaitingForRun".into())
        );
        o.active_run = None;
        o.initializing = vec!["\"CRONUS\"".into()];
        let d = decide(&o);
        assert!(!d.clear);
        assert_eq!(
            succeeded(&d.status),
            ("Unknown".into(), "WaitingForInitialization".into())
        );
        o.initializing.clear();
        let d = decide(&o);
        assert!(d.clear);
        assert_eq!(succeeded(&d.status), ("Unknown".into(), "Resetting".into()));
        assert_eq!(d.status.start_time, Some(time(now())));
    }

    #[test]
    fn a_finished_reset_never_clears_again() {
        let o = observed();
        let at = At {
            generation: Some(1),
            now: now(),
        };
        let done = ended(
            decide(&o).status,
            at,
            Ok(Outcome::Cleared(Cleared {
                tables: 12,
                companies: 2,
            })),
        );
        assert_eq!(succeeded(&done), ("True".into(), "Reset".into()));
        assert_eq!(
            (done.tables_cleared, done.companies_reset),
            (Some(12), Some(2))
        );
        assert!(finished(&done));
        let mut again = observed();
        again.status = done.clone();
        let d = decide(&again);
        assert!(!d.clear);
        assert_eq!(d.status, done);
        let failed = ended(
            decide(&o).status,
            at,
            Err("target database: refused".into()),
        );
        assert_eq!(succeeded(&failed), ("False".into(), "Failed".into()));
        again.status = failed;
        assert!(!decide(&again).clear);
    }

    #[test]
    fn a_reset_seen_again_succeeds_and_says_when_it_ran() {
        let at = At {
            generation: Some(1),
            now: now(),
        };
        let done = ended(
            decide(&observed()).status,
            at,
            Ok(Outcome::AlreadyDone(
                crate::engine::ledger::requests::Done {
                    at: "2026-04-30T10:00:00.000Z".into(),
                    summary: "3 migrated tables cleared, 1 companies reset".into(),
                },
            )),
        );
        assert_eq!(succeeded(&done), ("True".into(), "AlreadyDone".into()));
        assert_eq!(
            done.completion_time,
            Some(time(Utc.with_ymd_and_hms(2026, 4, 30, 10, 0, 0).unwrap()))
        );
        assert_eq!(done.tables_cleared, None);
    }

    #[test]
    fn an_unconfirmed_reset_fails_for_good() {
        let mut o = observed();
        o.confirm = "erp2".into();
        let d = decide(&o);
        assert!(!d.clear);
        assert_eq!(
            succeeded(&d.status),
            ("False".into(), "NotConfirmed".into())
        );
        assert!(finished(&d.status));
    }

    #[test]
    fn a_reset_waits_for_its_schedule_and_for_an_older_reset() {
        let mut o = observed();
        o.schedule_exists = false;
        assert_eq!(
            succeeded(&decide(&o).status).1,
            "ScheduleNotFound".to_string()
        );
        let mut o = observed();
        o.older_pending = Some("first".into());
        let d = decide(&o);
        assert!(!d.clear);
        assert_eq!(succeeded(&d.status).1, "WaitingForReset".to_string());
    }

    #[test]
    fn a_reset_of_a_lake_schedule_ends_at_once_and_clears_nothing() {
        let mut o = observed();
        o.lake_target = true;
        let d = decide(&o);
        assert!(!d.clear);
        assert!(finished(&d.status));
        let (ok, reason) = succeeded(&d.status);
        assert_eq!(
            (ok.as_str(), reason.as_str()),
            ("False", "NotForLakeTarget")
        );
    }
}
