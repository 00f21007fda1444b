//! The reconcile loop: woken by index changes (coalesced over a short window), leadership,
//! finished units, due retries and the drift-check tick. As leader it decides a plan and hands
//! each unit to the executor as its own task; a unit's next work waits until its previous work
//! is done, so each scale set's changes are serialised while different ones proceed in parallel.
//!
//! Failures back off per target (ARM's Retry-After wins when longer); identities ARM refuses
//! back off per target and identity, so a bad identity costs one PATCH attempt per back-off
//! period instead of one per pass.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use podid_core::matching::MatchOptions;
use podid_core::scaleset::Target;
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tracing::{debug, info, warn};

use crate::execute::{Executor, Outcome};
use crate::index::SharedIndex;
use crate::plan::{Gates, Unit, decide};

/// Tunables of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub match_options: MatchOptions,
    /// How long to wait after a change for more changes before deciding.
    pub batch_window: Duration,
    /// Visit every target with assigned identities this often (`None`: never).
    pub drift_interval: Option<Duration>,
    /// First back-off of a failing target or refused identity; doubles up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            match_options: MatchOptions::default(),
            batch_window: Duration::from_millis(100),
            drift_interval: None,
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
        }
    }
}

#[derive(Default)]
struct Retry {
    attempts: u32,
    until: Option<Instant>,
}

fn backoff(s: &Settings, attempts: u32) -> Duration {
    let d = s.base_backoff.saturating_mul(2u32.saturating_pow(attempts.saturating_sub(1).min(20)));
    d.min(s.max_backoff).mul_f64(rand::random_range(0.8..=1.0))
}

/// The loop's memory between passes.
struct State {
    in_flight: BTreeSet<Unit>,
    targets: BTreeMap<Target, Retry>,
    identities: BTreeMap<(Target, String), Retry>,
    next_due: Option<Instant>,
    diagnostics: BTreeSet<String>,
    busy_since: Option<Instant>,
}

/// Runs until the process ends. `synced` tells whether every watch has listed once.
pub async fn run(
    index: Arc<SharedIndex>,
    executor: Executor,
    settings: Settings,
    mut leader: watch::Receiver<bool>,
    synced: Arc<dyn Fn() -> bool + Send + Sync>,
) {
    let mut revision = index.subscribe();
    // Unit tasks die with this loop (a killed controller leaves no work running).
    let mut running: JoinSet<Outcome> = JoinSet::new();
    let mut units: BTreeMap<Id, Unit> = BTreeMap::new();
    let mut st = State {
        in_flight: BTreeSet::new(),
        targets: BTreeMap::new(),
        identities: BTreeMap::new(),
        next_due: None,
        diagnostics: BTreeSet::new(),
        busy_since: None,
    };
    let mut drift_due = settings.drift_interval.map(|d| Instant::now() + d);
    let mut drift = false;
    loop {
        let due = [st.next_due, drift_due].into_iter().flatten().min();
        let sleep_due = async {
            match due {
                Some(t) => tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = revision.changed() => {
                if r.is_err() {
                    return;
                }
                tokio::time::sleep(settings.batch_window).await;
            }
            r = leader.changed() => {
                if r.is_err() {
                    return;
                }
            }
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let outcome = match done {
                    Ok((id, outcome)) => {
                        units.remove(&id);
                        outcome
                    }
                    Err(e) => {
                        warn!(error = %e, "A unit of work panicked");
                        let unit = units.remove(&e.id());
                        Outcome { unit: unit.unwrap_or(Unit::Direct), failed: Some(None), refused: Vec::new() }
                    }
                };
                settle(&mut st, &settings, outcome, &executor);
            }
            () = sleep_due => {}
        }
        if let Some(t) = drift_due
            && t <= Instant::now()
        {
            drift = true;
            drift_due = settings.drift_interval.map(|d| Instant::now() + d);
        }
        revision.borrow_and_update();
        if !*leader.borrow() || !synced() {
            continue;
        }
        pass(&index, &executor, &settings, &mut st, drift, &mut running, &mut units);
        drift = false;
    }
}

fn pass(
    index: &SharedIndex,
    executor: &Executor,
    settings: &Settings,
    st: &mut State,
    drift: bool,
    running: &mut JoinSet<Outcome>,
    units: &mut BTreeMap<Id, Unit>,
) {
    let now = Instant::now();
    let snap = index.snapshot();
    let gates = Gates {
        in_flight: st.in_flight.clone(),
        target_retry: st.targets.iter().filter_map(|(t, r)| r.until.map(|u| (t.clone(), u))).collect(),
        identity_retry: st.identities.iter().filter_map(|(k, r)| r.until.map(|u| (k.clone(), u))).collect(),
        drift_check: drift,
    };
    let plan = decide(&snap, settings.match_options, &gates, now);
    let diagnostics: BTreeSet<String> = plan.diagnostics.iter().map(ToString::to_string).collect();
    for d in diagnostics.difference(&st.diagnostics) {
        warn!(diagnostic = %d, "Skipped while matching");
    }
    st.diagnostics = diagnostics;
    st.next_due = plan.next_due;
    executor
        .metrics
        .queue_depth
        .set(i64::try_from(plan.units.len() + st.in_flight.len() + plan.deferred).unwrap_or(i64::MAX));
    if plan.units.is_empty() {
        return;
    }
    debug!(units = plan.units.len(), deferred = plan.deferred, drift, "Starting work");
    st.busy_since.get_or_insert(now);
    let seen = Arc::new(snap.eligible_since);
    for (unit, work) in plan.units {
        st.in_flight.insert(unit.clone());
        let (exec, seen, key) = (executor.clone(), seen.clone(), unit.clone());
        let handle = running.spawn(async move { exec.run(unit, work, seen).await });
        units.insert(handle.id(), key);
    }
}

fn settle(st: &mut State, settings: &Settings, outcome: Outcome, executor: &Executor) {
    let now = Instant::now();
    st.in_flight.remove(&outcome.unit);
    if st.in_flight.is_empty()
        && let Some(since) = st.busy_since.take()
    {
        executor.metrics.cycle(since.elapsed());
    }
    let Unit::Target(t) = outcome.unit else { return };
    match outcome.failed {
        Some(arm_until) => {
            let r = st.targets.entry(t.clone()).or_default();
            r.attempts += 1;
            let mut until = now + backoff(settings, r.attempts);
            if let Some(a) = arm_until {
                until = until.max(a.into_std());
            }
            info!(target = %t, attempts = r.attempts, retry_in = ?until.saturating_duration_since(now), "Target backing off");
            r.until = Some(until);
        }
        None => {
            st.targets.remove(&t);
        }
    }
    let refused: BTreeSet<&String> = outcome.refused.iter().map(|(k, _)| k).collect();
    st.identities.retain(|(rt, k), r| *rt != t || refused.contains(k) || r.until.is_some_and(|u| u > now));
    for k in refused {
        let r = st.identities.entry((t.clone(), k.clone())).or_default();
        r.attempts += 1;
        r.until = Some(now + backoff(settings, r.attempts));
    }
}
