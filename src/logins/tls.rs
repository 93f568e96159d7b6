//! The TLS of a schedule's connections: the mode (`VerifyFull` unless the schedule says
//! otherwise), and the CA from the Secret or ConfigMap that `tls` names. In a Job's pod the
//! kubelet puts the CA into the environment, as it does the passwords (`ca_env`); elsewhere in
//! the cluster it is read through the API. The command line reads it from a file instead.

use crate::api::common::{CaKeyRef, Tls as TlsSpec, TlsMode as ModeSpec};
use crate::db::tls::{Tls, TlsMode, check_ca};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapKeySelector, EnvVar, EnvVarSource, Secret, SecretKeySelector,
};

/// The variable that holds one side's CA in a pod: `CLOUDMIGRATE_SOURCE_CA` or
/// `CLOUDMIGRATE_TARGET_CA`.
pub fn variable(side: &str) -> String {
    format!("CLOUDMIGRATE_{}_CA", side.to_uppercase())
}

/// The variable that names a file with one side's CA on the command line:
/// `CLOUDMIGRATE_SOURCE_CA_FILE` or `CLOUDMIGRATE_TARGET_CA_FILE`.
pub fn file_variable(side: &str) -> String {
    format!("CLOUDMIGRATE_{}_CA_FILE", side.to_uppercase())
}

fn mode(spec: ModeSpec) -> TlsMode {
    match spec {
        ModeSpec::Disable => TlsMode::Disable,
        ModeSpec::Require => TlsMode::Require,
        ModeSpec::VerifyCa => TlsMode::VerifyCa,
        ModeSpec::VerifyFull => TlsMode::VerifyFull,
    }
}

/// The environment entry that hands a pod one side's CA, when the schedule names one. It is
/// optional, so that a missing CA fails the worker with a message naming it.
pub fn ca_env(side: &str, tls: Option<&TlsSpec>) -> Option<EnvVar> {
    let tls = tls?;
    let source = if let Some(r) = &tls.ca_secret_ref {
        EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(true),
            }),
            ..Default::default()
        }
    } else {
        let r = tls.ca_config_map_ref.as_ref()?;
        EnvVarSource {
            config_map_key_ref: Some(ConfigMapKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: Some(true),
            }),
            ..Default::default()
        }
    };
    Some(EnvVar {
        name: variable(side),
        value_from: Some(source),
        ..Default::default()
    })
}

/// Where a schedule's CA is, in words for a message: `Secret "db-ca" key "ca.crt"`.
fn named(tls: &TlsSpec) -> Option<(&'static str, &CaKeyRef)> {
    match (&tls.ca_secret_ref, &tls.ca_config_map_ref) {
        (Some(r), _) => Some(("Secret", r)),
        (None, Some(r)) => Some(("ConfigMap", r)),
        (None, None) => None,
    }
}

/// The TLS of one side (`side`: "source" or "target") of a schedule in the cluster: the mode
/// (`VerifyFull` when `tls` is left out) and the CA, from the pod's environment in a Job's
/// pod, else through the API. The error names the Secret or ConfigMap and the key.
pub async fn settle(
    client: &kube::Client,
    namespace: &str,
    side: &str,
    tls: Option<&TlsSpec>,
) -> Result<Tls, String> {
    let Some(spec) = tls else {
        return Ok(Tls::verify_full());
    };
    let mut out = Tls {
        mode: mode(spec.mode),
        ca_pem: None,
    };
    let Some((kind, r)) = named(spec) else {
        return Ok(out);
    };
    let what = format!("{kind} {:?} key {:?}", r.name, r.key);
    let in_pod = std::env::var(super::passwords::FROM_ENV).is_ok_and(|v| v == "true");
    let pem = if in_pod {
        std::env::var(variable(side))
            .map(String::into_bytes)
            .map_err(|_| {
                format!(
                    "the {side} CA: {what} was not in namespace {namespace:?} when this pod \
                 started; create it with the CA certificate (PEM), and the next attempt reads it"
                )
            })?
    } else {
        read(client, namespace, kind, r)
            .await
            .map_err(|e| format!("the {side} CA: {e}"))?
    };
    check_ca(&pem, &what).map_err(|e| format!("the {side} CA: {e}"))?;
    out.ca_pem = Some(pem);
    Ok(out)
}

/// One key of a Secret or ConfigMap, through the API.
async fn read(
    client: &kube::Client,
    namespace: &str,
    kind: &str,
    r: &CaKeyRef,
) -> Result<Vec<u8>, String> {
    let missing = || {
        format!(
            "{kind} {:?} does not exist in namespace {namespace:?}; create it with the CA \
             certificate (PEM) under key {:?}",
            r.name, r.key
        )
    };
    let failed = |e: kube::Error| {
        format!(
            "reading {kind} {:?} in namespace {namespace:?} failed: {e}; the controller's \
             service account needs get on {}s",
            r.name,
            kind.to_lowercase()
        )
    };
    let value = if kind == "Secret" {
        let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), namespace);
        let s = api
            .get_opt(&r.name)
            .await
            .map_err(failed)?
            .ok_or_else(missing)?;
        s.data.and_then(|d| d.get(&r.key).map(|b| b.0.clone()))
    } else {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
        let c = api
            .get_opt(&r.name)
            .await
            .map_err(failed)?
            .ok_or_else(missing)?;
        c.data
            .and_then(|d| d.get(&r.key).map(|v| v.clone().into_bytes()))
    };
    value.ok_or_else(|| format!("{kind} {:?} has no key {:?}; add the CA certificate (PEM) under that key, or point the ref's key at the key that holds it", r.name, r.key))
}

/// The TLS of one side on the command line: as the URL says when the manifest has no `tls`;
/// else its mode, with the CA from the file that `CLOUDMIGRATE_<SIDE>_CA_FILE` names.
pub fn for_command_line(side: &str, tls: Option<&TlsSpec>) -> Result<Option<Tls>, String> {
    let Some(spec) = tls else {
        return Ok(None);
    };
    let mut out = Tls {
        mode: mode(spec.mode),
        ca_pem: None,
    };
    if let Some((kind, r)) = named(spec) {
        let var = file_variable(side);
        let path = std::env::var(&var).map_err(|_| {
            format!(
                "spec.{side}.tls names the {kind} {:?} (key {:?}), which only exists in a \
                 cluster: name a file with the CA certificate in the environment variable {var}",
                r.name, r.key
            )
        })?;
        let pem = std::fs::read(&path).map_err(|e| format!("reading {var} {path}: {e}"))?;
        check_ca(&pem, &format!("{var} {path}"))?;
        out.ca_pem = Some(pem);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(secret: bool) -> TlsSpec {
        let r = CaKeyRef {
            name: "db-ca".into(),
            key: "ca.crt".into(),
        };
        TlsSpec {
            mode: ModeSpec::VerifyFull,
            ca_secret_ref: secret.then(|| r.clone()),
            ca_config_map_ref: (!secret).then_some(r),
        }
    }

    #[test]
    fn a_pod_gets_the_ca_from_its_secret_or_config_map() {
        let v = serde_json::to_value(ca_env("target", Some(&spec(true)))).unwrap();
        assert_eq!(
            v,
            json!({"name": "CLOUDMIGRATE_TARGET_CA", "valueFrom": {"secretKeyRef":
                {"name": "db-ca", "key": "ca.crt", "optional": true}}})
        );
        let v = serde_json::to_value(ca_env("source", Some(&spec(false)))).unwrap();
        assert_eq!(
            v["valueFrom"]["configMapKeyRef"],
            json!({"name": "db-ca", "key": "ca.crt", "optional": true})
        );
        assert!(ca_env("source", None).is_none());
        assert!(ca_env("source", Some(&TlsSpec::default())).is_none());
    }

    #[test]
    fn the_command_line_keeps_the_url_default_and_reads_a_ca_from_a_file() {
        assert_eq!(for_command_line("source", None), Ok(None));
        let e = for_command_line("source", Some(&spec(true))).unwrap_err();
        assert!(
            e.contains("CLOUDMIGRATE_SOURCE_CA_FILE") && e.contains("db-ca"),
            "{e}"
        );
        let plain = TlsSpec {
            mode: ModeSpec::Disable,
            ..Default::default()
        };
        assert_eq!(
            for_command_line("target", Some(&plain))
                .unwrap()
                .unwrap()
                .mode,
            TlsMode::Disable
        );
    }
}
