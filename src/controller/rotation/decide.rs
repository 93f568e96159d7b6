//! What a RuntimeKeyRotation's status should say and which step comes next, as a pure
//! function of what the reconciler observed. The steps are: store a new key in the Secret
//! (Prepared), set it on the login role (Rotated), check that the old key is refused and drop
//! it from the Secret (OldKeyRevoked). Each step can be done again after a crash.

use super::super::conditions::At;
use super::super::runtime_key::SecretView;
use crate::api::key_rotation::{RotationStage, RuntimeKeyRotationStatus};
use crate::clock::time;
use chrono::{DateTime, Utc};

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct RotationObserved {
    pub uid: String,
    pub schedule: String,
    pub generation: Option<i64>,
    pub status: RuntimeKeyRotationStatus,
    pub schedule_exists: bool,
    /// The schedule's target has login roles (not SQLite).
    pub has_role: bool,
    pub disabled: bool,
    /// An older rotation of the same schedule that has not finished: it goes first.
    pub older_pending: Option<String>,
    /// The key Secret's name and metadata, if it exists.
    pub secret_name: String,
    pub secret: Option<SecretView>,
    pub now: DateTime<Utc>,
}

/// The next step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Store a new key in the Secret, keeping the old one as `previous-password`.
    Prepare,
    /// Set the stored key on the role and check that it logs in.
    Apply,
    /// Check that the old key is refused, and drop it from the Secret.
    Revoke,
}

/// The status to write, and the step to take now, if any.
#[derive(Clone, Debug, PartialEq)]
pub struct RotationDecision {
    pub status: RuntimeKeyRotationStatus,
    pub step: Option<Step>,
}

/// Whether a rotation has ended, for good.
pub fn finished(status: &RuntimeKeyRotationStatus) -> bool {
    super::super::conditions::ended(&status.conditions)
}

/// The decision. Pure.
pub fn decide(o: &RotationObserved) -> RotationDecision {
    let mut status = o.status.clone();
    if finished(&status) {
        return RotationDecision { status, step: None };
    }
    status.observed_generation = o.generation;
    let at = At {
        generation: o.generation,
        now: o.now,
    };
    let (mut status, secret, mine) = match admitted(o, status, at) {
        Ok(admitted) => admitted,
        Err(decision) => return *decision,
    };
    status.secret_name = Some(o.secret_name.clone());
    if status.start_time.is_none() {
        status.start_time = Some(time(o.now));
    }
    if !mine {
        if status.stage.is_some() {
            return failed(
                at,
                status,
                "Superseded",
                format!(
                    "Secret {:?} holds a key that another rotation stored; create a new \
                     RuntimeKeyRotation to rotate again",
                    o.secret_name
                ),
            );
        }
        return RotationDecision {
            status: {
                at.unknown(
                    &mut status.conditions,
                    "Succeeded",
                    "Preparing",
                    "storing a new key in the Secret".into(),
                );
                status
            },
            step: Some(Step::Prepare),
        };
    }
    status.key_fingerprint = secret.fingerprint.clone();
    if !secret.in_effect() {
        status.stage = Some(RotationStage::Prepared);
        at.unknown(
            &mut status.conditions,
            "Succeeded",
            "Prepared",
            format!(
                "the new key is in Secret {:?}; setting it on the login role (no run starts \
                 meanwhile)",
                o.secret_name
            ),
        );
        return RotationDecision {
            status,
            step: Some(Step::Apply),
        };
    }
    if status.stage < Some(RotationStage::Rotated) {
        status.stage = Some(RotationStage::Rotated);
    }
    if status.rotated_at.is_none() {
        status.rotated_at = Some(time(o.now));
    }
    at.unknown(
        &mut status.conditions,
        "Succeeded",
        "Rotated",
        "the login role has the new key; checking that the old key is refused".into(),
    );
    RotationDecision {
        status,
        step: Some(Step::Revoke),
    }
}

/// What must hold before a rotation may act: the schedule exists and has a role, it is not
/// disabled, no older rotation goes first, and the key Secret exists with its key in effect
/// (unless this rotation stored it). Gives back the status, the Secret's view, and whether the
/// Secret holds this rotation's key; else the decision to wait or fail.
fn admitted(
    o: &RotationObserved,
    status: RuntimeKeyRotationStatus,
    at: At,
) -> Result<(RuntimeKeyRotationStatus, &SecretView, bool), Box<RotationDecision>> {
    if !o.schedule_exists {
        return Err(Box::new(waiting(
            at,
            status,
            "ScheduleNotFound",
            format!(
                "MigrationSchedule {:?} does not exist in this namespace; the rotation waits \
                 for it (delete this RuntimeKeyRotation if it names the wrong schedule)",
                o.schedule
            ),
        )));
    }
    if !o.has_role {
        return Err(Box::new(failed(
            at,
            status,
            "NoRuntimeKey",
            format!(
                "the target of MigrationSchedule {:?} has no login roles (a SQLite file, or a \
                 data lake, which runs write with the key in the target's own Secret): there \
                 is no runtime key to rotate. A lake's key is rotated in the storage account \
                 and then in that Secret",
                o.schedule
            ),
        )));
    }
    if o.disabled && status.stage.is_none() {
        return Err(Box::new(failed(
            at,
            status,
            "Disabled",
            format!(
                "MigrationSchedule {:?} is disabled (spec.disabled: true), so its runtime key is \
                 revoked: nothing to rotate",
                o.schedule
            ),
        )));
    }
    if let Some(other) = &o.older_pending {
        return Err(Box::new(waiting(
            at,
            status,
            "WaitingForRotation",
            format!("RuntimeKeyRotation {other} of the same schedule goes first"),
        )));
    }
    let Some(secret) = &o.secret else {
        return Err(Box::new(waiting(
            at,
            status,
            "KeyNotCreated",
            format!(
                "Secret {:?} does not exist yet; the schedule creates it (its RuntimeKey \
                 condition says how far it got)",
                o.secret_name
            ),
        )));
    };
    let mine = secret.rotation.as_deref() == Some(o.uid.as_str());
    if !mine && status.stage.is_none() && !secret.in_effect() {
        return Err(Box::new(waiting(
            at,
            status,
            "KeyNotInEffect",
            format!(
                "the key in Secret {:?} is not set on the login role yet (the schedule's \
                 RuntimeKey condition says why); the rotation starts once it is",
                o.secret_name
            ),
        )));
    }
    Ok((status, secret, mine))
}

/// The rotation waits, with the reason.
fn waiting(
    at: At,
    mut status: RuntimeKeyRotationStatus,
    reason: &str,
    message: String,
) -> RotationDecision {
    at.unknown(&mut status.conditions, "Succeeded", reason, message);
    RotationDecision { status, step: None }
}

/// The rotation ends for good, with the reason it failed.
fn failed(
    at: At,
    mut status: RuntimeKeyRotationStatus,
    reason: &str,
    message: String,
) -> RotationDecision {
    status.completion_time = Some(time(at.now));
    at.set(&mut status.conditions, "Succeeded", false, reason, message);
    RotationDecision { status, step: None }
}

/// The status after the revoke step: ended, with success or the reason it failed.
pub fn revoked(
    mut status: RuntimeKeyRotationStatus,
    at: At,
    outcome: Result<(), String>,
) -> RuntimeKeyRotationStatus {
    status.completion_time = Some(time(at.now));
    match outcome {
        Ok(()) => {
            status.stage = Some(RotationStage::OldKeyRevoked);
            at.set(
                &mut status.conditions,
                "Succeeded",
                true,
                "OldKeyRevoked",
                "runs use the new key; the old key is refused at login and left the Secret".into(),
            );
        }
        Err(e) => at.set(
            &mut status.conditions,
            "Succeeded",
            false,
            "OldKeyStillWorks",
            e,
        ),
    }
    status
}

/// The status of a rotation that the target's ledger says was carried out already (the same
/// object applied again from git, say): it ends at once, and rotates nothing.
pub fn already_done(
    mut status: RuntimeKeyRotationStatus,
    at: At,
    done: &crate::engine::ledger::requests::Done,
) -> RuntimeKeyRotationStatus {
    // When it ran is when it completed.
    status.completion_time = Some(time(done.time().unwrap_or(at.now)));
    at.set(
        &mut status.conditions,
        "Succeeded",
        true,
        "AlreadyDone",
        format!(
            "this rotation replaced the key at {}; seen again, it rotated nothing. A \
             RuntimeKeyRotation with a new name rotates again",
            done.at
        ),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_seen_again_ends_at_once() {
        let at = At {
            generation: Some(1),
            now: chrono::Utc::now(),
        };
        let done = crate::engine::ledger::requests::Done {
            at: "2026-11-30T10:00:00.000Z".into(),
            summary: "key replaced".into(),
        };
        let status = already_done(Default::default(), at, &done);
        assert!(finished(&status));
        let c = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "AlreadyDone")
        );
        assert!(c.message.contains("2026-11-30T10:00:00"), "{}", c.message);
        assert_eq!(status.completion_time, Some(time(done.time().unwrap())));
    }

    fn observed() -> RotationObserved {
        RotationObserved {
            uid: "u-9".into(),
            schedule: "erp".into(),
            generation: Some(1),
            status: Default::default(),
            schedule_exists: true,
            has_role: true,
            disabled: false,
            older_pending: None,
            secret_name: "erp-runtime-key".into(),
            secret: Some(SecretView {
                fingerprint: Some("sha256:aa".into()),
                applied: Some("sha256:aa".into()),
                applied_to: None,
                rotated_at: None,
                rotation: None,
            }),
            now: "2026-12-02T10:00:00Z".parse().unwrap(),
        }
    }

    fn reason(d: &RotationDecision) -> (String, String) {
        let c = d
            .status
            .conditions
            .iter()
            .find(|c| c.type_ == "Succeeded")
            .unwrap();
        (c.status.clone(), c.reason.clone())
    }

    #[test]
    fn the_steps_follow_the_secret_prepare_apply_revoke() {
        let mut o = observed();
        let d = decide(&o);
        assert_eq!(d.step, Some(Step::Prepare));
        assert_eq!(reason(&d), ("Unknown".into(), "Preparing".into()));
        // The Secret now holds this rotation's key, which the role does not have yet.
        o.status = d.status;
        o.secret = Some(SecretView {
            fingerprint: Some("sha256:bb".into()),
            applied: Some("sha256:aa".into()),
            applied_to: None,
            rotated_at: None,
            rotation: Some("u-9".into()),
        });
        let d = decide(&o);
        assert_eq!(d.step, Some(Step::Apply));
        assert_eq!(d.status.stage, Some(RotationStage::Prepared));
        assert_eq!(d.status.key_fingerprint.as_deref(), Some("sha256:bb"));
        // The role has it.
        o.status = d.status;
        o.secret.as_mut().unwrap().applied = Some("sha256:bb".into());
        let d = decide(&o);
        assert_eq!(d.step, Some(Step::Revoke));
        assert_eq!(d.status.stage, Some(RotationStage::Rotated));
        assert!(d.status.rotated_at.is_some());
        let at = At {
            generation: Some(1),
            now: o.now,
        };
        let done = revoked(d.status, at, Ok(()));
        assert_eq!(done.stage, Some(RotationStage::OldKeyRevoked));
        assert!(finished(&done));
        // Terminal: never run again.
        o.status = done;
        let d = decide(&o);
        assert_eq!(d.step, None);
        assert_eq!(d.status, o.status);
    }

    #[test]
    fn a_crash_after_storing_the_key_goes_on_without_a_second_key() {
        // The status never said Prepared, but the Secret shows this rotation's key.
        let mut o = observed();
        o.secret.as_mut().unwrap().rotation = Some("u-9".into());
        o.secret.as_mut().unwrap().fingerprint = Some("sha256:bb".into());
        assert_eq!(decide(&o).step, Some(Step::Apply));
    }

    #[test]
    fn waits_and_refusals_name_the_cause() {
        let mut o = observed();
        o.older_pending = Some("rotate-1".into());
        assert_eq!(
            reason(&decide(&o)),
            ("Unknown".into(), "WaitingForRotation".into())
        );
        o.older_pending = None;
        // A key the role does not have yet is not rotated.
        o.secret.as_mut().unwrap().applied = None;
        assert_eq!(
            reason(&decide(&o)),
            ("Unknown".into(), "KeyNotInEffect".into())
        );
        o.secret = None;
        assert_eq!(
            reason(&decide(&o)),
            ("Unknown".into(), "KeyNotCreated".into())
        );
        o.has_role = false;
        let d = decide(&o);
        assert_eq!(reason(&d), ("False".into(), "NoRuntimeKey".into()));
        assert!(d.status.completion_time.is_some());
        o.has_role = true;
        o.disabled = true;
        assert_eq!(reason(&decide(&o)), ("False".into(), "Disabled".into()));
    }
}
