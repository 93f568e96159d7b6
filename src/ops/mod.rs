//! The operations command line, in the style of `kubectl cnpg` and `cmctl`: what a migration
//! team types against a cluster. The same binary is a kubectl plugin when it is named (or
//! linked as) `kubectl-cloudmigrate`. Each command says which API calls it makes, so that its
//! RBAC can be written down (README, "The operations CLI").

pub mod check;
pub mod report;
pub mod status;

use crate::api::{MigrationRun, MigrationSchedule};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use std::time::Duration;

/// The field manager of the command line's writes.
pub const MANAGER: &str = "cloudmigrate-cli";

/// A client for the current kubeconfig context, and the namespace to work in: the one given,
/// else the context's.
pub async fn connect(namespace: Option<String>) -> Result<(Client, String), String> {
    let client = Client::try_default().await.map_err(|e| {
        format!("cannot reach the Kubernetes API: {e}; check KUBECONFIG and the current context")
    })?;
    let ns = namespace.unwrap_or_else(|| client.default_namespace().to_string());
    Ok((client, ns))
}

/// The message of an API error, with what to do for the common ones.
pub fn api_error(what: &str, e: kube::Error) -> String {
    match &e {
        kube::Error::Api(s) if s.code == 404 => format!("{what}: not found"),
        kube::Error::Api(s) if s.code == 403 => {
            format!(
                "{what}: forbidden ({}); see the RBAC each command needs in the README",
                s.message
            )
        }
        _ => format!("{what}: {e}"),
    }
}

/// Run Migration Now: sets the schedule's `spec.runRequest` to a new token, then waits until
/// the schedule has taken it, and says truthfully what became of it: the run it started (or
/// that run's wait, when another schedule's run holds the target), or what the request waits
/// for.
pub async fn run_now(
    client: &Client,
    ns: &str,
    schedule: &str,
    wait: Duration,
) -> Result<String, String> {
    let api: Api<MigrationSchedule> = Api::namespaced(client.clone(), ns);
    let token = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let patch = json!({"spec": {"runRequest": token}});
    api.patch(schedule, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error(&format!("MigrationSchedule {ns}/{schedule}"), e))?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let s = api
            .get(schedule)
            .await
            .map_err(|e| api_error(&format!("MigrationSchedule {ns}/{schedule}"), e))?;
        let status = s.status.unwrap_or_default();
        if status.last_handled_run_request.as_deref() == Some(token.as_str()) {
            return run_of_request(client, ns, schedule, &token).await;
        }
        if let Some(p) = status.pending_run_request.filter(|p| p.token == token) {
            return Ok(format!(
                "runRequest {token} waits ({}): {}. It stays set, and starts one run once the \
                 way is clear; `kubectl get msched {schedule} -w` follows it",
                p.reason, p.message
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(format!(
                "runRequest {token} is set; the controller has not taken it within {} s (is it \
                 running? `cloudmigrate check`)",
                wait.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The run that the request `token` started, and whether it is at work or waits.
async fn run_of_request(
    client: &Client,
    ns: &str,
    schedule: &str,
    token: &str,
) -> Result<String, String> {
    use crate::controller::annotations::{RUN_REQUEST, SCHEDULE_LABEL, fits_label};
    let runs: Api<MigrationRun> = Api::namespaced(client.clone(), ns);
    let mut params = kube::api::ListParams::default();
    if fits_label(schedule) {
        params = params.labels(&format!("{SCHEDULE_LABEL}={schedule}"));
    }
    let list = runs
        .list(&params)
        .await
        .map_err(|e| api_error(&format!("MigrationRuns in {ns}"), e))?;
    let Some(run) = list.items.into_iter().find(|r| {
        r.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RUN_REQUEST))
            .map(String::as_str)
            == Some(token)
    }) else {
        return Ok(format!(
            "the schedule took runRequest {token}, but its run is gone (deleted, or pruned)"
        ));
    };
    let name = run.metadata.name.clone().unwrap_or_default();
    let status = run.status.unwrap_or_default();
    let running = status.conditions.iter().find(|c| c.type_ == "Running");
    Ok(match running {
        Some(c) if status.start_time.is_none() && c.status == "False" => {
            format!(
                "run {name} was made for runRequest {token} and waits ({}): {}",
                c.reason, c.message
            )
        }
        _ => format!("run {name} started (runRequest {token})"),
    })
}

/// Asks a run to stop: its `spec.stop` (the run finishes the tables in progress, then ends
/// `Stopped`).
pub async fn stop(client: &Client, ns: &str, run: &str) -> Result<String, String> {
    let api: Api<MigrationRun> = Api::namespaced(client.clone(), ns);
    let current = api
        .get(run)
        .await
        .map_err(|e| api_error(&format!("MigrationRun {ns}/{run}"), e))?;
    if let Some(result) = current.status.as_ref().and_then(|s| s.result) {
        return Ok(format!("run {run} has ended already ({result:?})"));
    }
    let patch = json!({"spec": {"stop": true}});
    api.patch(run, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| api_error(&format!("MigrationRun {ns}/{run}"), e))?;
    Ok(format!(
        "run {run} stops after the tables in progress; `kubectl get mrun {run} -w` follows it"
    ))
}

/// The image that `update` sets: the repository of the schedule's runtime image, at `to`.
/// Refuses an in-process schedule (its runs are the controller: upgrade that) and a version
/// that is not newer than the one in use. Pure.
pub fn updated_image(
    schedule: &MigrationSchedule,
    default_image: &str,
    to: &str,
) -> Result<String, String> {
    use crate::api::schedule::Runner;
    use crate::controller::schedule::update::{image_version, repository};
    let name = schedule.metadata.name.as_deref().unwrap_or_default();
    let wanted = semver::Version::parse(to.strip_prefix('v').unwrap_or(to))
        .map_err(|e| format!("{to:?} is not a version ({e}); give one such as 0.2.0"))?;
    if schedule.spec.runtime.runner == Runner::InProcess {
        return Err(format!(
            "the runs of {name} run in the controller (runner: InProcess): upgrade the controller \
             instead, helm upgrade --set image.tag={wanted}"
        ));
    }
    let image = schedule
        .spec
        .runtime
        .image
        .as_deref()
        .unwrap_or(default_image);
    if let Some(used) = image_version(image)
        && used >= wanted
    {
        return Err(format!(
            "{name} runs {used} already ({image}); nothing to update to {wanted}"
        ));
    }
    Ok(format!("{}:{wanted}", repository(image)))
}

/// Check for Update's action: sets the schedule's `spec.runtime.image` to the newest release
/// the controller found in the registry (`status.runtime.latestVersion`), or to `to`. The
/// controller never edits a spec; a GitOps user commits the same change instead.
pub async fn update(
    client: &Client,
    ns: &str,
    name: &str,
    to: Option<String>,
) -> Result<String, String> {
    let api: Api<MigrationSchedule> = Api::namespaced(client.clone(), ns);
    let schedule = api
        .get(name)
        .await
        .map_err(|e| api_error(&format!("MigrationSchedule {ns}/{name}"), e))?;
    let runtime = schedule.status.as_ref().and_then(|s| s.runtime.as_ref());
    let to = match to {
        Some(v) => v,
        None => runtime
            .filter(|r| r.update_available)
            .and_then(|r| r.latest_version.clone())
            .ok_or_else(|| {
                let why = schedule
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "UpdateAvailable"))
                    .map(|c| format!("{}: {}", c.reason, c.message))
                    .unwrap_or_else(|| "the controller has not checked it yet".into());
                format!("no update is known for {ns}/{name} ({why}); give --to VERSION to set one")
            })?,
    };
    let image = updated_image(&schedule, &crate::runner::job::default_image(), &to)?;
    let before = schedule
        .spec
        .runtime
        .image
        .clone()
        .unwrap_or_else(|| "the controller's default".into());
    let patch = json!({"spec": {"runtime": {"image": image}}});
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(MANAGER.into()),
            ..Default::default()
        },
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|e| api_error(&format!("MigrationSchedule {ns}/{name}"), e))?;
    Ok(format!(
        "{ns}/{name}: spec.runtime.image {before} -> {image}; the next run's Job uses it. With \
         GitOps, commit the same change to the schedule's manifest (runtime: {{image: {image}}}), \
         or your tool puts the old image back"
    ))
}

#[cfg(test)]
mod update_tests {
    use super::*;

    fn schedule(runtime: serde_json::Value) -> MigrationSchedule {
        serde_json::from_value(json!({
            "apiVersion": "cloudmigrate.io/v1alpha1", "kind": "MigrationSchedule",
            "metadata": {"name": "erp", "namespace": "shop"},
            "spec": {"source": {"url": "postgres://a/b"}, "target": {"url": "postgres://c/d"},
                     "runtime": runtime}
        }))
        .unwrap()
    }

    #[test]
    fn update_sets_the_same_repository_at_the_newer_version() {
        let default = "ghcr.io/cloudmigrate/cloudmigrate:0.1.0";
        let s = schedule(json!({"image": "127.0.0.1:5000/team/cm:0.1.0"}));
        assert_eq!(
            updated_image(&s, default, "0.2.0").unwrap(),
            "127.0.0.1:5000/team/cm:0.2.0"
        );
        assert_eq!(
            updated_image(&schedule(json!({})), default, "v0.3.0").unwrap(),
            "ghcr.io/cloudmigrate/cloudmigrate:0.3.0"
        );
        let e = updated_image(&s, default, "0.1.0").unwrap_err();
        assert!(e.contains("runs 0.1.0 already"), "{e}");
        let e = updated_image(&s, default, "latest").unwrap_err();
        assert!(e.contains("not a version"), "{e}");
        let e =
            updated_image(&schedule(json!({"runner": "InProcess"})), default, "0.2.0").unwrap_err();
        assert!(e.contains("upgrade the controller"), "{e}");
    }
}
