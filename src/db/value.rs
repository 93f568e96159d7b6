//! The dialect-neutral form of a column type and of a value in transit.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use std::fmt;
use uuid::Uuid;

/// What a column holds, whatever the dialect calls it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Bool,
    Int,
    Float,
    /// Exact numbers, carried as their decimal text so no digit is lost.
    Decimal,
    Text,
    Bytes,
    Uuid,
    Date,
    Time,
    Timestamp,
    TimestampTz,
}

/// One value read from a source row.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(String),
    Text(String),
    Bytes(Vec<u8>),
    Uuid(Uuid),
    Date(NaiveDate),
    Time(NaiveTime),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<Utc>),
    /// A list of texts, bound as one array parameter (PostgreSQL only), for key lists.
    TextList(Vec<Option<String>>),
    /// A list of integers, bound as one `bigint[]` parameter (PostgreSQL only): integer keys
    /// travel in binary, with nothing for the server to parse.
    IntList(Vec<Option<i64>>),
}

impl Value {
    /// Approximate size in bytes, for progress and reports.
    pub fn size(&self) -> usize {
        match self {
            Value::Null => 1,
            Value::Bool(_) => 1,
            Value::Int(_) | Value::Float(_) | Value::Date(_) | Value::Time(_) => 8,
            Value::Timestamp(_) | Value::TimestampTz(_) => 8,
            Value::Uuid(_) => 16,
            Value::Decimal(s) | Value::Text(s) => s.len(),
            Value::Bytes(b) => b.len(),
            Value::TextList(l) => l.iter().map(|s| s.as_ref().map_or(1, String::len)).sum(),
            Value::IntList(l) => l.len() * 8,
        }
    }

    /// The value as text, the way SQL would print it (NULL as `NULL`).
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => float_text(*f),
            Value::Decimal(s) | Value::Text(s) => s.clone(),
            Value::Bytes(b) => hex(b),
            Value::Uuid(u) => u.hyphenated().to_string(),
            Value::Date(d) => d.format("%Y-%m-%d").to_string(),
            Value::Time(t) => t.format("%H:%M:%S%.f").to_string(),
            Value::Timestamp(t) => t.format("%Y-%m-%d %H:%M:%S%.f").to_string(),
            Value::TimestampTz(t) => t.format("%Y-%m-%d %H:%M:%S%.f+00:00").to_string(),
            Value::TextList(l) => format!("{l:?}"),
            Value::IntList(l) => format!("{l:?}"),
        })
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_text() {
            None => f.write_str("NULL"),
            Some(s) if matches!(self, Value::Text(_)) => write!(f, "{s:?}"),
            Some(s) => f.write_str(&s),
        }
    }
}

/// A float as text that reads back to the same value (`NaN` and `Infinity` as SQL spells them).
pub fn float_text(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        format!("{f:?}")
    }
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
