//! TLS of a connection to a database server: the mode and CA it is opened with, how each
//! driver is told, a failed handshake in words that say which check failed, and the guard that
//! keeps a password from crossing a connection without TLS in clear text.

use sqlx::mysql::{MySqlConnectOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How a connection's TLS is negotiated and verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// No TLS.
    Disable,
    /// TLS, any certificate.
    Require,
    /// TLS, a certificate signed by a trusted CA, for any host name.
    VerifyCa,
    /// TLS, a certificate signed by a trusted CA that names the URL's host.
    VerifyFull,
}

impl TlsMode {
    /// The mode as the schedule's `tls.mode` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Disable => "Disable",
            TlsMode::Require => "Require",
            TlsMode::VerifyCa => "VerifyCA",
            TlsMode::VerifyFull => "VerifyFull",
        }
    }
}

/// The TLS a connection is opened with. A connection without one negotiates as its URL says
/// (as `psql` and `mysql` do): only the command line opens such connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    pub mode: TlsMode,
    /// A CA certificate (PEM) trusted in addition to the public CAs.
    pub ca_pem: Option<Vec<u8>>,
}

impl Tls {
    /// Full verification against the public CAs: what a schedule in the cluster gets unless it
    /// says otherwise.
    pub fn verify_full() -> Self {
        Tls {
            mode: TlsMode::VerifyFull,
            ca_pem: None,
        }
    }
}

/// Whether `pem` holds at least one certificate; the message names `what` (where it came
/// from) and never the content.
pub fn check_ca(pem: &[u8], what: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(pem);
    if text.contains("-----BEGIN CERTIFICATE-----") {
        Ok(())
    } else {
        Err(format!(
            "{what} holds no PEM certificate (-----BEGIN CERTIFICATE-----): put the CA \
             certificate of the database server there"
        ))
    }
}

/// The PostgreSQL options with the TLS of `tls`.
pub(crate) fn postgres(mut options: PgConnectOptions, tls: &Tls) -> PgConnectOptions {
    options = options.ssl_mode(match tls.mode {
        TlsMode::Disable => PgSslMode::Disable,
        TlsMode::Require => PgSslMode::Require,
        TlsMode::VerifyCa => PgSslMode::VerifyCa,
        TlsMode::VerifyFull => PgSslMode::VerifyFull,
    });
    if let Some(ca) = &tls.ca_pem {
        options = options.ssl_root_cert_from_pem(ca.clone());
    }
    options
}

/// The MySQL/MariaDB options with the TLS of `tls`. The driver never answers a server that
/// asks for the password in clear text (`mysql_clear_password`), in any mode.
pub(crate) fn mysql(mut options: MySqlConnectOptions, tls: &Tls) -> MySqlConnectOptions {
    options = options
        .ssl_mode(match tls.mode {
            TlsMode::Disable => MySqlSslMode::Disabled,
            TlsMode::Require => MySqlSslMode::Required,
            TlsMode::VerifyCa => MySqlSslMode::VerifyCa,
            TlsMode::VerifyFull => MySqlSslMode::VerifyIdentity,
        })
        .enable_cleartext_plugin(false);
    if let Some(ca) = &tls.ca_pem {
        options = options.ssl_ca_from_pem(ca.clone());
    }
    options
}

/// A failed connection's message, with the TLS check that failed named and its fix; other
/// messages as they are. `host` is the URL's host.
pub(crate) fn explain(message: String, tls: Option<&Tls>, host: &str) -> String {
    let Some(tls) = tls else {
        return message;
    };
    let m = message.to_ascii_lowercase();
    let ca = if tls.ca_pem.is_some() {
        "the CA of tls.caSecretRef/caConfigMapRef (or a public CA)"
    } else {
        "a public CA (set tls.caSecretRef or tls.caConfigMapRef to the server's CA)"
    };
    let why = if m.contains("unknownissuer") || m.contains("unknown issuer") {
        format!("TLS: the server's certificate is not signed by {ca}")
    } else if m.contains("not valid for name") || m.contains("notvalidforname") {
        format!(
            "TLS: the server's certificate does not name the host {host:?} of the URL: use a \
             host name that the certificate names, or tls.mode VerifyCA to skip the name check"
        )
    } else if m.contains("expired") {
        "TLS: the server's certificate has expired".to_string()
    } else if m.contains("does not support tls") || m.contains("does not support ssl") {
        format!(
            "TLS: the server does not offer TLS, and tls.mode is {}: turn TLS on in the \
             server, or set tls.mode Disable (a password then crosses the network hashed, \
             never in clear text, but the data in clear)",
            tls.mode.as_str()
        )
    } else {
        return message;
    };
    format!("{why} ({message})")
}

/// Refuses a PostgreSQL login without TLS when the server asks for the password in clear text
/// (pg_hba method `password`, or `ldap`/`pam`/`radius`): the password would cross the network
/// readable. The server is asked once, without a password, before the driver logs in; an
/// error or no answer here is left for the real login to report.
pub(crate) async fn refuse_clear_text_login(options: &PgConnectOptions) -> Result<(), String> {
    let (host, port) = (options.get_host(), options.get_port());
    let asked = tokio::time::timeout(Duration::from_secs(10), async {
        let mut stream = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        stream
            .write_all(&startup_message(
                options.get_username(),
                options.get_database(),
            ))
            .await
            .ok()?;
        let kind = stream.read_u8().await.ok()?;
        let _length = stream.read_u32().await.ok()?;
        let code = stream.read_u32().await.ok()?;
        Some(kind == b'R' && code == CLEAR_TEXT_PASSWORD)
    })
    .await;
    if let Ok(Some(true)) = asked {
        return Err(
            "the server asks for the password in clear text, and tls.mode is Disable: the \
             password is not sent. Turn TLS on (tls.mode VerifyFull), or have the server ask \
             for scram-sha-256 (pg_hba.conf)"
                .into(),
        );
    }
    Ok(())
}

/// PostgreSQL's AuthenticationCleartextPassword.
const CLEAR_TEXT_PASSWORD: u32 = 3;

/// A protocol 3.0 StartupMessage for `user` and `database`.
fn startup_message(user: &str, database: Option<&str>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196_608u32.to_be_bytes());
    for (k, v) in [("user", Some(user)), ("database", database)] {
        if let Some(v) = v {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let mut message = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_failures_say_which_check_failed() {
        let tls = Tls::verify_full();
        let unknown = explain(
            "error occurred while attempting to establish a TLS connection: invalid peer \
             certificate: UnknownIssuer"
                .into(),
            Some(&tls),
            "db",
        );
        assert!(
            unknown.starts_with(
                "TLS: the server's certificate is not signed by a public CA (set tls.caSecretRef"
            ),
            "{unknown}"
        );
        let name = explain(
            "invalid peer certificate: certificate not valid for name \"localhost\"; \
             certificate is only valid for IpAddress(127.0.0.1)"
                .into(),
            Some(&tls),
            "localhost",
        );
        assert!(
            name.contains("does not name the host \"localhost\""),
            "{name}"
        );
        let plain = explain("server does not support TLS".into(), Some(&tls), "db");
        assert!(
            plain.contains("does not offer TLS") && plain.contains("VerifyFull"),
            "{plain}"
        );
        assert_eq!(
            explain("password authentication failed".into(), Some(&tls), "db"),
            "password authentication failed"
        );
        assert_eq!(explain("UnknownIssuer".into(), None, "db"), "UnknownIssuer");
    }

    #[test]
    fn a_ca_must_be_a_pem_certificate() {
        assert!(
            check_ca(
                b"-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n",
                "x"
            )
            .is_ok()
        );
        let e = check_ca(b"not a cert", "Secret \"db-ca\" key \"ca.crt\"").unwrap_err();
        assert!(e.contains("db-ca") && !e.contains("not a cert"), "{e}");
    }

    #[test]
    fn the_startup_message_is_framed_as_the_protocol_says() {
        let m = startup_message("erp", Some("bc"));
        assert_eq!(
            u32::from_be_bytes(m[0..4].try_into().unwrap()) as usize,
            m.len()
        );
        assert_eq!(&m[4..8], &196_608u32.to_be_bytes());
        assert_eq!(&m[8..], b"user\0erp\0database\0bc\0\0");
    }
}
