//! Times between chrono (cron and time zone math) and the API's `Time` (a jiff timestamp).

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A chrono time as the API's `Time`.
pub fn time(t: DateTime<Utc>) -> Time {
    // Every chrono UTC time within jiff's range (years -9999 to 9999) converts; the epoch
    // stands in for one outside it, which no schedule produces.
    Time(Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32).unwrap_or_default())
}

/// The API's `Time` as a chrono time.
pub fn utc(t: &Time) -> DateTime<Utc> {
    utc_of(&t.0)
}

/// The timestamp inside the API's `Time` and `MicroTime` as a chrono time.
pub fn utc_of(t: &Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp(t.as_second(), t.subsec_nanosecond().max(0) as u32).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn round_trips() {
        let t = Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 15).unwrap()
            + chrono::Duration::nanoseconds(123_456_789);
        assert_eq!(utc(&time(t)), t);
    }
}
