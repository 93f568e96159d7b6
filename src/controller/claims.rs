//! The target databases that the runs this process started write, claimed in memory at the
//! moment each run starts, so that a second run of the same target cannot start while the
//! caches have not caught up with the first one's start (`admission` asks here last).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

/// The targets that runs started by this process write, by target identity: the run
/// (`namespace/name`) and its uid. A claim holds while the caches show that run and it has
/// not ended.
#[derive(Default)]
pub struct Claims {
    by_target: Mutex<HashMap<String, (String, String)>>,
}

impl Claims {
    /// Claims `target` for the run `name` (uid `uid`). Fails with the run that holds it, when
    /// another run does and `holds(name, uid)` says it still does.
    pub fn claim(
        &self,
        target: &str,
        (name, uid): (&str, &str),
        holds: impl Fn(&str, &str) -> bool,
    ) -> Result<(), String> {
        let mut claims = self
            .by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((holder, holder_uid)) = claims.get(target)
            && holder_uid != uid
            && holds(holder, holder_uid)
        {
            return Err(holder.clone());
        }
        claims.insert(target.to_string(), (name.to_string(), uid.to_string()));
        Ok(())
    }

    /// Lets go of what the run with `uid` claimed.
    pub fn release(&self, uid: &str) {
        self.by_target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (_, holder)| holder != uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_holds_until_its_run_is_gone_or_ended() {
        let claims = Claims::default();
        assert!(claims.claim("pg:db", ("shop/a", "1"), |_, _| true).is_ok());
        // The same run again: still its own.
        assert!(claims.claim("pg:db", ("shop/a", "1"), |_, _| true).is_ok());
        assert_eq!(
            claims.claim("pg:db", ("shop/b", "2"), |_, _| true),
            Err("shop/a".to_string())
        );
        // Another target is free.
        assert!(
            claims
                .claim("pg:other", ("shop/b", "2"), |_, _| true)
                .is_ok()
        );
        // The holder ended (or was deleted): the claim passes on.
        assert!(claims.claim("pg:db", ("shop/b", "2"), |_, _| false).is_ok());
        claims.release("2");
        assert!(claims.claim("pg:db", ("shop/c", "3"), |_, _| true).is_ok());
    }
}
