//! When the controller acts: pure bookkeeping on tokio's clock (time is passed in), so the loop's
//! timing is unit-tested with paused time.
//!
//! ```text
//!  Batcher   change, no pass within the window ─▶ pass now            (leading edge)
//!            change within the window          ─▶ pass at last + window (the rest of a burst: one batch)
//!            a unit finished                   ─▶ pass now            (what waited for it: one batch)
//!  Retries   failure n of a key ─▶ not before now + backoff(n) (backon: base·2ⁿ⁻¹ ≤ max, + 0–100 % jitter),
//!            or ARM's Retry-After when later; success forgets the key
//!  Rechecks  a target reported drifting ─▶ visited now, or once its last re-check is min_interval old
//! ```
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use podid_core::scaleset::Target;
use tokio::time::Instant;

/// Leading-edge batching of reconcile passes.
#[derive(Debug)]
pub struct Batcher {
    window: Duration,
    /// Something changed since the last pass.
    dirty: bool,
    /// A unit finished since the last pass: pass at once.
    urgent: bool,
    last_pass: Option<Instant>,
}

impl Batcher {
    pub fn new(window: Duration) -> Self {
        Self { window, dirty: false, urgent: false, last_pass: None }
    }

    /// The index changed (or leadership, or a retry came due).
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// A unit of work finished: what waited for it goes out now.
    pub fn finished(&mut self) {
        self.dirty = true;
        self.urgent = true;
    }

    /// When the next pass is due; `None` when nothing changed.
    pub fn due(&self, now: Instant) -> Option<Instant> {
        if !self.dirty {
            return None;
        }
        match self.last_pass {
            Some(last) if !self.urgent => Some((last + self.window).max(now)),
            _ => Some(now),
        }
    }

    /// A pass ran at `now`.
    pub fn passed(&mut self, now: Instant) {
        self.dirty = false;
        self.urgent = false;
        self.last_pass = Some(now);
    }
}

/// Exponential backoff per key (a target, or a target and an identity ARM refused).
#[derive(Debug)]
pub struct Retries<K> {
    policy: ExponentialBuilder,
    keys: BTreeMap<K, Retry>,
}

#[derive(Debug)]
struct Retry {
    delays: ExponentialBackoff,
    attempts: u32,
    until: Instant,
}

impl<K: Ord + Clone> Retries<K> {
    /// First delay `base`, doubling up to `max`, each with up to 100 % random jitter added.
    pub fn new(base: Duration, max: Duration) -> Self {
        let policy = ExponentialBuilder::new()
            .with_min_delay(base)
            .with_max_delay(max.max(base))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self { policy, keys: BTreeMap::new() }
    }

    /// Records a failure at `now`; `at_least` is a retry time ARM asked for. Returns when the key
    /// may be tried again and how many failures in a row it has had.
    pub fn failed(&mut self, key: K, now: Instant, at_least: Option<Instant>) -> (Instant, u32) {
        let policy = self.policy;
        let r =
            self.keys.entry(key).or_insert_with(|| Retry { delays: policy.build(), attempts: 0, until: now });
        r.attempts += 1;
        let delay = r.delays.next().unwrap_or(Duration::from_secs(300));
        r.until = at_least.map_or(now + delay, |a| a.max(now + delay));
        (r.until, r.attempts)
    }

    /// Forgets a key after a success.
    pub fn succeeded(&mut self, key: &K) {
        self.keys.remove(key);
    }

    /// Keys not to be tried before their instant (those still in the future).
    pub fn waiting(&self, now: Instant) -> BTreeMap<K, Instant> {
        self.keys.iter().filter(|(_, r)| r.until > now).map(|(k, r)| (k.clone(), r.until)).collect()
    }

    /// Keeps only the keys `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, Instant) -> bool) {
        self.keys.retain(|k, r| keep(k, r.until));
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Re-checks of targets asked for by the agents (IMDS refused an identity the controller has as
/// `Assigned` there), at most one per target per `min_interval`.
#[derive(Debug)]
pub struct Rechecks {
    min_interval: Duration,
    wanted: BTreeSet<Target>,
    last: BTreeMap<Target, Instant>,
}

impl Rechecks {
    pub fn new(min_interval: Duration) -> Self {
        Self { min_interval, wanted: BTreeSet::new(), last: BTreeMap::new() }
    }

    /// An agent reported `target`.
    pub fn request(&mut self, target: Target) {
        self.wanted.insert(target);
    }

    /// Targets whose re-check may go out at `now`, and when the next waiting one may.
    pub fn due(&self, now: Instant) -> (BTreeSet<Target>, Option<Instant>) {
        let mut due = BTreeSet::new();
        let mut next: Option<Instant> = None;
        for t in &self.wanted {
            match self.last.get(t).map(|l| *l + self.min_interval) {
                Some(at) if at > now => next = Some(next.map_or(at, |n| n.min(at))),
                _ => {
                    due.insert(t.clone());
                }
            }
        }
        (due, next)
    }

    /// A visit of `target` started at `now` (any visit reads the target afresh).
    pub fn visited(&mut self, target: &Target, now: Instant) {
        if self.wanted.remove(target) {
            self.last.insert(target.clone(), now);
        }
        let horizon = self.min_interval;
        self.last.retain(|_, at| *at + horizon > now);
    }

    /// Targets waiting for a re-check.
    pub fn pending(&self) -> usize {
        self.wanted.len()
    }
}
