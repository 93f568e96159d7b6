//! The RuntimeKeyRotation reconciler (Reset Runtime Service Key): read the schedule, its key
//! Secret and its other rotations from the caches; decide (`decide`); then act: write the
//! status and take the one step decided. Each step is recorded before the next, and the key
//! Secret's change wakes the rotation for it, until the rotation has ended for good.

pub mod decide;

use super::conditions::At;
use super::context::Context;
use super::error::Error;
use super::note::Note;
use super::runtime_key::{self, PREVIOUS_KEY, SecretView};
use crate::api::key_rotation::RuntimeKeyRotationStatus;
use crate::api::{MigrationSchedule, RuntimeKeyRotation};
use crate::engine::access::{self, RuntimeKey};
use crate::engine::ledger::requests;
use decide::{RotationObserved, Step, finished};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// The RuntimeKeyRotation controller: woken by a change of the object, and by a change of the schedule
/// it names, or of the schedule's key Secret.
pub async fn controller(
    watch: super::watches::Dependent<RuntimeKeyRotation>,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    super::watches::drive_dependent(watch, reconcile, ctx, shutdown).await
}

#[tracing::instrument(skip_all, fields(rotation = %format!("{}/{}", rotation.namespace().unwrap_or_default(), rotation.name_any())))]
pub async fn reconcile(
    rotation: Arc<RuntimeKeyRotation>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let ns = rotation
        .namespace()
        .ok_or_else(|| Error::Invalid("a RuntimeKeyRotation is namespaced".into()))?;
    let status = rotation.status.clone().unwrap_or_default();
    if finished(&status) || rotation.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // A rotation's stages talk to the target: they wait for the namespace's share of database
    // work, without holding a reconcile slot.
    let Some(_share) = ctx.database_share(&ns) else {
        return Ok(Action::requeue(super::context::SHARE_WAIT));
    };
    let (observed, schedule) = read(&rotation, &ctx, &ns, status);
    let decision = decide::decide(&observed);
    act(&rotation, &ctx, schedule.as_deref(), decision).await
}

/// Read: the schedule, its key Secret and the older rotations, from the caches.
fn read(
    rotation: &RuntimeKeyRotation,
    ctx: &Context,
    ns: &str,
    status: RuntimeKeyRotationStatus,
) -> (RotationObserved, Option<Arc<MigrationSchedule>>) {
    let schedule_name = &rotation.spec.schedule_ref.name;
    let schedule = ctx.caches.schedule(ns, schedule_name);
    let secret_name = crate::logins::secret_name(schedule_name);
    let observed = RotationObserved {
        uid: rotation.uid().unwrap_or_default(),
        schedule: schedule_name.clone(),
        generation: rotation.metadata.generation,
        status,
        schedule_exists: schedule.is_some(),
        has_role: schedule
            .as_ref()
            .is_some_and(|s| crate::logins::role_of(s).is_some()),
        disabled: schedule.as_ref().is_some_and(|s| s.spec.disabled),
        older_pending: super::queries::older_rotation(&ctx.caches, ns, rotation),
        secret: ctx
            .caches
            .key_secret(ns, &secret_name)
            .map(|s| SecretView::of(&s)),
        secret_name,
        now: chrono::Utc::now(),
    };
    (observed, schedule)
}

/// Act: write the status the decision made, then take its step. Each step changes the key
/// Secret, whose change wakes the rotation for the next step; the step to revoke the old key
/// ends the rotation.
async fn act(
    rotation: &RuntimeKeyRotation,
    ctx: &Context,
    schedule: Option<&MigrationSchedule>,
    d: decide::RotationDecision,
) -> Result<Action, Error> {
    if rotation.status.as_ref() != Some(&d.status) {
        ctx.apply_status(rotation, &d.status).await?;
    }
    let (Some(step), Some(schedule)) = (d.step, schedule) else {
        // Waiting: the schedule, its key Secret or an older rotation wakes it; a look now
        // and then in case nothing does.
        return Ok(Action::requeue(Duration::from_secs(30)));
    };
    let taken = match step {
        Step::Prepare => {
            // Carried out on this target before (the same object applied again): done.
            if let Some(done) = ledger_record(ctx, schedule, rotation, None)
                .await
                .map_err(Error::Retry)?
            {
                let at = At {
                    generation: rotation.metadata.generation,
                    now: chrono::Utc::now(),
                };
                let status = decide::already_done(d.status, at, &done);
                ctx.apply_status(rotation, &status).await?;
                ctx.publish(
                    rotation,
                    &[Note::normal(
                        "AlreadyDone",
                        format!(
                            "this rotation replaced the key at {}; nothing was rotated now",
                            done.at
                        ),
                    )],
                )
                .await;
                return Ok(Action::await_change());
            }
            prepare(ctx, schedule, rotation).await.map(|_| ())
        }
        Step::Apply => {
            let role = crate::logins::role_of(schedule).unwrap_or_default();
            runtime_key::apply_stored(ctx, schedule, &role)
                .await
                .map(|_| ())
        }
        Step::Revoke => return revoke(rotation, ctx, schedule, d.status).await,
    };
    match taken {
        // The Secret's change wakes the rotation; a look soon in case its event is slow.
        Ok(()) => Ok(Action::requeue(Duration::from_secs(5))),
        // The database or the API server failed: try again after a pause. The step is safe
        // to repeat.
        Err(e) => Err(Error::Retry(e)),
    }
}

/// The last step: the old key is refused, and the rotation ends, for good.
async fn revoke(
    rotation: &RuntimeKeyRotation,
    ctx: &Context,
    schedule: &MigrationSchedule,
    status: RuntimeKeyRotationStatus,
) -> Result<Action, Error> {
    let at = At {
        generation: rotation.metadata.generation,
        now: chrono::Utc::now(),
    };
    let outcome = match revoke_old(ctx, schedule).await {
        Err(Retry(e)) => return Err(Error::Retry(e)),
        Ok(outcome) => outcome,
    };
    if outcome.is_ok() {
        // Recorded in the target before the status says so: the same rotation seen again
        // finds it there, and rotates nothing.
        ledger_record(
            ctx,
            schedule,
            rotation,
            Some("the runtime key was replaced"),
        )
        .await
        .map_err(Error::Retry)?;
    }
    let note = match &outcome {
        Ok(()) => Note::normal(
            "KeyRotated",
            format!(
                "the runtime key of {} was replaced (new key {})",
                rotation.spec.schedule_ref.name,
                status.key_fingerprint.clone().unwrap_or_default()
            ),
        ),
        Err(e) => Note::warning("KeyRotationFailed", e.clone()),
    };
    let done = decide::revoked(status, at, outcome);
    ctx.apply_status(rotation, &done).await?;
    ctx.publish(rotation, &[note]).await;
    Ok(Action::await_change())
}

/// The rotation's record in the target's ledger (`engine::ledger::requests`): with `record`,
/// writes it (once; a second write finds it); without, reads whether it is there.
async fn ledger_record(
    ctx: &Context,
    schedule: &MigrationSchedule,
    rotation: &RuntimeKeyRotation,
    record: Option<&str>,
) -> Result<Option<requests::Done>, String> {
    let key = format!(
        "{}/{}",
        schedule.namespace().unwrap_or_default(),
        schedule.name_any()
    );
    let name = rotation.name_any();
    let request = requests::Request {
        schedule: &key,
        kind: "RuntimeKeyRotation",
        name: &name,
    };
    let db = crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Target).await?;
    let result = async {
        let done = requests::done(&db, &request).await?;
        match record {
            Some(summary) if done.is_none() => {
                requests::ensure(&db).await?;
                db.execute(&requests::record(db.dialect(), &request, summary))
                    .await?;
                Ok(None)
            }
            _ => Ok(done),
        }
    }
    .await;
    db.close().await;
    result.map_err(|e: crate::db::DbError| format!("target database: {e}"))
}

/// A failure worth another try later, as opposed to a verdict.
struct Retry(String);

/// Stores a new key in the Secret, keeping the old one as `previous-password`, with this
/// rotation's uid: only if the Secret did not change since it was read.
async fn prepare(
    ctx: &Context,
    schedule: &MigrationSchedule,
    rotation: &RuntimeKeyRotation,
) -> Result<SecretView, String> {
    use base64::Engine;
    let ns = schedule.namespace().unwrap_or_default();
    let name = crate::logins::secret_name(&schedule.name_any());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api
        .get(&name)
        .await
        .map_err(|e| format!("reading Secret {name:?} failed: {e}"))?;
    // Stored already by this rotation (the cache had not caught up): nothing to do again.
    let view = SecretView::of(&secret);
    if view.rotation.is_some() && view.rotation == rotation.uid() {
        return Ok(view);
    }
    let new = RuntimeKey::generate()?;
    let b64 = |k: &RuntimeKey| base64::engine::general_purpose::STANDARD.encode(k.reveal());
    let old = runtime_key::stored_key(&secret, "password");
    let patch = json!({
        "metadata": {
            "resourceVersion": secret.resource_version(),
            "annotations": {
                super::annotations::KEY_FINGERPRINT: new.fingerprint(),
                super::annotations::KEY_ROTATED_AT:
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                super::annotations::KEY_ROTATION: rotation.uid().unwrap_or_default(),
            },
        },
        "data": {
            "password": b64(&new),
            PREVIOUS_KEY: old.as_ref().map(b64),
        },
    });
    let patched = api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| format!("storing the new key in Secret {name:?} failed: {e}"))?;
    Ok(SecretView::of(&patched))
}

/// Checks that the new key logs in and the old one no longer does, then drops the old key
/// from the Secret. Err(Retry): try again; Ok(Err): the rotation failed.
async fn revoke_old(
    ctx: &Context,
    schedule: &MigrationSchedule,
) -> Result<Result<(), String>, Retry> {
    let ns = schedule.namespace().unwrap_or_default();
    let name = crate::logins::secret_name(&schedule.name_any());
    let role = crate::logins::role_of(schedule).unwrap_or_default();
    let url = &schedule.spec.target.url;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api
        .get(&name)
        .await
        .map_err(|e| Retry(format!("reading Secret {name:?} failed: {e}")))?;
    let tls = crate::logins::tls_of(&ctx.client, schedule, crate::logins::Side::Target)
        .await
        .map_err(Retry)?;
    let login = |key: RuntimeKey| {
        let (role, tls) = (role.clone(), tls.clone());
        async move {
            access::logs_in(url, tls, &role, &key)
                .await
                .map_err(|e| Retry(format!("target database: {e}")))
        }
    };
    let Some(new) = runtime_key::stored_key(&secret, "password") else {
        return Ok(Err(format!("Secret {name:?} lost its password")));
    };
    if !login(new).await? {
        return Ok(Err(format!(
            "the new key in Secret {name:?} is refused at login; the schedule sets it on the \
             role again at its next look. Create a new RuntimeKeyRotation if runs keep failing"
        )));
    }
    if let Some(old) = runtime_key::stored_key(&secret, PREVIOUS_KEY)
        && login(old).await?
    {
        return Ok(Err(
            "the old key still logs in: the role's password did not change. Check that the \
             user of spec.target.url may alter the role, then create a new RuntimeKeyRotation"
                .into(),
        ));
    }
    let patch = json!({"data": {PREVIOUS_KEY: null}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            Retry(format!(
                "dropping the old key from Secret {name:?} failed: {e}"
            ))
        })?;
    Ok(Ok(()))
}
