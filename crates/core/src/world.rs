//! What a decision reads: the objects around one pod, behind [`Objects`], so the agent decides
//! straight from its watch-fed index and `podid explain` and the tests from plain lists
//! ([`Snapshot`]) — with the same function, [`crate::decision::decide`].
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};

use crate::PodKey;

/// Read access to the identity objects a decision needs.
pub trait Objects {
    /// Bindings (of every namespace) whose `spec.selector` is exactly `selector`.
    fn bindings_selecting(&self, selector: &str) -> impl Iterator<Item = &AzureIdentityBinding>;
    /// The identity `namespace/name`.
    fn identity(&self, namespace: &str, name: &str) -> Option<&AzureIdentity>;
    /// Assigned identities recorded for `pod` (`spec.podNamespace`/`spec.pod`).
    fn assigned_to(&self, pod: &PodKey) -> impl Iterator<Item = &AzureAssignedIdentity>;
    /// Exceptions of `namespace` (only those can match a pod of that namespace).
    fn exceptions_in(&self, namespace: &str) -> impl Iterator<Item = &AzurePodIdentityException>;
}

/// Objects as plain lists; every look-up is a scan. For `podid explain` and tests.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub bindings: Vec<AzureIdentityBinding>,
    pub identities: Vec<AzureIdentity>,
    pub assigned: Vec<AzureAssignedIdentity>,
    pub exceptions: Vec<AzurePodIdentityException>,
}

impl Objects for Snapshot {
    fn bindings_selecting(&self, selector: &str) -> impl Iterator<Item = &AzureIdentityBinding> {
        self.bindings.iter().filter(move |b| b.spec.selector == selector)
    }

    fn identity(&self, namespace: &str, name: &str) -> Option<&AzureIdentity> {
        self.identities.iter().find(|i| {
            i.metadata.namespace.as_deref() == Some(namespace) && i.metadata.name.as_deref() == Some(name)
        })
    }

    fn assigned_to(&self, pod: &PodKey) -> impl Iterator<Item = &AzureAssignedIdentity> {
        self.assigned.iter().filter(move |a| a.spec.pod == pod.name && a.spec.pod_namespace == pod.namespace)
    }

    fn exceptions_in(&self, namespace: &str) -> impl Iterator<Item = &AzurePodIdentityException> {
        self.exceptions.iter().filter(move |e| e.metadata.namespace.as_deref() == Some(namespace))
    }
}
