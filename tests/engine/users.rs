//! The SQL of user mapping on every dialect: the users of a `User` table with the length of
//! `User Name`, and renames that are written all together or not at all.

use crate::databases::{Server, TestDb};
use cloudmigrate::engine::ledger::renames;
use cloudmigrate::engine::users::{self, User};

async fn users_table(server: Server) -> TestDb {
    let db = TestDb::new(server, "users").await;
    let d = db.dialect;
    db.exec(&format!(
        "CREATE TABLE {t} ({id} VARCHAR(40) NOT NULL PRIMARY KEY, {name} VARCHAR(50), {email} VARCHAR(250));\n\
         CREATE UNIQUE INDEX {ix} ON {t} ({name});\n\
         INSERT INTO {t} VALUES ('c1', 'JOHN', 'jsmith@contoso.com');\n\
         INSERT INTO {t} VALUES ('c2', 'ANNA', 'alee@contoso.com');\n\
         INSERT INTO {t} VALUES ('c3', NULL, 'nobody@contoso.com')",
        t = d.quote("User"),
        id = d.quote("User Security ID"),
        name = d.quote("User Name"),
        email = d.quote("Authentication Email"),
        ix = d.quote("User Name Unique"),
    ))
    .await;
    db
}

fn named(users: &users::Users) -> Vec<(String, Option<String>)> {
    users
        .users
        .iter()
        .map(|User { name, email }| (name.clone(), email.clone()))
        .collect()
}

async fn renames_are_read_and_written_together(server: Server) {
    let db = users_table(server).await;
    let conn = db.connect().await;
    let found = users::read(&conn).await.unwrap();
    assert_eq!(
        named(&found),
        vec![
            ("ANNA".to_string(), Some("alee@contoso.com".to_string())),
            ("JOHN".to_string(), Some("jsmith@contoso.com".to_string())),
        ],
        "a user without a name is left out"
    );
    assert_eq!(found.name_limit, Some(50));

    // The second rename takes a name the first one gave: the whole set rolls back, records
    // and all.
    let change = |from: &str, to: &str| users::NameChange {
        from: from.into(),
        to: to.into(),
    };
    let clash = [
        change("JOHN", "CONTOSO\\JSMITH"),
        change("ANNA", "CONTOSO\\JSMITH"),
    ];
    assert!(
        users::apply(&conn, "shop/people", &[], &clash)
            .await
            .is_err()
    );
    let unchanged = users::read(&conn).await.unwrap();
    assert_eq!(
        named(&unchanged),
        named(&found),
        "a failed set renamed someone"
    );
    assert!(
        renames::read(&conn, "shop/people")
            .await
            .unwrap()
            .is_empty()
    );

    let ok = [
        change("JOHN", "CONTOSO\\JSMITH"),
        change("ANNA", "CONTOSO\\A'MÜLLER"),
    ];
    users::apply(&conn, "shop/people", &[], &ok).await.unwrap();
    let names = |u: users::Users| u.users.into_iter().map(|u| u.name).collect::<Vec<_>>();
    assert_eq!(
        names(users::read(&conn).await.unwrap()),
        vec!["CONTOSO\\A'MÜLLER", "CONTOSO\\JSMITH"]
    );
    // Each user's own name is recorded, under the mapping that renamed it.
    let recorded = renames::read(&conn, "shop/people").await.unwrap();
    assert_eq!(
        recorded,
        [
            renames::Renamed {
                current: "CONTOSO\\A'MÜLLER".into(),
                original: "ANNA".into()
            },
            renames::Renamed {
                current: "CONTOSO\\JSMITH".into(),
                original: "JOHN".into()
            },
        ]
    );
    assert!(renames::read(&conn, "shop/other").await.unwrap().is_empty());

    // JOHN gets his name back, and ANNA's mapping now renames her after someone else: back
    // first, then again from her own name, in one transaction.
    let back = [
        change("CONTOSO\\JSMITH", "JOHN"),
        change("CONTOSO\\A'MÜLLER", "ANNA"),
    ];
    users::apply(
        &conn,
        "shop/people",
        &back,
        &[change("ANNA", "CONTOSO\\ALEE")],
    )
    .await
    .unwrap();
    assert_eq!(
        names(users::read(&conn).await.unwrap()),
        vec!["CONTOSO\\ALEE", "JOHN"]
    );
    assert_eq!(
        renames::read(&conn, "shop/people").await.unwrap(),
        [renames::Renamed {
            current: "CONTOSO\\ALEE".into(),
            original: "ANNA".into()
        }]
    );
    conn.close().await;
}

#[tokio::test]
async fn user_renames_pg() {
    renames_are_read_and_written_together(Server::Postgres).await;
}

#[tokio::test]
async fn user_renames_mariadb() {
    renames_are_read_and_written_together(Server::MariaDb).await;
}

#[tokio::test]
async fn user_renames_sqlite() {
    renames_are_read_and_written_together(Server::Sqlite).await;
}

#[tokio::test]
async fn a_database_without_a_user_table_says_so() {
    let db = TestDb::new(Server::Sqlite, "nousers").await;
    db.exec("CREATE TABLE \"Item\" (\"No_\" INTEGER PRIMARY KEY)")
        .await;
    let conn = db.connect().await;
    let e = users::read(&conn).await.unwrap_err().to_string();
    assert!(e.contains("there is no \"User\" table"), "{e}");
    conn.close().await;
}
