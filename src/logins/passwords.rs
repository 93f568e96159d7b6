//! Where the passwords of a run or an initialization come from. In a Job's pod the kubelet puts
//! them into the environment from the Secrets that the Job names, so a worker's service account
//! needs no access to Secrets at all; everywhere else (the in-process runner, the controller's
//! own reads, the command line) they are read from the Secrets through the API.

use crate::api::common::SecretKeyRef;
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};

/// Set to `true` on the pods of cloudmigrate's Jobs: the passwords are in the environment and
/// never read through the API.
pub const FROM_ENV: &str = "CLOUDMIGRATE_PASSWORDS_FROM_ENV";

/// The variable that holds one side's password in a pod: `CLOUDMIGRATE_SOURCE_PASSWORD` or
/// `CLOUDMIGRATE_TARGET_PASSWORD`.
pub fn variable(side: &str) -> String {
    format!("CLOUDMIGRATE_{}_PASSWORD", side.to_uppercase())
}

/// The environment of a Job's container that hands it the passwords: `source` and `target`
/// are the Secret keys the pod's work logs in with (for a run on a server target, the runtime
/// key's Secret; for an initialization, the target's admin Secret). Each reference is
/// optional, so that a missing Secret fails the worker with a message naming it, rather than
/// leaving the pod waiting for it with no word in the run's status.
pub fn pod_env(source: Option<&SecretKeyRef>, target: Option<&SecretKeyRef>) -> Vec<EnvVar> {
    let mut env = vec![EnvVar {
        name: FROM_ENV.into(),
        value: Some("true".into()),
        ..Default::default()
    }];
    for (side, r) in [("source", source), ("target", target)] {
        if let Some(r) = r {
            env.push(EnvVar {
                name: variable(side),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: r.name.clone(),
                        key: r.key.clone(),
                        optional: Some(true),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    env
}

/// One side's password (`side`: "source" or "target"), from the Secret key `r` in `namespace`:
/// from the environment in a Job's pod, else through the API. The error names the Secret and
/// the key, never the value.
pub async fn password(
    client: &kube::Client,
    namespace: &str,
    side: &str,
    r: &SecretKeyRef,
) -> Result<String, String> {
    let in_pod = std::env::var(FROM_ENV).is_ok_and(|v| v == "true");
    if in_pod {
        from_env(side, r, namespace, |name| std::env::var(name).ok())
    } else {
        secret_value(client, namespace, r).await
    }
}

/// The password the kubelet put into the variable of `side`, looked up with `get`. Pure.
fn from_env(
    side: &str,
    r: &SecretKeyRef,
    namespace: &str,
    get: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    get(&variable(side))
        .map(|v| v.trim_end_matches(['\r', '\n']).to_string())
        .ok_or_else(|| {
            format!(
                "Secret {:?} with key {:?} was not in namespace {namespace:?} when this pod \
                 started; create it with the {side} password under that key, and the next \
                 attempt reads it",
                r.name, r.key
            )
        })
}

/// Reads one key of a Secret through the API. The error names the Secret and the key, never
/// the value.
pub async fn secret_value(
    client: &kube::Client,
    namespace: &str,
    r: &SecretKeyRef,
) -> Result<String, String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> =
        kube::Api::namespaced(client.clone(), namespace);
    let secret = match api.get_opt(&r.name).await {
        Ok(Some(s)) => s,
        Ok(None) => {
            return Err(format!(
                "Secret {:?} does not exist in namespace {namespace:?}; create it with the \
                 password under key {:?}",
                r.name, r.key
            ));
        }
        Err(e) => {
            return Err(format!(
                "reading Secret {:?} in namespace {namespace:?} failed: {e}; the controller's \
                 service account needs get on secrets",
                r.name
            ));
        }
    };
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&r.key))
        .map(|b| {
            String::from_utf8_lossy(&b.0)
                .trim_end_matches(['\r', '\n'])
                .to_string()
        })
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&r.key))
                .cloned()
        });
    value.ok_or_else(|| {
        format!(
            "Secret {:?} has no key {:?}; add the password under that key, or point \
             passwordSecretRef.key at the key that holds it",
            r.name, r.key
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> SecretKeyRef {
        SecretKeyRef {
            name: name.into(),
            key: "password".into(),
        }
    }

    /// A client whose API server answers one GET of a Secret with `status` and `body`.
    async fn read(status: u16, body: serde_json::Value, key: &str) -> Result<String, String> {
        let (client, mut server) = crate::fixtures::ApiServer::new();
        let answer = tokio::spawn(async move {
            server
                .expect(http::Method::GET, "/api/v1/namespaces/shop/secrets/erp-db")
                .await
                .reply(status, body);
        });
        let r = secret_value(
            &client,
            "shop",
            &SecretKeyRef {
                name: "erp-db".into(),
                key: key.into(),
            },
        )
        .await;
        answer.await.unwrap();
        r
    }

    fn secret() -> serde_json::Value {
        // "s3cret\n" in base64: a trailing newline from `echo` is not part of the password.
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "erp-db"},
               "data": {"password": "czNjcmV0Cg=="}})
    }

    #[tokio::test]
    async fn a_password_is_read_from_its_secret() {
        assert_eq!(read(200, secret(), "password").await.unwrap(), "s3cret");
    }

    #[tokio::test]
    async fn a_missing_key_or_secret_is_named_without_any_value() {
        let e = read(200, secret(), "pw").await.unwrap_err();
        assert!(e.contains("has no key \"pw\""), "{e}");
        assert!(!e.contains("s3cret") && !e.contains("czNjcmV0"), "{e}");
        let not_found = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404, "message": "not found"});
        let e = read(404, not_found, "password").await.unwrap_err();
        assert!(
            e.contains("Secret \"erp-db\" does not exist in namespace \"shop\""),
            "{e}"
        );
    }

    #[test]
    fn a_pod_gets_each_password_from_its_secret_and_optional() {
        let env = pod_env(Some(&key("erp-db")), Some(&key("erp-runtime-key")));
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v[0], json!({"name": FROM_ENV, "value": "true"}));
        assert_eq!(
            v[1],
            json!({"name": "CLOUDMIGRATE_SOURCE_PASSWORD", "valueFrom": {"secretKeyRef":
                   {"name": "erp-db", "key": "password", "optional": true}}})
        );
        assert_eq!(v[2]["name"], "CLOUDMIGRATE_TARGET_PASSWORD");
        assert_eq!(v[2]["valueFrom"]["secretKeyRef"]["name"], "erp-runtime-key");
        // A SQLite side has no password, and no variable.
        assert_eq!(pod_env(None, None).len(), 1);
    }

    #[test]
    fn a_password_missing_from_the_pod_names_its_secret_without_any_value() {
        let got = from_env("source", &key("erp-db"), "shop", |name| {
            (name == "CLOUDMIGRATE_SOURCE_PASSWORD").then(|| "s3cret\n".to_string())
        });
        assert_eq!(got.unwrap(), "s3cret");
        let e = from_env("target", &key("erp-runtime-key"), "shop", |_| None).unwrap_err();
        assert!(
            e.contains("Secret \"erp-runtime-key\" with key \"password\""),
            "{e}"
        );
        assert!(e.contains("namespace \"shop\""), "{e}");
        assert!(e.contains("target password"), "{e}");
    }
}
