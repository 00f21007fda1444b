//! Leader election with a `coordination.k8s.io/v1` Lease (client-go's algorithm, hand-written).
//!
//! ```text
//!  every retry period:  GET lease ── absent ──▶ create (holder = me)            ─▶ leader
//!                          │ holder = me ──▶ PUT renewTime (resourceVersion)    ─▶ leader
//!                          │ holder ≠ me, record unchanged for a lease duration ─▶ PUT take over
//!                          └ otherwise                                          ─▶ follower
//!  a leader that has not renewed within the renew deadline steps down at once
//! ```
//!
//! Expiry is judged by when *this* replica last saw the record change, not by the timestamps in
//! it, so clock skew between replicas does not matter. Every write carries the resourceVersion it
//! read: of two replicas racing for an expired lease, exactly one wins.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
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
    fn renew_deadline(&self) -> Duration {
        self.lease_duration / 2
    }
    fn retry_period(&self) -> Duration {
        (self.lease_duration / 4).max(Duration::from_millis(50))
    }
}

/// Runs the election forever; `leader` says whether this replica leads. `on_elected` is called
/// each time it becomes leader.
pub async fn run(
    client: kube::Client,
    election: Election,
    leader: watch::Sender<bool>,
    on_elected: Arc<dyn Fn() + Send + Sync>,
) {
    let api: Api<Lease> = Api::namespaced(client, &election.namespace);
    let mut observed: Option<(String, Instant)> = None; // (resourceVersion, when first seen)
    let mut last_renew: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let won = match step(&api, &election, &mut observed).await {
            Ok(won) => won,
            Err(error) => {
                warn!(%error, lease = election.name, "Leader election call failed");
                false
            }
        };
        if won {
            last_renew = Some(now);
        }
        let leading = last_renew.is_some_and(|t| t.elapsed() < election.renew_deadline());
        let was = *leader.borrow();
        if leading != was {
            if leading {
                info!(identity = election.identity, lease = election.name, "Became leader");
                on_elected();
            } else {
                warn!(identity = election.identity, lease = election.name, "Lost the leader lease");
            }
            leader.send_replace(leading);
        }
        tokio::time::sleep(election.retry_period()).await;
    }
}

fn record(election: &Election, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
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

/// One round; true if this replica holds the lease afterwards.
async fn step(
    api: &Api<Lease>,
    election: &Election,
    observed: &mut Option<(String, Instant)>,
) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&election.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta { name: Some(election.name.clone()), ..ObjectMeta::default() },
            spec: Some(record(election, 0, None)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let rv = lease.metadata.resource_version.clone().unwrap_or_default();
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let mine = holder == election.identity;
    let seen_at = match observed {
        Some((v, at)) if *v == rv => *at,
        _ => {
            *observed = Some((rv.clone(), Instant::now()));
            Instant::now()
        }
    };
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map_or(election.lease_duration, Duration::from_secs);
    let expired = holder.is_empty() || seen_at.elapsed() >= duration;
    if !mine && !expired {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquire = if mine { spec.acquire_time.clone() } else { None };
    lease.spec = Some(record(election, transitions, acquire));
    match api.replace(&election.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}
