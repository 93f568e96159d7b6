//! `cloudmigrate runs show`: a run's complete table log, read from its target database (the
//! run's status keeps only the problems past 2,000 tables).

use crate::api::{MigrationRun, MigrationSchedule};
use crate::db::{ConnectSpec, Database};
use crate::engine::report::RunReport;
use crate::logins::passwords::secret_value;

/// The run `namespace/name` and the table log its target holds. The target's password is
/// `given`, or else read from the Secret that the schedule's `passwordSecretRef` names.
pub async fn run_log(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    given: Option<String>,
) -> Result<(MigrationRun, RunReport), String> {
    let run = format!("{namespace}/{name}");
    let mrun = kube::Api::<MigrationRun>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("reading MigrationRun {run}: {e}"))?
        .ok_or_else(|| {
            format!(
                "MigrationRun {run} does not exist; list runs with kubectl get mrun -n {namespace}"
            )
        })?;
    let schedule = kube::Api::<MigrationSchedule>::namespaced(client.clone(), namespace)
        .get_opt(&mrun.spec.schedule_ref.name)
        .await
        .map_err(|e| format!("reading its MigrationSchedule: {e}"))?
        .ok_or_else(|| {
            format!(
                "its MigrationSchedule {:?} no longer exists, so its target is unknown",
                mrun.spec.schedule_ref.name
            )
        })?;
    let target = &schedule.spec.target;
    if crate::lake::store::is_lake_url(&target.url) {
        return Err(format!(
            "the target of MigrationRun {run} is a data lake, which keeps no run log: kubectl \
             get mrun {name} -n {namespace} -o yaml lists its tables (every one up to {cap}, \
             past that those with a problem), and each Delta table's _delta_log holds its \
             history",
            cap = super::STATUS_TABLE_CAP
        ));
    }
    let password = match (given, &target.password_secret_ref) {
        (Some(pw), _) => Some(pw),
        (None, Some(secret)) => Some(secret_value(client, namespace, secret).await?),
        (None, None) => None,
    };
    let tls = match crate::db::Dialect::of_url(&target.url) {
        Ok(crate::db::Dialect::Sqlite) => None,
        _ => Some(
            crate::logins::tls::settle(client, namespace, "target", target.tls.as_ref()).await?,
        ),
    };
    let db = Database::connect(&ConnectSpec {
        url: target.url.clone(),
        password,
        tls,
        max_connections: 1,
        create: false,
    })
    .await
    .map_err(|e| format!("target database: {e}"))?;
    let tables = crate::engine::ledger::state::read_run_log(&db, name).await;
    db.close().await;
    let tables = tables.map_err(|e| format!("reading the run log in the target: {e}"))?;
    if tables.is_empty() {
        return Err(format!(
            "the target has no run log for {name}: the run has not written any table yet"
        ));
    }
    Ok((
        mrun,
        RunReport {
            run_id: name.to_string(),
            tables,
            duration: Default::default(),
        },
    ))
}
