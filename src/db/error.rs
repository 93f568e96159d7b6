//! The errors of the database layer, each with a message that never holds a password.

use super::CONNECT_LIMIT;

pub(crate) fn no_answer() -> String {
    format!("no answer within {} s", CONNECT_LIMIT.as_secs())
}

pub(crate) fn connect_error(redacted: &str, message: String) -> DbError {
    DbError::Connect {
        url: redacted.to_string(),
        message,
    }
}

/// Errors of the database layer. Messages never carry a password.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The connection settings are wrong.
    #[error("{0}")]
    Config(String),
    /// The database could not be reached or refused the login.
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    /// A statement failed.
    #[error("{0}")]
    Sql(String),
    /// A value does not fit the target column.
    #[error("{0}")]
    Data(String),
    /// Statement `index` (from 0) of a transaction failed; the transaction was rolled back.
    #[error("statement failed: {message}")]
    InTransaction { index: usize, message: String },
}

impl DbError {
    /// A failed statement, worded without its parameters.
    pub fn sql(context: &str, e: sqlx::Error) -> Self {
        DbError::Sql(format!("{context}: {}", describe(&e)))
    }
}

/// A sqlx error as one line, with the database's own message where there is one.
pub fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => {
            let mut s = db.message().to_string();
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(column) = pg.column() {
                    s.push_str(&format!(" (column {column})"));
                }
                if let Some(w) = pg.r#where() {
                    s.push_str(&format!(" ({w})"));
                }
                if let Some(detail) = pg.detail() {
                    s.push_str(&format!(" ({detail})"));
                }
            }
            s
        }
        other => other.to_string(),
    }
}

/// The loader's error when its reader stopped without reaching the end (the reader's own error
/// says why).
pub(crate) fn ended_early() -> DbError {
    DbError::Sql("the read from the source stopped before the end of the table".into())
}

/// Column `i` of a catalog row, decoded without a panic: a value of another type than the
/// catalog query asks for (a crafted `sqlite_stat1`, a shadowed function) is an error that
/// names what was being read.
pub fn field<'r, R, T>(row: &'r R, i: usize, what: &str) -> Result<T, DbError>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    row.try_get(i).map_err(|e| {
        DbError::sql(
            &format!("{what}: an unexpected value in column {}", i + 1),
            e,
        )
    })
}
