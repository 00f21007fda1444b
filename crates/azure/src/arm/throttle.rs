//! The client-side throttle gate: after ARM answers 429 (or any error carrying `Retry-After`),
//! no request goes to that subscription before the instant ARM named.
//!
//! ```text
//!   429 + Retry-After: 30 at t ─▶ gate[sub] = t + 30 s
//!   call at t + 5 s            ─▶ Error::Throttled { until: t + 30 s }   (nothing sent)
//!   call at t + 30 s           ─▶ sent
//! ```
//!
//! Time is `tokio::time::Instant`, so tests can pause and advance it.
use std::collections::HashMap;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Per-subscription "not before" instants. Subscription ids are compared case-insensitively.
#[derive(Debug, Default)]
pub struct Throttle {
    until: Mutex<HashMap<String, Instant>>,
}

impl Throttle {
    /// `Err(until)` while calls to `subscription` must wait.
    pub fn check(&self, subscription: &str) -> Result<(), Instant> {
        let now = Instant::now();
        let mut map = self.until.lock();
        let key = subscription.to_ascii_lowercase();
        match map.get(&key) {
            Some(until) if *until > now => Err(*until),
            Some(_) => {
                map.remove(&key);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Blocks `subscription` until `until` (a later block already in place is kept).
    pub fn block(&self, subscription: &str, until: Instant) {
        let mut map = self.until.lock();
        let entry = map.entry(subscription.to_ascii_lowercase()).or_insert(until);
        if *entry < until {
            *entry = until;
        }
    }

    /// When calls to `subscription` may resume, if they are blocked now.
    pub fn blocked_until(&self, subscription: &str) -> Option<Instant> {
        self.check(subscription).err()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn blocks_until_the_instant_then_lets_calls_through() {
        let t = Throttle::default();
        let until = Instant::now() + Duration::from_secs(30);
        t.block("SUB-1", until);
        assert_eq!(t.check("sub-1"), Err(until));
        assert_eq!(t.check("sub-2"), Ok(()));
        t.block("sub-1", Instant::now() + Duration::from_secs(5));
        assert_eq!(t.blocked_until("sub-1"), Some(until), "an earlier instant does not shorten the block");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(t.check("sub-1").is_err());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(t.check("sub-1"), Ok(()));
    }
}
