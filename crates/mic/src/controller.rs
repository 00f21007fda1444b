//! The reconcile loop: woken by index changes, leadership, finished units, due retries, agents'
//! re-check requests and the drift-check tick. As leader it decides a plan and hands each unit to
//! the executor as its own task; a unit's next work waits until its previous work is done, so
//! each scale set's changes are serialised while different ones proceed in parallel.
//!
//! Batching is leading-edge ([`schedule::Batcher`]): a change after a quiet spell is acted on at
//! once; the rest of a burst goes out one batch window later, and whatever arrived while a unit
//! was in flight goes into its next run. Failures back off per unit (ARM's Retry-After wins when
//! longer); identities ARM refuses back off per target and identity, and assigned identities
//! whose write failed back off on their own, so one bad object costs one attempt per back-off
//! period and never holds up the others. Everything runs on tokio's clock.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use podid_core::matching::MatchOptions;
use podid_core::scaleset::Target;
use podid_core::{Diagnostic, PodKey};
use tokio::sync::watch;
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::events::{self, regarding};
use crate::execute::{Executor, Outcome};
use crate::index::{SharedIndex, Snapshot};
use crate::plan::{Gates, Unit, Visits, decide};
use crate::schedule::{Batcher, Rechecks, Retries};

/// Tunables of the loop.
#[derive(Clone, Debug)]
pub struct Settings {
    pub match_options: MatchOptions,
    /// After a pass, how long further changes are gathered before the next one.
    pub batch_window: Duration,
    /// Visit every target with assigned identities this often (`None`: never).
    pub drift_interval: Option<Duration>,
    /// First back-off of a failing unit, refused identity or failed object write; doubles up to
    /// `max_backoff` (plus jitter).
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Re-checks agents ask for: at most one per target this often.
    pub recheck_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            match_options: MatchOptions::default(),
            batch_window: Duration::from_millis(100),
            drift_interval: None,
            base_backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(300),
            recheck_interval: Duration::from_secs(10),
        }
    }
}

/// The loop's memory between passes.
struct State {
    settings: Settings,
    batch: Batcher,
    in_flight: BTreeSet<Unit>,
    units: Retries<Unit>,
    identities: Retries<(Target, String)>,
    objects: Retries<PodKey>,
    rechecks: Rechecks,
    drift_due: Option<Instant>,
    drift: bool,
    next_due: Option<Instant>,
    diagnostics: BTreeSet<String>,
    busy_since: Option<Instant>,
}

impl State {
    fn new(settings: Settings, now: Instant) -> Self {
        let (base, max) = (settings.base_backoff, settings.max_backoff);
        Self {
            batch: Batcher::new(settings.batch_window),
            in_flight: BTreeSet::new(),
            units: Retries::new(base, max),
            identities: Retries::new(base, max),
            objects: Retries::new(base, max),
            rechecks: Rechecks::new(settings.recheck_interval),
            drift_due: settings.drift_interval.map(|d| now + d),
            drift: false,
            next_due: None,
            diagnostics: BTreeSet::new(),
            busy_since: None,
            settings,
        }
    }

    /// The next instant the loop must wake by itself.
    fn wake_at(&self, now: Instant) -> Option<Instant> {
        [self.batch.due(now), self.next_due, self.drift_due].into_iter().flatten().min()
    }
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
    let mut st = State::new(settings, Instant::now());
    loop {
        let wake = st.wake_at(Instant::now());
        let sleep = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = revision.changed() => {
                if r.is_err() {
                    return;
                }
                st.batch.changed();
            }
            r = leader.changed() => {
                if r.is_err() {
                    return;
                }
                st.batch.changed();
            }
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let outcome = match done {
                    Ok((id, outcome)) => {
                        units.remove(&id);
                        outcome
                    }
                    Err(e) => {
                        warn!(error = %e, "A unit of work panicked");
                        Executor::panicked(units.remove(&e.id()).unwrap_or(Unit::Direct))
                    }
                };
                settle(&mut st, outcome, &executor, Instant::now());
            }
            () = sleep => {}
        }
        let now = Instant::now();
        if st.next_due.is_some_and(|t| t <= now) {
            st.next_due = None;
            st.batch.changed();
        }
        if st.drift_due.is_some_and(|t| t <= now) {
            st.drift = true;
            st.drift_due = st.settings.drift_interval.map(|d| now + d);
            st.batch.changed();
        }
        if st.batch.due(now).is_none_or(|t| t > now) {
            continue;
        }
        revision.borrow_and_update();
        if !*leader.borrow() {
            st.batch.passed(now);
            continue;
        }
        if !synced() {
            // The last listing wakes the loop, but may land a moment before its flag: look again.
            st.next_due = Some(now + Duration::from_millis(50));
            continue;
        }
        st.batch.passed(now);
        pass(&index, &executor, &mut st, now, &mut running, &mut units);
    }
}

fn pass(
    index: &SharedIndex,
    executor: &Executor,
    st: &mut State,
    now: Instant,
    running: &mut JoinSet<Outcome>,
    units: &mut BTreeMap<Id, Unit>,
) {
    let snap = index.snapshot();
    for t in index.quietly(|i| i.take_rechecks()) {
        executor.metrics.drift_reports.inc();
        st.rechecks.request(t);
    }
    let (recheck, recheck_due) = st.rechecks.due(now);
    let asked = recheck.clone();
    let visits = Visits { all_needed: std::mem::take(&mut st.drift), targets: recheck };
    let gates = Gates {
        in_flight: st.in_flight.clone(),
        unit_retry: st.units.waiting(now),
        identity_retry: st.identities.waiting(now),
        object_retry: st.objects.waiting(now),
    };
    let plan = decide(&snap, st.settings.match_options, &visits, &gates, now);
    report_diagnostics(st, &plan.diagnostics, &snap, executor);
    st.next_due = [plan.next_due, recheck_due].into_iter().flatten().min();
    let waiting = plan.units.len() + st.in_flight.len() + plan.deferred + st.rechecks.pending();
    executor.metrics.queue_depth.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    if plan.units.is_empty() {
        return;
    }
    debug!(units = plan.units.len(), deferred = plan.deferred, drift = visits.all_needed, "Starting work");
    st.busy_since.get_or_insert(now);
    let seen = Arc::new(snap.eligible_since);
    for (unit, work) in plan.units {
        if let Unit::Target(t) = &unit {
            if asked.contains(t) {
                executor.metrics.rechecks.inc();
            }
            st.rechecks.visited(t, now);
        }
        st.in_flight.insert(unit.clone());
        let (exec, seen, key) = (executor.clone(), seen.clone(), unit.clone());
        let handle = running.spawn(async move { exec.run(unit, work, seen).await });
        units.insert(handle.id(), key);
    }
}

/// Logs diagnostics that are new since the last pass, and puts a Warning Event on the object of
/// each one a user can fix (an unusable identity, a binding naming no identity).
fn report_diagnostics(st: &mut State, diagnostics: &[Diagnostic], snap: &Snapshot, executor: &Executor) {
    let now: BTreeSet<String> = diagnostics.iter().map(ToString::to_string).collect();
    for d in diagnostics.iter().filter(|d| !st.diagnostics.contains(&d.to_string())) {
        warn!(diagnostic = %d, "Skipped while matching");
        let (reason, on) = match d {
            Diagnostic::InvalidIdentity { identity, .. } => {
                let found =
                    snap.identities.iter().find(|i| podid_core::matching::object_key(*i) == *identity);
                (events::INVALID_IDENTITY, found.map(regarding))
            }
            Diagnostic::IdentityNotFound { binding, .. } => {
                let found = snap.bindings.iter().find(|b| podid_core::matching::object_key(*b) == *binding);
                (events::IDENTITY_NOT_FOUND, found.map(regarding))
            }
            _ => continue,
        };
        if let Some(on) = on {
            let (events, note) = (executor.events.clone(), d.to_string());
            tokio::spawn(async move { events.publish(true, reason, note, &[on]).await });
        }
    }
    st.diagnostics = now;
}

fn settle(st: &mut State, outcome: Outcome, executor: &Executor, now: Instant) {
    st.in_flight.remove(&outcome.unit);
    st.batch.finished();
    if st.in_flight.is_empty()
        && let Some(since) = st.busy_since.take()
    {
        executor.metrics.cycle(now.saturating_duration_since(since));
    }
    for key in &outcome.done_objects {
        st.objects.succeeded(key);
    }
    // Objects that stopped failing because they went away are forgotten a backoff period later.
    let horizon = st.settings.max_backoff;
    st.objects.retain(|_, until| until + horizon > now);
    for key in outcome.failed_objects {
        st.objects.failed(key, now, None);
    }
    let unit = outcome.unit;
    match &outcome.result {
        Err(e) => {
            let (until, attempts) = st.units.failed(unit.clone(), now, e.retry_at());
            info!(unit = ?unit, error = %e, attempts, retry_in = ?until.saturating_duration_since(now), "Backing off");
        }
        Ok(()) => st.units.succeeded(&unit),
    }
    let Unit::Target(t) = unit else { return };
    let refused: BTreeSet<&String> = outcome.refused.iter().map(|(k, _)| k).collect();
    // Identities of this target that were not refused again are forgotten once they are due.
    st.identities.retain(|(rt, k), until| *rt != t || refused.contains(k) || until > now);
    for k in refused {
        st.identities.failed((t.clone(), k.clone()), now, None);
    }
}
