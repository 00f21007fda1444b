//! Drift reports. In standard mode the agent only asks IMDS for an identity whose assigned
//! identity is `Assigned`; IMDS answering "Identity not found" then means the identity is no
//! longer on the node's scale set or VM (removed behind podid's back). The agent records that as
//! a Warning Event on the AzureAssignedIdentity; the controller watches Events with this reason
//! and re-checks that scale set at once, so drift is found without polling ARM.
//!
//! ```text
//!  token path: IMDS refused client id C for pod P ─▶ Reporter::observe (cheap, never blocks)
//!     standard mode · "identity not found" · P's assigned identity for C is Assigned
//!     · C not reported in the last MIN_INTERVAL (at most CAPACITY client ids remembered)
//!  ─▶ background task: create Event {reason IdentityNotOnNode, regarding the AAI, related P}
//! ```
//!
//! A pod controls nothing here but which of its own assigned identities it asks for: reports are
//! bounded per client id and in memory, and a failed write is only logged.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use podid_api::k8s_openapi::api::core::v1::ObjectReference;
use podid_api::k8s_openapi::api::events::v1::Event;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use podid_api::k8s_openapi::jiff::Timestamp;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_core::PodKey;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::state::{AgentState, Mode};
use crate::token::{TokenError, TokenSource};

/// The Event reason the controller watches for (`podid_mic::index::DRIFT_REASON`).
pub const REASON: &str = "IdentityNotOnNode";
/// At most one report per client id this often.
pub const MIN_INTERVAL: Duration = Duration::from_secs(30);
/// Most client ids remembered for rate limiting; the oldest go first.
pub const CAPACITY: usize = 256;

/// Reports drift; the default reports nothing (tests, benches, non-standard modes).
#[derive(Clone, Default)]
pub struct Reporter {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    client: kube::Client,
    node: String,
    last: Mutex<HashMap<String, Instant>>,
}

impl Reporter {
    pub fn new(client: kube::Client, node: &str) -> Self {
        Self { inner: Some(Arc::new(Inner { client, node: node.into(), last: Mutex::default() })) }
    }

    /// Called where a token fetch failed: reports drift if this is IMDS refusing an identity the
    /// controller has as `Assigned` for `pod` on this node.
    pub fn observe(&self, state: &AgentState, pod: &PodKey, source: &TokenSource, error: &TokenError) {
        let Some(inner) = &self.inner else { return };
        let (TokenSource::Imds { client_id: Some(client_id) }, TokenError::Refused(message)) =
            (source, error)
        else {
            return;
        };
        if state.config.mode != Mode::Standard || !message.to_ascii_lowercase().contains("identity not found")
        {
            return;
        }
        let aai = {
            let index = state.shared.read();
            let found = index.assigned_for(pod).find(|a| {
                a.state() == AssignedState::Assigned
                    && a.spec
                        .azure_identity_ref
                        .as_ref()
                        .is_some_and(|i| i.spec.client_id.eq_ignore_ascii_case(client_id))
            });
            found.cloned().map(|a| (a, index.pod_uid(pod).map(str::to_string)))
        };
        let Some((aai, pod_uid)) = aai else { return };
        if !should_report(&mut inner.last.lock(), client_id, Instant::now(), MIN_INTERVAL, CAPACITY) {
            return;
        }
        let event = event_for(&aai, pod, pod_uid, &inner.node, client_id, message, Timestamp::now());
        let inner = inner.clone();
        tokio::spawn(async move {
            let namespace = aai.metadata.namespace.clone().unwrap_or_else(|| "default".into());
            let api: kube::Api<Event> = kube::Api::namespaced(inner.client.clone(), &namespace);
            match api.create(&Default::default(), &event).await {
                Ok(_) => {
                    info!(node = inner.node, aai = ?aai.metadata.name, "Reported an identity missing from the node")
                }
                Err(error) => warn!(%error, "Cannot report an identity missing from the node"),
            }
        });
    }
}

/// Whether `client_id` may be reported at `now` (and remembers it if so).
pub fn should_report(
    last: &mut HashMap<String, Instant>,
    client_id: &str,
    now: Instant,
    interval: Duration,
    capacity: usize,
) -> bool {
    let key = client_id.to_ascii_lowercase();
    if last.get(&key).is_some_and(|at| now.saturating_duration_since(*at) < interval) {
        return false;
    }
    if last.len() >= capacity && !last.contains_key(&key) {
        last.retain(|_, at| now.saturating_duration_since(*at) < interval);
        while last.len() >= capacity {
            let oldest = last.iter().min_by_key(|(_, at)| **at).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => last.remove(&k),
                None => break,
            };
        }
    }
    last.insert(key, now);
    true
}

/// The Event of one report.
pub fn event_for(
    aai: &AzureAssignedIdentity,
    pod: &PodKey,
    pod_uid: Option<String>,
    node: &str,
    client_id: &str,
    imds_said: &str,
    now: Timestamp,
) -> Event {
    use kube::Resource;
    let name = aai.metadata.name.clone().unwrap_or_default();
    let prefix: String = name.chars().take(200).collect();
    let note = format!(
        "IMDS on node {node} refused identity {client_id} for pod {pod}, although its AzureAssignedIdentity is \
         Assigned (IMDS said: {imds_said}); the controller re-checks the node's scale set or VM"
    );
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{prefix}.{:x}", now.as_nanosecond())),
            namespace: aai.metadata.namespace.clone(),
            ..ObjectMeta::default()
        },
        action: Some("GetToken".into()),
        reason: Some(REASON.into()),
        note: Some(note.chars().take(1000).collect()),
        type_: Some("Warning".into()),
        event_time: Some(MicroTime(now)),
        regarding: Some(aai.object_ref(&())),
        related: Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            uid: pod_uid,
            ..ObjectReference::default()
        }),
        reporting_controller: Some("aadpodidentity.k8s.io/podid-nmi".into()),
        reporting_instance: Some(node.chars().take(128).collect()),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_id_is_reported_at_most_once_per_interval() {
        let mut last = HashMap::new();
        assert!(should_report(&mut last, "ABC", Instant::now(), MIN_INTERVAL, CAPACITY));
        tokio::time::advance(MIN_INTERVAL - Duration::from_millis(1)).await;
        assert!(!should_report(&mut last, "abc", Instant::now(), MIN_INTERVAL, CAPACITY), "case-insensitive");
        assert!(should_report(&mut last, "other", Instant::now(), MIN_INTERVAL, CAPACITY));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(should_report(&mut last, "abc", Instant::now(), MIN_INTERVAL, CAPACITY));
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limit_remembers_at_most_its_capacity() {
        let mut last = HashMap::new();
        for i in 0..CAPACITY * 3 {
            assert!(should_report(&mut last, &format!("c{i}"), Instant::now(), MIN_INTERVAL, CAPACITY));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert!(last.len() <= CAPACITY, "{}", last.len());
    }

    #[test]
    fn the_event_regards_the_assigned_identity_and_names_pod_node_and_identity() {
        let mut aai = AzureAssignedIdentity::default();
        aai.metadata.name = Some("web-ns-id".into());
        aai.metadata.namespace = Some("default".into());
        aai.metadata.uid = Some("uid-aai".into());
        let pod = PodKey::new("ns", "web");
        let at = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
        let e = event_for(&aai, &pod, Some("uid-pod".into()), "node-0", "c-1", "Identity not found", at);
        assert_eq!(e.reason.as_deref(), Some(REASON));
        assert_eq!(e.type_.as_deref(), Some("Warning"));
        let regarding = e.regarding.unwrap();
        assert_eq!(
            (regarding.kind.as_deref(), regarding.name.as_deref(), regarding.uid.as_deref()),
            (Some("AzureAssignedIdentity"), Some("web-ns-id"), Some("uid-aai"))
        );
        assert_eq!(e.related.and_then(|r| r.uid).as_deref(), Some("uid-pod"));
        let note = e.note.unwrap_or_default();
        assert!(note.contains("node-0") && note.contains("c-1") && note.contains("ns/web"), "{note}");
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
    }
}
