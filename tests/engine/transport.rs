//! TLS to the real servers that `tests/run.sh` starts with a certificate from a test CA: a
//! verified connection is encrypted, and each failed check says which one failed and the fix.

use cloudmigrate::db::tls::{Tls, TlsMode};
use cloudmigrate::db::{ConnectSpec, Database, Kind, Statement, Value};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/run.sh"))
}

fn ca(var: &str) -> Option<Vec<u8>> {
    Some(std::fs::read(env(var)).expect("the test CA file"))
}

fn spec(url: String, tls: Tls) -> ConnectSpec {
    ConnectSpec {
        url,
        password: Some(env("CLOUDMIGRATE_TEST_DB_PASSWORD")),
        tls: Some(tls),
        max_connections: 1,
        create: false,
    }
}

fn postgres() -> String {
    env("CLOUDMIGRATE_TEST_PG_URL")
}

fn mariadb() -> String {
    env("CLOUDMIGRATE_TEST_MYSQL_URL")
}

fn verify_full(ca_var: Option<&str>) -> Tls {
    Tls {
        mode: TlsMode::VerifyFull,
        ca_pem: ca_var.and_then(ca),
    }
}

/// The connection's error message; panics when it connects.
async fn refused(spec: ConnectSpec) -> String {
    match Database::connect(&spec).await {
        Ok(_) => panic!("{} connected with {:?}", spec.url, spec.tls.map(|t| t.mode)),
        Err(e) => e.to_string(),
    }
}

/// The one text a query returns.
async fn text(db: &Database, sql: &str) -> String {
    let rows = db
        .query(
            &Statement {
                sql: sql.into(),
                params: vec![],
            },
            &[Kind::Text],
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    match &rows[0][0] {
        Value::Text(t) => t.clone(),
        v => panic!("{sql}: {v:?}"),
    }
}

#[tokio::test]
async fn verify_full_with_the_servers_ca_connects_encrypted_to_postgres_and_mariadb() {
    let pg = Database::connect(&spec(
        postgres(),
        verify_full(Some("CLOUDMIGRATE_TEST_CA_FILE")),
    ))
    .await
    .unwrap();
    let ssl = text(
        &pg,
        "SELECT CASE WHEN ssl THEN version ELSE 'none' END FROM pg_stat_ssl \
         WHERE pid = pg_backend_pid()",
    )
    .await;
    assert!(ssl.starts_with("TLS"), "PostgreSQL connection: {ssl}");
    pg.close().await;

    let my = Database::connect(&spec(
        mariadb(),
        verify_full(Some("CLOUDMIGRATE_TEST_CA_FILE")),
    ))
    .await
    .unwrap();
    let cipher = text(
        &my,
        "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS \
         WHERE VARIABLE_NAME = 'SSL_CIPHER'",
    )
    .await;
    assert!(!cipher.is_empty(), "MariaDB connection has no cipher");
    my.close().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_and_named() {
    for url in [postgres(), mariadb()] {
        let message = refused(spec(
            url.clone(),
            verify_full(Some("CLOUDMIGRATE_TEST_WRONG_CA_FILE")),
        ))
        .await;
        assert!(
            message.contains("is not signed by the CA of tls.caSecretRef/caConfigMapRef"),
            "{url}: {message}"
        );
        assert!(!message.contains(&env("CLOUDMIGRATE_TEST_DB_PASSWORD")));
    }
}

#[tokio::test]
async fn without_a_ca_the_message_says_to_give_the_servers_ca() {
    for url in [postgres(), mariadb()] {
        let message = refused(spec(url.clone(), verify_full(None))).await;
        assert!(
            message.contains("not signed by a public CA (set tls.caSecretRef"),
            "{url}: {message}"
        );
    }
}

#[tokio::test]
async fn a_host_that_the_certificate_does_not_name_fails_verify_full_and_passes_verify_ca() {
    for url in [postgres(), mariadb()] {
        // The certificate names 127.0.0.1 only.
        let by_name = url.replace("127.0.0.1", "localhost");
        let message = refused(spec(
            by_name.clone(),
            verify_full(Some("CLOUDMIGRATE_TEST_CA_FILE")),
        ))
        .await;
        assert!(
            message.contains("does not name the host \"localhost\""),
            "{by_name}: {message}"
        );
        let tls = Tls {
            mode: TlsMode::VerifyCa,
            ca_pem: ca("CLOUDMIGRATE_TEST_CA_FILE"),
        };
        Database::connect(&spec(by_name.clone(), tls))
            .await
            .unwrap_or_else(|e| panic!("{by_name} with VerifyCA: {e}"))
            .close()
            .await;
    }
}

#[tokio::test]
async fn a_clear_text_password_request_without_tls_is_refused_and_with_tls_answered() {
    // pg_hba asks this login for its password in clear text (method "password").
    let url = postgres().replace("cloudmigrate@", "cloudmigrate_cleartext@");
    let disable = Tls {
        mode: TlsMode::Disable,
        ca_pem: None,
    };
    let message = refused(spec(url.clone(), disable)).await;
    assert!(
        message.contains("asks for the password in clear text, and tls.mode is Disable"),
        "{message}"
    );
    let db = Database::connect(&spec(url, verify_full(Some("CLOUDMIGRATE_TEST_CA_FILE"))))
        .await
        .unwrap();
    assert_eq!(
        text(&db, "SELECT current_user::text").await,
        "cloudmigrate_cleartext"
    );
    db.close().await;
}

#[tokio::test]
async fn disable_connects_in_clear_to_a_server_that_asks_for_a_hashed_password() {
    let disable = Tls {
        mode: TlsMode::Disable,
        ca_pem: None,
    };
    let pg = Database::connect(&spec(postgres(), disable.clone()))
        .await
        .unwrap();
    let ssl = text(
        &pg,
        "SELECT CASE WHEN ssl THEN 'tls' ELSE 'clear' END FROM pg_stat_ssl \
         WHERE pid = pg_backend_pid()",
    )
    .await;
    assert_eq!(ssl, "clear");
    pg.close().await;
    Database::connect(&spec(mariadb(), disable))
        .await
        .unwrap()
        .close()
        .await;
}
