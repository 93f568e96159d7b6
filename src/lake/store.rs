//! Where a lake is and how to reach it: an `az://`, `s3://` or `file://` URL with its options
//! becomes an object store (`object_store`) and the folder of the lake in it; the store's
//! errors become ones that name the problem and the fix, without a key in them.

use object_store::ObjectStore;
use object_store::path::Path;
use std::sync::Arc;

/// A lake target as a schedule or `run -f` gives it. The secret (an Azure account key, an S3
/// secret access key) comes from the target's password Secret or environment variable.
#[derive(Clone, Default)]
pub struct LakeTarget {
    /// `az://CONTAINER/FOLDER`, `s3://BUCKET/FOLDER` or `file://FOLDER`.
    pub url: String,
    /// The Azure storage account (for `az://`).
    pub account: Option<String>,
    /// The S3 access key id (for `s3://`).
    pub access_key_id: Option<String>,
    /// The service's address, when it is not the public cloud's (an S3-compatible server,
    /// Azurite, a sovereign cloud). `http://` is allowed only here, named on purpose.
    pub endpoint: Option<String>,
    /// The S3 region.
    pub region: Option<String>,
    /// The account key (Azure) or the secret access key (S3).
    pub secret: Option<String>,
}

impl std::fmt::Debug for LakeTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeTarget")
            .field("url", &self.url)
            .field("account", &self.account)
            .field("access_key_id", &self.access_key_id)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

/// Why a lake cannot be used. Each names the fix; none carries a key.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LakeError {
    /// The target's URL or options are wrong.
    #[error("{0}")]
    Invalid(String),
    /// The service refused the credentials.
    #[error("{0}")]
    Denied(String),
    /// The service could not be reached.
    #[error("{0}")]
    Unreachable(String),
    /// Anything else the service or a file said.
    #[error("{0}")]
    Failed(String),
}

impl LakeError {
    /// The condition reason a schedule or run shows for it.
    pub fn reason(&self) -> &'static str {
        match self {
            LakeError::Invalid(_) => "InvalidLakeTarget",
            LakeError::Denied(_) => "LakeAccessDenied",
            LakeError::Unreachable(_) => "LakeUnreachable",
            LakeError::Failed(_) => "LakeWriteFailed",
        }
    }
}

/// Whether a target URL names a lake rather than a database.
pub fn is_lake_url(url: &str) -> bool {
    ["az://", "abfss://", "s3://", "file://"]
        .iter()
        .any(|s| url.starts_with(s))
}

/// An open lake: the store and the lake's folder in it.
#[derive(Clone, Debug)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    pub root: Path,
    /// The URL, for messages and status.
    pub url: String,
}

impl Lake {
    /// A path below the lake's folder, from parts that are data (a company's name, a table's),
    /// each kept as it is spelt (spaces, `$`, accents), as readers are given it: only what
    /// cannot be in a folder's name (see `folder_name`) is replaced.
    pub fn path(&self, parts: &[&str]) -> Path {
        let mut p = self.root.clone();
        for part in parts {
            let name = folder_name(part);
            p = match object_store::path::PathPart::parse(&name) {
                Ok(part) => p.clone().join(part),
                // Not reached: folder_name leaves nothing that parse refuses.
                Err(_) => p
                    .clone()
                    .join(object_store::path::PathPart::from(name.as_str())),
            };
        }
        p
    }

    /// The URL of a path below the lake's folder, as readers are given it.
    pub fn url_of(&self, parts: &[&str]) -> String {
        let mut url = self.url.trim_end_matches('/').to_string();
        for part in parts {
            url.push('/');
            url.push_str(&folder_name(part));
        }
        url
    }

    /// Reads the lake's folder once: wrong credentials or an unknown container fail here,
    /// before anything is written.
    pub async fn check(&self) -> Result<(), LakeError> {
        use futures_util::StreamExt;
        let mut listing = self.store.list(Some(&self.root));
        match listing.next().await {
            Some(Err(e)) => Err(self.error("reading", e)),
            _ => Ok(()),
        }
    }

    /// The store's error as one that names the problem and the fix.
    pub fn error(&self, doing: &str, e: object_store::Error) -> LakeError {
        let text = e.to_string();
        let lower = text.to_ascii_lowercase();
        let denied = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "403",
            "401",
            "forbidden",
            "authenticationfailed",
            "signaturedoesnotmatch",
            "invalidaccesskeyid",
            "accessdenied",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if denied {
            return LakeError::Denied(format!(
                "the lake at {} refused the credentials while {doing}: check the account or \
                 access key id, and the key in the target's password Secret \
                 (CLOUDMIGRATE_TARGET_PASSWORD for run -f)",
                self.url
            ));
        }
        let unreachable = [
            "connection refused",
            "error sending request",
            "dns error",
            "timed out",
            "connect error",
        ]
        .iter()
        .any(|w| lower.contains(w));
        if unreachable {
            return LakeError::Unreachable(format!(
                "the lake at {} cannot be reached while {doing}: check the URL and the \
                 endpoint, and that the service is up ({})",
                self.url,
                first_line(&text)
            ));
        }
        LakeError::Failed(format!(
            "the lake at {} failed while {doing}: {}",
            self.url,
            first_line(&text)
        ))
    }
}

/// A name as a folder's: `/` and control characters become `_` (as Business Central does in
/// its SQL names: `CRONUS A/S` is `CRONUS A_S`), and `.` or `..` alone become `_`.
pub fn folder_name(name: &str) -> String {
    if name == "." || name == ".." || name.is_empty() {
        return "_".into();
    }
    name.chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect()
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Splits `scheme://first/rest` into `first` and `rest`.
fn split_url<'a>(url: &'a str, scheme: &str) -> (&'a str, &'a str) {
    let rest = &url[scheme.len()..];
    match rest.split_once('/') {
        Some((first, rest)) => (first, rest.trim_matches('/')),
        None => (rest, ""),
    }
}

fn http_allowed(endpoint: &Option<String>) -> bool {
    endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"))
}

/// Opens the lake a target names. Nothing is read or written yet (see `Lake::check`).
pub fn open(t: &LakeTarget) -> Result<Lake, LakeError> {
    // The process's TLS provider for the store's HTTP client: ring, as for the databases.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let invalid = |m: String| LakeError::Invalid(m);
    let url = t.url.trim().to_string();
    let (store, folder): (Arc<dyn ObjectStore>, String) = if let Some(rest) =
        url.strip_prefix("file://")
    {
        if rest.is_empty() {
            return Err(invalid(
                "a file:// lake needs a folder, for example file://./cloudmigrate-demo/lake".into(),
            ));
        }
        // In the controller, only under the operator's directories; checked before the folder
        // is made.
        crate::db::tenancy::lake_folder_allowed(rest).map_err(invalid)?;
        std::fs::create_dir_all(rest)
            .map_err(|e| invalid(format!("the lake folder {rest} cannot be made: {e}")))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(rest)
            .map_err(|e| invalid(format!("the lake folder {rest}: {e}")))?;
        (Arc::new(store), String::new())
    } else if url.starts_with("az://") || url.starts_with("abfss://") {
        let (container, folder, account) = if url.starts_with("az://") {
            let (container, folder) = split_url(&url, "az://");
            (container.to_string(), folder.to_string(), t.account.clone())
        } else {
            // abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/FOLDER
            let (host, folder) = split_url(&url, "abfss://");
            let (container, account_host) = host.split_once('@').ok_or_else(|| {
                invalid(format!(
                    "{url} should be abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/FOLDER"
                ))
            })?;
            let account = account_host.split('.').next().map(str::to_string);
            (
                container.to_string(),
                folder.to_string(),
                t.account.clone().or(account),
            )
        };
        let account = account.filter(|a| !a.is_empty()).ok_or_else(|| {
            invalid(
                "an az:// lake needs the storage account's name: set target.lake.account".into(),
            )
        })?;
        let key = t.secret.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            invalid(
                "an az:// lake needs the storage account's key: put it in the Secret that \
                 target.passwordSecretRef names (CLOUDMIGRATE_TARGET_PASSWORD for run -f)"
                    .into(),
            )
        })?;
        if container.is_empty() {
            return Err(invalid(format!(
                "{url} names no container: az://CONTAINER/FOLDER"
            )));
        }
        let mut b = object_store::azure::MicrosoftAzureBuilder::new()
            .with_account(account)
            .with_access_key(key)
            .with_container_name(container)
            .with_allow_http(http_allowed(&t.endpoint));
        if let Some(e) = &t.endpoint {
            b = b.with_endpoint(e.clone());
        }
        let store = b
            .build()
            .map_err(|e| invalid(format!("{url}: {}", clean(&e))))?;
        (Arc::new(store), folder)
    } else if url.starts_with("s3://") {
        let (bucket, folder) = split_url(&url, "s3://");
        if bucket.is_empty() {
            return Err(invalid(format!(
                "{url} names no bucket: s3://BUCKET/FOLDER"
            )));
        }
        let id = t
            .access_key_id
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                invalid("an s3:// lake needs an access key id: set target.lake.accessKeyId".into())
            })?;
        let secret = t.secret.clone().filter(|k| !k.is_empty()).ok_or_else(|| {
            invalid(
                "an s3:// lake needs the secret access key: put it in the Secret that \
                 target.passwordSecretRef names (CLOUDMIGRATE_TARGET_PASSWORD for run -f)"
                    .into(),
            )
        })?;
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_access_key_id(id)
            .with_secret_access_key(secret)
            .with_region(t.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_allow_http(http_allowed(&t.endpoint));
        if let Some(e) = &t.endpoint {
            b = b.with_endpoint(e.clone());
        }
        let store = b
            .build()
            .map_err(|e| invalid(format!("{url}: {}", clean(&e))))?;
        (Arc::new(store), folder.to_string())
    } else {
        return Err(invalid(format!(
            "{url} is not a lake URL: use az://CONTAINER/FOLDER, s3://BUCKET/FOLDER or \
             file://FOLDER"
        )));
    };
    let root = Path::parse(&folder)
        .map_err(|e| invalid(format!("the folder {folder:?} in {url}: {e}")))?;
    Ok(Lake { store, root, url })
}

/// A builder's error, which names options, never their values.
fn clean(e: &object_store::Error) -> String {
    first_line(&e.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lake_target_says_what_it_lacks() {
        let t = |url: &str| LakeTarget {
            url: url.into(),
            ..Default::default()
        };
        let e = open(&t("az://lake/bc")).unwrap_err();
        assert_eq!(e.reason(), "InvalidLakeTarget");
        assert!(e.to_string().contains("target.lake.account"), "{e}");
        let mut with_account = t("az://lake/bc");
        with_account.account = Some("contoso".into());
        let e = open(&with_account).unwrap_err();
        assert!(e.to_string().contains("passwordSecretRef"), "{e}");
        let e = open(&t("s3://bucket")).unwrap_err();
        assert!(e.to_string().contains("accessKeyId"), "{e}");
        let e = open(&t("gs://bucket")).unwrap_err();
        assert!(e.to_string().contains("not a lake URL"), "{e}");
        assert!(is_lake_url("file://./x") && !is_lake_url("sqlite://x"));
        let secret = LakeTarget {
            secret: Some("hunter2".into()),
            ..t("s3://b")
        };
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn a_path_keeps_each_part_whole() {
        let dir = std::env::temp_dir().join(format!("lake-path-{}", std::process::id()));
        let lake = open(&LakeTarget {
            url: format!("file://{}", dir.display()),
            ..Default::default()
        })
        .unwrap();
        let p = lake.path(&["companies", "CRONUS A/S", "Contoso Café$G_L Entry", ".."]);
        assert_eq!(
            p.parts()
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>(),
            ["companies", "CRONUS A_S", "Contoso Café$G_L Entry", "_"]
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
