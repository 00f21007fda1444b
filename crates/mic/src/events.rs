//! Kubernetes Events for every assignment, removal and failure, on the pod and on the assigned
//! identity, with upstream's reasons (spec §2.9).
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use podid_api::AzureAssignedIdentity;
use podid_core::PodKey;

pub const APPLIED: &str = "binding applied";
pub const APPLY_ERROR: &str = "binding apply error";
pub const REMOVED: &str = "binding removed";
pub const REMOVE_ERROR: &str = "binding remove error";
pub const STATUS_ERROR: &str = "status update error";

/// Publishes events; failures to publish are logged, never fatal.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    /// `instance` identifies this replica (the leader-election identity).
    pub fn new(client: kube::Client, instance: &str) -> Self {
        let reporter = Reporter {
            controller: "aadpodidentity.k8s.io/podid-mic".into(),
            instance: Some(instance.into()),
        };
        Self { recorder: Recorder::new(client, reporter) }
    }

    fn pod_ref(pod: &PodKey) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(pod.namespace.clone()),
            name: Some(pod.name.clone()),
            ..ObjectReference::default()
        }
    }

    /// Publishes `reason` with `note` on the pod and, if given, on the assigned identity.
    pub async fn publish(
        &self,
        warning: bool,
        reason: &str,
        note: String,
        pod: &PodKey,
        aai: Option<&AzureAssignedIdentity>,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(truncate(note)),
            action: action(reason).into(),
            secondary: None,
        };
        let mut refs = vec![Self::pod_ref(pod)];
        if let Some(a) = aai {
            refs.push(a.object_ref(&()));
        }
        for r in refs {
            if let Err(error) = self.recorder.publish(&event, &r).await {
                tracing::warn!(%error, reason, object = ?r.name, "Cannot publish an event");
            }
        }
    }
}

fn action(reason: &str) -> &'static str {
    match reason {
        APPLIED | APPLY_ERROR => "Assign",
        REMOVED | REMOVE_ERROR => "Unassign",
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
