//! `status SCHEDULE`: one screen with the schedule, its conditions, its last and active runs,
//! the migration tiles, the companies, the setup checklist and the recent events.
//! API calls: get migrationschedules; list migrationruns, companyselections and events in the
//! namespace.

use super::api_error;
use crate::api::schedule::MigrationScheduleStatus;
use crate::api::{CompanySelection, MigrationRun, MigrationSchedule};
use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use std::fmt::Write;

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

fn time(t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    t.as_ref().map(|t| t.0.to_string()).unwrap_or_default()
}

/// The screen, as text.
pub async fn status(client: &Client, ns: &str, name: &str) -> Result<String, String> {
    let schedule = Api::<MigrationSchedule>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .map_err(|e| api_error(&format!("MigrationSchedule {ns}/{name}"), e))?;
    let lp = ListParams::default();
    let runs: Vec<MigrationRun> = Api::<MigrationRun>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| api_error("listing MigrationRuns", e))?
        .items
        .into_iter()
        .filter(|r| r.spec.schedule_ref.name == name)
        .collect();
    let selections: Vec<CompanySelection> = Api::<CompanySelection>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map_err(|e| api_error("listing CompanySelections", e))?
        .items
        .into_iter()
        .filter(|s| s.spec.schedule_ref.name == name)
        .collect();
    // Events are best effort: a role without them still gets the rest.
    let events: Vec<Event> = Api::<Event>::namespaced(client.clone(), ns)
        .list(&lp)
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    Ok(screen(&schedule, &runs, &selections, &events))
}

/// Lays the screen out: the schedule, its conditions, its recent runs, its companies, its
/// setup checklist and its recent events. Pure.
pub fn screen(
    schedule: &MigrationSchedule,
    runs: &[MigrationRun],
    selections: &[CompanySelection],
    events: &[Event],
) -> String {
    let status = schedule.status.clone().unwrap_or_default();
    let mut out = String::new();
    header(&mut out, schedule, &status);
    conditions(&mut out, &status);
    recent_runs(&mut out, runs, &status);
    // Runs use the oldest selection of the schedule (then the first by name), as the
    // controller does; one being deleted counts for nothing.
    if let Some(selection) = selections
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .min_by_key(|s| (s.creation_timestamp().map(|t| t.0), s.name_any()))
    {
        companies(&mut out, selection);
    }
    checklist(&mut out, &status);
    recent_events(&mut out, &schedule.name_any(), runs, events);
    out
}

/// Where the schedule runs from and to, when, and with which runtime.
fn header(out: &mut String, schedule: &MigrationSchedule, status: &MigrationScheduleStatus) {
    let name = schedule.name_any();
    let ns = schedule.namespace().unwrap_or_default();
    let spec = &schedule.spec;
    let _ = writeln!(out, "MigrationSchedule {ns}/{name}");
    let _ = writeln!(
        out,
        "  schedule {} ({}){}{}   next run {}",
        spec.schedule
            .as_deref()
            .unwrap_or("none (manual runs only)"),
        spec.time_zone,
        if spec.suspend { ", suspended" } else { "" },
        if spec.disabled { ", DISABLED" } else { "" },
        status.next_run_time.as_deref().unwrap_or("-"),
    );
    let _ = writeln!(
        out,
        "  source {}\n  target {}",
        crate::db::redact_url(&spec.source.url),
        crate::db::redact_url(&spec.target.url)
    );
    if let Some(rt) = &status.runtime {
        let _ = writeln!(
            out,
            "  runtime {:?}, version {} (latest {}{}){}",
            spec.runtime.runner,
            rt.version_in_use.as_deref().unwrap_or("?"),
            rt.latest_version.as_deref().unwrap_or("?"),
            if rt.update_available {
                ", UPDATE AVAILABLE"
            } else {
                ""
            },
            match (&rt.key_role, &rt.key_fingerprint) {
                (Some(role), Some(fp)) => format!(
                    "\n  runtime key: role {role}, {fp} in Secret {}, rotated {}",
                    rt.key_secret_name.as_deref().unwrap_or("?"),
                    time(&rt.key_rotated_at)
                ),
                _ => String::new(),
            }
        );
    }
}

/// The schedule's conditions, and its migration information.
fn conditions(out: &mut String, status: &MigrationScheduleStatus) {
    let mut conditions = table(&["Condition", "Status", "Reason", "Message"]);
    for c in &status.conditions {
        conditions.add_row(vec![
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
        ]);
    }
    if status.conditions.is_empty() {
        let _ = writeln!(
            out,
            "\nNo status yet: is the controller running? `cloudmigrate check` says."
        );
    } else {
        let _ = writeln!(out, "\n{conditions}");
    }
    if let Some(m) = &status.migration {
        let _ = writeln!(
            out,
            "\nMigration information (each table's latest result): {} migrated, {} with \
             warnings, {} failed, {} not migrated by design, {} of companies not selected, {} \
             filtered out, {} skipped for an initialization, {} not started",
            m.tables_migrated,
            m.tables_with_warnings,
            m.tables_failed,
            m.tables_not_migrated,
            m.tables_of_unselected_companies,
            m.tables_filtered_out,
            m.tables_skipped_for_initialization,
            m.tables_not_started
        );
    }
}

/// The five newest runs.
fn recent_runs(out: &mut String, runs: &[MigrationRun], status: &MigrationScheduleStatus) {
    let mut recent: Vec<&MigrationRun> = runs.iter().collect();
    recent.sort_by_key(|r| std::cmp::Reverse(r.creation_timestamp()));
    let mut run_table = table(&[
        "Run", "Type", "Result", "Reason", "Started", "Ended", "Tables", "Rows",
    ]);
    for r in recent.iter().take(5) {
        let s = r.status.clone().unwrap_or_default();
        let p = s.progress.unwrap_or_default();
        run_table.add_row(vec![
            r.name_any(),
            format!("{:?}", r.spec.r#type),
            match (s.result, &s.start_time) {
                (Some(x), _) => format!("{x:?}"),
                (None, Some(_)) => "running".into(),
                (None, None) => "pending".into(),
            },
            s.reason.clone().unwrap_or_default(),
            time(&s.start_time),
            time(&s.completion_time),
            format!(
                "{}/{} ({} failed)",
                p.tables_done, p.tables_total, p.tables_failed
            ),
            p.rows_copied.to_string(),
        ]);
    }
    let _ = writeln!(
        out,
        "\nRuns (newest first; active: {})\n{run_table}",
        status.active_run.as_deref().unwrap_or("none")
    );
}

/// The companies of the schedule's CompanySelection.
fn companies(out: &mut String, selection: &CompanySelection) {
    let mut companies = table(&["Company", "Size", "Selected", "Last run", "Initialization"]);
    for c in selection
        .status
        .as_ref()
        .map(|s| s.companies.clone())
        .unwrap_or_default()
    {
        companies.add_row(vec![
            c.name,
            c.estimated_size.unwrap_or_default(),
            if c.selected { "yes" } else { "" }.into(),
            c.last_migrated_run.unwrap_or_default(),
            c.initialization
                .map(|i| format!("{i:?}"))
                .unwrap_or_default(),
        ]);
    }
    let _ = writeln!(
        out,
        "\nCompanies (CompanySelection {})\n{companies}",
        selection.name_any()
    );
}

/// The setup checklist, when the schedule has one.
fn checklist(out: &mut String, status: &MigrationScheduleStatus) {
    if !status.checklist.is_empty() {
        let mut checklist = table(&["Step", "Company", "Done", "What to do"]);
        for s in &status.checklist {
            checklist.add_row(vec![
                s.name.clone(),
                s.company.clone().unwrap_or_default(),
                if s.done { "done" } else { "-" }.into(),
                s.description.clone().unwrap_or_default(),
            ]);
        }
        let _ = writeln!(out, "\nSetup checklist\n{checklist}");
    }
}

/// The ten newest events of the schedule and its runs.
fn recent_events(out: &mut String, name: &str, runs: &[MigrationRun], events: &[Event]) {
    let names: Vec<String> = std::iter::once(name.to_string())
        .chain(runs.iter().map(|r| r.name_any()))
        .collect();
    let mut mine: Vec<&Event> = events
        .iter()
        .filter(|e| {
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_ref())
                .is_some_and(|n| names.contains(n))
        })
        .collect();
    mine.sort_by_key(|e| {
        std::cmp::Reverse(
            e.event_time
                .as_ref()
                .map(|t| t.0)
                .or_else(|| e.metadata.creation_timestamp.as_ref().map(|t| t.0)),
        )
    });
    if !mine.is_empty() {
        let mut ev = table(&["Time", "Type", "Reason", "Object", "Message"]);
        for e in mine.iter().take(10) {
            ev.add_row(vec![
                e.event_time
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .or_else(|| {
                        e.metadata
                            .creation_timestamp
                            .as_ref()
                            .map(|t| t.0.to_string())
                    })
                    .unwrap_or_default(),
                e.type_.clone().unwrap_or_default(),
                e.reason.clone().unwrap_or_default(),
                e.regarding
                    .as_ref()
                    .and_then(|r| r.name.clone())
                    .unwrap_or_default(),
                e.note.clone().unwrap_or_default(),
            ]);
        }
        let _ = writeln!(out, "\nRecent events\n{ev}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_screen_shows_the_selection_that_runs_use_and_a_waiting_request() {
        let schedule: MigrationSchedule = serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop"},
            "spec": {"source": {"url": "postgres://erp@db/nav"},
                     "target": {"url": "postgres://cloud@db/bc"}},
            "status": {"conditions": [{"type": "RunRequest", "status": "False",
                "reason": "RunRequestWaiting", "message": "runRequest \"t1\" waits (RunActive)",
                "lastTransitionTime": "2026-12-01T00:00:00Z"}]}
        }))
        .unwrap();
        let selection = |name: &str, created: &str| -> CompanySelection {
            serde_json::from_value(json!({
                "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "CompanySelection",
                "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
                "spec": {"scheduleRef": {"name": "erp"}, "companies": []}
            }))
            .unwrap()
        };
        // Listed by name, "a-newer" first; runs use the older "z-older".
        let selections = [
            selection("a-newer", "2026-12-02T00:00:00Z"),
            selection("z-older", "2026-12-01T00:00:00Z"),
        ];
        let text = screen(&schedule, &[], &selections, &[]);
        assert!(text.contains("CompanySelection z-older"), "{text}");
        assert!(!text.contains("a-newer"), "{text}");
        assert!(text.contains("RunRequestWaiting"), "{text}");
    }
}
