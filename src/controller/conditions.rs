//! Status conditions: set one by type, keeping its transition time while its status holds.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// Sets the condition of `type_` in `list`. The transition time moves only when the status
/// changes.
pub fn set(
    list: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    set_status(list, type_, status, reason, message.into(), generation, now)
}

/// As `set`, with the status as text: `True`, `False` or `Unknown`.
fn set_status(
    list: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = status.to_string();
    let since = list
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| crate::clock::time(now));
    list.retain(|c| c.type_ != type_);
    list.push(Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: since,
    });
    list.sort_by(|a, b| a.type_.cmp(&b.type_));
}

/// The conditions of one object as seen at one moment: its generation, and the time.
#[derive(Clone, Copy, Debug)]
pub struct At {
    pub generation: Option<i64>,
    pub now: DateTime<Utc>,
}

impl At {
    /// Sets the condition of `type_` in `list`, as `set` does.
    pub fn set(
        &self,
        list: &mut Vec<Condition>,
        type_: &str,
        ok: bool,
        reason: &str,
        message: String,
    ) {
        set(list, type_, ok, reason, message, self.generation, self.now)
    }

    /// Sets the condition of `type_` to Unknown: not decided yet.
    pub fn unknown(&self, list: &mut Vec<Condition>, type_: &str, reason: &str, message: String) {
        set_status(
            list,
            type_,
            "Unknown",
            reason,
            message,
            self.generation,
            self.now,
        )
    }
}

/// Whether a one-shot request (CloudReset, RuntimeKeyRotation) has ended, for good: its
/// `Succeeded` condition is True or False.
pub fn ended(list: &[Condition]) -> bool {
    list.iter()
        .any(|c| c.type_ == "Succeeded" && c.status != "Unknown")
}

/// The status of the condition of `type_`: Some(true) for True.
pub fn is_true(list: &[Condition], type_: &str) -> Option<bool> {
    list.iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn transition_time_moves_only_with_the_status() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        let mut list = vec![];
        set(&mut list, "Ready", true, "Valid", "ok", Some(1), t0);
        set(&mut list, "Ready", true, "Valid", "still ok", Some(2), t1);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, crate::clock::time(t0));
        assert_eq!(list[0].message, "still ok");
        set(
            &mut list,
            "Ready",
            false,
            "InvalidSchedule",
            "bad",
            Some(3),
            t1,
        );
        assert_eq!(list[0].last_transition_time, crate::clock::time(t1));
        assert_eq!(is_true(&list, "Ready"), Some(false));
    }
}
