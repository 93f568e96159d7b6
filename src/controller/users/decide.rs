//! What a UserMapping does, as a pure function of the users found on both sides: the cloud
//! users to rename (all of them or none: one transaction), and the status. A mapping renames
//! the cloud user's `User Name` to the on-premises user name.

use super::super::conditions::At;
use crate::api::users::{FoundUser, UserMappingResult, UserMappingSpec, UserMappingStatus};
use chrono::{DateTime, Utc};

/// A cloud user as the target's `User` table holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudUser {
    pub name: String,
    pub email: Option<String>,
}

/// The users of both databases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Users {
    pub source: Vec<String>,
    pub cloud: Vec<CloudUser>,
    /// The length of the cloud's `User Name` column, in characters, where it has one.
    pub name_limit: Option<usize>,
}

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct MappingObserved<'a> {
    pub generation: Option<i64>,
    pub spec: &'a UserMappingSpec,
    pub status: UserMappingStatus,
    pub schedule_exists: bool,
    /// A run of the schedule has migrated data (succeeded, wholly or in part).
    pub migrated: bool,
    /// The users, or why they could not be read.
    pub users: Result<Users, String>,
    pub now: DateTime<Utc>,
}

/// A cloud user to rename: from its current user name to the on-premises one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MappingDecision {
    /// Applied together in one transaction, or not at all.
    pub renames: Vec<Rename>,
    /// The status once the renames are written.
    pub status: UserMappingStatus,
}

/// Decides, in steps: resolve each mapping's cloud user (`resolve`), refuse them all if one is
/// wrong, otherwise rename what is not renamed yet. Pure.
pub fn decide(o: MappingObserved<'_>) -> MappingDecision {
    let mut status = o.status.clone();
    status.observed_generation = o.generation;
    let at = At {
        generation: o.generation,
        now: o.now,
    };
    let users = match (&o.users, o.schedule_exists) {
        (_, false) => {
            let msg = format!(
                "MigrationSchedule {:?} does not exist in this namespace; create it, or point \
                 spec.scheduleRef at an existing one in a new UserMapping",
                o.spec.schedule_ref.name
            );
            at.set(
                &mut status.conditions,
                "Ready",
                false,
                "ScheduleNotFound",
                msg,
            );
            return MappingDecision {
                renames: vec![],
                status,
            };
        }
        (Err(e), _) => {
            at.set(
                &mut status.conditions,
                "Ready",
                false,
                "DatabaseUnreadable",
                e.clone(),
            );
            return MappingDecision {
                renames: vec![],
                status,
            };
        }
        (Ok(users), _) => users,
    };
    let results = resolve(o.spec, users, &o.status);
    let mapped_cloud: Vec<&str> = results
        .iter()
        .filter_map(|r| r.cloud_name.as_deref())
        .collect();
    status.source_users_found = users.source.len() as i64;
    status.cloud_users_found = users.cloud.len() as i64;
    status.source_users = users
        .source
        .iter()
        .map(|name| FoundUser {
            name: name.clone(),
            email: None,
            mapped: o.spec.mappings.iter().any(|m| &m.source_user == name),
        })
        .collect();
    status.cloud_users = users
        .cloud
        .iter()
        .map(|u| FoundUser {
            name: u.name.clone(),
            email: u.email.clone(),
            mapped: mapped_cloud.contains(&u.name.as_str())
                || o.spec.mappings.iter().any(|m| m.source_user == u.name),
        })
        .collect();
    let problems: Vec<&Resolved> = results.iter().filter(|r| r.state != "Applied").collect();
    let (renames, ready, reason, message) = if !problems.is_empty() {
        let named: Vec<String> = problems
            .iter()
            .map(|r| format!("{} -> {} ({})", r.source_user, r.cloud_user, r.state))
            .collect();
        (
            vec![],
            false,
            "InvalidMappings",
            format!(
                "nothing was written: {}; each entry of status.users says why",
                named.join(", ")
            ),
        )
    } else if !o.migrated {
        (
            vec![],
            false,
            "WaitingForMigration",
            "the mappings wait until a run of the schedule has migrated a company".to_string(),
        )
    } else {
        let renames: Vec<Rename> = results.iter().filter_map(|r| r.rename.clone()).collect();
        (
            renames,
            true,
            "Applied",
            format!("{} mappings applied", results.len()),
        )
    };
    let waiting = !ready && reason == "WaitingForMigration";
    status.users = results
        .iter()
        .map(|r| UserMappingResult {
            source_user: r.source_user.clone(),
            cloud_user: r.cloud_user.clone(),
            state: if waiting { "Waiting" } else { r.state }.to_string(),
            message: r.message.clone(),
        })
        .collect();
    status.applied = status.users.iter().filter(|u| u.state == "Applied").count() as i64;
    status.problems = problems.len() as i64;
    at.set(&mut status.conditions, "Ready", ready, reason, message);
    MappingDecision { renames, status }
}

/// The renames could not be written (the transaction rolled back): the status says so.
pub fn failed(mut status: UserMappingStatus, error: &str, now: DateTime<Utc>) -> UserMappingStatus {
    let at = At {
        generation: status.observed_generation,
        now,
    };
    for u in &mut status.users {
        if u.state == "Applied" {
            u.state = "Waiting".into();
        }
    }
    status.applied = 0;
    at.set(
        &mut status.conditions,
        "Ready",
        false,
        "ApplyFailed",
        error.to_string(),
    );
    status
}

/// One mapping, resolved against the users found.
struct Resolved {
    source_user: String,
    cloud_user: String,
    /// The cloud user's current name, when found.
    cloud_name: Option<String>,
    state: &'static str,
    message: Option<String>,
    rename: Option<Rename>,
}

fn resolve(spec: &UserMappingSpec, users: &Users, before: &UserMappingStatus) -> Vec<Resolved> {
    let mut out: Vec<Resolved> = spec
        .mappings
        .iter()
        .map(|m| {
            let wanted = m.cloud_user.to_lowercase();
            let found = users.cloud.iter().find(|u| {
                u.email.as_deref().is_some_and(|e| e.to_lowercase() == wanted)
                    || u.name.to_lowercase() == wanted
            });
            let applied_before = before.users.iter().any(|u| {
                u.source_user == m.source_user && u.cloud_user == m.cloud_user && u.state == "Applied"
            });
            let renamed = users.cloud.iter().find(|u| u.name == m.source_user);
            let mut r = Resolved {
                source_user: m.source_user.clone(),
                cloud_user: m.cloud_user.clone(),
                cloud_name: found.map(|u| u.name.clone()),
                state: "Applied",
                message: None,
                rename: None,
            };
            if !users.source.contains(&m.source_user) {
                r.state = "UnknownSourceUser";
                r.message = Some(format!(
                    "the source's User table has no user {:?}",
                    m.source_user
                ));
            } else if let Some(u) = found {
                if u.name == m.source_user {
                    // Renamed already: nothing to do.
                } else if let Some(other) = renamed {
                    r.state = "Conflict";
                    r.message = Some(format!(
                        "the cloud already has a user named {:?} ({}); map that one, or rename it first",
                        other.name,
                        other.email.as_deref().unwrap_or("no email")
                    ));
                } else if users.name_limit.is_some_and(|n| m.source_user.chars().count() > n) {
                    r.state = "TooLong";
                    r.message = Some(format!(
                        "{:?} is longer than the cloud's User Name column ({} characters)",
                        m.source_user,
                        users.name_limit.unwrap_or_default()
                    ));
                } else {
                    r.rename = Some(Rename {
                        from: u.name.clone(),
                        to: m.source_user.clone(),
                    });
                }
            } else if applied_before && renamed.is_some() {
                // Applied by an earlier reconcile: the cloud user now has the on-premises name.
                r.cloud_name = renamed.map(|u| u.name.clone());
            } else {
                r.state = "UnknownCloudUser";
                r.message = Some(format!(
                    "the target's User table has no user with the name or authentication email {:?}",
                    m.cloud_user
                ));
            }
            r
        })
        .collect();
    // Two on-premises users mapped to one cloud user: both are refused.
    let names: Vec<Option<String>> = out.iter().map(|r| r.cloud_name.clone()).collect();
    for (i, r) in out.iter_mut().enumerate() {
        let Some(name) = &names[i] else { continue };
        let twice = names
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other.as_ref() == Some(name));
        if twice && r.state == "Applied" {
            r.state = "Conflict";
            r.message = Some(format!(
                "another mapping names the same cloud user {name:?}: map each cloud user once"
            ));
            r.rename = None;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(mappings: serde_json::Value) -> UserMappingSpec {
        serde_json::from_value(serde_json::json!({
            "scheduleRef": {"name": "erp"}, "mappings": mappings
        }))
        .unwrap()
    }

    fn users() -> Users {
        Users {
            source: vec!["CONTOSO\\JSMITH".into(), "CONTOSO\\ALEE".into()],
            cloud: vec![
                CloudUser {
                    name: "JOHN".into(),
                    email: Some("jsmith@contoso.com".into()),
                },
                CloudUser {
                    name: "ANNA".into(),
                    email: Some("alee@contoso.com".into()),
                },
            ],
            name_limit: Some(50),
        }
    }

    fn observe(spec: &UserMappingSpec, users: Users) -> MappingObserved<'_> {
        MappingObserved {
            generation: Some(1),
            spec,
            status: Default::default(),
            schedule_exists: true,
            migrated: true,
            users: Ok(users),
            now: Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap(),
        }
    }

    fn ready(s: &UserMappingStatus) -> (String, String, String) {
        let c = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn a_mapping_renames_the_cloud_user_and_applying_it_again_changes_nothing() {
        let s = spec(serde_json::json!([
            {"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "JSmith@contoso.com"},
            {"sourceUser": "CONTOSO\\ALEE", "cloudUser": "ANNA"}
        ]));
        let d = decide(observe(&s, users()));
        assert_eq!(
            d.renames,
            vec![
                Rename {
                    from: "JOHN".into(),
                    to: "CONTOSO\\JSMITH".into()
                },
                Rename {
                    from: "ANNA".into(),
                    to: "CONTOSO\\ALEE".into()
                },
            ]
        );
        assert_eq!(ready(&d.status).0, "True");
        assert_eq!(d.status.applied, 2);
        assert!(d.status.cloud_users.iter().all(|u| u.mapped));
        // After the renames: nothing more to do, still applied.
        let mut after = users();
        after.cloud[0].name = "CONTOSO\\JSMITH".into();
        after.cloud[1].name = "CONTOSO\\ALEE".into();
        let mut o = observe(&s, after);
        o.status = d.status;
        let again = decide(o);
        assert!(again.renames.is_empty());
        assert_eq!(again.status.applied, 2);
        assert_eq!(ready(&again.status).0, "True");
    }

    #[test]
    fn bad_mappings_are_refused_together_and_named() {
        let s = spec(serde_json::json!([
            {"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "JOHN"},
            {"sourceUser": "CONTOSO\\ALEE", "cloudUser": "jsmith@contoso.com"},
            {"sourceUser": "CONTOSO\\NOBODY", "cloudUser": "ANNA"},
        ]));
        let d = decide(observe(&s, users()));
        assert!(d.renames.is_empty(), "a refused set writes nothing");
        let (ok, reason, msg) = ready(&d.status);
        assert_eq!((ok.as_str(), reason.as_str()), ("False", "InvalidMappings"));
        assert!(msg.contains("CONTOSO\\JSMITH -> JOHN (Conflict)"), "{msg}");
        assert!(
            msg.contains("CONTOSO\\ALEE -> jsmith@contoso.com (Conflict)"),
            "{msg}"
        );
        assert!(
            msg.contains("CONTOSO\\NOBODY -> ANNA (UnknownSourceUser)"),
            "{msg}"
        );
        assert_eq!(d.status.problems, 3);

        let s =
            spec(serde_json::json!([{"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "nobody@x"}]));
        let d = decide(observe(&s, users()));
        assert_eq!(d.status.users[0].state, "UnknownCloudUser");

        let mut short = users();
        short.name_limit = Some(8);
        let s = spec(serde_json::json!([{"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "JOHN"}]));
        let d = decide(observe(&s, short));
        assert_eq!(d.status.users[0].state, "TooLong");
        assert!(d.renames.is_empty());
    }

    #[test]
    fn mappings_wait_for_a_migrated_company() {
        let s = spec(serde_json::json!([{"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "JOHN"}]));
        let mut o = observe(&s, users());
        o.migrated = false;
        let d = decide(o);
        assert!(d.renames.is_empty());
        assert_eq!(ready(&d.status).1, "WaitingForMigration");
        assert_eq!(d.status.users[0].state, "Waiting");
    }
}
