//! The Kubernetes API calls the controller and its workers make, as RBAC needs them: the
//! manifests in `deploy/` must grant each (a test checks).

/// (API group, resource, verb) for the controller.
pub const CONTROLLER: &[(&str, &str, &str)] = &[
    ("cloudmigrate.io", "migrationschedules", "list"),
    ("cloudmigrate.io", "migrationschedules", "watch"),
    ("cloudmigrate.io", "migrationschedules", "get"),
    ("cloudmigrate.io", "migrationschedules/status", "patch"),
    ("cloudmigrate.io", "companyselections/status", "patch"),
    ("cloudmigrate.io", "usermappings/status", "patch"),
    ("cloudmigrate.io", "cloudresets/status", "patch"),
    ("cloudmigrate.io", "runtimekeyrotations/status", "patch"),
    ("cloudmigrate.io", "migrationruns", "list"),
    ("cloudmigrate.io", "migrationruns", "watch"),
    ("cloudmigrate.io", "migrationruns", "get"),
    ("cloudmigrate.io", "migrationruns", "create"),
    ("cloudmigrate.io", "migrationruns", "patch"),
    ("cloudmigrate.io", "migrationruns", "delete"),
    ("cloudmigrate.io", "migrationruns/status", "patch"),
    ("cloudmigrate.io", "companyselections", "list"),
    ("cloudmigrate.io", "companyselections", "watch"),
    ("cloudmigrate.io", "usermappings", "list"),
    ("cloudmigrate.io", "usermappings", "watch"),
    ("cloudmigrate.io", "cloudresets", "list"),
    ("cloudmigrate.io", "cloudresets", "watch"),
    ("cloudmigrate.io", "runtimekeyrotations", "list"),
    ("cloudmigrate.io", "runtimekeyrotations", "watch"),
    ("batch", "jobs", "list"),
    ("batch", "jobs", "watch"),
    ("batch", "jobs", "get"),
    ("batch", "jobs", "create"),
    ("", "secrets", "get"),
    // The runtime key Secrets: watched by label, made, rotated and deleted.
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("", "secrets", "delete"),
    ("events.k8s.io", "events", "create"),
    ("events.k8s.io", "events", "patch"),
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "patch"),
];

/// (API group, resource, verb) for a worker (`cloudmigrate replicate`).
pub const WORKER: &[(&str, &str, &str)] = &[
    ("cloudmigrate.io", "migrationruns", "get"),
    ("cloudmigrate.io", "migrationschedules", "get"),
    ("cloudmigrate.io", "migrationruns/status", "patch"),
    ("", "secrets", "get"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::ClusterRole;

    fn role(name: &str) -> ClusterRole {
        let text = include_str!("../../deploy/cloudmigrate.yaml");
        text.split("\n---")
            .filter_map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).ok())
            .filter(|v| v["kind"] == "ClusterRole" && v["metadata"]["name"] == name)
            .map(|v| serde_json::from_value(v).unwrap())
            .next()
            .unwrap_or_else(|| panic!("deploy/cloudmigrate.yaml has no ClusterRole {name}"))
    }

    fn grants(role: &ClusterRole, (group, resource, verb): (&str, &str, &str)) -> bool {
        role.rules.iter().flatten().any(|r| {
            let has = |list: &Option<Vec<String>>, v: &str| {
                list.iter().flatten().any(|x| x == v || x == "*")
            };
            has(&r.api_groups, group)
                && has(&r.resources, resource)
                && r.verbs.iter().any(|v| v == verb || v == "*")
        })
    }

    #[test]
    fn the_deploy_manifests_grant_every_call() {
        for (name, needed) in [
            ("cloudmigrate-controller", CONTROLLER),
            ("cloudmigrate-worker", WORKER),
        ] {
            let role = role(name);
            let missing: Vec<_> = needed.iter().filter(|p| !grants(&role, **p)).collect();
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
        }
        // And the worker gets nothing it does not use.
        let worker = role("cloudmigrate-worker");
        for extra in [
            ("", "secrets", "list"),
            ("batch", "jobs", "create"),
            ("cloudmigrate.io", "migrationruns", "delete"),
        ] {
            assert!(!grants(&worker, extra), "the worker may {extra:?}");
        }
    }
}
