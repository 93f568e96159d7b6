//! The keys of a lake table's rows: their order, which is the one the source sorts by when a
//! run reads a stretch of keys (`db::KeyRange`: numbers as numbers, text by its UTF-8 bytes),
//! and the values a key's text stands for, whether it comes from a change record or from a
//! file's first key in the log. Pure.

use crate::db::{Kind, Value};
use std::cmp::Ordering;

/// Two keys of one table, column by column.
pub fn compare(a: &[Value], b: &[Value]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = compare_value(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

fn compare_value(a: &Value, b: &Value) -> Ordering {
    use Value::*;
    match (a, b) {
        (Null, Null) => Ordering::Equal,
        // The databases sort NULL last in ascending order (PostgreSQL) or first (the others);
        // a primary key has none, so this only has to be consistent.
        (Null, _) => Ordering::Less,
        (_, Null) => Ordering::Greater,
        (Bool(x), Bool(y)) => x.cmp(y),
        (Int(x), Int(y)) => x.cmp(y),
        (Float(x), Float(y)) => x.total_cmp(y),
        (Decimal(x), Decimal(y)) => compare_decimal(x, y),
        (Text(x), Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Bytes(x), Bytes(y)) => x.cmp(y),
        (Uuid(x), Uuid(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Date(x), Date(y)) => x.cmp(y),
        (Time(x), Time(y)) => x.cmp(y),
        (Timestamp(x), Timestamp(y)) => x.cmp(y),
        (TimestampTz(x), TimestampTz(y)) => x.cmp(y),
        // Values of one column have one kind; texts decide between any others.
        _ => a.to_text().cmp(&b.to_text()),
    }
}

/// Two decimal numbers given as text (`-12.50`), compared as numbers, exactly.
fn compare_decimal(a: &str, b: &str) -> Ordering {
    fn parts(s: &str) -> (bool, &str, &str) {
        let s = s.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
        (
            negative,
            whole.trim_start_matches('0'),
            fraction.trim_end_matches('0'),
        )
    }
    let (na, wa, fa) = parts(a);
    let (nb, wb, fb) = parts(b);
    let zero = |w: &str, f: &str| w.is_empty() && f.is_empty();
    let (na, nb) = (na && !zero(wa, fa), nb && !zero(wb, fb));
    let magnitude = wa
        .len()
        .cmp(&wb.len())
        .then_with(|| wa.cmp(wb))
        .then_with(|| fa.cmp(fb));
    match (na, nb) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// The values a key's text stands for, column by column (`kinds`). The text is what a change
/// record holds (PostgreSQL's JSON, MySQL's and SQLite's own) or what `texts` made. None when a
/// value does not read as its kind, or the kind has no order here (bytes, times, floats): such
/// a table is then written whole.
pub fn parse(kinds: &[Kind], text: &[Option<String>]) -> Option<Vec<Value>> {
    if kinds.len() != text.len() {
        return None;
    }
    kinds
        .iter()
        .zip(text)
        .map(|(kind, t)| match t {
            None => Some(Value::Null),
            Some(t) => parse_value(*kind, t),
        })
        .collect()
}

/// One value's text read as `kind` (see `parse`).
pub fn parse_value(kind: Kind, t: &str) -> Option<Value> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let timestamp = |t: &str| {
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
    };
    Some(match kind {
        Kind::Bool => Value::Bool(match t {
            "true" | "t" | "1" => true,
            "false" | "f" | "0" => false,
            _ => return None,
        }),
        Kind::Int => Value::Int(t.parse().ok()?),
        Kind::Decimal => {
            let plain = t.trim_start_matches(['-', '+']);
            if plain.is_empty() || !plain.chars().all(|c| c.is_ascii_digit() || c == '.') {
                return None;
            }
            Value::Decimal(t.to_string())
        }
        Kind::Text => Value::Text(t.to_string()),
        Kind::Uuid => Value::Uuid(uuid::Uuid::parse_str(t).ok()?),
        Kind::Date => Value::Date(NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?),
        Kind::Timestamp => Value::Timestamp(timestamp(t)?),
        Kind::TimestampTz => Value::TimestampTz(
            DateTime::parse_from_rfc3339(t)
                .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z"))
                .map(|d| d.with_timezone(&Utc))
                .ok()?,
        ),
        Kind::Float | Kind::Bytes | Kind::Time => return None,
    })
}

/// A key as texts that `parse` reads back to the same values.
pub fn texts(key: &[Value]) -> Vec<Option<String>> {
    key.iter().map(Value::to_text).collect()
}

/// Whether rows keyed by these kinds can be cut into stretches of keys.
pub fn ordered(kinds: &[Kind]) -> bool {
    !kinds.is_empty()
        && kinds
            .iter()
            .all(|k| !matches!(k, Kind::Float | Kind::Bytes | Kind::Time))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_compare_as_numbers() {
        let cases = [
            ("2", "10", Ordering::Less),
            ("10.5", "10.50000", Ordering::Equal),
            ("-1", "0", Ordering::Less),
            ("-10", "-9.99", Ordering::Less),
            ("0.001", "0.01", Ordering::Less),
            ("-0.0", "0", Ordering::Equal),
            ("007", "7.0", Ordering::Equal),
        ];
        for (a, b, o) in cases {
            assert_eq!(compare_decimal(a, b), o, "{a} vs {b}");
            assert_eq!(compare_decimal(b, a), o.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn keys_read_back_from_their_text_and_sort_as_the_source_does() {
        let kinds = [Kind::Text, Kind::Int, Kind::Timestamp];
        let key = vec![
            Value::Text("Café $1".into()),
            Value::Int(-4),
            Value::Timestamp(
                chrono::NaiveDate::from_ymd_opt(2026, 12, 4)
                    .unwrap()
                    .and_hms_micro_opt(10, 0, 1, 250)
                    .unwrap(),
            ),
        ];
        assert_eq!(parse(&kinds, &texts(&key)).unwrap(), key);
        // PostgreSQL's JSON spelling of a timestamp reads too.
        let json = [
            Some("Café $1".into()),
            Some("-4".into()),
            Some("2026-12-04T10:00:01.00025".into()),
        ];
        assert_eq!(parse(&kinds, &json).unwrap(), key);
        // Text by bytes: "Z" before "a", "a" before "é"; numbers as numbers.
        let k = |s: &str, n: i64| vec![Value::Text(s.into()), Value::Int(n)];
        assert_eq!(compare(&k("Z", 9), &k("a", 1)), Ordering::Less);
        assert_eq!(compare(&k("a", 9), &k("é", 1)), Ordering::Less);
        assert_eq!(compare(&k("a", 2), &k("a", 10)), Ordering::Less);
        assert_eq!(parse(&[Kind::Int], &[Some("x".into())]), None);
        assert!(!ordered(&[Kind::Text, Kind::Bytes]));
        assert!(ordered(&[Kind::Int]));
    }
}
