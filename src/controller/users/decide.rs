//! What a UserMapping does, as a pure function of the users found on both sides: the cloud
//! users to rename (all of them or none: one transaction), and the status. A mapping renames
//! the cloud user's `User Name` to the on-premises user name.

use super::super::conditions::At;
use crate::api::users::{FoundUser, UserMappingResult, UserMappingSpec, UserMappingStatus};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

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
    let results = resolve(o.spec, users);
    let mapped_cloud: HashSet<&str> = results
        .iter()
        .filter_map(|r| r.cloud_name.as_deref())
        .collect();
    let mapped_source: HashSet<&str> = o
        .spec
        .mappings
        .iter()
        .map(|m| m.source_user.as_str())
        .collect();
    status.source_users_found = users.source.len() as i64;
    status.cloud_users_found = users.cloud.len() as i64;
    (status.source_users, status.cloud_users) = found_users(users, &mapped_source, &mapped_cloud);
    let problems: Vec<&Resolved> = results.iter().filter(|r| r.state != "Applied").collect();
    let (renames, ready, reason, message) = if !problems.is_empty() {
        let named: Vec<String> = problems
            .iter()
            .take(PROBLEMS_NAMED)
            .map(|r| format!("{} -> {} ({})", r.source_user, r.cloud_user, r.state))
            .collect();
        let more = match problems.len().saturating_sub(PROBLEMS_NAMED) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        (
            vec![],
            false,
            "InvalidMappings",
            format!(
                "nothing was written: {}{more}; each entry of status.users says why",
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
    // Problems first; the order of the spec otherwise.
    status
        .users
        .sort_by_key(|u| matches!(u.state.as_str(), "Applied" | "Waiting"));
    status.users.truncate(USERS_LISTED);
    at.set(&mut status.conditions, "Ready", ready, reason, message);
    MappingDecision { renames, status }
}

/// The users found on each side, marked when a mapping names them: those still to map first,
/// at most `USERS_LISTED` of each.
fn found_users(
    users: &Users,
    mapped_source: &HashSet<&str>,
    mapped_cloud: &HashSet<&str>,
) -> (Vec<FoundUser>, Vec<FoundUser>) {
    let mut source: Vec<FoundUser> = users
        .source
        .iter()
        .map(|name| FoundUser {
            name: name.clone(),
            email: None,
            mapped: mapped_source.contains(name.as_str()),
        })
        .collect();
    let mut cloud: Vec<FoundUser> = users
        .cloud
        .iter()
        .map(|u| FoundUser {
            name: u.name.clone(),
            email: u.email.clone(),
            mapped: mapped_cloud.contains(u.name.as_str())
                || mapped_source.contains(u.name.as_str()),
        })
        .collect();
    for list in [&mut source, &mut cloud] {
        // The order of the database otherwise (a stable sort).
        list.sort_by_key(|u| u.mapped);
        list.truncate(USERS_LISTED);
    }
    (source, cloud)
}

/// Entries of each list in the status: 5,000 users keep it far below Kubernetes' size limits.
const USERS_LISTED: usize = 500;
/// Problems named in the `Ready` message; `status.users` lists more.
const PROBLEMS_NAMED: usize = 20;

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

/// Resolves each mapping against the users found, through indexes by name and email (5,000
/// mappings against 5,000 users take a few lookups each, not a scan).
fn resolve(spec: &UserMappingSpec, users: &Users) -> Vec<Resolved> {
    let mut by_email: HashMap<String, &CloudUser> = HashMap::new();
    let mut by_lower_name: HashMap<String, &CloudUser> = HashMap::new();
    let mut by_name: HashMap<&str, &CloudUser> = HashMap::new();
    // The first user of each name or email wins, as a scan in order would find it.
    for u in users.cloud.iter().rev() {
        if let Some(e) = &u.email {
            by_email.insert(e.to_lowercase(), u);
        }
        by_lower_name.insert(u.name.to_lowercase(), u);
        by_name.insert(u.name.as_str(), u);
    }
    let source: HashSet<&str> = users.source.iter().map(String::as_str).collect();
    let mut out: Vec<Resolved> = spec
        .mappings
        .iter()
        .map(|m| {
            let wanted = m.cloud_user.to_lowercase();
            let found = by_email
                .get(&wanted)
                .or_else(|| by_lower_name.get(&wanted))
                .copied();
            let renamed = by_name.get(m.source_user.as_str()).copied();
            let mut r = Resolved {
                source_user: m.source_user.clone(),
                cloud_user: m.cloud_user.clone(),
                cloud_name: found.map(|u| u.name.clone()),
                state: "Applied",
                message: None,
                rename: None,
            };
            if !source.contains(m.source_user.as_str()) {
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
            } else if let Some(u) = renamed {
                // Applied already (by an earlier reconcile, or by hand): the cloud user has the
                // on-premises name, and the old name is gone.
                r.cloud_name = Some(u.name.clone());
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
    let mut named: HashMap<String, usize> = HashMap::new();
    for name in out.iter().filter_map(|r| r.cloud_name.clone()) {
        *named.entry(name).or_default() += 1;
    }
    for r in &mut out {
        let Some(name) = r.cloud_name.clone() else {
            continue;
        };
        let twice = named.get(&name).is_some_and(|n| *n > 1);
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

    /// 5,000 users on each side, all mapped, a tenth of the mappings wrong: the status stays
    /// under 512 KiB, problems first; the decision takes lookups, not scans.
    #[test]
    fn five_thousand_users_fit_in_the_status() {
        let n = 5000;
        let users = Users {
            source: (0..n).map(|i| format!("CONTOSO\\USER{i:05}")).collect(),
            cloud: (0..n)
                .map(|i| CloudUser {
                    name: format!("USER{i:05}"),
                    email: Some(format!("user{i:05}@contoso.onmicrosoft.com")),
                })
                .collect(),
            name_limit: Some(50),
        };
        let mappings: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let cloud = if i % 10 == 9 {
                    format!("nobody{i:05}@contoso.onmicrosoft.com")
                } else {
                    format!("user{i:05}@contoso.onmicrosoft.com")
                };
                serde_json::json!({"sourceUser": format!("CONTOSO\\USER{i:05}"), "cloudUser": cloud})
            })
            .collect();
        let s = spec(serde_json::Value::Array(mappings));
        let d = decide(observe(&s, users));
        let size = serde_json::to_vec(&d.status).unwrap().len();
        assert!(size < 512 * 1024, "{size} bytes");
        assert_eq!(
            (d.status.source_users_found, d.status.cloud_users_found),
            (5000, 5000)
        );
        assert_eq!(d.status.problems, 500);
        assert_eq!(d.status.users.len(), 500);
        assert!(d.status.users.iter().all(|u| u.state == "UnknownCloudUser"));
        let (_, reason, msg) = ready(&d.status);
        assert_eq!(reason, "InvalidMappings");
        assert!(msg.contains("and 480 more"), "{msg}");
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
