//! When a schedule's runs are due: its 5-field cron expression, read in its IANA time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed cron expression in a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    cron: Cron,
    tz: Tz,
}

/// Why a schedule's timing is not usable: the reason for its `Ready=False` condition, and a
/// message that names the fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimingProblem {
    pub reason: &'static str,
    pub message: String,
}

impl CronSchedule {
    /// Parses the expression (exactly five fields: minute, hour, day of month, month, day of
    /// week) and the time zone.
    pub fn parse(expr: &str, time_zone: &str) -> Result<Self, TimingProblem> {
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(TimingProblem {
                reason: "InvalidSchedule",
                message: format!(
                    "spec.schedule {expr:?} has {fields} fields; it needs 5: minute hour \
                     day-of-month month day-of-week, for example \"0 2 * * *\" for 02:00 every day"
                ),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| TimingProblem {
                reason: "InvalidSchedule",
                message: format!(
                    "spec.schedule {expr:?} is not a valid cron expression: {e}; write 5 fields, \
                     minute hour day-of-month month day-of-week, for example \"30 1 * * 1-5\""
                ),
            })?;
        let tz: Tz = time_zone.parse().map_err(|_| TimingProblem {
            reason: "InvalidTimeZone",
            message: format!(
                "spec.timeZone {time_zone:?} is not an IANA time zone; use a name such as \
                 \"Europe/Berlin\", \"America/New_York\" or \"UTC\""
            ),
        })?;
        Ok(Self { cron, tz })
    }

    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// The first due time strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The latest due time in `(after, upto]`, if any: the one run to start after downtime.
    pub fn latest_due(&self, after: DateTime<Utc>, upto: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let latest = self
            .cron
            .find_previous_occurrence(&upto.with_timezone(&self.tz), true)
            .ok()?
            .with_timezone(&Utc);
        (latest > after).then_some(latest)
    }

    /// A time written in the schedule's zone, RFC 3339.
    pub fn local(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz).to_rfc3339()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn rejects_wrong_field_counts_and_bad_values() {
        for bad in [
            "* * * *",
            "0 0 2 * * *",
            "61 * * * *",
            "0 25 * * *",
            "every day",
            "",
        ] {
            let e = CronSchedule::parse(bad, "UTC").unwrap_err();
            assert_eq!(e.reason, "InvalidSchedule", "{bad}");
            assert!(e.message.contains("minute hour"), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn rejects_unknown_time_zones() {
        let e = CronSchedule::parse("0 2 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(e.reason, "InvalidTimeZone");
        assert!(e.message.contains("Europe/Berlin"));
    }

    #[test]
    fn next_time_is_read_in_the_time_zone() {
        let s = CronSchedule::parse("0 2 * * *", "Europe/Berlin").unwrap();
        // 02:00 in Berlin in winter is 01:00 UTC.
        assert_eq!(
            s.next_after(utc(2026, 1, 10, 12, 0)),
            Some(utc(2026, 1, 11, 1, 0))
        );
        assert_eq!(s.local(utc(2026, 1, 11, 1, 0)), "2026-01-11T02:00:00+01:00");
    }

    #[test]
    fn a_time_in_the_spring_gap_runs_once_right_after_it() {
        // Berlin skips 02:00-03:00 on 2026-03-29: the 02:30 run happens at 03:00 CEST.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let next = s.next_after(utc(2026, 3, 28, 23, 0)).unwrap();
        assert_eq!(next, utc(2026, 3, 29, 1, 0));
        // And the day after it is back at 02:30 CEST.
        assert_eq!(s.next_after(next), Some(utc(2026, 3, 30, 0, 30)));
    }

    #[test]
    fn a_time_in_the_autumn_overlap_runs_once() {
        // Berlin has 02:00-03:00 twice on 2026-10-25; a 02:30 run happens only once.
        let s = CronSchedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let first = s.next_after(utc(2026, 10, 24, 22, 0)).unwrap();
        assert_eq!(first, utc(2026, 10, 25, 0, 30)); // 02:30 CEST
        let second = s.next_after(first).unwrap();
        assert_eq!(second, utc(2026, 10, 26, 1, 30)); // the next day, 02:30 CET
    }

    #[test]
    fn month_ends_and_leap_days() {
        let s = CronSchedule::parse("0 3 31 * *", "UTC").unwrap();
        // From the end of January the next 31st is in March.
        assert_eq!(
            s.next_after(utc(2026, 1, 31, 4, 0)),
            Some(utc(2026, 3, 31, 3, 0))
        );
        let leap = CronSchedule::parse("0 0 29 2 *", "UTC").unwrap();
        assert_eq!(
            leap.next_after(utc(2026, 3, 1, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0))
        );
    }

    #[test]
    fn the_latest_due_time_after_downtime() {
        let s = CronSchedule::parse("0 * * * *", "UTC").unwrap();
        // Down from 10:30 to 14:10: four due times were missed, only 14:00 counts.
        assert_eq!(
            s.latest_due(utc(2026, 5, 1, 10, 30), utc(2026, 5, 1, 14, 10)),
            Some(utc(2026, 5, 1, 14, 0))
        );
        // Nothing due in between.
        assert_eq!(
            s.latest_due(utc(2026, 5, 1, 14, 0), utc(2026, 5, 1, 14, 59)),
            None
        );
        // Due exactly now.
        assert_eq!(
            s.latest_due(utc(2026, 5, 1, 14, 0), utc(2026, 5, 1, 15, 0)),
            Some(utc(2026, 5, 1, 15, 0))
        );
    }
}
