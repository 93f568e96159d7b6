//! Data validation: whether a table in the target holds the same rows as in the source. Each
//! database computes, over a canonical text form of every row, a row count and a checksum;
//! only when they differ are the differing rows found, bucket by bucket, and only their keys
//! and hashes travel. Rows are never pulled into the process, except from SQLite, which has no
//! hash function and runs inside this process anyway.
//!
//! The canonical text of a value is the same in every dialect: integers in decimal, exact
//! numbers without trailing zeros (so `12.50` in a `DECIMAL(10,2)` equals `12.5` in a wider
//! column), booleans as `1`/`0`, timestamps as `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC, dates as
//! `YYYY-MM-DD`, times to the microsecond, binary as lower-case hex, UUIDs lower-case
//! hyphenated. Floating-point columns are compared only between two databases of one dialect:
//! each dialect prints them its own way.

use crate::db::{
    ColumnDef, Database, DbError, Dialect, KeyFilter, Kind, ReadSpec, Statement, TableDef, Value,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Why a column is left out of the comparison.
pub const FLOAT_LEFT_OUT: &str = "floating-point numbers print differently in each dialect, so \
                                  they cannot be compared exactly between two dialects";

/// How many differing buckets (of 256, by key hash) are searched for differing keys at most.
const BUCKETS_SEARCHED: usize = 4;

/// Placeholders one MySQL statement may carry (the protocol's limit is 65,535).
const MYSQL_PARAMETERS: usize = 65_000;

/// Separates the values of a row in its canonical text.
const SEP: char = '\u{1f}';
/// Stands for NULL in the canonical text.
const NULL: char = '\u{1e}';

/// How one row differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Difference {
    /// The key is in the source and not in the target.
    MissingInTarget,
    /// The key is in the target and not in the source.
    OnlyInTarget,
    /// Both sides have the key, with different values.
    ValuesDiffer,
}

/// A row that differs, by its key, for example `No.=10000, Line No.=2`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RowDifference {
    pub key: String,
    pub difference: Difference,
}

/// The outcome of validating one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TableValidation {
    /// The table's name in the source.
    pub table: String,
    pub source_rows: i64,
    pub target_rows: i64,
    /// Row counts and checksums are equal.
    pub matches: bool,
    /// The first rows that differ, when the table does not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<RowDifference>,
    /// Columns that were not compared, with `left_out_reason`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_out_reason: Option<String>,
    /// Why the table could not be validated (a missing table or column, a failed query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Keys that changed in the source after the run copied the table: their rows were left
    /// out of the comparison, and the next run copies them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub changed_since_run: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One side of a comparison: a table, the columns compared, and its key.
struct Side<'a> {
    db: &'a Database,
    table: &'a TableDef,
    /// The compared columns, in the order both sides use, each with the kind its canonical
    /// text follows.
    columns: Vec<ColumnDef>,
    key: Vec<ColumnDef>,
}

/// Count and sum of the rows' 60-bit hash prefixes: order does not matter, and the sum is
/// exact in every dialect (PostgreSQL `numeric`, MySQL `DECIMAL`, `u128` here).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Digest60 {
    rows: i64,
    sum: u128,
}

impl Digest60 {
    fn add(&mut self, row_hash: &str) {
        self.rows += 1;
        self.sum += prefix60(row_hash) as u128;
    }
}

fn prefix60(hex: &str) -> u64 {
    u64::from_str_radix(hex.get(..15).unwrap_or("0"), 16).unwrap_or(0)
}

fn sha256_hex(text: &str) -> String {
    crate::db::hex(&Sha256::digest(text.as_bytes()))
}

/// How many keys that changed since the run a table's validation leaves out at most; past it,
/// the table is validated after the next run. It bounds memory, and the parameters of
/// MySQL's statements.
pub const CHANGED_KEYS_LEFT_OUT: usize = 10_000;

/// How often a comparison starts over when the source kept changing while it compared.
const ATTEMPTS: usize = 5;

/// Compares one table of the source with its copy in the target. `max_keys` differing keys are
/// named at most.
///
/// `since`: the version up to which the target holds the table's changes (its watermark),
/// where the source has change tracking. Rows whose keys changed in the source after it (the
/// change log has them) are left out on both sides, and counted: a table matches when every
/// other row does.
pub async fn validate_table(
    source: &Database,
    target: &Database,
    (source_table, target_table): (&TableDef, &TableDef),
    since: Option<i64>,
    max_keys: usize,
) -> TableValidation {
    let mut out = TableValidation {
        table: source_table.name.clone(),
        ..Default::default()
    };
    let cross = source.dialect() != target.dialect();
    let mut pairs = Vec::new();
    for c in &source_table.columns {
        let Some(t) = target_table.column(&c.name).or_else(|| {
            target_table
                .columns
                .iter()
                .find(|t| t.name.eq_ignore_ascii_case(&c.name))
        }) else {
            out.error = Some(format!(
                "the target's table has no column {:?}; run a full run of this table",
                c.name
            ));
            return out;
        };
        if cross && (c.kind == Kind::Float || t.kind == Kind::Float) {
            out.left_out.push(c.name.clone());
            out.left_out_reason = Some(FLOAT_LEFT_OUT.to_string());
        } else {
            pairs.push(shaped(source.dialect(), c, target.dialect(), t));
        }
    }
    let key_names: Vec<&str> = if source_table.primary_key.is_empty() {
        pairs.iter().map(|(c, _)| c.name.as_str()).collect()
    } else {
        source_table
            .primary_key
            .iter()
            .map(String::as_str)
            .collect()
    };
    let key_of = |table: &'_ TableDef, name: &str| -> Option<usize> {
        table
            .columns
            .iter()
            .position(|c| c.name == name || c.name.eq_ignore_ascii_case(name))
    };
    let mut source_key = Vec::new();
    let mut target_key = Vec::new();
    for name in &key_names {
        match (key_of(source_table, name), key_of(target_table, name)) {
            (Some(s), Some(t)) => {
                let (s, t) = shaped(
                    source.dialect(),
                    &source_table.columns[s],
                    target.dialect(),
                    &target_table.columns[t],
                );
                source_key.push(s);
                target_key.push(t);
            }
            _ => {
                out.error = Some(format!("the key column {name:?} is missing on one side"));
                return out;
            }
        }
    }
    let s = Side {
        db: source,
        table: source_table,
        columns: pairs.iter().map(|(c, _)| c.clone()).collect(),
        key: source_key,
    };
    let t = Side {
        db: target,
        table: target_table,
        columns: pairs.iter().map(|(_, t)| t.clone()).collect(),
        key: target_key,
    };
    match compare(&s, &t, &key_names, since, max_keys).await {
        Ok(c) => {
            out.source_rows = c.source.rows;
            out.target_rows = c.target.rows;
            out.matches = c.matches;
            out.differences = c.differences;
            out.changed_since_run = c.changed_since_run;
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// What a comparison found.
struct Compared {
    source: Digest60,
    target: Digest60,
    /// Every row matches, apart from those of keys that changed since the run.
    matches: bool,
    differences: Vec<RowDifference>,
    changed_since_run: u64,
}

/// A column pair, each with the kind its canonical text follows. SQLite types values, not
/// columns, so a SQLite column follows the other side's kind: a `TEXT` column that holds a
/// copied `NUMERIC` compares as an exact number.
fn shaped(sd: Dialect, s: &ColumnDef, td: Dialect, t: &ColumnDef) -> (ColumnDef, ColumnDef) {
    let (mut s, mut t) = (s.clone(), t.clone());
    if sd == Dialect::Sqlite && td != Dialect::Sqlite {
        s.kind = t.kind;
    } else if td == Dialect::Sqlite && sd != Dialect::Sqlite {
        t.kind = s.kind;
    }
    (s, t)
}

/// Count and checksum on both sides. Where they differ and the source has change tracking,
/// the keys changed since the run are read from its change log, and each side's checksum is
/// taken again without their rows, in one statement (so at one point in time): when these are
/// equal, only rows that changed since the run differ. Keys that change between reading the log
/// and that statement make it differ; the log then has more keys, and the comparison starts
/// over. Otherwise the first differing keys are named, changed keys left out, from the buckets
/// that hold no changed key first.
async fn compare(
    s: &Side<'_>,
    t: &Side<'_>,
    key_names: &[&str],
    since: Option<i64>,
    max_keys: usize,
) -> Result<Compared, DbError> {
    let (sd, td) = tokio::try_join!(s.digest(), t.digest())?;
    let mut out = Compared {
        source: sd,
        target: td,
        matches: sd == td,
        differences: vec![],
        changed_since_run: 0,
    };
    // Equal checksums compared every row, those changed since the run included: none is left
    // out. (On PostgreSQL a run also copies changes above its version, so the log can hold keys
    // past the watermark whose rows the target has.)
    if out.matches {
        return Ok(out);
    }
    let changed_since =
        |after| super::tracking::changed_since(s.db, &s.table.name, after, CHANGED_KEYS_LEFT_OUT);
    let Some(after) = since else {
        out.differences = name_differences(s, t, key_names, &Default::default(), max_keys).await?;
        return Ok(out);
    };
    let mut changed = changed_since(after).await?;
    for _ in 0..ATTEMPTS {
        out.changed_since_run = changed.keys.len() as u64;
        if changed.truncated {
            return Err(DbError::Config(
                "the source table was emptied (TRUNCATE) after the run copied it; the next run \
                 copies it in full"
                    .into(),
            ));
        }
        if changed.more {
            return Err(DbError::Config(format!(
                "more than {CHANGED_KEYS_LEFT_OUT} keys changed in the source after the run \
                 copied it, too many to leave out of the comparison; the next run copies them"
            )));
        }
        if changed.keys.is_empty() {
            break;
        }
        let (sr, tr) = tokio::try_join!(
            s.digest_without(&changed.keys),
            t.digest_without(&changed.keys)
        )?;
        if sr == tr {
            out.matches = true;
            return Ok(out);
        }
        let again = changed_since(after).await?;
        if again.keys.len() == changed.keys.len() && !again.truncated {
            break;
        }
        changed = again;
    }
    let (sk, tk) = tokio::try_join!(s.rows_of(&changed.keys), t.rows_of(&changed.keys))?;
    let left_out: HashSet<String> = sk.into_keys().chain(tk.into_keys()).collect();
    out.differences = name_differences(s, t, key_names, &left_out, max_keys).await?;
    Ok(out)
}

/// The first differing keys, leaving out `left_out` (canonical key texts), searched bucket by
/// bucket: the buckets that hold none of `left_out` first.
async fn name_differences(
    s: &Side<'_>,
    t: &Side<'_>,
    key_names: &[&str],
    left_out: &HashSet<String>,
    max_keys: usize,
) -> Result<Vec<RowDifference>, DbError> {
    let (sb, tb) = tokio::try_join!(s.buckets(), t.buckets())?;
    let left_out_buckets: HashSet<String> = left_out.iter().map(|k| bucket_of(k)).collect();
    let mut differing: Vec<&String> = sb
        .keys()
        .chain(tb.keys())
        .filter(|b| sb.get(*b) != tb.get(*b))
        .collect();
    differing.sort_by_key(|b| (left_out_buckets.contains(*b), *b));
    differing.dedup();
    let mut differences = Vec::new();
    for bucket in differing.into_iter().take(BUCKETS_SEARCHED) {
        if differences.len() >= max_keys {
            break;
        }
        let (sr, tr) = tokio::try_join!(s.rows_in(bucket), t.rows_in(bucket))?;
        let mut found: Vec<RowDifference> = sr
            .iter()
            .filter_map(|(k, h)| match tr.get(k) {
                None => Some((k, Difference::MissingInTarget)),
                Some(th) if th != h => Some((k, Difference::ValuesDiffer)),
                Some(_) => None,
            })
            .chain(
                tr.keys()
                    .filter(|k| !sr.contains_key(*k))
                    .map(|k| (k, Difference::OnlyInTarget)),
            )
            .filter(|(k, _)| !left_out.contains(*k))
            .map(|(k, difference)| RowDifference {
                key: key_display(key_names, k),
                difference,
            })
            .collect();
        found.sort_by(|a, b| a.key.cmp(&b.key));
        differences.extend(found);
    }
    differences.truncate(max_keys);
    Ok(differences)
}

/// The bucket of a key's canonical text: the first two hex digits of its hash.
fn bucket_of(key: &str) -> String {
    sha256_hex(key)[..2].to_string()
}

/// A key's canonical text as people read it: `No.=10000, Line No.=2`.
fn key_display(names: &[&str], key: &str) -> String {
    names
        .iter()
        .zip(key.split(SEP))
        .map(|(n, v)| {
            if v == NULL.to_string() {
                format!("{n}=NULL")
            } else {
                format!("{n}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Side<'_> {
    fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    /// The SQL of the row text, key text, row hash and key hash (not for SQLite).
    fn exprs(&self) -> (String, String) {
        let d = self.dialect();
        let row = joined(d, &self.columns);
        let key = joined(d, &self.key);
        (row, key)
    }

    async fn digest(&self) -> Result<Digest60, DbError> {
        if self.dialect() == Dialect::Sqlite {
            let mut d = Digest60::default();
            self.scan(|_, _, row_hash| d.add(row_hash)).await?;
            return Ok(d);
        }
        let d = self.dialect();
        let (row, _) = self.exprs();
        let sql = format!(
            "SELECT COUNT(*), {} FROM {}",
            sum_text(d, &prefix60_sql(d, &hash_sql(d, &row))),
            d.quote(&self.table.name)
        );
        let rows = self
            .db
            .query(&stmt(sql, vec![]), &[Kind::Int, Kind::Text])
            .await?;
        Ok(digest_of(
            rows.first().map(Vec::as_slice).unwrap_or_default(),
        ))
    }

    async fn buckets(&self) -> Result<BTreeMap<String, Digest60>, DbError> {
        let mut out: BTreeMap<String, Digest60> = BTreeMap::new();
        if self.dialect() == Dialect::Sqlite {
            self.scan(|_, key_hash, row_hash| {
                out.entry(key_hash[..2].to_string())
                    .or_default()
                    .add(row_hash)
            })
            .await?;
            return Ok(out);
        }
        let d = self.dialect();
        let (row, key) = self.exprs();
        let sql = format!(
            "SELECT b, COUNT(*), {} FROM (SELECT {} AS b, {} AS h FROM {}) x GROUP BY b",
            sum_text(d, "h"),
            substr2(d, &hash_sql(d, &key)),
            prefix60_sql(d, &hash_sql(d, &row)),
            d.quote(&self.table.name)
        );
        let rows = self
            .db
            .query(&stmt(sql, vec![]), &[Kind::Text, Kind::Int, Kind::Text])
            .await?;
        for r in rows {
            if let Some(Value::Text(b)) = r.first() {
                out.insert(b.clone(), digest_of(&r[1..]));
            }
        }
        Ok(out)
    }

    /// The key texts and row hashes of the rows in one bucket.
    async fn rows_in(&self, bucket: &str) -> Result<HashMap<String, String>, DbError> {
        let mut out = HashMap::new();
        if self.dialect() == Dialect::Sqlite {
            self.scan(|key, key_hash, row_hash| {
                if &key_hash[..2] == bucket {
                    out.insert(key.to_string(), row_hash.to_string());
                }
            })
            .await?;
            return Ok(out);
        }
        let d = self.dialect();
        let (row, key) = self.exprs();
        let sql = format!(
            "SELECT k, h FROM (SELECT {key} AS k, {} AS b, {} AS h FROM {}) x WHERE b = ?",
            substr2(d, &hash_sql(d, &key)),
            hash_sql(d, &row),
            d.quote(&self.table.name)
        );
        let rows = self
            .db
            .query(
                &stmt(sql, vec![Value::Text(bucket.to_string())]),
                &[Kind::Text, Kind::Text],
            )
            .await?;
        for r in rows {
            if let [Value::Text(k), Value::Text(h)] = r.as_slice() {
                out.insert(k.clone(), h.clone());
            }
        }
        Ok(out)
    }

    /// Count and checksum of the rows whose keys are not in `keys` (as the change log writes
    /// them), in one statement: on PostgreSQL a hashed `NOT IN` over one array per key column,
    /// on MySQL and MariaDB a `NOT IN` list. SQLite reads every row but those in one statement
    /// too, knowing the keys by their canonical texts: as the log writes them, and as the rows
    /// of those keys have them now.
    async fn digest_without(&self, keys: &[Vec<Option<String>>]) -> Result<Digest60, DbError> {
        let d = self.dialect();
        if d == Dialect::Sqlite {
            let mut skip: HashSet<String> = keys
                .iter()
                .map(|k| {
                    join(k.iter().zip(&self.key).map(|(v, c)| {
                        v.as_ref()
                            .and_then(|v| canonical(&Value::Text(v.clone()), c.kind))
                    }))
                })
                .collect();
            skip.extend(self.rows_of(keys).await?.into_keys());
            let mut digest = Digest60::default();
            self.scan(|key, _, row_hash| {
                if !skip.contains(key) {
                    digest.add(row_hash)
                }
            })
            .await?;
            return Ok(digest);
        }
        let cols: Vec<String> = self.key.iter().map(|c| d.quote(&c.name)).collect();
        let (condition, params) = if d == Dialect::Postgres {
            let arrays: Vec<String> = self
                .key
                .iter()
                .map(|c| format!("CAST(? AS {}[])", c.type_name))
                .collect();
            let params = (0..self.key.len())
                .map(|i| {
                    Value::TextList(keys.iter().map(|k| k.get(i).cloned().flatten()).collect())
                })
                .collect();
            (
                format!(
                    "({}) NOT IN (SELECT * FROM unnest({}))",
                    cols.join(", "),
                    arrays.join(", ")
                ),
                params,
            )
        } else {
            if keys.len() * self.key.len() > MYSQL_PARAMETERS {
                return Err(DbError::Config(format!(
                    "{} keys of {} columns changed in the source after the run: too many to \
                     leave out of one statement; the next run copies them",
                    keys.len(),
                    self.key.len()
                )));
            }
            let (condition, params) = self.key_filter(keys).condition(d, keys);
            (format!("NOT ({condition})"), params)
        };
        let (row, _) = self.exprs();
        let sql = format!(
            "SELECT COUNT(*), {} FROM {} WHERE {condition}",
            sum_text(d, &prefix60_sql(d, &hash_sql(d, &row))),
            d.quote(&self.table.name)
        );
        let rows = self
            .db
            .query(&stmt(sql, params), &[Kind::Int, Kind::Text])
            .await?;
        Ok(digest_of(
            rows.first().map(Vec::as_slice).unwrap_or_default(),
        ))
    }

    /// The key columns, named and typed as this side's database has them, with `keys`.
    fn key_filter(&self, keys: &[Vec<Option<String>>]) -> KeyFilter {
        KeyFilter {
            columns: self
                .key
                .iter()
                .map(|c| (c.name.clone(), c.type_name.clone()))
                .collect(),
            keys: keys.to_vec(),
        }
    }

    /// The key texts and row hashes of the rows with these keys (as the change log writes
    /// them), found through the primary key.
    async fn rows_of(
        &self,
        keys: &[Vec<Option<String>>],
    ) -> Result<HashMap<String, String>, DbError> {
        let filter = self.key_filter(keys);
        let mut out = HashMap::new();
        if keys.is_empty() {
            return Ok(out);
        }
        if self.dialect() == Dialect::Sqlite {
            self.scan_some(Some(filter), |key, _, row_hash| {
                out.insert(key.to_string(), row_hash.to_string());
            })
            .await?;
            return Ok(out);
        }
        let d = self.dialect();
        let (row, key) = self.exprs();
        for batch in filter.batches(d) {
            let (condition, params) = filter.condition(d, batch);
            let sql = format!(
                "SELECT {key}, {} FROM {} WHERE {condition}",
                hash_sql(d, &row),
                d.quote(&self.table.name)
            );
            let rows = self
                .db
                .query(&stmt(sql, params), &[Kind::Text, Kind::Text])
                .await?;
            for r in rows {
                if let [Value::Text(k), Value::Text(h)] = r.as_slice() {
                    out.insert(k.clone(), h.clone());
                }
            }
        }
        Ok(out)
    }

    /// Reads every row of a SQLite table in this process, in chunks, and hands each row's key
    /// text, key hash and row hash to `f`.
    async fn scan(&self, f: impl FnMut(&str, &str, &str)) -> Result<(), DbError> {
        self.scan_some(None, f).await
    }

    /// `scan`, of the rows of some keys only when `keys` is given.
    async fn scan_some(
        &self,
        keys: Option<KeyFilter>,
        mut f: impl FnMut(&str, &str, &str),
    ) -> Result<(), DbError> {
        let mut columns: Vec<ColumnDef> = self.columns.clone();
        let key_at: Vec<usize> = self
            .key
            .iter()
            .map(|k| match columns.iter().position(|c| c.name == k.name) {
                Some(i) => i,
                None => {
                    columns.push(k.clone());
                    columns.len() - 1
                }
            })
            .collect();
        let compared = self.columns.len();
        let spec = ReadSpec {
            table: self.table.name.clone(),
            columns: columns.clone(),
            raw: false,
            snapshot: None,
            progress: Default::default(),
            keys,
            range: None,
        };
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let reader = self.db.read_table(&spec, tx);
        let hasher = async {
            while let Some(chunk) = rx.recv().await {
                let crate::db::Chunk::Rows(rows) = chunk else {
                    continue;
                };
                for row in rows {
                    let text = |i: usize| canonical(&row[i], columns[i].kind);
                    let row_text = join((0..compared).map(text));
                    let key_text = join(key_at.iter().map(|i| text(*i)));
                    f(&key_text, &sha256_hex(&key_text), &sha256_hex(&row_text));
                }
            }
        };
        let (read, ()) = tokio::join!(reader, hasher);
        read.map(|_| ())
    }
}

fn stmt(sql: String, params: Vec<Value>) -> Statement {
    Statement { sql, params }
}

fn digest_of(values: &[Value]) -> Digest60 {
    let rows = match values.first() {
        Some(Value::Int(n)) => *n,
        _ => 0,
    };
    let sum = match values.get(1) {
        Some(Value::Text(s)) | Some(Value::Decimal(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    };
    Digest60 { rows, sum }
}

fn join(values: impl Iterator<Item = Option<String>>) -> String {
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(SEP);
        }
        match v {
            Some(v) => out.push_str(&v),
            None => out.push(NULL),
        }
    }
    out
}

/// The canonical text of a value read in this process (SQLite), shaped by its column's kind.
pub fn canonical(v: &Value, kind: Kind) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => if *b { "1" } else { "0" }.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => crate::db::float_text(*f),
        Value::Decimal(s) => trim_decimal(s),
        Value::Bytes(b) => crate::db::hex(b),
        Value::Uuid(u) => u.hyphenated().to_string(),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::Time(t) => t.format("%H:%M:%S%.6f").to_string(),
        Value::Timestamp(t) => t.format(TIMESTAMP).to_string(),
        Value::TimestampTz(t) => t.format(TIMESTAMP).to_string(),
        Value::Text(s) => match kind {
            Kind::Date | Kind::Time | Kind::Timestamp | Kind::TimestampTz => {
                temporal(s, kind).unwrap_or_else(|| s.clone())
            }
            Kind::Uuid => s.to_lowercase(),
            Kind::Decimal => trim_decimal(s),
            Kind::Bool => match s.to_ascii_lowercase().as_str() {
                "true" | "t" | "1" => "1".into(),
                "false" | "f" | "0" => "0".into(),
                _ => s.clone(),
            },
            _ => s.clone(),
        },
        Value::TextList(_) | Value::IntList(_) => v.to_text().unwrap_or_default(),
    })
}

const TIMESTAMP: &str = "%Y-%m-%dT%H:%M:%S%.6f";

/// A date or time written as text (SQLite), in the canonical form; None when unreadable.
fn temporal(s: &str, kind: Kind) -> Option<String> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    let s = s.trim();
    let naive = |s: &str| {
        [
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
    };
    match kind {
        Kind::Date => NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d")
            .ok()
            .map(|d| d.format("%Y-%m-%d").to_string()),
        Kind::Time => NaiveTime::parse_from_str(s, "%H:%M:%S%.f")
            .ok()
            .map(|t| t.format("%H:%M:%S%.6f").to_string()),
        Kind::TimestampTz => {
            let with_offset = [
                "%Y-%m-%d %H:%M:%S%.f%:z",
                "%Y-%m-%dT%H:%M:%S%.f%:z",
                "%Y-%m-%d %H:%M:%S%.f%#z",
            ]
            .iter()
            .find_map(|f| chrono::DateTime::parse_from_str(s, f).ok())
            .or_else(|| chrono::DateTime::parse_from_rfc3339(s).ok());
            match with_offset {
                Some(t) => Some(t.with_timezone(&chrono::Utc).format(TIMESTAMP).to_string()),
                None => naive(s).map(|t| t.format(TIMESTAMP).to_string()),
            }
        }
        _ => naive(s).map(|t| t.format(TIMESTAMP).to_string()),
    }
}

/// An exact number without trailing zeros after the point (`12.50` → `12.5`, `3.00` → `3`).
pub fn trim_decimal(s: &str) -> String {
    let s = s.trim();
    if !s.contains('.') || s.contains(['e', 'E']) {
        return s.to_string();
    }
    let t = s.trim_end_matches('0').trim_end_matches('.');
    match t {
        "" | "-" | "-0" => "0".to_string(),
        t => t.to_string(),
    }
}

/// The canonical text of a column, in SQL; NULL when the value is NULL.
fn canonical_sql(d: Dialect, c: &ColumnDef) -> String {
    let q = d.quote(&c.name);
    match (d, c.kind) {
        (Dialect::Postgres, Kind::Bool) => {
            format!("CASE WHEN {q} THEN '1' WHEN NOT {q} THEN '0' END")
        }
        (Dialect::Postgres, Kind::Decimal) => format!("trim_scale({q})::text"),
        (Dialect::Postgres, Kind::Bytes) => format!("encode({q}, 'hex')"),
        (Dialect::Postgres, Kind::Date) => format!("to_char({q}, 'YYYY-MM-DD')"),
        (Dialect::Postgres, Kind::Time) => format!("to_char({q}, 'HH24:MI:SS.US')"),
        (Dialect::Postgres, Kind::Timestamp) => {
            format!("to_char({q}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
        }
        (Dialect::Postgres, Kind::TimestampTz) => {
            format!("to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
        }
        (Dialect::Postgres, Kind::Uuid) => format!("lower({q}::text)"),
        (Dialect::Postgres, _) => format!("{q}::text"),
        (_, Kind::Bool) => format!("CASE WHEN {q} <> 0 THEN '1' WHEN {q} = 0 THEN '0' END"),
        (_, Kind::Decimal) => {
            let x = format!("CAST({q} AS CHAR)");
            format!(
                "IF(LOCATE('.', {x}) > 0, TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {x})), {x})"
            )
        }
        (_, Kind::Bytes) => format!("LOWER(HEX({q}))"),
        (_, Kind::Date) => format!("DATE_FORMAT({q}, '%Y-%m-%d')"),
        (_, Kind::Time) => format!("TIME_FORMAT({q}, '%H:%i:%s.%f')"),
        (_, Kind::Timestamp | Kind::TimestampTz) => {
            format!("DATE_FORMAT({q}, '%Y-%m-%dT%H:%i:%s.%f')")
        }
        (_, Kind::Uuid) => format!("LOWER(CAST({q} AS CHAR))"),
        (_, Kind::Text) => format!("CONVERT({q} USING utf8mb4)"),
        (_, _) => format!("CAST({q} AS CHAR)"),
    }
}

/// The canonical text of a row (or key) in SQL: the values joined by U+001F, NULL as U+001E.
fn joined(d: Dialect, columns: &[ColumnDef]) -> String {
    if columns.is_empty() {
        return "''".into();
    }
    let parts: Vec<String> = columns
        .iter()
        .map(|c| match d {
            Dialect::Postgres => format!("COALESCE({}, chr(30))", canonical_sql(d, c)),
            _ => format!("COALESCE({}, CHAR(30 USING utf8mb4))", canonical_sql(d, c)),
        })
        .collect();
    match d {
        Dialect::Postgres => parts.join(" || chr(31) || "),
        _ => format!("CONCAT_WS(CHAR(31 USING utf8mb4), {})", parts.join(", ")),
    }
}

/// SHA-256 of a text expression's UTF-8 bytes, as lower-case hex.
fn hash_sql(d: Dialect, text: &str) -> String {
    match d {
        Dialect::Postgres => format!("encode(sha256(convert_to({text}, 'UTF8')), 'hex')"),
        _ => format!("SHA2(CONVERT({text} USING utf8mb4), 256)"),
    }
}

/// The first 60 bits of a hex hash as an integer.
fn prefix60_sql(d: Dialect, hex: &str) -> String {
    match d {
        Dialect::Postgres => format!("('x' || substr({hex}, 1, 15))::bit(60)::bigint"),
        _ => format!("CAST(CONV(SUBSTRING({hex}, 1, 15), 16, 10) AS UNSIGNED)"),
    }
}

fn substr2(d: Dialect, hex: &str) -> String {
    match d {
        Dialect::Postgres => format!("substr({hex}, 1, 2)"),
        _ => format!("SUBSTRING({hex}, 1, 2)"),
    }
}

/// An exact sum as text, `0` over no rows.
fn sum_text(d: Dialect, expr: &str) -> String {
    match d {
        Dialect::Postgres => format!("COALESCE(SUM({expr})::text, '0')"),
        _ => format!("COALESCE(CAST(SUM({expr}) AS CHAR), '0')"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_numbers_lose_only_their_trailing_zeros() {
        assert_eq!(trim_decimal("12.50"), "12.5");
        assert_eq!(trim_decimal("3.000"), "3");
        assert_eq!(trim_decimal("100"), "100");
        assert_eq!(trim_decimal("-0.00"), "0");
        assert_eq!(trim_decimal("0.0010"), "0.001");
    }

    #[test]
    fn texts_of_dates_and_times_become_canonical() {
        let c = |s: &str, k| canonical(&Value::Text(s.into()), k).unwrap();
        assert_eq!(
            c("2024-01-05 10:00:00", Kind::Timestamp),
            "2024-01-05T10:00:00.000000"
        );
        assert_eq!(
            c("2024-01-05 10:00:00.25+02:00", Kind::TimestampTz),
            "2024-01-05T08:00:00.250000"
        );
        assert_eq!(c("2024-01-05", Kind::Date), "2024-01-05");
        assert_eq!(c("07:08:09.5", Kind::Time), "07:08:09.500000");
        assert_eq!(c("1.50", Kind::Decimal), "1.5");
        assert_eq!(canonical(&Value::Bool(true), Kind::Bool).unwrap(), "1");
        assert_eq!(canonical(&Value::Null, Kind::Text), None);
    }

    #[test]
    fn a_key_reads_as_names_and_values() {
        let key = format!("10000{SEP}{NULL}");
        assert_eq!(
            key_display(&["No.", "Line No."], &key),
            "No.=10000, Line No.=NULL"
        );
    }
}
