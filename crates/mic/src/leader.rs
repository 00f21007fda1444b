//! Leader election with a `coordination.k8s.io/v1` Lease (client-go's algorithm, hand-written).
//!
//! ```text
//!  every retry period:  GET lease ─▶ decide (pure) ─▶ Create    (absent: holder = me)
//!                                                 ├▶ Renew     (holder = me: PUT renewTime)
//!                                                 ├▶ TakeOver  (holder ≠ me, record unchanged for a
//!                                                 │             lease duration, or no holder: PUT)
//!                                                 └▶ Follow    (otherwise)
//!  a leader that has not renewed within the renew deadline steps down at once
//! ```
//!
//! Expiry is judged by when *this* replica last saw the record change, not by the timestamps in
//! it, so clock skew between replicas does not matter. Every write carries the resourceVersion it
//! read: of two replicas racing for an expired lease, exactly one wins. [`decide`] and
//! [`leading`] are pure; [`run`] does the I/O.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Resource};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Election settings (upstream: duration 15 s, renew deadline ½, retry period ¼).
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
}

impl Election {
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration / 2
    }
    pub fn retry_period(&self) -> Duration {
        (self.lease_duration / 4).max(Duration::from_millis(50))
    }
}

/// What the election reads from a Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub resource_version: String,
    /// Empty when nobody holds it.
    pub holder: String,
    /// The holder's lease duration (the election's own when the record has none).
    pub duration: Duration,
}

/// When this replica first saw the current version of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub resource_version: String,
    pub at: Instant,
}

/// What to do this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// No Lease: create it holding it.
    Create,
    /// This replica holds it: renew.
    Renew,
    /// Another holder has not renewed for a lease duration (or nobody holds it): take it.
    TakeOver,
    /// Another replica leads.
    Follow,
}

/// Decides one round from the record read at `now`; returns the step and what was seen.
pub fn decide(record: Option<&Record>, me: &str, seen: Option<&Seen>, now: Instant) -> (Step, Option<Seen>) {
    let Some(r) = record else { return (Step::Create, None) };
    let seen = match seen {
        Some(s) if s.resource_version == r.resource_version => s.clone(),
        _ => Seen { resource_version: r.resource_version.clone(), at: now },
    };
    let step = if r.holder == me {
        Step::Renew
    } else if r.holder.is_empty() || now.saturating_duration_since(seen.at) >= r.duration {
        Step::TakeOver
    } else {
        Step::Follow
    };
    (step, Some(seen))
}

/// Whether a replica that last renewed at `last_renew` still leads at `now`.
pub fn leading(last_renew: Option<Instant>, now: Instant, renew_deadline: Duration) -> bool {
    last_renew.is_some_and(|t| now.saturating_duration_since(t) < renew_deadline)
}

/// Runs the election forever; `leader` says whether this replica leads. `on_elected` is called
/// with the Lease each time it becomes leader.
pub async fn run(
    client: kube::Client,
    election: Election,
    leader: watch::Sender<bool>,
    on_elected: Arc<dyn Fn(ObjectReference) + Send + Sync>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut seen: Option<Seen> = None;
    let mut last_renew: Option<Instant> = None;
    let mut held: Option<ObjectReference> = None;
    loop {
        let started = Instant::now();
        match round(&api, &election, &mut seen).await {
            Ok(Some(lease)) => {
                last_renew = Some(started);
                held = Some(lease);
            }
            Ok(None) => {}
            Err(error) => warn!(%error, lease = election.name, "Leader election call failed"),
        }
        let now_leading = leading(last_renew, Instant::now(), election.renew_deadline());
        if now_leading != *leader.borrow() {
            if now_leading {
                info!(identity = election.identity, lease = election.name, "Became leader");
                on_elected(held.clone().unwrap_or_default());
            } else {
                warn!(identity = election.identity, lease = election.name, "Lost the leader lease");
            }
            leader.send_replace(now_leading);
        }
        tokio::time::sleep(election.retry_period()).await;
    }
}

fn read(lease: &Lease, election: &Election) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    Record {
        resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
        holder: spec.holder_identity.unwrap_or_default(),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(election.lease_duration, Duration::from_secs),
    }
}

fn spec(election: &Election, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(election.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(election.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
        ),
        acquire_time: Some(acquire.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// One round of I/O; the Lease if this replica holds it afterwards.
async fn round(
    api: &Api<Lease>,
    election: &Election,
    seen: &mut Option<Seen>,
) -> Result<Option<ObjectReference>, kube::Error> {
    let lease = api.get_opt(&election.name).await?;
    let record = lease.as_ref().map(|l| read(l, election));
    let (step, now_seen) = decide(record.as_ref(), &election.identity, seen.as_ref(), Instant::now());
    *seen = now_seen;
    let written = match (step, lease) {
        (Step::Follow, _) => return Ok(None),
        (Step::Create, _) | (_, None) => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(election.name.clone()), ..ObjectMeta::default() },
                spec: Some(spec(election, 0, None)),
            };
            api.create(&PostParams::default(), &lease).await
        }
        (step, Some(mut lease)) => {
            let old = lease.spec.clone().unwrap_or_default();
            let renew = step == Step::Renew;
            let transitions = old.lease_transitions.unwrap_or(0) + i32::from(!renew);
            lease.spec = Some(spec(election, transitions, if renew { old.acquire_time } else { None }));
            api.replace(&election.name, &PostParams::default(), &lease).await
        }
    };
    match written {
        Ok(lease) => Ok(Some(lease.object_ref(&()))),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    }
}
