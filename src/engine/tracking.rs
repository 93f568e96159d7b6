//! Change tracking on the source, modelled on SQL Server Change Tracking: triggers record each
//! changed primary key in one log table, with a version that orders it against runs. A run
//! reads the changes with versions up to its own and leaves later ones to the next run.
//! PostgreSQL's triggers fire once per statement and log its rows from transition tables;
//! MySQL, MariaDB and SQLite have row triggers only.
//!
//! How a change gets its version differs by database, and neither way leaves a gap for a change
//! that commits late:
//! - PostgreSQL: the writing transaction's id (`pg_current_xact_id()`), set by the log's column
//!   default. A run's version is one below the oldest transaction still running when it starts,
//!   so every change up to it has committed (or rolled back) before the run reads. Runs write
//!   nothing to the source but the cleanup.
//! - MySQL, MariaDB and SQLite: each run stamps the committed, unstamped changes with the next
//!   value of one counter per database.
//!
//! Every object is named `cloudmigrate_ct_*`, creating them is idempotent, and `disable_all`
//! removes them all.

use crate::db::{Database, DbError, Dialect, Kind, Statement, TableDef, Value};
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::mpsc;

pub const LOG: &str = "cloudmigrate_ct_log";
pub const CLOCK: &str = "cloudmigrate_ct_clock";
pub const TABLES: &str = "cloudmigrate_ct_tables";
/// The capture function of earlier versions, shared by all tables; `disable_all` still removes it.
const OLD_FUNCTION: &str = "cloudmigrate_ct_capture";

/// How long changes are kept: the vendor's minimum, 3 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// A short, stable fingerprint of a text (FNV-1a, 64 bits, hex).
pub fn fingerprint(parts: impl IntoIterator<Item = impl AsRef<[u8]>>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_ref().iter().chain([0u8].iter()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// A string literal in the dialect: the only place values are spliced into SQL, for trigger
/// bodies, where parameters cannot go.
fn literal(d: Dialect, s: &str) -> String {
    let mut escaped = s.replace('\'', "''");
    if d == Dialect::MySql {
        escaped = escaped.replace('\\', "\\\\");
    }
    format!("'{escaped}'")
}

fn stmt(sql: String) -> Statement {
    Statement {
        sql,
        params: vec![],
    }
}

fn trigger_name(table: &str) -> String {
    format!("cloudmigrate_ct_{}", fingerprint([table]))
}

/// Creates the log, the clock and the registry.
pub async fn install(db: &Database) -> Result<(), DbError> {
    let d = db.dialect();
    let (log, clock, tables) = (d.quote(LOG), d.quote(CLOCK), d.quote(TABLES));
    let mut sql = match d {
        Dialect::Postgres => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (id bigserial PRIMARY KEY, table_name text NOT NULL, \
                     op char(1) NOT NULL, pk text, changed_at timestamptz NOT NULL DEFAULT now(), version bigint DEFAULT pg_current_xact_id()::text::bigint)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS cloudmigrate_ct_log_version ON {log} (version, table_name)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {clock} (id int PRIMARY KEY, version bigint NOT NULL, min_valid_version bigint NOT NULL)"
            ),
            format!("INSERT INTO {clock} VALUES (1, 0, 0) ON CONFLICT DO NOTHING"),
            format!(
                "CREATE TABLE IF NOT EXISTS {tables} (table_name text PRIMARY KEY, key_columns text NOT NULL, table_id bigint)"
            ),
        ],
        Dialect::MySql => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (id BIGINT AUTO_INCREMENT PRIMARY KEY, table_name VARCHAR(255) NOT NULL, \
                     op CHAR(1) NOT NULL, pk TEXT, changed_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
                     version BIGINT NULL, KEY cloudmigrate_ct_log_version (version, table_name))"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {clock} (id INT PRIMARY KEY, version BIGINT NOT NULL, min_valid_version BIGINT NOT NULL)"
            ),
            format!("INSERT IGNORE INTO {clock} VALUES (1, 0, 0)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {tables} (table_name VARCHAR(255) PRIMARY KEY, key_columns TEXT NOT NULL, table_id BIGINT)"
            ),
        ],
        Dialect::Sqlite => vec![
            format!(
                "CREATE TABLE IF NOT EXISTS {log} (id INTEGER PRIMARY KEY AUTOINCREMENT, table_name TEXT NOT NULL, \
                     op TEXT NOT NULL, pk TEXT, changed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%f', 'now')), version INTEGER)"
            ),
            format!(
                "CREATE INDEX IF NOT EXISTS cloudmigrate_ct_log_version ON {log} (version, table_name)"
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS {clock} (id INTEGER PRIMARY KEY, version INTEGER NOT NULL, min_valid_version INTEGER NOT NULL)"
            ),
            format!("INSERT OR IGNORE INTO {clock} VALUES (1, 0, 0)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {tables} (table_name TEXT PRIMARY KEY, key_columns TEXT NOT NULL, table_id INTEGER)"
            ),
        ],
    };
    for s in sql.drain(..) {
        db.execute(&stmt(s)).await?;
    }
    Ok(())
}

/// A table with change tracking on: the key columns its triggers record, and (MySQL and
/// MariaDB) the storage engine's id of the table, which a TRUNCATE changes without firing any
/// trigger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    pub key_columns: String,
    pub table_id: Option<i64>,
}

/// The tables with change tracking on.
pub async fn enabled(db: &Database) -> Result<HashMap<String, Registration>, DbError> {
    let d = db.dialect();
    let rows = db
        .query(
            &stmt(format!(
                "SELECT table_name, key_columns, table_id FROM {}",
                d.quote(TABLES)
            )),
            &[Kind::Text, Kind::Text, Kind::Int],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match (&r[0], &r[1], &r[2]) {
            (Value::Text(t), Value::Text(k), id) => Some((
                t.clone(),
                Registration {
                    key_columns: k.clone(),
                    table_id: match id {
                        Value::Int(i) => Some(*i),
                        _ => None,
                    },
                },
            )),
            _ => None,
        })
        .collect())
}

/// A name as InnoDB stores it: letters, digits and `_` as they are, other ASCII characters as
/// `@` and four hex digits. Names with other characters use further codes: None.
fn innodb_name(name: &str) -> Option<String> {
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => out.push(c),
            c if c.is_ascii() => out.push_str(&format!("@{:04x}", c as u32)),
            _ => return None,
        }
    }
    Some(out)
}

/// The storage engine's id of each table, where the dialect has one (InnoDB on MySQL and
/// MariaDB), by table name. Tables whose names InnoDB encodes beyond ASCII are left out.
pub async fn table_ids(db: &Database, names: &[&str]) -> Result<HashMap<String, i64>, DbError> {
    if db.dialect() != Dialect::MySql {
        return Ok(HashMap::new());
    }
    let schema = db
        .query(
            &stmt("SELECT CAST(DATABASE() AS CHAR)".into()),
            &[Kind::Text],
        )
        .await?;
    let Some(Value::Text(schema)) = schema.first().and_then(|r| r.first()).cloned() else {
        return Ok(HashMap::new());
    };
    let Some(prefix) = innodb_name(&schema) else {
        return Ok(HashMap::new());
    };
    // MariaDB names the view INNODB_SYS_TABLES; MySQL 8 names it INNODB_TABLES.
    let mut rows = Vec::new();
    for view in ["INNODB_SYS_TABLES", "INNODB_TABLES"] {
        let sql = format!(
            "SELECT CAST(NAME AS CHAR), CAST(TABLE_ID AS SIGNED) FROM information_schema.{view} WHERE NAME LIKE ?"
        );
        if let Ok(r) = db
            .query(
                &Statement {
                    sql,
                    params: vec![Value::Text(format!("{prefix}/%"))],
                },
                &[Kind::Text, Kind::Int],
            )
            .await
        {
            rows = r;
            break;
        }
    }
    let ids: HashMap<String, i64> = rows
        .into_iter()
        .filter_map(|r| match (&r[0], &r[1]) {
            (Value::Text(n), Value::Int(id)) => Some((n.clone(), *id)),
            _ => None,
        })
        .collect();
    Ok(names
        .iter()
        .filter_map(|n| {
            let key = format!("{prefix}/{}", innodb_name(n)?);
            ids.get(&key).map(|id| (n.to_string(), *id))
        })
        .collect())
}

/// The key columns of a table as the registry records them.
pub fn key_columns(table: &TableDef) -> String {
    serde_json::to_string(&table.primary_key).unwrap_or_default()
}

/// The PostgreSQL capture function of one table. Its triggers fire once per statement, not once
/// per row, and read the statement's rows from transition tables: a bulk write logs its keys
/// with one INSERT ... SELECT. An UPDATE logs `U` for a key that is both before and after it,
/// `D` for a key only before (the key was changed) and `I` for a key only after.
///
/// Keys are written as a JSON array of the key values' JSON text (`["1042"]`). The body is
/// plain SQL with every identifier quoted, between dollar quotes that occur nowhere inside it.
/// `log` is the log's schema-qualified name.
fn postgres_capture_function(function: &str, log: &str, keys: &[String]) -> String {
    let d = Dialect::Postgres;
    let json = |columns: Vec<String>| {
        let parts: Vec<String> = columns
            .iter()
            .map(|c| format!("to_jsonb({c}) #>> '{{}}'"))
            .collect();
        format!("jsonb_build_array({})::text", parts.join(", "))
    };
    let key = json(keys.iter().map(|k| format!("r.{}", d.quote(k))).collect());
    // An UPDATE pairs the rows before and after by their key columns, typed as they are: a key
    // only after is `I`, only before `D`, both `U`.
    let either = json(
        keys.iter()
            .map(|k| format!("coalesce(n.{0}, o.{0})", d.quote(k)))
            .collect(),
    );
    // Only tables with a primary key get change tracking; without one the SQL fails to install.
    let first = keys.first().map(|k| d.quote(k)).unwrap_or_default();
    let on: Vec<String> = keys
        .iter()
        .map(|k| format!("n.{0} = o.{0}", d.quote(k)))
        .collect();
    let on = on.join(" AND ");
    let body = format!(
        "BEGIN
           IF TG_OP = 'INSERT' THEN
             INSERT INTO {log} (table_name, op, pk) SELECT TG_TABLE_NAME, 'I', {key} FROM cloudmigrate_new r;
           ELSIF TG_OP = 'DELETE' THEN
             INSERT INTO {log} (table_name, op, pk) SELECT TG_TABLE_NAME, 'D', {key} FROM cloudmigrate_old r;
           ELSIF TG_OP = 'UPDATE' THEN
             INSERT INTO {log} (table_name, op, pk)
               SELECT TG_TABLE_NAME, CASE WHEN o.{first} IS NULL THEN 'I' WHEN n.{first} IS NULL THEN 'D' ELSE 'U' END, {either}
               FROM cloudmigrate_new n FULL JOIN cloudmigrate_old o ON {on};
           ELSE
             INSERT INTO {log} (table_name, op, pk) VALUES (TG_TABLE_NAME, 'T', NULL);
           END IF;
           RETURN NULL;
         END"
    );
    let mut tag = String::from("$cloudmigrate$");
    while body.contains(&tag) {
        tag.insert(tag.len() - 1, '_');
    }
    // It runs as its owner, the migration login, so that any login that may write the table
    // (the ERP's own, which may not write the log) still can; with a fixed search_path, so
    // that no object of the writer's can stand in for one it uses.
    format!(
        "CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql \
         SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS {tag}{body}{tag}"
    )
}

/// The statements that put change tracking on a table: its triggers (and on PostgreSQL its
/// capture function), dropped and made anew, and its entry in the registry with the storage
/// engine's id of the table where there is one.
/// PostgreSQL: one capture function per table, and statement triggers that read the
/// statement's rows from transition tables (the row trigger of earlier versions goes).
fn postgres_triggers(t: &str, name: &str, log: &str, keys: &[String]) -> Vec<String> {
    let d = Dialect::Postgres;
    let function = d.quote(name);
    let q = |suffix: &str| d.quote(&format!("{name}_{suffix}"));
    let mut sql = vec![
        // The row trigger of earlier versions.
        format!("DROP TRIGGER IF EXISTS {} ON {t}", d.quote(name)),
        format!("DROP TRIGGER IF EXISTS {} ON {t}", q("t")),
        format!("DROP TRIGGER IF EXISTS {} ON {t}", q("i")),
        format!("DROP TRIGGER IF EXISTS {} ON {t}", q("u")),
        format!("DROP TRIGGER IF EXISTS {} ON {t}", q("d")),
        postgres_capture_function(&function, log, keys),
    ];
    for (suffix, event, tables) in [
        ("i", "INSERT", "REFERENCING NEW TABLE AS cloudmigrate_new"),
        (
            "u",
            "UPDATE",
            "REFERENCING OLD TABLE AS cloudmigrate_old NEW TABLE AS cloudmigrate_new",
        ),
        ("d", "DELETE", "REFERENCING OLD TABLE AS cloudmigrate_old"),
        ("t", "TRUNCATE", ""),
    ] {
        sql.push(format!(
                "CREATE TRIGGER {} AFTER {event} ON {t} {tables} FOR EACH STATEMENT EXECUTE FUNCTION {function}()",
                q(suffix)
            ));
    }
    sql
}

/// MySQL, MariaDB and SQLite: a row trigger per change, each logging the row's key as JSON.
fn row_triggers(
    d: Dialect,
    t: &str,
    name: &str,
    lit: &str,
    log: &str,
    keys: &[String],
) -> Vec<String> {
    let (cast, json) = if d == Dialect::MySql {
        ("CHAR", "JSON_ARRAY")
    } else {
        ("TEXT", "json_array")
    };
    let pk = |side: &str| {
        let parts: Vec<String> = keys
            .iter()
            .map(|k| format!("CAST({side}.{} AS {cast})", d.quote(k)))
            .collect();
        format!("{json}({})", parts.join(", "))
    };
    let same: Vec<String> = keys
        .iter()
        .map(|k| {
            let k = d.quote(k);
            if d == Dialect::MySql {
                format!("OLD.{k} <=> NEW.{k}")
            } else {
                format!("OLD.{k} IS NEW.{k}")
            }
        })
        .collect();
    let same = same.join(" AND ");
    let insert = |op: &str, side: &str| {
        format!(
            "INSERT INTO {log} (table_name, op, pk) VALUES ({lit}, '{op}', {})",
            pk(side)
        )
    };
    let (begin, end) = if d == Dialect::MySql {
        ("FOR EACH ROW BEGIN", "END")
    } else {
        ("BEGIN", "END")
    };
    let update = if d == Dialect::MySql {
        format!(
            "IF {same} THEN {}; ELSE {}; {}; END IF;",
            insert("U", "NEW"),
            insert("D", "OLD"),
            insert("I", "NEW")
        )
    } else {
        format!(
            "INSERT INTO {log} (table_name, op, pk) SELECT {lit}, 'D', {} WHERE NOT ({same}); \
                 INSERT INTO {log} (table_name, op, pk) SELECT {lit}, CASE WHEN {same} THEN 'U' ELSE 'I' END, {};",
            pk("OLD"),
            pk("NEW")
        )
    };
    let q = |suffix: &str| d.quote(&format!("{name}_{suffix}"));
    vec![
        format!("DROP TRIGGER IF EXISTS {}", q("i")),
        format!("DROP TRIGGER IF EXISTS {}", q("u")),
        format!("DROP TRIGGER IF EXISTS {}", q("d")),
        format!(
            "CREATE TRIGGER {} AFTER INSERT ON {t} {begin} {}; {end}",
            q("i"),
            insert("I", "NEW")
        ),
        format!(
            "CREATE TRIGGER {} AFTER UPDATE ON {t} {begin} {update} {end}",
            q("u")
        ),
        format!(
            "CREATE TRIGGER {} AFTER DELETE ON {t} {begin} {}; {end}",
            q("d"),
            insert("D", "OLD")
        ),
    ]
}

/// `schema`: PostgreSQL's current schema, where the log is (the capture function names it
/// with its schema).
fn enable_statements(
    d: Dialect,
    table: &TableDef,
    table_id: Option<i64>,
    schema: &str,
) -> Vec<Statement> {
    let t = d.quote(&table.name);
    let name = trigger_name(&table.name);
    let log = d.quote(LOG);
    let keys = &table.primary_key;
    let sql: Vec<String> = match d {
        Dialect::Postgres => {
            let log = format!("{}.{log}", d.quote(schema));
            postgres_triggers(&t, &name, &log, keys)
        }
        Dialect::MySql | Dialect::Sqlite => {
            row_triggers(d, &t, &name, &literal(d, &table.name), &log, keys)
        }
    };
    let mut statements: Vec<Statement> = sql.into_iter().map(stmt).collect();
    let upsert = match d {
        Dialect::MySql => {
            "INSERT INTO {t} (table_name, key_columns, table_id) VALUES (?, ?, ?) \
             ON DUPLICATE KEY UPDATE key_columns = VALUES(key_columns), table_id = VALUES(table_id)"
        }
        _ => {
            "INSERT INTO {t} (table_name, key_columns, table_id) VALUES (?, ?, ?) ON CONFLICT (table_name) \
             DO UPDATE SET key_columns = excluded.key_columns, table_id = excluded.table_id"
        }
    };
    statements.push(Statement {
        sql: upsert.replace("{t}", &d.quote(TABLES)),
        params: vec![
            Value::Text(table.name.clone()),
            Value::Text(key_columns(table)),
            table_id.map(Value::Int).unwrap_or(Value::Null),
        ],
    });
    statements
}

/// Puts change tracking on tables (with the storage engine's table id where there is one).
/// Returns the tables it failed on, with the error.
///
/// Each table's statements run in one transaction on one connection: on PostgreSQL the old
/// trigger and the new one swap with no moment in between where a write goes unlogged, and
/// each table is locked only for its own swap. SQLite gets all tables in one transaction: every
/// schema change makes the other connections read the whole schema again, which for hundreds
/// of tables one by one takes seconds.
pub async fn enable(db: &Database, tables: &[(&TableDef, Option<i64>)]) -> HashMap<String, String> {
    let d = db.dialect();
    let mut errors = HashMap::new();
    if tables.is_empty() {
        return errors;
    }
    let schema = match current_schema(db).await {
        Ok(s) => s,
        Err(e) => {
            let e = e.to_string();
            return tables
                .iter()
                .map(|(t, _)| (t.name.clone(), e.clone()))
                .collect();
        }
    };
    let schema = schema.as_str();
    if d == Dialect::Sqlite {
        let all: Vec<Statement> = tables
            .iter()
            .flat_map(|(t, id)| enable_statements(d, t, *id, schema))
            .collect();
        if db.in_transaction(&all).await.is_ok() {
            return errors;
        }
        // One of them failed: find which, table by table.
    }
    // The tables' transactions touch nothing in common (each its own table, function and
    // registry row): a few go at once, as a first run enables hundreds. By index and through a
    // named function: a closure over the tuples would make the run's future not `Send`.
    use futures_util::StreamExt;
    let failed: Vec<Option<(String, String)>> = futures_util::stream::iter(0..tables.len())
        .map(|i| enable_one(db, tables[i].0, tables[i].1, schema))
        .buffer_unordered(ENABLE_CONCURRENCY)
        .collect()
        .await;
    errors.extend(failed.into_iter().flatten());
    errors
}

/// Puts change tracking on one table in one transaction; on failure, the table and the error.
async fn enable_one(
    db: &Database,
    table: &TableDef,
    table_id: Option<i64>,
    schema: &str,
) -> Option<(String, String)> {
    db.in_transaction(&enable_statements(db.dialect(), table, table_id, schema))
        .await
        .err()
        .map(|e| (table.name.clone(), e.to_string()))
}

/// PostgreSQL's current schema (where the log is); empty elsewhere.
async fn current_schema(db: &Database) -> Result<String, DbError> {
    if db.dialect() != Dialect::Postgres {
        return Ok(String::new());
    }
    match db
        .query(&stmt("SELECT current_schema()::text".into()), &[Kind::Text])
        .await?
        .first()
        .and_then(|r| r.first())
    {
        Some(Value::Text(s)) => Ok(s.clone()),
        _ => Err(DbError::Sql(
            "the source has no current schema: set the login's search_path".into(),
        )),
    }
}

/// Tracked tables whose PostgreSQL capture function is of an earlier version, which ran as the
/// writer (and so failed for a login that may not write the log): their triggers go in again.
pub async fn outdated(
    db: &Database,
    names: &[&str],
) -> Result<std::collections::HashSet<String>, DbError> {
    if db.dialect() != Dialect::Postgres || names.is_empty() {
        return Ok(Default::default());
    }
    let old = db
        .query_text_set(&Statement {
            sql: "SELECT p.proname::text FROM pg_proc p WHERE p.proname LIKE ? \
                    AND p.pronamespace = current_schema()::regnamespace AND NOT p.prosecdef"
                .into(),
            params: vec![Value::Text(OURS.to_string())],
        })
        .await?;
    Ok(names
        .iter()
        .filter(|n| old.contains(&trigger_name(n)))
        .map(|n| n.to_string())
        .collect())
}

/// Tables whose change tracking is installed at the same time, each in its own transaction.
const ENABLE_CONCURRENCY: usize = 4;

/// One object of ours in a database: a capture trigger or function, found in the catalog by
/// its name, whatever the registry says (a table renamed since keeps its trigger).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// What it is, for messages: `trigger "cloudmigrate_ct_…_i" on "CRONUS$Item"`.
    pub label: String,
    /// The statement that removes it.
    pub drop: String,
}

/// The `LIKE` pattern of our objects' names, with `_` escaped.
const OURS: &str = "cloudmigrate\\_ct\\_%";

/// Every capture trigger and trigger function of ours in the database (PostgreSQL: the
/// current schema's functions and the triggers that call them, on whichever table), triggers
/// first.
pub async fn objects(db: &Database) -> Result<Vec<Object>, DbError> {
    let d = db.dialect();
    let text = |sql: &str, kinds: &'static [Kind]| {
        let statement = Statement {
            sql: sql.to_string(),
            params: vec![Value::Text(OURS.to_string())],
        };
        async move { db.query(&statement, kinds).await }
    };
    let texts = |row: Vec<Value>| -> Vec<String> {
        row.into_iter()
            .map(|v| match v {
                Value::Text(s) => s,
                _ => String::new(),
            })
            .collect()
    };
    let mut found = vec![];
    match d {
        Dialect::Postgres => {
            let triggers = text(
                "SELECT t.tgname::text, n.nspname::text, c.relname::text FROM pg_trigger t \
                 JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
                 JOIN pg_proc p ON p.oid = t.tgfoid \
                 WHERE NOT t.tgisinternal AND t.tgname LIKE ? \
                   AND p.pronamespace = current_schema()::regnamespace ORDER BY 1, 2, 3",
                &[Kind::Text, Kind::Text, Kind::Text],
            )
            .await?;
            for row in triggers {
                let [name, schema, table] = <[String; 3]>::try_from(texts(row))
                    .map_err(|_| DbError::Sql("unexpected trigger row".into()))?;
                let on = format!("{}.{}", d.quote(&schema), d.quote(&table));
                found.push(Object {
                    label: format!("trigger {} on {on}", d.quote(&name)),
                    drop: format!("DROP TRIGGER IF EXISTS {} ON {on}", d.quote(&name)),
                });
            }
            let functions = text(
                "SELECT p.proname::text FROM pg_proc p WHERE p.proname LIKE ? \
                   AND p.pronamespace = current_schema()::regnamespace \
                   AND p.prorettype = 'trigger'::regtype ORDER BY 1",
                &[Kind::Text],
            )
            .await?;
            for row in functions {
                let name = texts(row).concat();
                found.push(Object {
                    label: format!("function {}()", d.quote(&name)),
                    drop: format!("DROP FUNCTION IF EXISTS {}()", d.quote(&name)),
                });
            }
        }
        Dialect::MySql | Dialect::Sqlite => {
            let sql = if d == Dialect::MySql {
                "SELECT CAST(TRIGGER_NAME AS CHAR), CAST(EVENT_OBJECT_TABLE AS CHAR) \
                 FROM information_schema.TRIGGERS \
                 WHERE TRIGGER_SCHEMA = DATABASE() AND TRIGGER_NAME LIKE ? ORDER BY 1"
            } else {
                "SELECT name, tbl_name FROM sqlite_master \
                 WHERE type = 'trigger' AND name LIKE ? ESCAPE '\\' ORDER BY 1"
            };
            for row in text(sql, &[Kind::Text, Kind::Text]).await? {
                let [name, table] = <[String; 2]>::try_from(texts(row))
                    .map_err(|_| DbError::Sql("unexpected trigger row".into()))?;
                found.push(Object {
                    label: format!("trigger {} on {}", d.quote(&name), d.quote(&table)),
                    drop: format!("DROP TRIGGER IF EXISTS {}", d.quote(&name)),
                });
            }
        }
    }
    Ok(found)
}

/// Removes objects of ours, each on its own. Every one that fails is named in the error with
/// the statement that removes it, and the error says nothing was reported as removed that
/// was not.
pub async fn remove(db: &Database, objects: &[Object]) -> Result<(), DbError> {
    let mut failed = vec![];
    for o in objects {
        if let Err(e) = db.execute(&stmt(o.drop.clone())).await {
            failed.push(format!("{} ({e}): run `{};`", o.label, o.drop));
        }
    }
    if failed.is_empty() {
        return Ok(());
    }
    Err(DbError::Sql(format!(
        "{} change tracking objects of ours could not be removed: {}. Run those statements as \
         the tables' owner",
        failed.len(),
        failed.join("; ")
    )))
}

/// Removes every change tracking object: the triggers and functions of ours, found in the
/// catalog (renamed tables included), then the log, the clock and the registry. When a trigger
/// cannot be removed, the log stays (the trigger still writes to it) and the error names what
/// is left. Returns how many tables had triggers.
pub async fn disable_all(db: &Database) -> Result<usize, DbError> {
    let d = db.dialect();
    let found = objects(db).await?;
    let tables: std::collections::HashSet<&str> = found
        .iter()
        .filter_map(|o| o.label.split_once(" on ").map(|(_, t)| t))
        .collect();
    let count = tables.len();
    remove(db, &found).await.map_err(|e| {
        DbError::Sql(format!(
            "{e}, then remove change tracking again. The change log stays until then, for the \
             triggers that still write to it"
        ))
    })?;
    for t in [LOG, CLOCK, TABLES] {
        db.execute(&stmt(format!("DROP TABLE IF EXISTS {}", d.quote(t))))
            .await?;
    }
    if d == Dialect::Postgres {
        db.execute(&stmt(format!("DROP FUNCTION IF EXISTS {OLD_FUNCTION}()")))
            .await?;
    }
    Ok(count)
}

/// Capture triggers of ours in a database without their log: a schema copied from a tracked
/// source (`pg_dump -s`) carries them, and every write into their tables then fails. None is
/// found where the log exists, as it does in a tracked source.
pub async fn orphans(db: &Database) -> Result<Vec<Object>, DbError> {
    if installed(db).await? {
        return Ok(vec![]);
    }
    objects(db).await
}

/// The versions of a run: every change committed before the run started has a version at most
/// `version`; changes up to `min_valid_version` may have been cleaned up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub version: i64,
    pub min_valid_version: i64,
}

/// Cleans up changes older than `retention`, then gives the run its version: on MySQL, MariaDB
/// and SQLite by stamping every committed, unstamped change with the next version; on
/// PostgreSQL from the oldest running transaction.
pub async fn stamp(db: &Database, retention: Duration) -> Result<Clock, DbError> {
    let d = db.dialect();
    let (log, clock) = (d.quote(LOG), d.quote(CLOCK));
    let secs = retention.as_secs() as i64;
    let (cutoff, param) = match d {
        Dialect::Postgres => ("now() - make_interval(secs => ?)", Value::Int(secs)),
        Dialect::MySql => ("NOW(6) - INTERVAL ? SECOND", Value::Int(secs)),
        Dialect::Sqlite => (
            "strftime('%Y-%m-%d %H:%M:%f', 'now', ?)",
            Value::Text(format!("-{secs} seconds")),
        ),
    };
    // The oldest entry first, through the primary key: most runs find nothing expired and so
    // never scan the log.
    let oldest_expired = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT COUNT(*) FROM (SELECT changed_at FROM {log} ORDER BY id LIMIT 1) oldest \
                     WHERE oldest.changed_at < {cutoff}"
                ),
                params: vec![param.clone()],
            },
            &[Kind::Int],
        )
        .await?;
    let expired = if oldest_expired.first().and_then(|r| r.first()) == Some(&Value::Int(1)) {
        db.query(
            &Statement {
                sql: format!("SELECT MAX(version) FROM {log} WHERE version IS NOT NULL AND changed_at < {cutoff}"),
                params: vec![param],
            },
            &[Kind::Int],
        )
        .await?
    } else {
        vec![]
    };
    if let Some(Value::Int(m)) = expired.first().and_then(|r| r.first()) {
        db.in_transaction(&[
            Statement {
                sql: format!("UPDATE {clock} SET min_valid_version = ? WHERE id = 1 AND min_valid_version < ?"),
                params: vec![Value::Int(*m), Value::Int(*m)],
            },
            Statement { sql: format!("DELETE FROM {log} WHERE version IS NOT NULL AND version <= ?"), params: vec![Value::Int(*m)] },
        ])
        .await?;
    }
    if d != Dialect::Postgres {
        db.in_transaction(&[
            stmt(format!("UPDATE {clock} SET version = version + 1 WHERE id = 1")),
            stmt(format!("UPDATE {log} SET version = (SELECT version FROM {clock} WHERE id = 1) WHERE version IS NULL")),
        ])
        .await?;
    }
    read_clock(db).await
}

/// The clock as it stands. On PostgreSQL the version is one below the oldest running
/// transaction: every change with a version up to it is finished.
async fn read_clock(db: &Database) -> Result<Clock, DbError> {
    let clock = db.dialect().quote(CLOCK);
    let version = match db.dialect() {
        Dialect::Postgres => "pg_snapshot_xmin(pg_current_snapshot())::text::bigint - 1",
        _ => "version",
    };
    let row = db
        .query(
            &stmt(format!(
                "SELECT {version}, min_valid_version FROM {clock} WHERE id = 1"
            )),
            &[Kind::Int, Kind::Int],
        )
        .await?;
    match row.first().map(|r| (&r[0], &r[1])) {
        Some((Value::Int(v), Value::Int(m))) => Ok(Clock {
            version: *v,
            min_valid_version: *m,
        }),
        _ => Err(DbError::Sql(format!(
            "{CLOCK} has no row: disable and enable change tracking again"
        ))),
    }
}

/// Whether change tracking is installed in the source: its log table is there.
pub async fn installed(db: &Database) -> Result<bool, crate::db::DbError> {
    db.has_table(LOG).await
}

/// What change tracking holds now, read without writing anything (for diagnostic runs): the
/// clock, and the tracked tables.
pub async fn peek(db: &Database) -> (Result<Clock, String>, HashMap<String, String>) {
    let not_installed = "change tracking is not installed on the source yet; the first run \
                         installs it and copies every table in full"
        .to_string();
    let Ok(registered) = enabled(db).await else {
        return (Err(not_installed), HashMap::new());
    };
    let tracked = registered
        .into_iter()
        .map(|(t, r)| (t, r.key_columns))
        .collect();
    let clock = read_clock(db).await.map_err(|_| not_installed);
    (clock, tracked)
}

/// What the net changes of one table add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// Folds change records, grouped by key and in the order they happened within each key, into
/// one net change per key, as CHANGETABLE(CHANGES ...) does: an insert then an update is an
/// insert, an insert then a delete is nothing, a delete then an insert is an update. Holds one
/// key at a time, whatever the number of records.
#[derive(Debug, Default)]
pub struct NetChanges {
    pub counts: Changes,
    /// The key being folded: its text, first and last operation.
    current: Option<(String, char, char)>,
}

impl NetChanges {
    /// The next record. When it starts a new key, returns the previous key's text and whether
    /// its row exists after its changes.
    pub fn push(&mut self, op: char, pk: String) -> Option<(String, bool)> {
        match &mut self.current {
            Some((key, _, last)) if *key == pk => {
                *last = op;
                None
            }
            _ => {
                let done = self.finish();
                self.current = Some((pk, op, op));
                done
            }
        }
    }

    /// The last key's text and whether its row exists after its changes.
    pub fn finish(&mut self) -> Option<(String, bool)> {
        let (key, first, last) = self.current.take()?;
        match (first, last) {
            ('I', 'D') => {}
            ('I', _) => self.counts.inserted += 1,
            (_, 'D') => self.counts.deleted += 1,
            _ => self.counts.updated += 1,
        }
        Some((key, last != 'D'))
    }
}

/// One batch of an incremental copy's changed keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// Every changed key of the batch: their rows in the target are replaced or removed.
    pub keys: Vec<Vec<Option<String>>>,
    /// The keys whose rows exist after their changes, to read from the source.
    pub present: Vec<Vec<Option<String>>>,
}

/// How much a table's change log holds after a version: records, and whether a TRUNCATE is
/// among them (then only a full copy is right).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    pub records: u64,
    pub truncated: bool,
}

/// The condition and parameters of a table's change records with versions in `(after, upto]`.
/// On PostgreSQL the upper bound is left open: a change above the run's version that is
/// already visible is applied now and again by the next run (replacing a row with its current
/// content changes nothing), so a long transaction elsewhere on the server, which holds the
/// run's version back, delays no change.
fn records_in(d: Dialect, table: &str, after: i64, upto: i64) -> (&'static str, Vec<Value>) {
    let upto = if d == Dialect::Postgres {
        i64::MAX
    } else {
        upto
    };
    (
        "table_name = ? AND version > ? AND version <= ?",
        vec![
            Value::Text(table.to_string()),
            Value::Int(after),
            Value::Int(upto),
        ],
    )
}

/// Counts a table's change records in `(after, upto]`, through the log's version index.
pub async fn pending(
    db: &Database,
    table: &str,
    after: i64,
    upto: i64,
) -> Result<Pending, DbError> {
    let d = db.dialect();
    let (filter, params) = records_in(d, table, after, upto);
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT COUNT(*), COUNT(CASE WHEN op = 'T' THEN 1 END) FROM {} WHERE {filter}",
                    d.quote(LOG)
                ),
                params,
            },
            &[Kind::Int, Kind::Int],
        )
        .await?;
    Ok(match rows.first().map(Vec::as_slice) {
        Some([Value::Int(records), Value::Int(truncates)]) => Pending {
            records: *records as u64,
            truncated: *truncates > 0,
        },
        _ => Pending::default(),
    })
}

/// The order of change records by their key's values, typed as the key columns are (`kinds`):
/// numbers as numbers, anything else as text in byte order. Equal keys come together, and a
/// batch of keys is a stretch of the table's primary key index, not keys from all over it
/// (`"100000"` sorts before `"2"` as text).
fn key_order(d: Dialect, kinds: &[Kind]) -> String {
    let mut parts: Vec<String> = kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            let numeric = matches!(kind, Kind::Int | Kind::Decimal);
            match (d, numeric) {
                (Dialect::Postgres, true) => format!("(pk::jsonb ->> {i})::numeric"),
                (Dialect::Postgres, false) => format!("(pk::jsonb ->> {i}) COLLATE \"C\""),
                (Dialect::MySql, true) => {
                    format!("CAST(JSON_UNQUOTE(JSON_EXTRACT(pk, '$[{i}]')) AS DECIMAL(65,10))")
                }
                (Dialect::MySql, false) => {
                    format!("CAST(JSON_UNQUOTE(JSON_EXTRACT(pk, '$[{i}]')) AS BINARY)")
                }
                (Dialect::Sqlite, true) => format!("CAST(json_extract(pk, '$[{i}]') AS REAL)"),
                (Dialect::Sqlite, false) => format!("json_extract(pk, '$[{i}]')"),
            }
        })
        .collect();
    // The whole key last: two keys whose values sort alike still come apart.
    parts.push(match d {
        Dialect::Postgres => "pk COLLATE \"C\"".into(),
        Dialect::MySql => "CAST(pk AS BINARY)".into(),
        Dialect::Sqlite => "pk".into(),
    });
    parts.join(", ")
}

/// Streams the net changes of a table with versions in `(after, upto]` (see `records_in`) to
/// `out`, `batch` keys at a time: the records come sorted by key (`key_order`, with the key
/// columns' kinds), so each key is folded as soon as its records have passed, and memory holds
/// one batch whatever the size of the change set. Returns what the changes add up to. Stops
/// early, without error, when `out` is closed.
pub async fn stream_changes(
    db: &Database,
    (table, key_kinds): (&str, &[Kind]),
    (after, upto): (i64, i64),
    batch: usize,
    out: mpsc::Sender<ChangeBatch>,
) -> Result<Changes, DbError> {
    let d = db.dialect();
    let started = std::time::Instant::now();
    let (filter, params) = records_in(d, table, after, upto);
    let stmt = Statement {
        sql: format!(
            "SELECT op, pk FROM {} WHERE {filter} ORDER BY {}, id",
            d.quote(LOG),
            key_order(d, key_kinds)
        ),
        params,
    };
    let (rows_tx, mut rows_rx) = mpsc::channel(crate::db::CHANNEL_CHUNKS);
    let read = async move {
        let read = db
            .query_chunks(&stmt, &[Kind::Text, Kind::Text], &rows_tx)
            .await;
        drop(rows_tx);
        read
    };
    let fold = async {
        let mut net = NetChanges::default();
        let mut next = ChangeBatch::default();
        let mut records = 0u64;
        let add = |next: &mut ChangeBatch, (pk, present): (String, bool)| {
            let key = parse_key(&pk)?;
            if present {
                next.present.push(key.clone());
            }
            next.keys.push(key);
            Ok::<_, DbError>(())
        };
        while let Some(chunk) = rows_rx.recv().await {
            let crate::db::Chunk::Rows(rows) = chunk else {
                continue;
            };
            for row in rows {
                records += 1;
                let mut it = row.into_iter();
                let op = match it.next() {
                    Some(Value::Text(s)) => s.chars().next().unwrap_or('U'),
                    _ => 'U',
                };
                let Some(Value::Text(pk)) = it.next() else {
                    return Err(DbError::Sql(
                        "the table was emptied (TRUNCATE) while the run read its changes; the \
                         next run copies it in full"
                            .into(),
                    ));
                };
                if let Some(done) = net.push(op, pk) {
                    add(&mut next, done)?;
                    if next.keys.len() >= batch
                        && out.send(std::mem::take(&mut next)).await.is_err()
                    {
                        return Ok(net.counts);
                    }
                }
            }
        }
        if let Some(done) = net.finish() {
            add(&mut next, done)?;
        }
        if !next.keys.is_empty() {
            let _ = out.send(next).await;
        }
        tracing::debug!(
            table,
            records,
            ms = started.elapsed().as_millis() as u64,
            "change records read"
        );
        Ok(net.counts)
    };
    let (read, fold) = tokio::join!(read, fold);
    let counts = fold?;
    read?;
    Ok(counts)
}

/// What the changes of a table add up to, without keeping any of them (a Diagnostic run).
pub async fn count_changes(
    db: &Database,
    table: &str,
    versions: (i64, i64),
) -> Result<Changes, DbError> {
    let (tx, mut rx) = mpsc::channel(1);
    let drain = async move { while rx.recv().await.is_some() {} };
    let (counts, ()) = tokio::join!(
        stream_changes(db, (table, &[]), versions, 10_000, tx),
        drain
    );
    counts
}

/// A key as the triggers write it: a JSON array of the key's values as text. A one-column key
/// without escapes (`["1042"]`, the common case) is read without the JSON parser.
fn parse_key(pk: &str) -> Result<Vec<Option<String>>, DbError> {
    if let Some(inner) = pk.strip_prefix("[\"").and_then(|r| r.strip_suffix("\"]"))
        && !inner.contains(['"', '\\'])
    {
        return Ok(vec![Some(inner.to_string())]);
    }
    serde_json::from_str(pk)
        .map_err(|e| DbError::Sql(format!("unreadable key {pk:?} in {LOG}: {e}")))
}

/// The tables with change records above version `after`, in one query, for a run to skip
/// reading the changes of every other table.
pub async fn changed_tables(
    db: &Database,
    after: i64,
) -> Result<std::collections::HashSet<String>, DbError> {
    db.query_text_set(&Statement {
        sql: format!(
            "SELECT DISTINCT table_name FROM {} WHERE version > ?",
            db.dialect().quote(LOG)
        ),
        params: vec![Value::Int(after)],
    })
    .await
}

/// The keys of one table that changed after a target's watermark, for a validation to leave
/// out of its comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedSince {
    /// Each key once, its values as the triggers wrote them.
    pub keys: Vec<Vec<Option<String>>>,
    /// The table was emptied (TRUNCATE) in between: every row may differ.
    pub truncated: bool,
    /// More than the limit changed; `keys` holds the first `limit`.
    pub more: bool,
}

/// The keys of `table` with change records after version `after`: the records of later runs'
/// versions and, on MySQL, MariaDB and SQLite, the records no run has stamped yet. `limit` keys
/// at most, to bound memory.
pub async fn changed_since(
    db: &Database,
    table: &str,
    after: i64,
    limit: usize,
) -> Result<ChangedSince, DbError> {
    let d = db.dialect();
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT DISTINCT pk FROM {} WHERE table_name = ? AND (version > ? OR version \
                     IS NULL) LIMIT {}",
                    d.quote(LOG),
                    limit + 2
                ),
                params: vec![Value::Text(table.to_string()), Value::Int(after)],
            },
            &[Kind::Text],
        )
        .await?;
    let mut out = ChangedSince::default();
    for row in rows {
        match row.into_iter().next() {
            Some(Value::Text(pk)) if out.keys.len() < limit => out.keys.push(parse_key(&pk)?),
            Some(Value::Text(_)) => out.more = true,
            _ => out.truncated = true,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_changes_follow_change_tracking() {
        // The records of each key together, in the order they happened.
        let records = [
            ("I", "a"),
            ("U", "a"),
            ("I", "b"),
            ("D", "b"),
            ("U", "c"),
            ("D", "d"),
            ("D", "e"),
            ("I", "e"),
        ];
        let mut net = NetChanges::default();
        let mut keys = vec![];
        for (op, k) in records {
            keys.extend(net.push(op.chars().next().unwrap(), k.to_string()));
        }
        keys.extend(net.finish());
        assert_eq!(
            (net.counts.inserted, net.counts.updated, net.counts.deleted),
            (1, 2, 1),
            "a inserted; c and e updated; d deleted; b nothing"
        );
        let present: Vec<&str> = keys.iter().filter(|k| k.1).map(|k| k.0.as_str()).collect();
        assert_eq!(present, ["a", "c", "e"]);
        assert_eq!(keys.len(), 5, "every key once, b's row removed too");
        assert_eq!(net.finish(), None);
    }

    #[test]
    fn keys_read_with_and_without_the_json_parser() {
        let some = |v: &[&str]| v.iter().map(|s| Some(s.to_string())).collect::<Vec<_>>();
        assert_eq!(parse_key(r#"["1042"]"#).unwrap(), some(&["1042"]));
        assert_eq!(
            parse_key(r#"["10","A\"B"]"#).unwrap(),
            some(&["10", "A\"B"])
        );
        assert_eq!(parse_key(r#"["C:\\x"]"#).unwrap(), some(&["C:\\x"]));
        assert_eq!(parse_key(r#"[null]"#).unwrap(), vec![None]);
        assert!(parse_key("[1042").is_err());
    }

    #[test]
    fn innodb_names_encode_ascii_only() {
        assert_eq!(
            innodb_name("CRONUS$G_L Entry.x-y").as_deref(),
            Some("CRONUS@0024G_L@0020Entry@002ex@002dy")
        );
        assert_eq!(innodb_name("Café"), None);
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal(Dialect::Postgres, "O'Brien\\x"), "'O''Brien\\x'");
        assert_eq!(literal(Dialect::MySql, "O'Brien\\x"), "'O''Brien\\\\x'");
    }
}
