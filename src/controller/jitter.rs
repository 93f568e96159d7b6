//! Spreads periodic rechecks, so that a thousand objects created together do not all come
//! back in the same second.

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

/// `wait` plus up to a tenth of it, different for each `key` and each call.
pub fn spread(wait: Duration, key: &impl Hash) -> Duration {
    let tenth = wait.as_millis() as u64 / 10;
    if tenth == 0 {
        return wait;
    }
    let random = std::collections::hash_map::RandomState::new().hash_one(key);
    wait + Duration::from_millis(random % tenth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_a_tenth_and_varies() {
        let wait = Duration::from_secs(60);
        let waits: std::collections::BTreeSet<Duration> =
            (0..50).map(|i| spread(wait, &i)).collect();
        assert!(waits.iter().all(|w| *w >= wait && *w < wait + wait / 10));
        assert!(waits.len() > 10, "{waits:?}");
        assert_eq!(
            spread(Duration::from_millis(5), &1),
            Duration::from_millis(5)
        );
    }
}
