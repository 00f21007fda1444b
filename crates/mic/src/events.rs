//! Kubernetes Events, written as `events.k8s.io/v1` Events (`kubectl describe` shows them on the
//! object they regard; every reference carries the object's uid, which it filters by).
//!
//! | reason | type | on | when |
//! |---|---|---|---|
//! | `binding applied` | Normal | AzureIdentityBinding (upstream) | an assignment became `Assigned` |
//! | `binding apply error` | Warning | AzureIdentityBinding (upstream), Pod | an assignment could not be made |
//! | `binding removed` | Normal | AzureIdentityBinding (upstream) | an assignment was removed |
//! | `binding remove error` | Warning | AzureIdentityBinding (upstream), Pod | a removal failed |
//! | `status update error` | Warning | AzureAssignedIdentity (upstream) | its state could not be written |
//! | `LeaderElection` | Normal | the Lease (upstream: its lock) | this replica became leader |
//! | `InvalidIdentity` | Warning | AzureIdentity | unknown type, bad resource id, missing fields |
//! | `IdentityNotFound` | Warning | AzureIdentityBinding | the binding names no existing identity |
//!
//! A repeat of the same event (same type, reason and object) within [`SERIES_TTL`] becomes a
//! series on the first one (`series.count` patched up), as client-go and kube's recorder do, so a
//! failure retried every pass does not flood the namespace. Unlike kube's `Recorder`, which keeps
//! every event it published in full for six minutes (12 MB at 2,000 pods, scanned on every
//! publish), [`Recent`] keeps a few strings per key and at most [`RECENT_CAPACITY`] keys.
use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use parking_lot::Mutex;
use podid_core::PodKey;
use serde_json::json;

pub const APPLIED: &str = "binding applied";
pub const APPLY_ERROR: &str = "binding apply error";
pub const REMOVED: &str = "binding removed";
pub const REMOVE_ERROR: &str = "binding remove error";
pub const STATUS_ERROR: &str = "status update error";
pub const LEADER_ELECTION: &str = "LeaderElection";
pub const INVALID_IDENTITY: &str = "InvalidIdentity";
pub const IDENTITY_NOT_FOUND: &str = "IdentityNotFound";

/// How long a published event can absorb repeats as a series.
pub const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Most event keys remembered for series; the oldest go first.
pub const RECENT_CAPACITY: usize = 1024;

/// What makes two events "the same" for a series.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub warning: bool,
    pub reason: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

#[derive(Clone, Debug)]
struct Seen {
    /// Name of the Event object the series lives on.
    event: String,
    count: i32,
    last: Timestamp,
}

/// What to write for one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Write {
    /// A new Event object with this name.
    Create(String),
    /// Patch the series of this Event to `count`.
    Series { event: String, count: i32 },
}

/// Recently published events (pure: time is passed in).
#[derive(Debug, Default)]
pub struct Recent {
    seen: HashMap<Key, Seen>,
}

impl Recent {
    /// Decides how to publish `key` at `now`, and remembers it.
    pub fn observe(&mut self, key: Key, now: Timestamp) -> Write {
        if let Some(s) = self.seen.get_mut(&key)
            && s.last + SERIES_TTL > now
        {
            s.count += 1;
            s.last = now;
            return Write::Series { event: s.event.clone(), count: s.count };
        }
        self.make_room(now);
        let event = format!("{}.{:x}", key.name, now.as_nanosecond());
        self.seen.insert(key, Seen { event: event.clone(), count: 1, last: now });
        Write::Create(event)
    }

    /// Forgets a key whose write failed, so the next repeat creates the Event afresh.
    pub fn forget(&mut self, key: &Key) {
        self.seen.remove(key);
    }

    fn make_room(&mut self, now: Timestamp) {
        if self.seen.len() < RECENT_CAPACITY {
            return;
        }
        self.seen.retain(|_, s| s.last + SERIES_TTL > now);
        while self.seen.len() >= RECENT_CAPACITY {
            let oldest = self.seen.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| k.clone());
            match oldest {
                Some(k) => self.seen.remove(&k),
                None => break,
            };
        }
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// Publishes events; failures to publish are logged, never fatal.
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

impl Events {
    /// `instance` identifies this replica (the leader-election identity).
    pub fn new(client: kube::Client, instance: &str) -> Self {
        Self {
            client,
            controller: "aadpodidentity.k8s.io/podid-mic".into(),
            instance: instance.into(),
            recent: Arc::default(),
        }
    }

    /// Publishes `reason` with `note` on every object in `regarding`.
    pub async fn publish(&self, warning: bool, reason: &str, note: String, regarding: &[ObjectReference]) {
        let note = truncate(note);
        for r in regarding {
            if let Err(error) = self.publish_on(warning, reason, &note, r).await {
                tracing::warn!(%error, reason, object = ?r.name, "Cannot publish an event");
            }
        }
    }

    async fn publish_on(
        &self,
        warning: bool,
        reason: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let key = Key {
            warning,
            reason: reason.into(),
            kind: regarding.kind.clone().unwrap_or_default(),
            namespace: regarding.namespace.clone().unwrap_or_else(|| "default".into()),
            name: regarding.name.clone().unwrap_or_default(),
        };
        let now = Timestamp::now();
        let api: Api<Event> = Api::namespaced(self.client.clone(), &key.namespace);
        let mut result = self.write(&api, &key, warning, note, regarding, now).await;
        if matches!(&result, Err(kube::Error::Api(e)) if e.code == 404) {
            // The series' first Event is gone (expired), or its creation has not landed yet
            // (repeats published concurrently): start a new one.
            self.recent.lock().forget(&key);
            result = self.write(&api, &key, warning, note, regarding, now).await;
        }
        if result.is_err() {
            self.recent.lock().forget(&key);
        }
        result
    }

    async fn write(
        &self,
        api: &Api<Event>,
        key: &Key,
        warning: bool,
        note: &str,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<(), kube::Error> {
        let write = self.recent.lock().observe(key.clone(), now);
        match write {
            Write::Create(name) => {
                let event = self.event(name, warning, &key.reason, note, regarding, now);
                api.create(&PostParams::default(), &event).await.map(drop)
            }
            Write::Series { event, count } => {
                let series = json!({ "series": { "count": count, "lastObservedTime": MicroTime(now) } });
                api.patch(&event, &PatchParams::default(), &Patch::Merge(&series)).await.map(drop)
            }
        }
    }

    fn event(
        &self,
        name: String,
        warning: bool,
        reason: &str,
        note: &str,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Event {
        Event {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: regarding.namespace.clone(),
                ..ObjectMeta::default()
            },
            action: Some(action(reason).into()),
            reason: Some(reason.into()),
            note: Some(note.into()),
            type_: Some(if warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Event::default()
        }
    }
}

/// A reference to a Kubernetes object (with its uid) for an Event.
pub fn regarding<K: Resource<DynamicType = ()>>(object: &K) -> ObjectReference {
    object.object_ref(&())
}

/// A reference to a pod; `uid` from the index (without it `kubectl describe pod` misses the Event).
pub fn pod_ref(pod: &PodKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace.clone()),
        name: Some(pod.name.clone()),
        uid,
        ..ObjectReference::default()
    }
}

/// Upstream's action for each reason.
fn action(reason: &str) -> &'static str {
    match reason {
        APPLIED | APPLY_ERROR => "Assign",
        REMOVED | REMOVE_ERROR => "Unassign",
        LEADER_ELECTION => "Lead",
        INVALID_IDENTITY | IDENTITY_NOT_FOUND => "Validate",
        _ => "UpdateStatus",
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > 1000 {
        let mut end = 1000;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        Key {
            warning: true,
            reason: APPLY_ERROR.into(),
            kind: "Pod".into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_repeat_within_the_ttl_extends_the_series_of_the_first_event() {
        let mut recent = Recent::default();
        let Write::Create(first) = recent.observe(key("web"), at(0)) else { panic!("first is created") };
        assert!(first.starts_with("web."));
        assert_eq!(recent.observe(key("web"), at(10)), Write::Series { event: first.clone(), count: 2 });
        assert_eq!(recent.observe(key("web"), at(300)), Write::Series { event: first, count: 3 });
    }

    #[test]
    fn a_repeat_after_the_ttl_or_for_another_object_is_a_new_event() {
        let mut recent = Recent::default();
        recent.observe(key("web"), at(0));
        assert!(matches!(recent.observe(key("api"), at(1)), Write::Create(_)));
        assert!(matches!(recent.observe(key("web"), at(6 * 60 + 1)), Write::Create(_)));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity_and_drops_the_oldest() {
        let mut recent = Recent::default();
        for i in 0..RECENT_CAPACITY + 500 {
            let t = at(i64::try_from(i).unwrap_or(0) / 100);
            recent.observe(key(&format!("p{i}")), t);
        }
        assert!(recent.len() <= RECENT_CAPACITY, "{}", recent.len());
        let newest = RECENT_CAPACITY + 499;
        let t = at(i64::try_from(newest).unwrap_or(0) / 100);
        assert!(matches!(recent.observe(key(&format!("p{newest}")), t), Write::Series { .. }));
        assert!(matches!(recent.observe(key("p0"), t), Write::Create(_)), "the oldest was dropped");
    }

    #[test]
    fn a_failed_write_is_forgotten_so_the_next_repeat_creates_again() {
        let mut recent = Recent::default();
        recent.observe(key("web"), at(0));
        recent.forget(&key("web"));
        assert!(matches!(recent.observe(key("web"), at(1)), Write::Create(_)));
    }
}
