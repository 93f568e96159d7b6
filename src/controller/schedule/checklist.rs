//! The Setup Checklist and Disable Cloud Migration, as a pure function of what the schedule's
//! reconciler observed: the steps left before the cloud tenant can be the primary system, each
//! marked done from real state (the target's run log, the CompanySelection's and UserMapping's
//! status, the source's change tracking, the key Secret), and the next step of the disabling
//! that the controller takes itself.

use super::super::runtime_key::KeyView;
use crate::api::schedule::ChecklistStep;
use crate::engine::ledger::state::NotMigrated;
use std::collections::{BTreeMap, BTreeSet};

/// A company as its CompanySelection shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompanyView {
    pub name: String,
    pub initialized: bool,
    /// The source has the company; None while its CompanySelection has not read the source.
    pub in_source: Option<bool>,
}

/// What the checklist is made from.
#[derive(Clone, Debug, Default)]
pub struct ChecklistObserved {
    pub disabled: bool,
    /// The schedule's run that has not ended, if any.
    pub active_run: Option<String>,
    /// The selected companies; empty without a CompanySelection (every company migrates).
    pub companies: Vec<CompanyView>,
    /// The tables not in the cloud as they stand over the runs so far; None when the target
    /// has not answered yet.
    pub not_migrated: Option<Vec<NotMigrated>>,
    /// `spec.tables.setUpByHand`: patterns of tables left out that a person set up by hand.
    pub set_up_by_hand: Vec<String>,
    /// Change tracking is in the source; None when the source has not answered.
    pub tracking: Option<bool>,
    /// The source did not answer the last probe: why (without any password).
    pub source_silent: Option<String>,
    /// A UserMapping of the schedule applied every mapping.
    pub users_mapped: bool,
    pub key: KeyView,
}

/// What the controller does next to disable the migration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DisableStep {
    /// Remove change tracking from the source, after marking the target's state so that the
    /// next run (after re-enabling) copies every table in full.
    RemoveChangeTracking,
    /// Drop the login role and delete the key Secret.
    RevokeRuntimeKey,
}

/// At most this many table names per company in a step's description.
const NAMES_SHOWN: usize = 20;

fn step(name: &str, company: Option<&str>, done: bool, description: String) -> ChecklistStep {
    ChecklistStep {
        name: name.to_string(),
        company: company.map(str::to_string),
        done,
        description: Some(description),
    }
}

/// `a, b, c` and how many more.
fn names(tables: &[&NotMigrated]) -> String {
    let mut shown: Vec<String> = tables
        .iter()
        .take(NAMES_SHOWN)
        .map(|t| match t.reason.as_str() {
            "ByDesign" => format!("{} (not migrated by design)", t.table),
            "Filtered" => format!("{} (spec.tables leaves it out)", t.table),
            "CompanyNotSelected" => format!("{} (company not selected)", t.table),
            _ => format!("{} ({})", t.table, t.result),
        })
        .collect();
    if tables.len() > NAMES_SHOWN {
        shown.push(format!("and {} more", tables.len() - NAMES_SHOWN));
    }
    shown.join(", ")
}

/// The checklist, and the disabling step to take now, if any. Pure.
pub fn checklist(o: &ChecklistObserved) -> (Vec<ChecklistStep>, Option<DisableStep>) {
    let mut steps = bounded(company_steps(o));
    steps.push(step(
        "MapUsers",
        None,
        o.users_mapped,
        if o.users_mapped {
            "a UserMapping renamed the cloud users after the on-premises ones".into()
        } else {
            "optional: a UserMapping renames the cloud users after the on-premises ones, for \
             processes that go by user name (timesheets)"
                .into()
        },
    ));
    let (disabling, next) = disable_steps(o);
    steps.extend(disabling);
    (steps, next)
}

/// For each company (selected, or with tables the last run did not migrate): its tables and
/// its initialization; then the per-database tables, when some did not migrate.
fn company_steps(o: &ChecklistObserved) -> Vec<ChecklistStep> {
    let mut steps = Vec::new();
    let selected: BTreeSet<&str> = o.companies.iter().map(|c| c.name.as_str()).collect();
    let by_hand = match crate::engine::plan::table_patterns(&o.set_up_by_hand) {
        Ok(patterns) => patterns,
        Err(e) => {
            steps.push(step(
                "SetUpTablesNotMigrated",
                None,
                false,
                format!("spec.tables.setUpByHand: {e}; correct the pattern"),
            ));
            globset::GlobSet::empty()
        }
    };
    // The tables not in the cloud by company, less those left out by choice that a person set
    // up by hand; tables of companies not selected are not theirs to set up.
    let mut by_company: BTreeMap<&str, Vec<&NotMigrated>> = BTreeMap::new();
    let mut set_up: BTreeMap<&str, usize> = BTreeMap::new();
    for t in o.not_migrated.iter().flatten() {
        if !(t.company.is_empty() || selected.is_empty() || selected.contains(t.company.as_str())) {
            continue;
        }
        let by_choice =
            t.result == "Excluded" && matches!(t.reason.as_str(), "ByDesign" | "Filtered");
        if by_choice && by_hand.is_match(&t.table) {
            *set_up.entry(t.company.as_str()).or_default() += 1;
        } else {
            by_company.entry(t.company.as_str()).or_default().push(t);
        }
    }
    let mut companies: BTreeSet<&str> = selected.clone();
    companies.extend(
        by_company
            .keys()
            .chain(set_up.keys())
            .filter(|c| !c.is_empty()),
    );
    let tables_step = |company: &str| {
        let label = if company.is_empty() {
            "the per-database tables".to_string()
        } else {
            format!("company {company:?}")
        };
        let missing = o
            .companies
            .iter()
            .any(|c| c.name == company && c.in_source == Some(false));
        match (&o.not_migrated, by_company.get(company)) {
            _ if missing => step(
                "SetUpTablesNotMigrated",
                Some(company),
                false,
                format!(
                    "the source has no company {company:?}, so no run migrates it: correct \
                     the name in the CompanySelection (its Ready condition names the closest \
                     ones), or remove it"
                ),
            ),
            (None, _) => step(
                "SetUpTablesNotMigrated",
                (!company.is_empty()).then_some(company),
                false,
                format!(
                    "the target has not answered yet, so the tables of {label} that the last \
                     run did not migrate are not known"
                ),
            ),
            (Some(_), Some(tables)) => step(
                "SetUpTablesNotMigrated",
                (!company.is_empty()).then_some(company),
                false,
                format!(
                    "these tables of {label} are not in the cloud: {}. A table left out by \
                     design or by spec.tables: set it up in the cloud by hand, then add it to \
                     spec.tables.setUpByHand. Any other: correct what its MigrationRun names, \
                     and run again",
                    names(tables)
                ),
            ),
            (Some(_), None) => step(
                "SetUpTablesNotMigrated",
                (!company.is_empty()).then_some(company),
                true,
                match set_up.get(company) {
                    Some(n) => format!(
                        "every table of {label} is migrated, or set up by hand \
                         (spec.tables.setUpByHand: {n})"
                    ),
                    None => format!("every table of {label} is migrated"),
                },
            ),
        }
    };
    for company in &companies {
        steps.push(tables_step(company));
        let initialized = o
            .companies
            .iter()
            .any(|c| c.name == *company && c.initialized);
        steps.push(step(
            "InitializeCompany",
            Some(company),
            initialized,
            if initialized {
                "the company is initialized in the cloud".into()
            } else {
                "nobody can use the company in the cloud until it is initialized: set \
                 initialization: Initialize (or MarkInitialized) on it in the CompanySelection"
                    .into()
            },
        ));
    }
    if by_company.contains_key("") || set_up.contains_key("") {
        steps.push(tables_step(""));
    }
    steps
}

/// Companies with steps of their own in the checklist: past it, one `MoreCompanies` step
/// counts the rest, so that a schedule of 1,000 companies keeps a small status.
const COMPANIES_LISTED: usize = 50;

/// The company steps of at most `COMPANIES_LISTED` companies, those with a step not done first
/// (in order otherwise), and one `MoreCompanies` step for the others; the per-database step
/// stays.
fn bounded(steps: Vec<ChecklistStep>) -> Vec<ChecklistStep> {
    let companies: BTreeSet<&str> = steps.iter().filter_map(|s| s.company.as_deref()).collect();
    let open: BTreeSet<&str> = steps
        .iter()
        .filter(|s| !s.done)
        .filter_map(|s| s.company.as_deref())
        .collect();
    if companies.len() <= COMPANIES_LISTED {
        return steps;
    }
    let mut listed: Vec<&str> = companies
        .iter()
        .copied()
        .filter(|c| open.contains(c))
        .collect();
    listed.extend(companies.iter().copied().filter(|c| !open.contains(c)));
    listed.truncate(COMPANIES_LISTED);
    let listed: BTreeSet<String> = listed.into_iter().map(str::to_string).collect();
    let rest = companies.len() - listed.len();
    let rest_open = open.iter().filter(|c| !listed.contains(**c)).count();
    let mut out: Vec<ChecklistStep> = steps
        .iter()
        .filter(|s| s.company.as_ref().is_none_or(|c| listed.contains(c)))
        .cloned()
        .collect();
    out.push(step(
        "MoreCompanies",
        None,
        rest_open == 0,
        format!(
            "{rest} more companies, {rest_open} of them with a step not done: the \
             CompanySelection's status shows each company's initialization, and `cloudmigrate \
             runs show` the tables a run did not migrate"
        ),
    ));
    out
}

/// Disable Cloud Migration and, once asked for, its three parts; and the part to do now.
fn disable_steps(o: &ChecklistObserved) -> (Vec<ChecklistStep>, Option<DisableStep>) {
    let mut steps = Vec::new();
    let run_done = o.active_run.is_none();
    let tracking_removed = o.tracking == Some(false);
    let key_revoked = o.key.role.is_none() || o.key.stored.is_none();
    let all_done = o.disabled && run_done && tracking_removed && key_revoked;
    steps.push(step(
        "DisableCloudMigration",
        None,
        all_done,
        if all_done {
            "the migration is disabled: the cloud tenant is the primary system. Setting \
             spec.disabled back to false makes a new runtime key, and the next run copies every \
             table in full"
                .into()
        } else if o.disabled {
            "the migration is being disabled: see the three steps that follow".into()
        } else {
            "when the cloud tenant becomes the primary system, set spec.disabled: true; the \
             controller then finishes the steps that follow"
                .into()
        },
    ));
    if o.disabled {
        steps.push(step(
            "LetActiveRunFinish",
            None,
            run_done,
            match &o.active_run {
                Some(run) => format!("run {run} is still active; no new run starts"),
                None => "no run is active, and no new run starts".into(),
            },
        ));
        steps.push(step(
            "RemoveChangeTracking",
            None,
            tracking_removed,
            match (o.tracking, &o.source_silent) {
                (Some(false), _) => "the source has no change tracking left".into(),
                (Some(true), _) => "the triggers, functions and change tables are being removed \
                                    from the source"
                    .into(),
                (None, Some(why)) => format!(
                    "the source does not answer ({why}), so change tracking stays on it: the \
                     triggers and functions named cloudmigrate_ct_* and the tables \
                     cloudmigrate_ct_log, cloudmigrate_ct_clock and cloudmigrate_ct_tables. \
                     Everything on the cloud side is done meanwhile. The controller removes \
                     them when the source answers again; to remove them by hand, run \
                     `cloudmigrate disable-tracking -f FILE` with this schedule's manifest"
                ),
                (None, None) => "waiting for the source to answer".into(),
            },
        ));
        steps.push(step(
            "RevokeRuntimeKey",
            None,
            key_revoked,
            if o.key.role.is_none() {
                "a SQLite target has no runtime key".into()
            } else if key_revoked {
                format!(
                    "the login role {} was dropped and its Secret deleted",
                    o.key.role.as_deref().unwrap_or_default()
                )
            } else {
                "the login role is being dropped and its Secret deleted".into()
            },
        ));
    }
    let next = if !o.disabled || !run_done {
        None
    } else if o.tracking == Some(true) {
        Some(DisableStep::RemoveChangeTracking)
    } else if (tracking_removed || o.source_silent.is_some()) && !key_revoked {
        // A silent source holds up nothing on the cloud side.
        Some(DisableStep::RevokeRuntimeKey)
    } else {
        None
    };
    (steps, next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::runtime_key::SecretView;

    fn not_migrated(company: &str, table: &str) -> NotMigrated {
        NotMigrated {
            company: company.into(),
            table: table.into(),
            result: "Excluded".into(),
            reason: String::new(),
        }
    }

    fn by_design(company: &str, table: &str) -> NotMigrated {
        NotMigrated {
            reason: "ByDesign".into(),
            ..not_migrated(company, table)
        }
    }

    /// The per-database step lists the tables not migrated by design, and is done once
    /// spec.tables.setUpByHand names them; a table missing in the cloud still needs a run.
    #[test]
    fn tables_set_up_by_hand_finish_the_step_and_a_missing_table_does_not() {
        let mut o = ChecklistObserved {
            not_migrated: Some(vec![
                by_design("", "Access Control"),
                by_design("", "User"),
                NotMigrated {
                    result: "Warning".into(),
                    ..not_migrated("", "Media")
                },
            ]),
            key: keyed(),
            ..Default::default()
        };
        let step =
            |o: &ChecklistObserved| find(&checklist(o).0, "SetUpTablesNotMigrated", None).clone();
        let open = step(&o);
        assert!(!open.done);
        let said = open.description.unwrap();
        assert!(
            said.contains("Access Control (not migrated by design), User (not migrated by design), Media (Warning)")
                && said.contains("spec.tables.setUpByHand"),
            "{said}"
        );
        o.set_up_by_hand = vec!["access control".into(), "User".into()];
        let said = step(&o).description.unwrap();
        assert!(
            said.contains("Media (Warning)") && !said.contains("User"),
            "{said}"
        );
        assert!(
            !step(&o).done,
            "the table missing in the cloud is not set up by hand"
        );
        o.not_migrated.as_mut().unwrap().pop();
        let done = step(&o);
        assert!(done.done);
        assert_eq!(
            done.description.as_deref(),
            Some(
                "every table of the per-database tables is migrated, or set up by hand (spec.tables.setUpByHand: 2)"
            )
        );
        // A pattern that is no glob says so.
        o.set_up_by_hand = vec!["[".into()];
        let (steps, _) = checklist(&o);
        assert!(
            steps.iter().any(|s| !s.done
                && s.description
                    .as_deref()
                    .unwrap_or_default()
                    .starts_with("spec.tables.setUpByHand: ")),
            "{steps:#?}"
        );
    }

    fn find<'a>(
        steps: &'a [ChecklistStep],
        name: &str,
        company: Option<&str>,
    ) -> &'a ChecklistStep {
        steps
            .iter()
            .find(|s| s.name == name && s.company.as_deref() == company)
            .unwrap_or_else(|| panic!("no step {name} for {company:?}: {steps:#?}"))
    }

    fn keyed() -> KeyView {
        KeyView {
            role: Some("cloudmigrate_rt_erp".into()),
            secret: "erp-runtime-key".into(),
            stored: Some(SecretView::default()),
            problem: None,
            made: false,
        }
    }

    /// 1,000 selected companies, each with 30 tables not migrated and 10 of them initialized:
    /// 50 companies keep their steps, the not-done first, and one step counts the rest.
    #[test]
    fn a_thousand_companies_keep_the_checklist_small() {
        let names: Vec<String> = (0..1000).map(|i| format!("CRONUS {i:04}")).collect();
        let o = ChecklistObserved {
            companies: names
                .iter()
                .enumerate()
                .map(|(i, n)| CompanyView {
                    name: n.clone(),
                    initialized: i % 100 == 0,
                    in_source: Some(true),
                })
                .collect(),
            not_migrated: Some(
                names
                    .iter()
                    .skip(1)
                    .flat_map(|n| (0..30).map(move |t| not_migrated(n, &format!("Table {t}"))))
                    .collect(),
            ),
            key: keyed(),
            ..Default::default()
        };
        let (steps, _) = checklist(&o);
        let size = serde_json::to_vec(&steps).unwrap().len();
        assert!(size < 128 * 1024, "{size} bytes");
        let companies: BTreeSet<&str> = steps.iter().filter_map(|s| s.company.as_deref()).collect();
        assert_eq!(companies.len(), 50);
        assert!(
            !companies.contains("CRONUS 0000"),
            "its steps are done: listed last"
        );
        let more = find(&steps, "MoreCompanies", None);
        assert!(!more.done);
        assert!(
            more.description
                .as_deref()
                .unwrap()
                .starts_with("950 more companies, 949 of them"),
            "{:?}",
            more.description
        );
    }

    #[test]
    fn each_selected_company_lists_its_tables_not_migrated_and_its_initialization() {
        let o = ChecklistObserved {
            companies: vec![
                CompanyView {
                    name: "CRONUS".into(),
                    initialized: true,
                    in_source: Some(true),
                },
                CompanyView {
                    name: "Contoso".into(),
                    initialized: false,
                    in_source: None,
                },
                CompanyView {
                    name: "My Compny".into(),
                    initialized: false,
                    in_source: Some(false),
                },
            ],
            not_migrated: Some(vec![
                not_migrated("CRONUS", "Access Control"),
                not_migrated("Fabrikam", "Item"),
                not_migrated("", "User"),
            ]),
            tracking: Some(true),
            key: keyed(),
            ..Default::default()
        };
        let (steps, next) = checklist(&o);
        let tables = find(&steps, "SetUpTablesNotMigrated", Some("CRONUS"));
        assert!(!tables.done);
        assert!(
            tables
                .description
                .as_deref()
                .unwrap()
                .contains("Access Control (Excluded)")
        );
        assert!(find(&steps, "SetUpTablesNotMigrated", Some("Contoso")).done);
        // A selected company the source does not have is never set up.
        let misspelt = find(&steps, "SetUpTablesNotMigrated", Some("My Compny"));
        assert!(!misspelt.done);
        assert!(
            misspelt
                .description
                .as_deref()
                .unwrap()
                .contains("the source has no company"),
            "{misspelt:?}"
        );
        assert!(find(&steps, "InitializeCompany", Some("CRONUS")).done);
        assert!(!find(&steps, "InitializeCompany", Some("Contoso")).done);
        // A company that is not selected is not on the list.
        assert!(
            steps
                .iter()
                .all(|s| s.company.as_deref() != Some("Fabrikam"))
        );
        assert!(!find(&steps, "SetUpTablesNotMigrated", None).done);
        assert!(!find(&steps, "MapUsers", None).done);
        assert!(!find(&steps, "DisableCloudMigration", None).done);
        assert!(steps.iter().all(|s| s.name != "RemoveChangeTracking"));
        assert_eq!(next, None);
    }

    #[test]
    fn disabling_waits_for_the_run_then_removes_tracking_then_revokes_the_key() {
        let mut o = ChecklistObserved {
            disabled: true,
            active_run: Some("erp-1".into()),
            not_migrated: Some(vec![]),
            tracking: Some(true),
            key: keyed(),
            ..Default::default()
        };
        let (steps, next) = checklist(&o);
        assert_eq!(next, None);
        assert!(!find(&steps, "LetActiveRunFinish", None).done);
        o.active_run = None;
        assert_eq!(checklist(&o).1, Some(DisableStep::RemoveChangeTracking));
        // The probe has not answered again yet: nothing is done twice.
        o.tracking = None;
        assert_eq!(checklist(&o).1, None);
        // A source that does not answer holds up nothing on the cloud side, and the step says
        // what stays on the source.
        o.source_silent = Some("connection refused".into());
        let (steps, next) = checklist(&o);
        assert_eq!(next, Some(DisableStep::RevokeRuntimeKey));
        let left = find(&steps, "RemoveChangeTracking", None);
        assert!(!left.done);
        let said = left.description.clone().unwrap_or_default();
        assert!(
            said.contains("cloudmigrate disable-tracking") && said.contains("connection refused"),
            "{said}"
        );
        o.source_silent = None;
        o.tracking = Some(false);
        assert_eq!(checklist(&o).1, Some(DisableStep::RevokeRuntimeKey));
        o.key.stored = None;
        let (steps, next) = checklist(&o);
        assert_eq!(next, None);
        assert!(find(&steps, "DisableCloudMigration", None).done);
        assert!(find(&steps, "RevokeRuntimeKey", None).done);
        assert!(find(&steps, "RemoveChangeTracking", None).done);
    }
}
