//! Writing rows: what a load writes (`LoadSpec`), the checks each row passes, and the batched
//! INSERTs that MySQL and SQLite loads use (PostgreSQL loads with COPY).

use super::{Chunk, DbError, Dialect, KeyFilter, Kind, Statement, Value, ended_early};

/// A column of the target, as the loader needs it.
#[derive(Clone, Debug)]
pub struct LoadColumn {
    pub name: String,
    pub kind: Kind,
    pub max_chars: Option<i64>,
}

/// The statements that clear what a load replaces: the whole table, or the rows of some keys.
pub(crate) fn clear_statements(d: Dialect, spec: &LoadSpec) -> Vec<(String, Vec<Value>)> {
    match &spec.replace {
        None => vec![(format!("DELETE FROM {}", d.quote(&spec.table)), vec![])],
        Some(filter) => delete_statements(d, spec, &filter.keys),
    }
}

/// The statements that remove the rows of `keys` (key columns as `spec.replace` names them),
/// for a batch of an incremental copy.
pub(crate) fn delete_statements(
    d: Dialect,
    spec: &LoadSpec,
    keys: &[Vec<Option<String>>],
) -> Vec<(String, Vec<Value>)> {
    let table = d.quote(&spec.table);
    let Some(filter) = &spec.replace else {
        return vec![];
    };
    let size = if d == Dialect::Postgres {
        keys.len().max(1)
    } else {
        super::KEYS_PER_STATEMENT
    };
    keys.chunks(size)
        .map(|batch| {
            let (cond, params) = filter.condition(d, batch);
            (format!("DELETE FROM {table} WHERE {cond}"), params)
        })
        .collect()
}

/// Where a load stands after the reader's next chunk.
pub(crate) enum Next {
    Rows(Vec<Vec<Value>>),
    /// Remove the rows of these keys before the rows that follow.
    Keys(Vec<Vec<Option<String>>>),
    End,
}

/// How to load one table.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub table: String,
    pub columns: Vec<LoadColumn>,
    /// Positions of the primary key columns in `columns`, to name a row in messages.
    pub key: Vec<usize>,
    /// The data arrives in PostgreSQL's binary COPY format.
    pub raw: bool,
    /// Which rows to remove before loading: None clears the table (a full copy); a key filter
    /// removes only those rows (an incremental run: changed rows are replaced, deleted ones go).
    pub replace: Option<KeyFilter>,
}

/// The statements a load runs in its transaction before it commits, given what it wrote.
pub type Finish<'a> = dyn Fn(&LoadStats) -> Vec<Statement> + Send + Sync + 'a;

/// What a load wrote.
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadStats {
    pub rows: u64,
    pub bytes: u64,
}

/// Checks a row against the target's column lengths. The error names the column, the row's key
/// and the fix.
pub fn check_row(spec: &LoadSpec, row: &[Value]) -> Result<(), DbError> {
    for (col, value) in spec.columns.iter().zip(row) {
        if let (Some(max), Value::Text(s)) = (col.max_chars, value) {
            let len = s.chars().count() as i64;
            if len > max {
                let key: Vec<String> = spec
                    .key
                    .iter()
                    .map(|&i| format!("{}={}", spec.columns[i].name, row[i]))
                    .collect();
                let key = if key.is_empty() {
                    "a row without primary key".into()
                } else {
                    key.join(", ")
                };
                return Err(DbError::Data(format!(
                    "value too long for column {:?}: {len} characters, the cloud column holds {max} \
                     (first offending row: {key})",
                    col.name
                )));
            }
        }
    }
    Ok(())
}

/// The part of a load by multi-row INSERTs that MySQL and SQLite share: takes the reader's
/// chunks, checks each row, counts what goes in, and gives each group of rows its INSERT. The
/// dialect binds and runs it.
pub(crate) struct InsertBatches<'a> {
    dialect: Dialect,
    spec: &'a LoadSpec,
    /// Rows per INSERT, as many as the parameter limit allows.
    pub per_insert: usize,
    full_sql: String,
    pub stats: LoadStats,
}

impl<'a> InsertBatches<'a> {
    pub fn new(dialect: Dialect, spec: &'a LoadSpec, max_params: usize) -> Self {
        let per_insert = insert_batch_rows(max_params, spec.columns.len());
        let full_sql = insert_sql(dialect, spec, per_insert);
        Self {
            dialect,
            spec,
            per_insert,
            full_sql,
            stats: LoadStats::default(),
        }
    }

    /// What the reader sends next: rows, keys whose rows go first, or the end of the table.
    pub async fn next(
        &self,
        input: &mut tokio::sync::mpsc::Receiver<Chunk>,
    ) -> Result<Next, DbError> {
        match input.recv().await.ok_or_else(ended_early)? {
            Chunk::End => Ok(Next::End),
            Chunk::Rows(rows) => Ok(Next::Rows(rows)),
            Chunk::Keys(keys) => Ok(Next::Keys(keys)),
            Chunk::Raw(_) => Err(DbError::Sql(format!(
                "binary COPY data cannot be loaded into {}",
                self.dialect
            ))),
        }
    }

    /// The INSERT for a group of at most `per_insert` rows, once each row fits its columns.
    pub fn insert_for(&mut self, group: &[Vec<Value>]) -> Result<String, DbError> {
        for row in group {
            check_row(self.spec, row)?;
            self.stats.bytes += row.iter().map(|v| v.size() as u64).sum::<u64>();
        }
        self.stats.rows += group.len() as u64;
        Ok(if group.len() == self.per_insert {
            self.full_sql.clone()
        } else {
            insert_sql(self.dialect, self.spec, group.len())
        })
    }
}

/// How a dialect that loads by INSERTs binds values: one value into a statement's arguments,
/// and a statement's parameters as its arguments.
pub(crate) struct Binder<DB: sqlx::Database> {
    /// The most parameters one statement may bind.
    pub max_params: usize,
    pub bind: fn(&mut DB::Arguments, &Value, Kind) -> Result<(), DbError>,
    pub arguments: fn(&[Value]) -> Result<DB::Arguments, DbError>,
}

/// A load by multi-row INSERTs (MySQL, SQLite), in the transaction `tx`: the old rows go
/// (DELETE, not TRUNCATE: TRUNCATE would commit on its own, and the old rows must survive a
/// failed load), the new ones go in, the replication state is written, and one commit makes
/// it all visible at once.
pub(crate) async fn load_by_inserts<DB>(
    pool: &sqlx::Pool<DB>,
    dialect: Dialect,
    binder: &Binder<DB>,
    spec: &LoadSpec,
    mut input: tokio::sync::mpsc::Receiver<Chunk>,
    finish: &Finish<'_>,
) -> Result<LoadStats, DbError>
where
    DB: sqlx::Database,
    DB::Arguments: Default + sqlx::IntoArguments<DB>,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    use sqlx::AssertSqlSafe;
    let mut tx = pool
        .begin()
        .await
        .map_err(|e| DbError::sql("starting the load transaction", e))?;
    for (sql, params) in clear_statements(dialect, spec) {
        sqlx::query_with(AssertSqlSafe(sql), (binder.arguments)(&params)?)
            .execute(&mut *tx)
            .await
            .map_err(|e| DbError::sql("clearing the cloud rows", e))?;
    }
    let mut batches = InsertBatches::new(dialect, spec, binder.max_params);
    loop {
        let rows = match batches.next(&mut input).await? {
            Next::End => break,
            Next::Keys(keys) => {
                for (sql, params) in delete_statements(dialect, spec, &keys) {
                    sqlx::query_with(AssertSqlSafe(sql), (binder.arguments)(&params)?)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| DbError::sql("removing the changed rows", e))?;
                }
                continue;
            }
            Next::Rows(rows) => rows,
        };
        for group in rows.chunks(batches.per_insert) {
            let sql = batches.insert_for(group)?;
            let mut args = DB::Arguments::default();
            for row in group {
                for (v, c) in row.iter().zip(&spec.columns) {
                    (binder.bind)(&mut args, v, c.kind)?;
                }
            }
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(|e| DbError::sql("loading", e))?;
        }
    }
    let stats = batches.stats;
    for stmt in finish(&stats) {
        sqlx::query_with(
            AssertSqlSafe(stmt.sql.clone()),
            (binder.arguments)(&stmt.params)?,
        )
        .execute(&mut *tx)
        .await
        .map_err(|e| DbError::sql("recording the replication state", e))?;
    }
    tx.commit()
        .await
        .map_err(|e| DbError::sql("committing", e))?;
    Ok(stats)
}

/// The SQL of a multi-row INSERT with `rows` rows of `columns` placeholders.
pub(crate) fn insert_sql(dialect: Dialect, spec: &LoadSpec, rows: usize) -> String {
    let cols: Vec<String> = spec
        .columns
        .iter()
        .map(|c| dialect.quote(&c.name))
        .collect();
    let one = format!("({})", vec!["?"; spec.columns.len()].join(","));
    let mut sql = format!(
        "INSERT INTO {} ({}) VALUES ",
        dialect.quote(&spec.table),
        cols.join(",")
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&one);
    }
    sql
}

/// Rows per multi-row INSERT: as many as the dialect's parameter limit allows, up to 500.
pub(crate) fn insert_batch_rows(limit: usize, columns: usize) -> usize {
    (limit / columns.max(1)).clamp(1, 500)
}
