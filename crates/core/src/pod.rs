//! The part of a Pod podid decides on. Built from a `core/v1` Pod by [`PodView::from_pod`];
//! tests build them directly.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use podid_api::{BINDING_LABEL, Pod};

/// `namespace/name` of a pod.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PodKey {
    pub namespace: String,
    pub name: String,
}

impl PodKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }
}

impl fmt::Display for PodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Pod phase as far as podid cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
    Unknown,
}

impl Phase {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("Pending") => Self::Pending,
            Some("Running") => Self::Running,
            Some("Succeeded") => Self::Succeeded,
            Some("Failed") => Self::Failed,
            _ => Self::Unknown,
        }
    }

    /// Whether a pod in this phase can still run code (and so may need or ask for a token).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }
}

/// A pod, reduced to what identity decisions depend on.
#[derive(Clone, Debug, PartialEq)]
pub struct PodView {
    pub key: PodKey,
    /// `spec.nodeName`; `None` until the pod is scheduled.
    pub node: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub phase: Phase,
    /// `status.podIP`.
    pub ip: Option<IpAddr>,
    /// True once `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// `spec.hostNetwork`: the pod shares the node's address, so its requests cannot be told apart.
    pub host_network: bool,
    /// Name of the owning ReplicaSet, if any.
    pub replica_set: Option<String>,
    /// `spec.serviceAccountName` (`default` when unset).
    pub service_account: String,
}

impl PodView {
    /// Reduces a Kubernetes Pod. Missing fields become "unknown" values, never errors.
    pub fn from_pod(pod: &Pod) -> Self {
        let meta = &pod.metadata;
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        Self {
            key: PodKey::new(
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
            ),
            node: spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()),
            labels: meta.labels.clone().unwrap_or_default(),
            phase: Phase::parse(status.and_then(|s| s.phase.as_deref())),
            ip: status.and_then(|s| s.pod_ip.as_deref()).and_then(|ip| ip.parse().ok()),
            terminating: meta.deletion_timestamp.is_some(),
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            replica_set: meta
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind.eq_ignore_ascii_case("ReplicaSet"))
                .map(|o| o.name.clone()),
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string()),
        }
    }

    /// Value of the `aadpodidbinding` label, if present and non-empty.
    pub fn binding_selector(&self) -> Option<&str> {
        self.labels.get(BINDING_LABEL).map(String::as_str).filter(|s| !s.is_empty())
    }
}
