//! Types shared by several kinds: conditions, references and database connections.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every cloudmigrate kind.
pub const GROUP: &str = "cloudmigrate.io";
/// The API version of every cloudmigrate kind.
pub const VERSION: &str = "v1alpha1";

/// Conditions, kept as a list map keyed by `type`: server-side apply merges them by type, and
/// `kubectl wait --for=condition=...` works on them.
pub type Conditions = Vec<Condition>;

/// Adds the list-map markers to a `conditions` schema. Used with `#[schemars(transform = ...)]`.
pub fn conditions_list_map(schema: &mut schemars::Schema) {
    list_map(schema, &["type"]);
}

/// Marks an array schema as a list map keyed by `keys` (`x-kubernetes-list-type: map`).
pub fn list_map(schema: &mut schemars::Schema, keys: &[&str]) {
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(keys));
}

/// A reference to the MigrationSchedule, in the same namespace, that an object belongs to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct ScheduleRef {
    /// Name of the MigrationSchedule in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A key in a Secret in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret whose value is the password. Defaults to `password`.
    #[serde(default = "default_password_key")]
    pub key: String,
}

fn default_password_key() -> String {
    "password".into()
}

/// How a connection to a database server is protected. Outside a cluster (`run -f`), a
/// connection without this field negotiates as `psql` does (TLS when the server offers it,
/// unverified); in the cluster it means `mode: VerifyFull` with the public CAs.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(TLS_ONE_CA_RULE).message(TLS_ONE_CA_MESSAGE))]
#[x_kube(validation = Rule::new(TLS_CA_VERIFIES_RULE).message(TLS_CA_VERIFIES_MESSAGE))]
pub struct Tls {
    /// `VerifyFull` (the default): TLS, with a certificate signed by the CA and naming the
    /// URL's host. `VerifyCA`: TLS, the certificate signed by the CA, any host name.
    /// `Require`: TLS, any certificate, so an attacker on the path can still read everything.
    /// `Disable`: no TLS at all. `Require` and `Disable` show on the schedule as the warning
    /// condition `TransportVerified=False`. In every mode a password is never sent in clear
    /// text over a connection without TLS: such a login is refused before the password leaves.
    #[serde(default)]
    pub mode: TlsMode,
    /// The Secret key that holds the CA certificate (PEM) to verify the server with. Without
    /// it, or `caConfigMapRef`, the public CAs (Mozilla's list) are trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<CaKeyRef>,
    /// The ConfigMap key that holds the CA certificate (PEM), for example the bundle that
    /// trust-manager distributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_config_map_ref: Option<CaKeyRef>,
}

/// How a connection's TLS is negotiated and verified.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TlsMode {
    Disable,
    Require,
    #[serde(rename = "VerifyCA")]
    VerifyCa,
    #[default]
    VerifyFull,
}

impl TlsMode {
    /// Whether the server's certificate is checked against a CA.
    pub fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }

    /// The mode as the field spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "Disable",
            TlsMode::Require => "Require",
            TlsMode::VerifyCa => "VerifyCA",
            TlsMode::VerifyFull => "VerifyFull",
        }
    }
}

/// A key of a Secret or ConfigMap in the same namespace that holds a CA certificate.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct CaKeyRef {
    /// Name of the Secret or ConfigMap in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key whose value is the CA certificate in PEM. Defaults to `ca.crt`.
    #[serde(default = "default_ca_key")]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".into()
}

const TLS_ONE_CA_RULE: &str = "!(has(self.caSecretRef) && has(self.caConfigMapRef))";
const TLS_ONE_CA_MESSAGE: &str = "give the CA in caSecretRef or in caConfigMapRef, not both";
const TLS_CA_VERIFIES_RULE: &str = "!(has(self.caSecretRef) || has(self.caConfigMapRef)) || \
     !has(self.mode) || self.mode == 'VerifyCA' || self.mode == 'VerifyFull'";
const TLS_CA_VERIFIES_MESSAGE: &str = "a CA only serves to verify the server: set mode to \
     VerifyCA or VerifyFull, or remove caSecretRef/caConfigMapRef";
const TLS_SERVER_RULE: &str =
    "!has(self.tls) || self.url.matches('^(postgres|postgresql|mysql|mariadb)://')";
const TLS_SERVER_MESSAGE: &str = "tls applies to a database server: remove it for a sqlite:// URL";

/// How to reach the on-premises database that is migrated.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(URL_SCHEME_RULE).message(URL_SCHEME_MESSAGE))]
#[x_kube(validation = Rule::new(URL_PASSWORD_RULE).message(URL_PASSWORD_MESSAGE))]
#[x_kube(validation = Rule::new(URL_PARAMETERS_RULE).message(URL_PARAMETERS_MESSAGE))]
#[x_kube(validation = Rule::new(TLS_SERVER_RULE).message(TLS_SERVER_MESSAGE))]
pub struct SourceConnection {
    /// Database URL without the password, for example
    /// `postgres://erp_reader@onprem-db.example.local:5432/bc_prod`,
    /// `mysql://erp_reader@mariadb.example.local:3306/nav` or `sqlite:///data/bc.db`.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The Secret key that holds the password for the user in `url`. Leave it out when the
    /// database needs no password (SQLite, or trust authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// TLS to the server: see `Tls`. Left out, a schedule in the cluster verifies the
    /// certificate and the host name against the public CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
}

/// How to reach the cloud tenant database, or the data lake, that receives the data.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(TARGET_SCHEME_RULE).message(TARGET_SCHEME_MESSAGE))]
#[x_kube(validation = Rule::new(LAKE_OPTIONS_RULE).message(LAKE_OPTIONS_MESSAGE))]
#[x_kube(validation = Rule::new(URL_PASSWORD_RULE).message(URL_PASSWORD_MESSAGE))]
#[x_kube(validation = Rule::new(URL_PARAMETERS_RULE).message(URL_PARAMETERS_MESSAGE))]
#[x_kube(validation = Rule::new(TLS_SERVER_RULE).message(TLS_SERVER_MESSAGE))]
pub struct TargetConnection {
    /// Database URL without the password, for example
    /// `postgres://cloudmigrate@tenant-db.example.com:5432/bc_cloud`; or a data lake:
    /// `az://CONTAINER/FOLDER` (Azure Blob Storage or Data Lake Storage Gen2, with
    /// `lake.account`), `abfss://CONTAINER@ACCOUNT.dfs.core.windows.net/FOLDER`,
    /// `s3://BUCKET/FOLDER` (with `lake.accessKeyId`) or `file://FOLDER`. A lake gets one
    /// Delta table per source table.
    #[schemars(length(min = 1, max = 2048))]
    pub url: String,
    /// The Secret key that holds the password for the user in `url`; for a lake, the storage
    /// account's key (`az://`, `abfss://`) or the secret access key (`s3://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,
    /// How to reach a data lake target: the account or access key id, and the service's
    /// address when it is not the public cloud's. Only for a lake `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lake: Option<LakeOptions>,
    /// TLS to the server: see `Tls`. Left out, a schedule in the cluster verifies the
    /// certificate and the host name against the public CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// Create tables that exist in the source but not in the target, from the source's
    /// definition. Off by default: the cloud product installs the tenant's schema, and a table
    /// missing there is reported as a warning with guidance instead. In the cluster, the
    /// controller creates them as the admin login before the run starts; the runtime role
    /// never may create anything. A Diagnostic run creates nothing.
    #[serde(default)]
    pub create_missing_tables: bool,
}

/// The options of a data lake target. The key is never here: it is in the Secret that the
/// target's `passwordSecretRef` names.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LakeOptions {
    /// The Azure storage account's name, for an `az://` URL (an `abfss://` URL names it in
    /// its host).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub account: Option<String>,
    /// The S3 access key id, for an `s3://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub access_key_id: Option<String>,
    /// The service's address when it is not the public cloud's: an S3-compatible server, a
    /// sovereign Azure cloud, or Azurite (`http://127.0.0.1:10000/devstoreaccount1`). Only an
    /// endpoint given here may be `http://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub endpoint: Option<String>,
    /// The S3 region. Defaults to `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub region: Option<String>,
}

const TARGET_SCHEME_RULE: &str =
    "self.url.matches('^(postgres|postgresql|mysql|mariadb|sqlite|az|abfss|s3|file)://')";
const TARGET_SCHEME_MESSAGE: &str = "url must start with postgres://, postgresql://, mysql://, \
     mariadb://, sqlite:// (a database), or az://, abfss://, s3://, file:// (a data lake)";
const LAKE_OPTIONS_RULE: &str = "!has(self.lake) || self.url.matches('^(az|abfss|s3|file)://')";
const LAKE_OPTIONS_MESSAGE: &str =
    "lake applies to a data lake target (az://, abfss://, s3:// or file://): remove it";

const URL_SCHEME_RULE: &str = "self.url.matches('^(postgres|postgresql|mysql|mariadb|sqlite)://')";
const URL_SCHEME_MESSAGE: &str = "url must start with postgres://, postgresql://, mysql://, \
     mariadb:// or sqlite://";
const URL_PASSWORD_RULE: &str = "!self.url.matches('^[a-z]+://[^/@]*:[^/@]*@') && \
     !self.url.matches('[?&](password|sslpassword)=')";
const URL_PASSWORD_MESSAGE: &str = "url must not contain a password: remove it from the url and \
     put it in a Secret named by passwordSecretRef";
/// The server URL parameters the controller accepts (`db::tenancy::PARAMETERS`), at admission.
pub(crate) const URL_PARAMETERS_RULE: &str = "!self.url.matches('^(postgres|postgresql|mysql|mariadb)://') \
     || self.url.matches('^[^?#]*([?](application_name|connect_timeout|charset|collation|timezone|statement-cache-capacity)=[^&#]*(&(application_name|connect_timeout|charset|collation|timezone|statement-cache-capacity)=[^&#]*)*)?$')";
const URL_PARAMETERS_MESSAGE: &str = "url may carry only the parameters application_name and \
     connect_timeout (PostgreSQL) or charset, collation, timezone and statement-cache-capacity \
     (MySQL/MariaDB): a host, a file, a password or session options cannot be set by URL, and \
     TLS is set with the tls field";

/// Splits `NAMESPACE/NAME` as the command line takes an object; the error names `what` (the
/// flag or argument) and shows `example`.
pub fn namespaced_name<'a>(
    value: &'a str,
    what: &str,
    example: &str,
) -> Result<(&'a str, &'a str), String> {
    value
        .split_once('/')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
        .ok_or_else(|| format!("{what} {value:?} must be NAMESPACE/NAME, for example {example}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_names_split_once_and_say_what_is_wrong() {
        assert_eq!(
            namespaced_name("shop/erp-1", "--run", "a/b"),
            Ok(("shop", "erp-1"))
        );
        for bad in ["erp-1", "/erp-1", "shop/", "a/b/c", ""] {
            let e = namespaced_name(bad, "--run", "shop/erp-1").unwrap_err();
            assert!(e.contains("--run") && e.contains("NAMESPACE/NAME"), "{e}");
            assert!(e.contains("shop/erp-1"), "{e}");
        }
    }
}
