//! The CompanySelection reconciler: read the schedule, the other selections for it and its
//! runs from the caches, the companies with their estimated sizes from the source when the
//! ones in the status are stale (one catalog read, whatever the number of tables), and the
//! companies' initialization records from the target; decide what to do about each
//! company's initialization and act (record it, start or fail its initializer); then decide
//! the status and write it when it changed.

pub mod decide;
pub mod initialization;

use super::context::Context;
use super::error::Error;
use super::queries::{self, LastRun};
use crate::api::CompanySelection;
use crate::api::companies::{CompanySelectionStatus, InitializationState};
use crate::api::schedule::MigrationSchedule;
use crate::api::schedule::Runner;
use crate::clock::utc;
use crate::engine::ledger::{self, companies::CompanyRecord};
use crate::runner::initializer::{self, InitializationSpec};
use crate::runner::inprocess::InProcess;
use crate::runner::job;
use decide::{FoundCompany, SelectionObserved};
use initialization::{InitAction, Liveness};
use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The CompanySelection controller: woken by a change of the object, and by a change of the schedule
/// it names (a run ended: sizes and initializations move on).
pub async fn controller(
    watch: super::watches::Dependent<CompanySelection>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    super::watches::drive_dependent(watch, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(selection = %format!("{}/{}", selection.namespace().unwrap_or_default(), selection.name_any())))]
pub async fn reconcile(
    selection: Arc<CompanySelection>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = selection
        .namespace()
        .ok_or_else(|| Error::Invalid("a CompanySelection is namespaced".into()))?;
    let schedule_name = &selection.spec.schedule_ref.name;
    let schedule = ctx.caches.schedule(&ns, schedule_name);
    let last_success = queries::last_success(&ctx.caches, &ns, schedule_name);
    let status = selection.status.clone().unwrap_or_default();
    let now = chrono::Utc::now();
    // Database work waits for the namespace's share, without holding a reconcile slot.
    let Some(_share) = ctx.database_share(&ns) else {
        return Ok(Action::requeue(super::context::SHARE_WAIT));
    };
    let found = match &schedule {
        Some(s) if decide::needs_reading(&status, last_success.as_ref().map(|r| r.at), now) => {
            Some(read_companies(&ctx.client, s).await)
        }
        _ => None,
    };
    let active_run = schedule.as_ref().and_then(|_| {
        queries::active_run(&ctx.caches, &ns, schedule_name)
            .map(|run| format!("run {run}"))
            .or_else(|| {
                queries::pending_reset(&ctx.caches, &ns, schedule_name)
                    .map(|reset| format!("CloudReset {reset}"))
            })
    });
    let no_initialization = schedule.as_ref().and_then(|s| no_initialization(s));
    let target = match &schedule {
        // Without initialization there are no records to read.
        Some(s) if no_initialization.is_none() && wants_target(&status, last_success.as_ref()) => {
            Some(crate::logins::open_side(&ctx.client, s, crate::logins::Side::Target).await)
        }
        _ => None,
    };
    let read_records = |db: &crate::db::Database| {
        let db = db.clone();
        async move {
            ledger::companies::read(&db)
                .await
                .map_err(|e| format!("target database: {e}"))
        }
    };
    let records = match &target {
        Some(Ok(db)) => Some(read_records(db).await),
        Some(Err(e)) => Some(Err(e.clone())),
        None => None,
    };
    let liveness = match (&schedule, &records) {
        (Some(s), Some(Ok(r))) => liveness(&ctx, &selection, s, r).await?,
        _ => Default::default(),
    };
    let mut observed = SelectionObserved {
        generation: selection.metadata.generation,
        spec: &selection.spec,
        status: status.clone(),
        schedule_exists: schedule.is_some(),
        no_initialization,
        older: older(&ctx, &ns, &selection),
        found,
        last_success,
        records,
        liveness,
        active_run,
        now,
    };
    let actions = decide::initialization_actions(&observed);
    if let (Some(Ok(db)), Some(schedule), false) = (&target, &schedule, actions.is_empty()) {
        for a in &actions {
            act(&ctx, &selection, schedule, db, a).await?;
        }
        observed.records = Some(read_records(db).await);
        observed.liveness.clear();
    }
    if let Some(Ok(db)) = &target {
        db.close().await;
    }
    let busy =
        matches!(&observed.records, Some(Ok(r)) if r.iter().any(|r| initialization::busy(Some(r))));
    let decided = decide::decide(observed);
    if selection.status.is_none() || decided != status {
        ctx.apply_status(selection.as_ref(), &decided).await?;
    }
    // An initialization in progress is watched closely; otherwise sizes go stale: look
    // again when they do (a successful run wakes the schedule, and through its run the
    // selection, sooner).
    Ok(if busy {
        Action::requeue(Duration::from_secs(5))
    } else {
        Action::requeue(super::jitter::spread(
            decide::SIZES_FRESH_FOR,
            &format!("CompanySelection/{ns}/{}", selection.name_any()),
        ))
    })
}

/// Why a schedule's companies get no initialization, with the condition reason: its target is
/// a data lake, or its source is Dynamics GP (whose companies are databases of their own,
/// which the initialization's checks and steps do not know). None when they may.
fn no_initialization(schedule: &MigrationSchedule) -> Option<(&'static str, &'static str)> {
    if crate::lake::store::is_lake_url(&schedule.spec.target.url) {
        return Some((
            crate::lake::NOT_FOR_LAKE,
            "the schedule writes a data lake, and initialization works in a target database",
        ));
    }
    (schedule.spec.product == crate::vocabulary::Product::Gp).then_some((
        "NotForDynamicsGP",
        "initialization checks and sets up Business Central companies; a Dynamics GP \
         company is a database of its own, which it does not know",
    ))
}

/// Whether the target's initialization records are worth reading: a company has been
/// migrated, or has a record.
fn wants_target(status: &CompanySelectionStatus, last_success: Option<&LastRun>) -> bool {
    last_success.is_some()
        || status
            .companies
            .iter()
            .any(|c| c.last_migrated_run.is_some() || c.initialization.is_some())
}

/// For each scheduled or running record of this controller, whether its initializer still
/// works: its in-process task, or its Job. Records that the command line wrote are left alone.
async fn liveness(
    ctx: &Context,
    selection: &CompanySelection,
    schedule: &MigrationSchedule,
    records: &[CompanyRecord],
) -> Result<HashMap<String, Liveness>, Error> {
    let ns = selection.namespace().unwrap_or_default();
    let name = selection.name_any();
    let mut out = HashMap::new();
    for r in records.iter().filter(|r| initialization::busy(Some(r))) {
        if !r.attempt.starts_with('g') {
            continue;
        }
        let spec = InitializationSpec {
            namespace: ns.clone(),
            selection: name.clone(),
            company: r.company.clone(),
            attempt: r.attempt.clone(),
        };
        let state = match schedule.spec.runtime.runner {
            Runner::InProcess => {
                if ctx
                    .inprocess
                    .alive(&InProcess::initializer_key(&spec), &r.attempt, 0)
                {
                    Liveness::Alive
                } else {
                    Liveness::Lost
                }
            }
            Runner::Job => {
                let job_name = initializer::job_name(&name, &r.company, &r.attempt);
                let job = Api::<Job>::namespaced(ctx.client.clone(), &ns)
                    .get_opt(&job_name)
                    .await
                    .map_err(|e| Error::Act(format!("reading Job {job_name}"), e))?;
                match job {
                    None => Liveness::Ended(format!(
                        "Job {job_name} of the initialization is gone before it recorded an outcome"
                    )),
                    Some(j) => match job::job_failure(&job_name, j.status.as_ref()) {
                        Some(why) => Liveness::Ended(why),
                        None if !job::job_alive(j.status.as_ref(), chrono::Utc::now()) => {
                            Liveness::Ended(format!(
                                "Job {job_name} completed without recording an outcome in the \
                                 target; its log says why"
                            ))
                        }
                        None => Liveness::Alive,
                    },
                }
            }
        };
        out.insert(r.company.clone(), state);
    }
    Ok(out)
}

/// Starts an initialization in the controller, where its operator allows in-process work in
/// the namespace; elsewhere the initialization fails, saying so.
async fn start_in_process(
    ctx: &Context,
    target: &crate::db::Database,
    spec: InitializationSpec,
) -> Result<(), Error> {
    match ctx.in_process_refused(&spec.namespace) {
        None => ctx.inprocess.start_initializer(ctx.client.clone(), spec),
        Some(why) => {
            ledger::companies::set_state(
                target,
                &spec.company,
                &spec.attempt,
                InitializationState::Failed,
                Some(&why),
                None,
            )
            .await
            .map_err(|e| Error::Invalid(format!("target database: {e}")))?;
        }
    }
    Ok(())
}

/// Carries out one initialization action: the record in the target first, then the
/// initializer.
async fn act(
    ctx: &Context,
    selection: &CompanySelection,
    schedule: &MigrationSchedule,
    target: &crate::db::Database,
    action: &InitAction,
) -> Result<(), Error> {
    let ns = selection.namespace().unwrap_or_default();
    let name = selection.name_any();
    let db_error = |e: crate::db::DbError| Error::Invalid(format!("target database: {e}"));
    let spec = |company: &str, attempt: &str| InitializationSpec {
        namespace: ns.clone(),
        selection: name.clone(),
        company: company.to_string(),
        attempt: attempt.to_string(),
    };
    match action {
        InitAction::Mark { company, attempt } => {
            ledger::companies::record(
                target,
                company,
                InitializationState::Initialized,
                attempt,
                None,
                Some("marked as initialized; no initialization step ran"),
            )
            .await
            .map_err(db_error)?;
        }
        InitAction::Fail {
            company,
            attempt,
            message,
        } => {
            ledger::companies::set_state(
                target,
                company,
                attempt,
                InitializationState::Failed,
                Some(message),
                None,
            )
            .await
            .map_err(db_error)?;
        }
        InitAction::Resume { company, attempt } => {
            start_in_process(ctx, target, spec(company, attempt)).await?
        }
        InitAction::Schedule {
            company,
            attempt,
            after_run,
        } => {
            ledger::companies::record(
                target,
                company,
                InitializationState::Scheduled,
                attempt,
                after_run.as_deref(),
                Some("scheduled"),
            )
            .await
            .map_err(db_error)?;
            match schedule.spec.runtime.runner {
                Runner::InProcess => start_in_process(ctx, target, spec(company, attempt)).await?,
                Runner::Job => {
                    let account = job::service_account();
                    let j = initializer::job_for(selection, schedule, company, attempt, &account);
                    let job_name = j.metadata.name.clone().unwrap_or_default();
                    match job::create(&ctx.client, &ns, &j).await {
                        Ok(()) => {}
                        Err(Ok((code, message))) => {
                            let message = format!(
                                "the API server refused Job {job_name} of the initialization \
                                 ({code}): {message}; the initialization is tried again when \
                                 this CompanySelection's spec changes"
                            );
                            ledger::companies::set_state(
                                target,
                                company,
                                attempt,
                                InitializationState::Failed,
                                Some(&message),
                                None,
                            )
                            .await
                            .map_err(db_error)?;
                        }
                        Err(Err(e)) => {
                            return Err(Error::Act(format!("creating Job {job_name}"), e));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// The oldest other CompanySelection for the same schedule, if it is older than this one: the
/// runs use that one.
fn older(ctx: &Context, ns: &str, me: &CompanySelection) -> Option<String> {
    let created = |s: &CompanySelection| s.creation_timestamp().map(|t| utc(&t));
    let mine = (created(me), me.name_any());
    ctx.caches
        .selections_of(ns, &me.spec.schedule_ref.name)
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
        .map(|s| (created(s), s.name_any()))
        .filter(|other| *other < mine)
        .min()
        .map(|(_, name)| name)
}

/// The companies of the schedule's source with their estimated sizes, from one read of the
/// catalog. The error says what failed and never holds a password.
async fn read_companies(
    client: &kube::Client,
    schedule: &MigrationSchedule,
) -> Result<Vec<FoundCompany>, String> {
    let read = async {
        let db = crate::logins::open_side(client, schedule, crate::logins::Side::Source).await?;
        if schedule.spec.product == crate::vocabulary::Product::Gp {
            let companies = crate::engine::gp::companies(&db).await;
            db.close().await;
            let companies = companies.map_err(|e| e.to_string())?;
            return gp_company_sizes(client, schedule, companies).await;
        }
        let catalog = crate::engine::catalog::Catalog::read_with_sizes(&db).await;
        db.close().await;
        let catalog =
            catalog.map_err(|e| format!("reading the source database's companies: {e}"))?;
        Ok(catalog
            .company_sizes()
            .into_iter()
            .map(|(name, size)| FoundCompany {
                name,
                bytes: size.bytes,
                tables: size.tables,
            })
            .collect())
    };
    tokio::time::timeout(Duration::from_secs(120), read)
        .await
        .map_err(|_| "reading the source's catalog took over 2 minutes".to_string())?
}

/// The sizes of Dynamics GP companies, each read from its own database: the source's login,
/// TLS and server, the database that `SY01500` names.
async fn gp_company_sizes(
    client: &kube::Client,
    schedule: &MigrationSchedule,
    companies: Vec<crate::engine::gp::GpCompany>,
) -> Result<Vec<FoundCompany>, String> {
    let ns = schedule.namespace().unwrap_or_default();
    let source = crate::logins::Connection::of(&schedule.spec, crate::logins::Side::Source);
    let mut found = Vec::with_capacity(companies.len());
    for c in companies {
        let url = crate::engine::gp::database_url(source.url, &c.database)?;
        let connection = crate::logins::Connection {
            url: &url,
            ..source
        };
        let db = crate::logins::open_database(client, &ns, "source", connection, false)
            .await
            .map_err(|e| format!("GP company {:?} (database {}): {e}", c.name, c.database))?;
        let catalog = crate::engine::catalog::Catalog::read_with_sizes(&db).await;
        db.close().await;
        let catalog = catalog.map_err(|e| {
            format!(
                "reading GP company {:?} (database {}): {e}",
                c.name, c.database
            )
        })?;
        found.push(FoundCompany {
            name: c.name,
            bytes: catalog.tables.iter().map(|t| t.def.est_bytes).sum(),
            tables: catalog.tables.len() as i64,
        });
    }
    Ok(found)
}
