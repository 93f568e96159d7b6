//! What a UserMapping does, as a pure function of the users found on both sides and the
//! renames it made before: the cloud users to give their own names back (their mapping was
//! removed or changed) and to rename (all of them or none: one transaction), and the status. A
//! mapping renames the cloud user's `User Name` to the on-premises user name.

use super::super::conditions::At;
use crate::api::users::{FoundUser, UserMappingResult, UserMappingSpec, UserMappingStatus};
use crate::engine::ledger::renames::Renamed;
use crate::engine::users::NameChange;
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
    /// The cloud users that this mapping renamed, with their own names (from the target).
    pub renamed: Vec<Renamed>,
}

/// Everything decide needs.
#[derive(Clone, Debug)]
pub struct MappingObserved<'a> {
    pub generation: Option<i64>,
    pub spec: &'a UserMappingSpec,
    pub status: UserMappingStatus,
    pub schedule_exists: bool,
    /// The schedule's target is a data lake, which has no users to rename.
    pub lake_target: bool,
    /// A run of the schedule has migrated data (succeeded, wholly or in part).
    pub migrated: bool,
    /// The users, or why they could not be read.
    pub users: Result<Users, String>,
    pub now: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MappingDecision {
    /// Cloud users that get their own names back (their mapping was removed, or now names
    /// another cloud user), before the renames, in the same transaction.
    pub restores: Vec<NameChange>,
    /// Applied together in one transaction, or not at all.
    pub renames: Vec<NameChange>,
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
                restores: vec![],
                renames: vec![],
                status,
            };
        }
        _ if o.lake_target => {
            at.set(
                &mut status.conditions,
                "Ready",
                false,
                crate::lake::NOT_FOR_LAKE,
                format!(
                    "MigrationSchedule {:?} writes a data lake, which has no User table: \
                     nothing is renamed. Map the users in the tenant that the lake feeds",
                    o.spec.schedule_ref.name
                ),
            );
            return MappingDecision {
                restores: vec![],
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
                restores: vec![],
                renames: vec![],
                status,
            };
        }
        (Ok(users), _) => users,
    };
    let (restores, blocked, restored) = restores(o.spec, users);
    let results = resolve(o.spec, &restored);
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
    let Verdict {
        renames,
        ready,
        reason,
        message,
    } = verdict(&results, &problems, &restores, &blocked, o.migrated);
    let restores = if ready { restores } else { vec![] };
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
    MappingDecision {
        restores,
        renames,
        status,
    }
}

/// What the mappings come to: the renames to write, and the `Ready` condition.
struct Verdict {
    renames: Vec<NameChange>,
    ready: bool,
    reason: &'static str,
    message: String,
}

/// The verdict: a blocked restore or a bad mapping writes nothing, nothing is written before a
/// company migrated, and otherwise every rename is (with the restores, which the message
/// names).
fn verdict(
    results: &[Resolved],
    problems: &[&Resolved],
    restores: &[NameChange],
    blocked: &[String],
    migrated: bool,
) -> Verdict {
    let (renames, ready, reason, message) = if !blocked.is_empty() {
        (
            vec![],
            false,
            "RestoreBlocked",
            format!("nothing was written: {}", blocked.join("; ")),
        )
    } else if !problems.is_empty() {
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
    } else if !migrated {
        (
            vec![],
            false,
            "WaitingForMigration",
            "the mappings wait until a run of the schedule has migrated a company".to_string(),
        )
    } else {
        let renames: Vec<NameChange> = results.iter().filter_map(|r| r.rename.clone()).collect();
        let back = match restores.len() {
            0 => String::new(),
            n => format!(
                "; {n} cloud user{} given {} own name back: {}",
                if n == 1 { "" } else { "s" },
                if n == 1 { "its" } else { "their" },
                restores
                    .iter()
                    .take(PROBLEMS_NAMED)
                    .map(|r| format!("{} -> {}", r.from, r.to))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        (
            renames,
            true,
            "Applied",
            format!("{} mappings applied{back}", results.len()),
        )
    };
    Verdict {
        renames,
        ready,
        reason,
        message,
    }
}

/// The cloud users this mapping renamed whose mapping is gone, or now names another cloud
/// user: each gets its own name back. Returns those restores, what blocks them (a user that
/// has taken the old name since), and the users as they are once the restores are done, for
/// the mappings to be resolved against (a changed mapping renames from the user's own name).
fn restores(spec: &UserMappingSpec, users: &Users) -> (Vec<NameChange>, Vec<String>, Users) {
    let (mut back, mut blocked) = (vec![], vec![]);
    let mut after = users.clone();
    let by_name: HashMap<&str, usize> = users
        .cloud
        .iter()
        .enumerate()
        .map(|(i, u)| (u.name.as_str(), i))
        .collect();
    let mapped: HashMap<&str, String> = spec
        .mappings
        .iter()
        .map(|m| (m.source_user.as_str(), m.cloud_user.to_lowercase()))
        .collect();
    for rec in &users.renamed {
        // A user renamed since by hand, or deleted, has no name of ours to give back.
        let Some(&i) = by_name.get(rec.current.as_str()) else {
            continue;
        };
        let email = users.cloud[i].email.as_ref().map(|e| e.to_lowercase());
        let kept = mapped.get(rec.current.as_str()).is_some_and(|wanted| {
            *wanted == rec.original.to_lowercase() || email.as_ref() == Some(wanted)
        });
        if kept {
            continue;
        }
        if by_name.contains_key(rec.original.as_str()) {
            blocked.push(format!(
                "cloud user {:?} cannot get its own name {:?} back: another cloud user has that \
                 name now; rename that user, or map {:?} again",
                rec.current, rec.original, rec.current
            ));
            continue;
        }
        back.push(NameChange {
            from: rec.current.clone(),
            to: rec.original.clone(),
        });
        after.cloud[i].name = rec.original.clone();
    }
    (back, blocked, after)
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
    rename: Option<NameChange>,
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
                    r.rename = Some(NameChange {
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
            renamed: vec![],
        }
    }

    fn observe(spec: &UserMappingSpec, users: Users) -> MappingObserved<'_> {
        MappingObserved {
            generation: Some(1),
            spec,
            status: Default::default(),
            schedule_exists: true,
            lake_target: false,
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
    fn a_mapping_of_a_lake_schedule_renames_nothing_and_says_why() {
        let s = spec(serde_json::json!([
            {"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "JOHN"}
        ]));
        let mut o = observe(&s, users());
        o.lake_target = true;
        let d = decide(o);
        assert!(d.renames.is_empty() && d.restores.is_empty());
        assert_eq!(ready(&d.status).1, "NotForLakeTarget");
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
                NameChange {
                    from: "JOHN".into(),
                    to: "CONTOSO\\JSMITH".into()
                },
                NameChange {
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

    /// JOHN was renamed to CONTOSO\\JSMITH, ANNA to CONTOSO\\ALEE, both recorded.
    fn renamed() -> Users {
        let mut u = users();
        u.cloud[0].name = "CONTOSO\\JSMITH".into();
        u.cloud[1].name = "CONTOSO\\ALEE".into();
        u.renamed = vec![
            Renamed {
                current: "CONTOSO\\JSMITH".into(),
                original: "JOHN".into(),
            },
            Renamed {
                current: "CONTOSO\\ALEE".into(),
                original: "ANNA".into(),
            },
        ];
        u
    }

    fn change(from: &str, to: &str) -> NameChange {
        NameChange {
            from: from.into(),
            to: to.into(),
        }
    }

    #[test]
    fn a_removed_mapping_gives_the_name_back_and_a_changed_one_renames_from_it() {
        // ALEE's mapping removed; JSMITH's kept: ANNA gets her name back, JOHN stays.
        let s = spec(serde_json::json!([
            {"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "jsmith@contoso.com"}
        ]));
        let d = decide(observe(&s, renamed()));
        assert_eq!(d.restores, [change("CONTOSO\\ALEE", "ANNA")]);
        assert!(d.renames.is_empty());
        let (status, reason, message) = ready(&d.status);
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Applied"));
        assert!(
            message.ends_with("1 cloud user given its own name back: CONTOSO\\ALEE -> ANNA"),
            "{message}"
        );

        // JSMITH now mapped to ANNA's cloud user instead: JOHN gets his name back, then ANNA
        // (by her own name) becomes CONTOSO\\JSMITH, in that order.
        let s = spec(serde_json::json!([
            {"sourceUser": "CONTOSO\\JSMITH", "cloudUser": "ANNA"}
        ]));
        let mut users = renamed();
        users.cloud[1].name = "ANNA".into();
        users.renamed.pop();
        let d = decide(observe(&s, users));
        assert_eq!(d.restores, [change("CONTOSO\\JSMITH", "JOHN")]);
        assert_eq!(d.renames, [change("ANNA", "CONTOSO\\JSMITH")]);
        assert_eq!(ready(&d.status).0, "True");
    }

    #[test]
    fn a_name_taken_since_blocks_giving_it_back_and_nothing_is_written() {
        let s = spec(serde_json::json!([]));
        let mut users = renamed();
        users.cloud.push(CloudUser {
            name: "JOHN".into(),
            email: Some("another.john@contoso.com".into()),
        });
        let d = decide(observe(&s, users));
        assert!(d.restores.is_empty() && d.renames.is_empty());
        let (status, reason, message) = ready(&d.status);
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "RestoreBlocked")
        );
        assert!(
            message.contains("\"CONTOSO\\\\JSMITH\" cannot get its own name \"JOHN\" back"),
            "{message}"
        );
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
            renamed: vec![],
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
