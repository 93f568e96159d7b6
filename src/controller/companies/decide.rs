//! What a CompanySelection's status should say, as a pure function of what the reconciler
//! observed: the companies found in the source with their sizes, which are selected, whether
//! every selected name exists, whether another selection for the same schedule counts instead,
//! and whether too many companies are selected for one run.

use super::super::conditions::At;
use super::initialization::{self, CompanyFacts, InitAction, Liveness};
use crate::api::companies::{
    CompanySelectionSpec, CompanySelectionStatus, CompanyStatus, Initialization,
    InitializationState,
};
use crate::clock::time;
use crate::engine::ledger::companies::CompanyRecord;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::time::Duration;

/// How long the companies and sizes read from the source are used before they are read again.
/// A run that ends successfully makes them stale at once.
pub const SIZES_FRESH_FOR: Duration = Duration::from_secs(600);

/// More selected companies than this in one run gets a warning, as in the vendor's tool.
pub const MANY_COMPANIES: usize = 250;

/// One company of the source, as the catalog estimates it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FoundCompany {
    pub name: String,
    pub bytes: i64,
    pub tables: i64,
}

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct SelectionObserved<'a> {
    pub generation: Option<i64>,
    pub spec: &'a CompanySelectionSpec,
    pub status: CompanySelectionStatus,
    /// The schedule named by `spec.scheduleRef` exists.
    pub schedule_exists: bool,
    /// Why the schedule's companies get no initialization at all, with its reason (a data
    /// lake target, a Dynamics GP source); None when they may.
    pub no_initialization: Option<(&'static str, &'static str)>,
    /// An older CompanySelection for the same schedule, which the runs use instead.
    pub older: Option<String>,
    /// The companies just read from the source, or why they could not be; None when the ones
    /// in the status are still fresh (`needs_reading`).
    pub found: Option<Result<Vec<FoundCompany>, String>>,
    /// The schedule's last successful run.
    pub last_success: Option<LastRun>,
    /// The initialization records in the target, or why they could not be read; None when
    /// they were not read (no company has been migrated).
    pub records: Option<Result<Vec<CompanyRecord>, String>>,
    /// Whether the initializer of each scheduled or running record still works, by company.
    pub liveness: HashMap<String, Liveness>,
    /// What no initialization may start during, in words: a run of the schedule that has not
    /// ended (`run erp-1`), or a pending CloudReset (`CloudReset again`).
    pub active_run: Option<String>,
    pub now: DateTime<Utc>,
}

impl SelectionObserved<'_> {
    fn records(&self) -> HashMap<String, CompanyRecord> {
        match &self.records {
            Some(Ok(r)) => r.iter().map(|r| (r.company.clone(), r.clone())).collect(),
            _ => HashMap::new(),
        }
    }
}

pub use super::super::queries::LastRun;

/// Whether the companies in `status` should be read from the source again: never read, read
/// more than `SIZES_FRESH_FOR` ago, or before the schedule's last successful run.
pub fn needs_reading(
    status: &CompanySelectionStatus,
    last_success: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> bool {
    let Some(read) = status.sizes_read_at.as_ref().map(crate::clock::utc) else {
        return true;
    };
    let stale = (now - read)
        .to_std()
        .map_or(true, |age| age >= SIZES_FRESH_FOR);
    stale || last_success.is_some_and(|t| t > read)
}

/// The status. Pure.
pub fn decide(o: SelectionObserved<'_>) -> CompanySelectionStatus {
    let mut status = o.status.clone();
    status.observed_generation = o.generation;
    let at = At {
        generation: o.generation,
        now: o.now,
    };
    // The companies: freshly read, or as the status had them.
    let mut read_error = None;
    let found: Vec<FoundCompany> = match &o.found {
        Some(Ok(found)) => {
            status.sizes_read_at = Some(time(o.now));
            found.clone()
        }
        Some(Err(e)) => {
            read_error = Some(e.clone());
            known(&o.status)
        }
        None => known(&o.status),
    };
    let selected: Vec<&str> = o
        .spec
        .companies
        .iter()
        .filter(|c| c.migrate)
        .map(|c| c.name.as_str())
        .collect();
    status.companies = company_rows(&o, &found, &selected);
    let records = o.records();
    let target_error = match &o.records {
        Some(Err(e)) => Some(e.clone()),
        _ => None,
    };
    if target_error.is_none() {
        for c in &mut status.companies {
            let wants = o
                .spec
                .companies
                .iter()
                .any(|x| x.name == c.name && x.initialization == Initialization::Initialize);
            let waiting = o
                .active_run
                .as_ref()
                .filter(|_| wants)
                .map(|blocker| format!("the initialization waits for {blocker} to end"));
            initialization::apply_record(c, records.get(&c.name), waiting.as_deref());
        }
    }
    status.companies_found = found.len() as i64;
    status.companies_selected = status.companies.iter().filter(|c| c.selected).count() as i64;
    status.companies_initialized = status
        .companies
        .iter()
        .filter(|c| c.initialization == Some(InitializationState::Initialized))
        .count() as i64;

    at.set(
        &mut status.conditions,
        "Conflict",
        o.older.is_some(),
        if o.older.is_some() {
            "AnotherSelection"
        } else {
            "OnlySelection"
        },
        o.older
            .as_ref()
            .map(|other| {
                format!(
                    "CompanySelection {other} is older and names the same schedule: runs use \
                     it and ignore this one; delete one of the two"
                )
            })
            .unwrap_or_default(),
    );
    let (ready, reason, message) = readiness(
        &o,
        &found,
        &selected,
        read_error,
        target_error,
        (status.companies_selected, status.companies_found),
    );
    at.set(&mut status.conditions, "Ready", ready, reason, message);
    work_conditions(&o, &records, selected.len(), at, &mut status);
    bounded(&mut status.companies);
    status
}

/// Companies whose problems the status shows in full: the whole message, and the tables that
/// differ with their first keys.
const COMPANIES_DETAILED: usize = 10;
/// The longest message of a company shown in full.
const MESSAGE_DETAILED: usize = 1_000;
/// The longest message of any other company.
const MESSAGE_SHORT: usize = 120;
/// What the companies may take of the status, serialized; past it, the companies shown without
/// detail lose their message (their state and counts stay).
const COMPANIES_BUDGET: usize = 460 * 1024;

/// Keeps the status of a selection of 1,000 companies well under Kubernetes' size limits: the
/// first `COMPANIES_DETAILED` companies with a problem keep their detail; every other company
/// keeps its counts and a message cut short, or none past `COMPANIES_BUDGET`. The whole of
/// each company's outcome stays in the target's `cloudmigrate_companies` table.
fn bounded(companies: &mut [CompanyStatus]) {
    let mut detailed = 0;
    let mut plain = vec![];
    for (i, c) in companies.iter_mut().enumerate() {
        let problem = c.initialization == Some(InitializationState::Failed)
            || c.validation
                .as_ref()
                .is_some_and(|v| !v.mismatches.is_empty());
        let detail = problem && detailed < COMPANIES_DETAILED;
        detailed += usize::from(detail);
        if let Some(m) = &mut c.message {
            let max = if detail {
                MESSAGE_DETAILED
            } else {
                MESSAGE_SHORT
            };
            crate::engine::report::shorten(m, max);
        }
        if !detail {
            plain.push(i);
            if let Some(v) = c.validation.as_mut() {
                v.mismatches.clear();
                if i >= COMPANIES_DETAILED {
                    v.left_out.clear();
                }
            }
        }
    }
    let size = serde_json::to_vec(&*companies).map_or(0, |v| v.len());
    if size > COMPANIES_BUDGET {
        for i in plain {
            companies[i].message = None;
        }
    }
}

/// One row per company found: its size, whether it is selected, the last run that migrated
/// it, and its initialization as the status had it.
fn company_rows(
    o: &SelectionObserved<'_>,
    found: &[FoundCompany],
    selected: &[&str],
) -> Vec<CompanyStatus> {
    let before = &o.status.companies;
    found
        .iter()
        .map(|f| {
            let is_selected = selected.contains(&f.name.as_str());
            let earlier = before.iter().find(|c| c.name == f.name);
            CompanyStatus {
                name: f.name.clone(),
                estimated_bytes: f.bytes,
                estimated_size: Some(crate::engine::report::human_bytes(f.bytes.max(0) as u64)),
                tables: f.tables,
                selected: is_selected,
                last_migrated_run: match &o.last_success {
                    Some(run) if run.companies.is_empty() || run.companies.contains(&f.name) => {
                        Some(run.name.clone())
                    }
                    _ => earlier.and_then(|c| c.last_migrated_run.clone()),
                },
                initialization: earlier.and_then(|c| c.initialization),
                message: earlier.and_then(|c| c.message.clone()),
                validation: earlier.and_then(|c| c.validation.clone()),
            }
        })
        .collect()
}

/// `Ready`: whether the schedule exists, the source was read, every selected company exists,
/// no older selection counts instead, and the target's records were read.
fn readiness(
    o: &SelectionObserved<'_>,
    found: &[FoundCompany],
    selected: &[&str],
    read_error: Option<String>,
    target_error: Option<String>,
    (companies_selected, companies_found): (i64, i64),
) -> (bool, &'static str, String) {
    let unknown: Vec<&str> = selected
        .iter()
        .copied()
        .filter(|name| !found.iter().any(|f| f.name == *name))
        .collect();
    if !o.schedule_exists {
        (
            false,
            "ScheduleNotFound",
            format!(
                "MigrationSchedule {:?} does not exist in this namespace; create it, or point \
                 spec.scheduleRef at an existing one in a new CompanySelection",
                o.spec.schedule_ref.name
            ),
        )
    } else if let Some(e) = read_error.filter(|_| found.is_empty()) {
        (false, "SourceUnreadable", e)
    } else if !unknown.is_empty() {
        (false, "UnknownCompany", unknown_message(&unknown, found))
    } else if o.older.is_some() {
        (
            false,
            "Conflict",
            "another CompanySelection counts for this schedule".into(),
        )
    } else if let Some((reason, names)) = refused_initializations(o) {
        let why = o.no_initialization.map(|n| n.1).unwrap_or_default();
        (
            false,
            reason,
            format!(
                "{why}: set initialization: None for {names}. The companies are migrated all \
                 the same"
            ),
        )
    } else if let Some(e) = target_error {
        (
            false,
            "TargetUnreadable",
            format!("reading the companies' initialization from the target: {e}"),
        )
    } else {
        (
            true,
            "Valid",
            format!(
                "{} of {} companies selected",
                companies_selected, companies_found
            ),
        )
    }
}

/// The reason, and the companies named, when companies ask for an initialization that the
/// schedule cannot have (`no_initialization`); None when none asks or it may.
fn refused_initializations(o: &SelectionObserved<'_>) -> Option<(&'static str, String)> {
    let (reason, _) = o.no_initialization?;
    let names: Vec<String> = o
        .spec
        .companies
        .iter()
        .filter(|c| c.initialization != crate::api::companies::Initialization::None)
        .map(|c| format!("{:?}", c.name))
        .collect();
    (!names.is_empty()).then(|| (reason, names.join(", ")))
}

/// `Initializing`, `ChangeRefused` and `TooManyCompanies`.
fn work_conditions(
    o: &SelectionObserved<'_>,
    records: &HashMap<String, CompanyRecord>,
    selected: usize,
    at: At,
    status: &mut CompanySelectionStatus,
) {
    let mut busy: Vec<String> = records
        .values()
        .filter(|r| initialization::busy(Some(r)))
        .map(|r| format!("{:?}", r.company))
        .collect();
    busy.sort();
    at.set(
        &mut status.conditions,
        "Initializing",
        !busy.is_empty(),
        if busy.is_empty() {
            "Idle"
        } else {
            "Initializing"
        },
        if busy.is_empty() {
            String::new()
        } else {
            format!(
                "initializing {}: runs skip these companies until it ends",
                busy.join(", ")
            )
        },
    );
    let refused = initialization::refused_changes(&o.spec.companies, records);
    at.set(
        &mut status.conditions,
        "ChangeRefused",
        !refused.is_empty(),
        if refused.is_empty() {
            "NoChange"
        } else {
            "InitializationInProgress"
        },
        if refused.is_empty() {
            String::new()
        } else {
            format!(
                "the choice of {} changed while its initialization runs; the change takes \
                 effect when the initialization ends",
                refused.join(", ")
            )
        },
    );
    let many = selected > MANY_COMPANIES;
    at.set(
        &mut status.conditions,
        "TooManyCompanies",
        many,
        if many { "TooManyCompanies" } else { "Fine" },
        if many {
            format!(
                "{} companies are selected for one run; more than {MANY_COMPANIES} make a run \
                 long and heavy: split them over several CompanySelections and schedules",
                selected
            )
        } else {
            String::new()
        },
    );
}

/// What to do about the companies' initialization. Pure. Nothing while another selection
/// counts for the schedule, or while the records could not be read.
pub fn initialization_actions(o: &SelectionObserved<'_>) -> Vec<InitAction> {
    if o.older.is_some()
        || !o.schedule_exists
        || o.no_initialization.is_some()
        || !matches!(o.records, Some(Ok(_)))
    {
        return vec![];
    }
    let records = o.records();
    let migrated = |name: &str| -> Option<String> {
        match &o.last_success {
            Some(run) if run.companies.is_empty() || run.companies.iter().any(|c| c == name) => {
                Some(run.name.clone())
            }
            _ => o
                .status
                .companies
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.last_migrated_run.clone()),
        }
    };
    let mut names: Vec<&str> = o.spec.companies.iter().map(|c| c.name.as_str()).collect();
    names.extend(records.keys().map(String::as_str));
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter_map(|name| {
            let last = migrated(name);
            initialization::action(
                &CompanyFacts {
                    name,
                    choice: o.spec.companies.iter().find(|c| c.name == name),
                    last_migrated_run: last.as_deref(),
                    record: records.get(name),
                    liveness: o.liveness.get(name),
                },
                o.generation,
                o.active_run.is_some(),
                o.now,
            )
        })
        .collect()
}

/// The companies as the status last listed them.
fn known(status: &CompanySelectionStatus) -> Vec<FoundCompany> {
    status
        .companies
        .iter()
        .map(|c| FoundCompany {
            name: c.name.clone(),
            bytes: c.estimated_bytes,
            tables: c.tables,
        })
        .collect()
}

/// Names the selected companies that the source does not have, each with the closest names it
/// does have.
fn unknown_message(unknown: &[&str], found: &[FoundCompany]) -> String {
    let parts: Vec<String> = unknown
        .iter()
        .map(|name| {
            let mut close: Vec<(f64, &str)> = found
                .iter()
                .map(|f| {
                    let score = strsim::jaro_winkler(&name.to_lowercase(), &f.name.to_lowercase());
                    (score, f.name.as_str())
                })
                .filter(|(score, _)| *score > 0.7)
                .collect();
            close.sort_by(|a, b| b.0.total_cmp(&a.0));
            let close: Vec<String> = close
                .iter()
                .take(3)
                .map(|(_, n)| format!("{n:?}"))
                .collect();
            if close.is_empty() {
                format!("{name:?}")
            } else {
                format!("{name:?} (did you mean {}?)", close.join(" or "))
            }
        })
        .collect();
    format!(
        "the source has no company {}; write each name as in the source's Company table, or \
         remove it",
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(companies: serde_json::Value) -> CompanySelectionSpec {
        serde_json::from_value(serde_json::json!({
            "scheduleRef": {"name": "erp"}, "companies": companies
        }))
        .unwrap()
    }

    fn found() -> Vec<FoundCompany> {
        ["ADATUM", "CRONUS International Ltd.", "FABRIKAM"]
            .iter()
            .enumerate()
            .map(|(i, n)| FoundCompany {
                name: n.to_string(),
                bytes: (i as i64 + 1) << 30,
                tables: 10 + i as i64,
            })
            .collect()
    }

    fn at(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 0, min, 0).unwrap()
    }

    fn observe(spec: &CompanySelectionSpec) -> SelectionObserved<'_> {
        SelectionObserved {
            generation: Some(1),
            spec,
            status: Default::default(),
            schedule_exists: true,
            no_initialization: None,
            older: None,
            found: Some(Ok(found())),
            last_success: None,
            records: None,
            liveness: HashMap::new(),
            active_run: None,
            now: at(0),
        }
    }

    fn condition(s: &CompanySelectionStatus, t: &str) -> (String, String, String) {
        let c = s.conditions.iter().find(|c| c.type_ == t).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn a_lake_schedule_lists_its_companies_and_refuses_their_initialization() {
        let s = spec(serde_json::json!([
            {"name": "CRONUS International Ltd.", "initialization": "Initialize"},
            {"name": "FABRIKAM"}
        ]));
        let mut o = observe(&s);
        o.no_initialization = Some((
            "NotForLakeTarget",
            "the schedule writes a data lake, and initialization works in a target database",
        ));
        assert!(initialization_actions(&o).is_empty());
        let status = decide(o.clone());
        let (ok, reason, message) = condition(&status, "Ready");
        assert_eq!(
            (ok.as_str(), reason.as_str()),
            ("False", "NotForLakeTarget")
        );
        assert!(
            message.contains("\"CRONUS International Ltd.\""),
            "{message}"
        );
        assert!(!message.contains("FABRIKAM"), "{message}");
        assert_eq!(status.companies.len(), 3);
        // Without an initialization asked for, a lake schedule's selection is valid.
        let plain = spec(serde_json::json!([{"name": "FABRIKAM"}]));
        let mut o = observe(&plain);
        o.no_initialization = Some((
            "NotForLakeTarget",
            "the schedule writes a data lake, and initialization works in a target database",
        ));
        assert_eq!(condition(&decide(o), "Ready").1, "Valid");
    }

    #[test]
    fn every_company_shows_with_its_size_and_the_selected_are_marked() {
        let s = spec(serde_json::json!([
            {"name": "CRONUS International Ltd."}, {"name": "FABRIKAM", "migrate": false}
        ]));
        let st = decide(observe(&s));
        assert_eq!((st.companies_found, st.companies_selected), (3, 1));
        let cronus = &st.companies[1];
        assert_eq!(cronus.name, "CRONUS International Ltd.");
        assert!(cronus.selected);
        assert_eq!(cronus.estimated_size.as_deref(), Some("2.0 GiB"));
        assert_eq!(cronus.tables, 11);
        assert!(!st.companies[2].selected);
        assert_eq!(condition(&st, "Ready").0, "True");
        assert_eq!(condition(&st, "Conflict").0, "False");
        assert_eq!(condition(&st, "TooManyCompanies").0, "False");
        assert_eq!(st.sizes_read_at, Some(time(at(0))));
    }

    /// 1,000 companies, each failed with a long message and 30 differing tables: the status
    /// stays under 512 KiB; the first 20 keep their detail, the others their counts.
    #[test]
    fn a_thousand_failed_companies_fit_in_the_status() {
        use crate::engine::initialize::Validation;
        use crate::engine::validate::{Difference, RowDifference, TableValidation};
        let names: Vec<String> = (0..1000)
            .map(|i| format!("CRONUS International Ltd. {i:04}"))
            .collect();
        let companies: Vec<serde_json::Value> = names
            .iter()
            .map(|n| serde_json::json!({"name": n}))
            .collect();
        let s = spec(serde_json::Value::Array(companies));
        let found: Vec<FoundCompany> = names
            .iter()
            .map(|n| FoundCompany {
                name: n.clone(),
                bytes: 5 << 30,
                tables: 1200,
            })
            .collect();
        let validation = Validation {
            tables: (0..30)
                .map(|t| TableValidation {
                    table: format!("CRONUS International Ltd_$Sales Invoice Line {t}"),
                    source_rows: 1_000_000,
                    target_rows: 999_990,
                    matches: false,
                    differences: (0..5)
                        .map(|k| RowDifference {
                            key: format!("Document No_=SI-{k:06}, Line No_={k}0000"),
                            difference: Difference::MissingInTarget,
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            not_migrated: vec![],
        };
        let detail = serde_json::to_string(&validation).unwrap();
        let records: Vec<CompanyRecord> = names
            .iter()
            .map(|n| CompanyRecord {
                company: n.clone(),
                state: InitializationState::Failed,
                attempt: "a1".into(),
                after_run: Some("erp-20261203150000000".into()),
                message: Some("data validation found 30 of 1200 tables that differ ".repeat(60)),
                detail: Some(detail.clone()),
                updated_at: "2026-12-03T15:00:00Z".into(),
            })
            .collect();
        let mut o = observe(&s);
        o.found = Some(Ok(found));
        o.records = Some(Ok(records));
        let st = decide(o);
        let size = serde_json::to_vec(&st).unwrap().len();
        assert!(size < 512 * 1024, "{size} bytes");
        assert_eq!(st.companies.len(), 1000);
        let first = &st.companies[0];
        assert_eq!(first.validation.as_ref().unwrap().mismatches.len(), 20);
        assert!(first.message.as_ref().unwrap().chars().count() <= 1001);
        let last = &st.companies[999];
        let v = last.validation.as_ref().unwrap();
        assert_eq!((v.tables_checked, v.tables_matching), (30, 0));
        assert!(v.mismatches.is_empty());
        // Cut short, or gone where even that would not fit.
        assert!(last.message.as_ref().is_none_or(|m| m.ends_with('…')));
    }

    #[test]
    fn an_unknown_name_is_named_with_the_closest_ones() {
        let s = spec(serde_json::json!([{"name": "Cronus International"}, {"name": "Nowhere"}]));
        let st = decide(observe(&s));
        let (ok, reason, msg) = condition(&st, "Ready");
        assert_eq!((ok.as_str(), reason.as_str()), ("False", "UnknownCompany"));
        assert!(
            msg.contains("\"Cronus International\" (did you mean \"CRONUS International Ltd.\"?)"),
            "{msg}"
        );
        assert!(msg.contains("\"Nowhere\""), "{msg}");
    }

    #[test]
    fn a_second_selection_for_a_schedule_conflicts() {
        let s = spec(serde_json::json!([{"name": "ADATUM"}]));
        let mut o = observe(&s);
        o.older = Some("first".into());
        let st = decide(o);
        let (c, reason, msg) = condition(&st, "Conflict");
        assert_eq!((c.as_str(), reason.as_str()), ("True", "AnotherSelection"));
        assert!(msg.contains("CompanySelection first is older"), "{msg}");
        assert_eq!(condition(&st, "Ready").0, "False");
    }

    #[test]
    fn more_than_250_selected_companies_get_a_warning() {
        let names: Vec<serde_json::Value> = (0..251)
            .map(|i| serde_json::json!({"name": format!("C{i:03}")}))
            .collect();
        let s = spec(serde_json::Value::Array(names));
        let mut o = observe(&s);
        o.found = Some(Ok((0..251)
            .map(|i| FoundCompany {
                name: format!("C{i:03}"),
                bytes: 1,
                tables: 1,
            })
            .collect()));
        let st = decide(o);
        let (c, _, msg) = condition(&st, "TooManyCompanies");
        assert_eq!(c, "True");
        assert!(msg.contains("251 companies"), "{msg}");
        assert_eq!(condition(&st, "Ready").0, "True");
    }

    #[test]
    fn sizes_are_read_again_after_ten_minutes_or_a_successful_run() {
        let s = spec(serde_json::json!([{"name": "ADATUM"}]));
        let st = decide(observe(&s));
        assert!(!needs_reading(&st, None, at(5)));
        assert!(needs_reading(&st, None, at(10)));
        assert!(needs_reading(&st, Some(at(1)), at(2)));
        assert!(needs_reading(&Default::default(), None, at(0)));
        // Kept from the status when not read: a run recorded for the selected companies.
        let mut o = observe(&s);
        o.status = st;
        o.found = None;
        o.last_success = Some(LastRun {
            name: "erp-1".into(),
            at: at(1),
            companies: vec!["ADATUM".into()],
        });
        let st = decide(o);
        assert_eq!(st.companies_found, 3);
        assert_eq!(st.companies[0].last_migrated_run.as_deref(), Some("erp-1"));
        assert_eq!(st.companies[1].last_migrated_run, None);
    }

    #[test]
    fn an_unreadable_source_keeps_the_companies_and_says_why() {
        let s = spec(serde_json::json!([{"name": "ADATUM"}]));
        let first = decide(observe(&s));
        let mut o = observe(&s);
        o.status = first;
        o.found = Some(Err("source database: connection refused".into()));
        let st = decide(o);
        assert_eq!(st.companies_found, 3);
        assert_eq!(condition(&st, "Ready").0, "True");
        let mut o = observe(&s);
        o.found = Some(Err("source database: connection refused".into()));
        let (ok, reason, msg) = condition(&decide(o), "Ready");
        assert_eq!(
            (ok.as_str(), reason.as_str()),
            ("False", "SourceUnreadable")
        );
        assert!(msg.contains("connection refused"));
    }
}
