//! The source's catalog that a run was planned on, kept in the target by run
//! (`cloudmigrate_run_catalogs`). The controller reads the catalog once, to grant the runtime
//! role the tables the run copies, and records it here; the run's workers plan from the same
//! catalog, so the source's catalog is read once per run and the tables copied are exactly the
//! tables granted. A run without a recorded catalog (the command line, a SQLite target) reads
//! the source itself.

use super::{CATALOGS_TABLE, now, text};
use crate::db::{Database, DbError, Dialect, Kind, Statement, Value};
use crate::engine::catalog::Catalog;
use std::collections::BTreeMap;

/// What the controller recorded for a run: the catalog it is planned on, and the tables the
/// target lacked that the admin created for it (`None`) or could not create (the reason).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub catalog: Catalog,
    #[serde(default)]
    pub created: BTreeMap<String, Option<String>>,
}

/// Records what run `run_id` is planned on, in place of any recorded before.
pub async fn record(db: &Database, run_id: &str, recorded: &Recorded) -> Result<(), DbError> {
    let d = db.dialect();
    let json = serde_json::to_string(recorded)
        .map_err(|e| DbError::Sql(format!("the source's catalog cannot be recorded: {e}")))?;
    let update = match d {
        Dialect::MySql => {
            " ON DUPLICATE KEY UPDATE catalog = VALUES(catalog), recorded_at = \
             VALUES(recorded_at)"
        }
        _ => {
            " ON CONFLICT (run_id) DO UPDATE SET catalog = excluded.catalog, recorded_at = \
             excluded.recorded_at"
        }
    };
    db.execute(&Statement {
        sql: format!(
            "INSERT INTO {} (run_id, catalog, recorded_at) VALUES (?, ?, ?){update}",
            d.quote(CATALOGS_TABLE)
        ),
        params: vec![text(run_id), text(&json), text(&now())],
    })
    .await
    .map(|_| ())
}

/// What was recorded for `run_id`, if anything. A ledger without the table, or a record this
/// version cannot read, counts as none: the run reads the source instead.
pub async fn read(db: &Database, run_id: &str) -> Option<Recorded> {
    let rows = db
        .query(
            &Statement {
                sql: format!(
                    "SELECT catalog FROM {} WHERE run_id = ?",
                    db.dialect().quote(CATALOGS_TABLE)
                ),
                params: vec![text(run_id)],
            },
            &[Kind::Text],
        )
        .await
        .ok()?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(json)) => serde_json::from_str(json).ok(),
        _ => None,
    }
}
