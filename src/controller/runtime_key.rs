//! The runtime key of a schedule, as the cluster keeps it: the Secret `<schedule>-runtime-key`
//! (type `kubernetes.io/basic-auth`, owned by the schedule), whose annotations say which key
//! it holds and which key the login role has; making the key and setting it on the role; the
//! grants before a run; and revoking it all. The database side is `engine::access`.
//!
//! A key is always stored in the Secret before the role takes it. The role is then set from
//! what the Secret holds, so a crash between the two steps is mended by doing the second step
//! again: the Secret never loses a key that the role has.

use super::annotations::{
    APPLIED_FINGERPRINT, APPLIED_TO, KEY_FINGERPRINT, KEY_ROTATED_AT, KEY_ROTATION,
    RUNTIME_KEY_LABEL,
};
use super::context::Context;
use crate::api::MigrationSchedule;
use crate::api::run::MigrationRun;
use crate::engine::access::{self, RuntimeKey};
use crate::logins::{role_of, secret_name};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

/// The reason of a schedule's RuntimeKey condition when runs may log in with the key: the
/// schedule sets it, and a run waits for it.
pub const KEY_IN_EFFECT: &str = "InEffect";

/// The Secret's key that holds the key being replaced, while a rotation checks it is refused.
pub const PREVIOUS_KEY: &str = "previous-password";

/// What the key Secret's metadata says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretView {
    /// The fingerprint of the key it holds.
    pub fingerprint: Option<String>,
    /// The fingerprint of the key the role has.
    pub applied: Option<String>,
    /// The target whose role has it.
    pub applied_to: Option<String>,
    pub rotated_at: Option<String>,
    /// The uid of the rotation that stored the key, if one did.
    pub rotation: Option<String>,
}

impl SecretView {
    pub fn of(secret: &Secret) -> Self {
        let a = secret.annotations();
        let get = |k: &str| a.get(k).cloned();
        SecretView {
            fingerprint: get(KEY_FINGERPRINT),
            applied: get(APPLIED_FINGERPRINT),
            applied_to: get(APPLIED_TO),
            rotated_at: get(KEY_ROTATED_AT),
            rotation: get(KEY_ROTATION),
        }
    }

    /// Whether the role has the key the Secret holds.
    pub fn in_effect(&self) -> bool {
        self.fingerprint.is_some() && self.fingerprint == self.applied
    }
}

/// The key of a schedule as its status shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyView {
    /// None: the target has no login roles (SQLite).
    pub role: Option<String>,
    pub secret: String,
    /// The Secret's metadata, when it exists.
    pub stored: Option<SecretView>,
    /// Why the key is not in effect, when making it failed.
    pub problem: Option<String>,
    /// This look made the key or set it on the role (worth an event).
    pub made: bool,
}

impl KeyView {
    /// Whether runs can write as the role now.
    pub fn ready(&self) -> bool {
        self.role.is_none() || self.stored.as_ref().is_some_and(SecretView::in_effect)
    }
}

/// The key as the caches show it. No API call, no database work.
pub fn view(ctx: &Context, schedule: &MigrationSchedule) -> KeyView {
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let mut view = KeyView {
        role: role_of(schedule),
        secret: secret_name(&name),
        ..Default::default()
    };
    if view.role.is_none() {
        return view;
    }
    view.stored = ctx
        .caches
        .key_secret(&ns, &view.secret)
        .map(|s| SecretView::of(&s));
    // A key set on another target's role is not in effect for this one.
    let target = target_identity(schedule);
    if let Some(stored) = view.stored.as_mut()
        && stored.applied_to.as_deref() != Some(target.as_str())
    {
        stored.applied = None;
    }
    view
}

/// What the key needs now, from how the caches show it: nothing (no roles, or the key is in
/// effect), a new key, or the stored key set on the role. Pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStep {
    Create,
    SetOnRole,
}

impl KeyView {
    /// The step that puts a key in effect, if one is needed. Pure.
    pub fn step(&self) -> Option<KeyStep> {
        match &self.stored {
            _ if self.role.is_none() => None,
            None => Some(KeyStep::Create),
            Some(s) if s.in_effect() => None,
            Some(_) => Some(KeyStep::SetOnRole),
        }
    }
}

/// Takes the key step: makes a missing key, or sets on the role the key the Secret holds.
/// Returns the key as it then stands, with what went wrong.
pub async fn take(
    ctx: &Context,
    schedule: &MigrationSchedule,
    step: KeyStep,
    mut view: KeyView,
) -> KeyView {
    let Some(role) = view.role.clone() else {
        return view;
    };
    let made = match step {
        KeyStep::Create => create(ctx, schedule, &role).await,
        KeyStep::SetOnRole => apply_stored(ctx, schedule, &role).await,
    };
    match made {
        Ok((stored, set_now)) => {
            view.made = set_now;
            view.stored = Some(stored);
        }
        Err(problem) => view.problem = Some(problem),
    }
    view
}

/// `grant_for_run` for a Dynamics GP run, in each database it writes: the system database's,
/// then each selected company's (`engine::gp`), on the target's server. The counts and tables
/// of all of them together.
async fn grant_gp(
    ctx: &Context,
    schedule: &MigrationSchedule,
    run: &MigrationRun,
    role: &str,
    companies: Option<Vec<String>>,
) -> Result<access::Grants, access::GrantError> {
    let system = crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Source)
        .await
        .map_err(access::GrantError::Database)?;
    let listed = crate::engine::gp::companies(&system).await;
    system.close().await;
    let listed =
        listed.map_err(|e| access::GrantError::Database(format!("source database: {e}")))?;
    let selected = crate::engine::gp::selected(&listed, companies.as_deref())?;
    // A GP database is its company's whole: every table of it is planned.
    let options = crate::convert::plan_options(&schedule.spec, None);
    let mut all = grant_pair(ctx, schedule, run, role, &options, None).await?;
    for c in &selected {
        let g = grant_pair(ctx, schedule, run, role, &options, Some(&c.database))
            .await
            .map_err(|e| match e {
                access::GrantError::Database(e) => access::GrantError::Database(format!(
                    "{e} (GP company {:?}, database {} on both servers)",
                    c.name, c.database
                )),
                other => other,
            })?;
        all.granted += g.granted;
        all.revoked += g.revoked;
        all.created.extend(g.created);
        all.not_created.extend(g.not_created);
    }
    Ok(all)
}

/// `access::grant_for_run` between the schedule's source and target, as their admin logins;
/// with `database`, between the databases of that name on their servers (a GP company's).
async fn grant_pair(
    ctx: &Context,
    schedule: &MigrationSchedule,
    run: &MigrationRun,
    role: &str,
    options: &crate::engine::plan::PlanOptions,
    database: Option<&str>,
) -> Result<access::Grants, access::GrantError> {
    let spec = &schedule.spec;
    let (source, target) = crate::logins::open_both(&ctx.client, schedule, database)
        .await
        .map_err(access::GrantError::Database)?;
    let granted = access::grant_for_run(
        &source,
        &target,
        &run.name_any(),
        options,
        role,
        spec.target.create_missing_tables
            && run.spec.r#type != crate::api::run::RunType::Diagnostic,
    )
    .await;
    source.close().await;
    target.close().await;
    granted
}

/// The target a key is set for: scheme, host, port and database.
fn target_identity(schedule: &MigrationSchedule) -> String {
    crate::logins::database_identity(&schedule.spec.target.url)
}

/// A new key in a new Secret, then on the role. A Secret that exists already (the cache was
/// behind) is taken as it is. As `apply_stored`, it says whether the role took a key now.
async fn create(
    ctx: &Context,
    schedule: &MigrationSchedule,
    role: &str,
) -> Result<(SecretView, bool), String> {
    let ns = schedule.namespace().unwrap_or_default();
    let name = schedule.name_any();
    let key = RuntimeKey::generate()?;
    let mut labels = BTreeMap::new();
    labels.insert(
        RUNTIME_KEY_LABEL.to_string(),
        if super::annotations::fits_label(&name) {
            name.clone()
        } else {
            String::new()
        },
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "cloudmigrate".to_string(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(KEY_FINGERPRINT.to_string(), key.fingerprint());
    annotations.insert(
        KEY_ROTATED_AT.to_string(),
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let mut data = BTreeMap::new();
    data.insert("username".to_string(), ByteString(role.as_bytes().to_vec()));
    data.insert(
        "password".to_string(),
        ByteString(key.reveal().as_bytes().to_vec()),
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&name)),
            namespace: Some(ns.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: schedule.controller_owner_ref(&()).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("kubernetes.io/basic-auth".into()),
        data: Some(data),
        ..Default::default()
    };
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &secret).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            return Err(format!(
                "creating Secret {:?} failed: {e}; the controller's service account needs \
                 create on secrets",
                secret_name(&name)
            ));
        }
    }
    apply_stored(ctx, schedule, role).await
}

/// Sets the key that the Secret holds on the role, then records that on the Secret (only if
/// the Secret did not change meanwhile). Also says whether the role took a key now (false:
/// the Secret shows it in effect already, and the cache was behind).
pub async fn apply_stored(
    ctx: &Context,
    schedule: &MigrationSchedule,
    role: &str,
) -> Result<(SecretView, bool), String> {
    let ns = schedule.namespace().unwrap_or_default();
    let name = secret_name(&schedule.name_any());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let secret = api
        .get(&name)
        .await
        .map_err(|e| format!("reading Secret {name:?} failed: {e}"))?;
    let key = stored_key(&secret, "password")
        .ok_or_else(|| format!("Secret {name:?} has no password; delete it for a new key"))?;
    let mut view = SecretView::of(&secret);
    let target = target_identity(schedule);
    let set_now = view.applied.as_deref() != Some(&key.fingerprint())
        || view.applied_to.as_deref() != Some(target.as_str());
    if set_now {
        set_on_role(ctx, schedule, role, &key).await?;
        let patch = json!({"metadata": {
            "resourceVersion": secret.resource_version(),
            "annotations": {APPLIED_FINGERPRINT: key.fingerprint(), APPLIED_TO: target},
        }});
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            // The Secret changed meanwhile (a rotation stored a new key): the next look
            // sets that one.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(format!("recording the key on Secret {name:?} failed: {e}")),
        }
        view.applied = Some(key.fingerprint());
        view.applied_to = Some(target);
    }
    // A Secret made by hand, or older, may lack the fingerprint of what it holds.
    view.fingerprint = Some(key.fingerprint());
    Ok((view, set_now))
}

/// One key of the Secret's data, as a runtime key.
pub fn stored_key(secret: &Secret, field: &str) -> Option<RuntimeKey> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(field))
        .map(|b| RuntimeKey::from_secret(String::from_utf8_lossy(&b.0).to_string()))
        .filter(|k| !k.reveal().is_empty())
}

/// Connects to the schedule's target as its admin user.
async fn admin(ctx: &Context, schedule: &MigrationSchedule) -> Result<crate::db::Database, String> {
    crate::logins::open_side(&ctx.client, schedule, crate::logins::Side::Target).await
}

/// Sets `key` as the role's password, creating the role if needed.
pub async fn set_on_role(
    ctx: &Context,
    schedule: &MigrationSchedule,
    role: &str,
    key: &RuntimeKey,
) -> Result<(), String> {
    let db = admin(ctx, schedule).await?;
    let done = access::set_key(&db, role, &crate::logins::role_owner(schedule), key).await;
    db.close().await;
    done.map_err(|e| format!("target database: {e}"))
}

/// Drops the role and deletes the Secret (Disable Cloud Migration). Both gone already is
/// fine.
pub async fn revoke(ctx: &Context, schedule: &MigrationSchedule) -> Result<(), String> {
    if role_of(schedule).is_none() {
        return Ok(());
    }
    drop_role(ctx, schedule).await?;
    let ns = schedule.namespace().unwrap_or_default();
    let name = secret_name(&schedule.name_any());
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(&name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(format!("deleting Secret {name:?} failed: {e}")),
    }
}

/// Drops the schedule's login role from its target, if it has one. A role already gone is
/// fine.
pub async fn drop_role(ctx: &Context, schedule: &MigrationSchedule) -> Result<(), String> {
    let Some(role) = role_of(schedule) else {
        return Ok(());
    };
    let db = admin(ctx, schedule).await?;
    let dropped = access::drop_role(&db, &role, &crate::logins::role_owner(schedule)).await;
    db.close().await;
    dropped.map_err(|e| format!("target database: {e}"))
}

/// Before a run starts: the state tables exist, with `createMissingTables` the admin has
/// created the tables the run copies that the cloud lacks (not for a Diagnostic run, which
/// writes nothing), and the role may write exactly the tables the run copies. Nothing to do
/// for a SQLite target. The result names the tables that were created and that could not be.
pub async fn grant_for_run(
    ctx: &Context,
    schedule: &MigrationSchedule,
    run: &MigrationRun,
) -> Result<access::Grants, access::GrantError> {
    let Some(role) = role_of(schedule) else {
        return Ok(access::Grants::default());
    };
    let companies = (!run.spec.companies.is_empty()).then(|| run.spec.companies.clone());
    let g = if schedule.spec.product == crate::vocabulary::Product::Gp {
        grant_gp(ctx, schedule, run, &role, companies).await?
    } else {
        let options = crate::convert::plan_options(&schedule.spec, companies);
        grant_pair(ctx, schedule, run, &role, &options, None).await?
    };
    if g.granted + g.revoked > 0 {
        tracing::info!(
            role = %role,
            granted = g.granted,
            revoked = g.revoked,
            "the runtime role's tables changed"
        );
    }
    if !g.created.is_empty() {
        tracing::info!(
            tables = g.created.len(),
            "the target's admin login created tables missing in the cloud"
        );
    }
    Ok(g)
}
