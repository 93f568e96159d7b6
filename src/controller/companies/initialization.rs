//! What to do about each company's initialization, as a pure function of the spec, the records
//! in the target and whether their initializers are still alive; and how the records read in
//! a company's status.

use crate::api::companies::{
    ColumnsLeftOut, CompanyChoice, CompanyStatus, CompanyValidation, Initialization,
    InitializationState, TableMismatch,
};
use crate::engine::initialize::Validation;
use crate::engine::ledger::companies::CompanyRecord;
use std::collections::HashMap;

/// How many tables a status lists as mismatching, or with columns left out.
const TABLES_LISTED: usize = 20;

/// Whether the initializer of a scheduled or running record still works on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// Its in-process task is gone (the controller restarted): start it again.
    Lost,
    /// It ended without recording an outcome, for this reason.
    Ended(String),
}

/// One thing to do about a company's initialization.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitAction {
    /// Record the company as scheduled, then start its initializer.
    Schedule {
        company: String,
        attempt: String,
        after_run: Option<String>,
    },
    /// Start the initializer of a recorded attempt again.
    Resume { company: String, attempt: String },
    /// Record the company as initialized without running anything.
    Mark { company: String, attempt: String },
    /// Record the attempt as failed.
    Fail {
        company: String,
        attempt: String,
        message: String,
    },
}

/// What the initialization decision needs of one company.
pub struct CompanyFacts<'a> {
    pub name: &'a str,
    pub choice: Option<&'a CompanyChoice>,
    /// The last run that migrated it; None: never migrated.
    pub last_migrated_run: Option<&'a str>,
    pub record: Option<&'a CompanyRecord>,
    pub liveness: Option<&'a Liveness>,
}

/// The attempt id of a scheduling: the selection's generation and the time.
pub fn attempt_id(generation: Option<i64>, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("g{}-{}", generation.unwrap_or(0), now.timestamp_millis())
}

/// The generation an attempt id was made at.
fn attempt_generation(attempt: &str) -> Option<i64> {
    attempt.strip_prefix('g')?.split('-').next()?.parse().ok()
}

/// Whether a record blocks runs and choices: its initialization is scheduled or running.
pub fn busy(record: Option<&CompanyRecord>) -> bool {
    record.is_some_and(|r| {
        matches!(
            r.state,
            InitializationState::Scheduled | InitializationState::Running
        )
    })
}

/// What to do for one company. `runs_active`: a run of the schedule has not ended, so no
/// initialization is scheduled now (marking is).
pub fn action(
    f: &CompanyFacts<'_>,
    generation: Option<i64>,
    runs_active: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<InitAction> {
    let company = f.name.to_string();
    if let Some(r) = f.record.filter(|r| busy(Some(r))) {
        return match f.liveness {
            Some(Liveness::Lost) => Some(InitAction::Resume {
                company,
                attempt: r.attempt.clone(),
            }),
            Some(Liveness::Ended(why)) => Some(InitAction::Fail {
                company,
                attempt: r.attempt.clone(),
                message: format!(
                    "{why}; the initialization is tried again after the next run that migrates \
                     the company, or when this CompanySelection's spec changes"
                ),
            }),
            _ => None,
        };
    }
    let migrated = f.last_migrated_run?;
    let wanted = f.choice.map(|c| c.initialization)?;
    let state = f.record.map(|r| r.state);
    match wanted {
        Initialization::None => None,
        Initialization::MarkInitialized => {
            (state != Some(InitializationState::Initialized)).then(|| InitAction::Mark {
                company,
                attempt: attempt_id(generation, now),
            })
        }
        Initialization::Initialize => {
            let again = match f.record {
                None => true,
                Some(r) if r.state == InitializationState::Failed => {
                    r.after_run.as_deref() != Some(migrated)
                        || attempt_generation(&r.attempt)
                            .zip(generation)
                            .is_some_and(|(then, now)| then < now)
                }
                Some(_) => false,
            };
            (again && !runs_active).then(|| InitAction::Schedule {
                company,
                attempt: attempt_id(generation, now),
                after_run: Some(migrated.to_string()),
            })
        }
    }
}

/// The company's status fields that its record gives: state, message and validation. A
/// migrated company without a record is `NotInitialized`.
pub fn apply_record(c: &mut CompanyStatus, record: Option<&CompanyRecord>, waiting: Option<&str>) {
    match record {
        Some(r) => {
            c.initialization = Some(r.state);
            c.message = r.message.clone();
            c.validation = r
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<Validation>(d).ok())
                .map(|v| summary(&v));
        }
        None if c.last_migrated_run.is_some() => {
            c.initialization = Some(InitializationState::NotInitialized);
            c.message = waiting.map(str::to_string);
            c.validation = None;
        }
        None => {
            c.initialization = None;
            c.message = None;
            c.validation = None;
        }
    }
}

/// A validation as a status shows it: counts, and the first tables that differ.
pub fn summary(v: &Validation) -> CompanyValidation {
    CompanyValidation {
        tables_checked: v.tables.len() as i64,
        tables_matching: v
            .tables
            .iter()
            .filter(|t| t.matches && t.error.is_none())
            .count() as i64,
        rows_compared: v.tables.iter().map(|t| t.source_rows).sum(),
        keys_changed_since_run: v.tables.iter().map(|t| t.changed_since_run as i64).sum(),
        tables_not_migrated: v.not_migrated.len() as i64,
        mismatches: v
            .failed()
            .into_iter()
            .take(TABLES_LISTED)
            .map(|t| TableMismatch {
                table: t.table.clone(),
                source_rows: t.source_rows,
                target_rows: t.target_rows,
                first_keys: t
                    .differences
                    .iter()
                    .map(|d| format!("{}: {:?}", d.key, d.difference))
                    .collect(),
                error: t.error.clone(),
            })
            .collect(),
        left_out: v
            .tables
            .iter()
            .filter(|t| !t.left_out.is_empty())
            .take(TABLES_LISTED)
            .map(|t| ColumnsLeftOut {
                table: t.table.clone(),
                columns: t.left_out.clone(),
                reason: t.left_out_reason.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

/// The companies whose choice changed while their initialization is scheduled or running:
/// name and what the spec now says.
pub fn refused_changes(
    choices: &[CompanyChoice],
    records: &HashMap<String, CompanyRecord>,
) -> Vec<String> {
    let mut out: Vec<String> = records
        .values()
        .filter(|r| busy(Some(r)))
        .filter_map(|r| {
            let now = match choices.iter().find(|c| c.name == r.company) {
                None => "removed from spec.companies".to_string(),
                Some(c) if !c.migrate => "migrate: false".to_string(),
                Some(c) if c.initialization != Initialization::Initialize => {
                    format!("initialization: {:?}", c.initialization)
                }
                Some(_) => return None,
            };
            Some(format!("{:?} ({now})", r.company))
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()
    }

    fn choice(init: Initialization) -> CompanyChoice {
        CompanyChoice {
            name: "CRONUS".into(),
            migrate: true,
            initialization: init,
        }
    }

    fn record(state: InitializationState, attempt: &str, after: &str) -> CompanyRecord {
        CompanyRecord {
            company: "CRONUS".into(),
            state,
            attempt: attempt.into(),
            after_run: Some(after.into()),
            message: None,
            detail: None,
            updated_at: String::new(),
        }
    }

    fn facts<'a>(
        c: &'a CompanyChoice,
        run: Option<&'a str>,
        r: Option<&'a CompanyRecord>,
        l: Option<&'a Liveness>,
    ) -> CompanyFacts<'a> {
        CompanyFacts {
            name: "CRONUS",
            choice: Some(c),
            last_migrated_run: run,
            record: r,
            liveness: l,
        }
    }

    #[test]
    fn initialize_waits_for_a_migration_and_for_runs_to_end() {
        let c = choice(Initialization::Initialize);
        assert_eq!(
            action(&facts(&c, None, None, None), Some(3), false, now()),
            None
        );
        assert_eq!(
            action(&facts(&c, Some("erp-1"), None, None), Some(3), true, now()),
            None
        );
        assert_eq!(
            action(&facts(&c, Some("erp-1"), None, None), Some(3), false, now()),
            Some(InitAction::Schedule {
                company: "CRONUS".into(),
                attempt: attempt_id(Some(3), now()),
                after_run: Some("erp-1".into()),
            })
        );
    }

    #[test]
    fn a_failure_is_tried_again_after_a_newer_run_or_a_spec_change_only() {
        let c = choice(Initialization::Initialize);
        let failed = record(InitializationState::Failed, "g3-1", "erp-1");
        let f = facts(&c, Some("erp-1"), Some(&failed), None);
        assert_eq!(action(&f, Some(3), false, now()), None);
        assert!(matches!(
            action(&f, Some(4), false, now()),
            Some(InitAction::Schedule { .. })
        ));
        let f = facts(&c, Some("erp-2"), Some(&failed), None);
        assert!(matches!(
            action(&f, Some(3), false, now()),
            Some(InitAction::Schedule { .. })
        ));
        let done = record(InitializationState::Initialized, "g3-1", "erp-1");
        let f = facts(&c, Some("erp-2"), Some(&done), None);
        assert_eq!(action(&f, Some(9), false, now()), None);
    }

    #[test]
    fn mark_records_without_running_even_while_runs_are_active() {
        let c = choice(Initialization::MarkInitialized);
        assert!(matches!(
            action(&facts(&c, Some("erp-1"), None, None), Some(1), true, now()),
            Some(InitAction::Mark { .. })
        ));
    }

    #[test]
    fn a_lost_initializer_resumes_and_an_ended_one_fails() {
        let c = choice(Initialization::Initialize);
        let running = record(InitializationState::Running, "g3-1", "erp-1");
        let lost = Liveness::Lost;
        assert_eq!(
            action(
                &facts(&c, Some("erp-1"), Some(&running), Some(&lost)),
                Some(3),
                false,
                now()
            ),
            Some(InitAction::Resume {
                company: "CRONUS".into(),
                attempt: "g3-1".into()
            })
        );
        let ended = Liveness::Ended("Job erp-init-1 failed (BackoffLimitExceeded)".into());
        let Some(InitAction::Fail { message, .. }) = action(
            &facts(&c, Some("erp-1"), Some(&running), Some(&ended)),
            Some(3),
            false,
            now(),
        ) else {
            panic!("expected a failure");
        };
        assert!(message.starts_with("Job erp-init-1 failed"), "{message}");
        let alive = Liveness::Alive;
        assert_eq!(
            action(
                &facts(&c, Some("erp-1"), Some(&running), Some(&alive)),
                Some(3),
                false,
                now()
            ),
            None
        );
    }

    #[test]
    fn a_changed_choice_of_a_busy_company_is_named() {
        let mut records = HashMap::new();
        records.insert(
            "CRONUS".to_string(),
            record(InitializationState::Running, "g3-1", "erp-1"),
        );
        let mut c = choice(Initialization::Initialize);
        assert!(refused_changes(std::slice::from_ref(&c), &records).is_empty());
        c.migrate = false;
        assert_eq!(
            refused_changes(&[c], &records),
            vec!["\"CRONUS\" (migrate: false)".to_string()]
        );
        assert_eq!(
            refused_changes(&[], &records),
            vec!["\"CRONUS\" (removed from spec.companies)".to_string()]
        );
    }
}
