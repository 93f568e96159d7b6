//! The Kubernetes API calls the controller and its workers make, as RBAC needs them: the
//! manifests in `deploy/` must grant each (a test checks).

/// (API group, resource, verb) for the controller.
pub const CONTROLLER: &[(&str, &str, &str)] = &[
    ("cloudmigrate.io", "migrationschedules", "list"),
    ("cloudmigrate.io", "migrationschedules", "watch"),
    ("cloudmigrate.io", "migrationschedules", "get"),
    // The finalizer that holds a deleted schedule until its login role is dropped.
    ("cloudmigrate.io", "migrationschedules", "patch"),
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
    // The Job of a run whose workers never started, at its start deadline.
    ("batch", "jobs", "delete"),
    // Why a run's workers do not start: the worker pods (by label) and the Jobs' FailedCreate
    // events (by field).
    ("", "pods", "list"),
    ("", "pods", "watch"),
    ("", "events", "list"),
    ("", "events", "watch"),
    ("", "secrets", "get"),
    // A database server's CA, when a schedule's tls.caConfigMapRef names it.
    ("", "configmaps", "get"),
    // The runtime key Secrets: watched by label, made, rotated and deleted.
    ("", "secrets", "list"),
    ("", "secrets", "watch"),
    ("", "secrets", "create"),
    ("", "secrets", "patch"),
    ("", "secrets", "delete"),
    // What the controller creates names its owner with blockOwnerDeletion: runs and key
    // Secrets their schedule, Jobs their run or CompanySelection. Where the admission plugin
    // OwnerReferencesPermissionEnforcement is on (OpenShift has it by default), that needs
    // update on the owner's finalizers.
    ("cloudmigrate.io", "migrationschedules/finalizers", "update"),
    ("cloudmigrate.io", "migrationruns/finalizers", "update"),
    ("cloudmigrate.io", "companyselections/finalizers", "update"),
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
    // The initializer (`cloudmigrate initialize --selection`).
    ("cloudmigrate.io", "companyselections", "get"),
    ("cloudmigrate.io", "migrationruns/status", "patch"),
    // No Secrets: a worker pod gets its passwords from the kubelet (`runner::passwords`).
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

    /// Every (group, resource, verb) that a role grants; `*` stays as it is.
    fn granted(role: &ClusterRole) -> std::collections::BTreeSet<(String, String, String)> {
        let mut out = std::collections::BTreeSet::new();
        for r in role.rules.iter().flatten() {
            for g in r.api_groups.iter().flatten() {
                for res in r.resources.iter().flatten() {
                    for v in &r.verbs {
                        out.insert((g.clone(), res.clone(), v.clone()));
                    }
                }
            }
        }
        out
    }

    /// The chart's render in deploy/ grants the controller and the workers exactly the calls
    /// they make: nothing missing, nothing more.
    #[test]
    fn the_deploy_manifests_grant_every_call_and_nothing_more() {
        for (name, needed) in [
            ("cloudmigrate-controller", CONTROLLER),
            ("cloudmigrate-worker", WORKER),
        ] {
            let needed: std::collections::BTreeSet<(String, String, String)> = needed
                .iter()
                .map(|(g, r, v)| (g.to_string(), r.to_string(), v.to_string()))
                .collect();
            let granted = granted(&role(name));
            let missing: Vec<_> = needed.difference(&granted).collect();
            let extra: Vec<_> = granted.difference(&needed).collect();
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
            assert!(
                extra.is_empty(),
                "{name} grants more than it uses: {extra:?}"
            );
        }
    }
}
