//! The plan: desired assignments against the assigned-identity objects that exist (upstream §2.7),
//! and the objects the controller writes.
//!
//! An existing object *matches* a desired assignment when pod, pod namespace, node, and the
//! embedded identity and binding (namespace, name, uid and spec) are equal. Upstream compared
//! resourceVersions instead, so any metadata-only edit of an identity rewrote every assignment;
//! podid rewrites only when something that matters changed. The plan is a function of the two
//! sets alone (inputs are keyed, outputs sorted), so an unchanged cluster plans no work.
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};

use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AAI_FINALIZER, AssignedState, AzureAssignedIdentity, AzureAssignedIdentitySpec,
    AzureAssignedIdentityStatus, AzureIdentity, AzureIdentityBinding, NODENAME_LABEL, PREEXISTING_ANNOTATION,
    Resource,
};

use crate::diagnostics::ObjectKey;
use crate::matching::{Assignment, Desired, object_key};

/// What the controller must do to the assigned-identity objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Desired, and no object of that name exists: create it (state `Created`).
    pub create: Vec<Assignment>,
    /// An object of that name exists but no longer matches: rewrite it (back to `Created`).
    pub update: Vec<(Assignment, AzureAssignedIdentity)>,
    /// Objects no longer desired, or being deleted: unassign (if needed), then delete.
    pub delete: Vec<AzureAssignedIdentity>,
    /// Matching objects still in `Created`: their ARM assignment is still to be done.
    pub pending: Vec<(Assignment, AzureAssignedIdentity)>,
}

impl Plan {
    /// True when no object has to be written (pending assignments aside).
    pub fn is_idle(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// Compares desired assignments with existing objects.
/// `current` holds the objects themselves or shared pointers to them (the controller's snapshot
/// shares its index's copies rather than cloning thousands of objects per pass).
pub fn plan<A: Borrow<AzureAssignedIdentity>>(desired: &Desired, current: &[A]) -> Plan {
    let existing: BTreeMap<ObjectKey, &AzureAssignedIdentity> =
        current.iter().map(Borrow::borrow).map(|a| (object_key(a), a)).collect();
    let mut plan = Plan::default();
    for (key, want) in &desired.assignments {
        match existing.get(key) {
            None => plan.create.push(want.clone()),
            Some(have) if have.metadata.deletion_timestamp.is_some() => plan.delete.push((*have).clone()),
            Some(have) if !matches(want, have) => plan.update.push((want.clone(), (*have).clone())),
            Some(have) if have.state() == AssignedState::Created => {
                plan.pending.push((want.clone(), (*have).clone()))
            }
            Some(_) => {}
        }
    }
    let wanted: BTreeSet<&ObjectKey> = desired.assignments.keys().collect();
    plan.delete.extend(existing.iter().filter(|(k, _)| !wanted.contains(k)).map(|(_, a)| (*a).clone()));
    plan.delete.sort_by_key(object_key);
    plan
}

/// Whether an existing object records exactly this assignment.
pub fn matches(want: &Assignment, have: &AzureAssignedIdentity) -> bool {
    let s = &have.spec;
    s.pod == want.pod.name
        && s.pod_namespace == want.pod.namespace
        && s.node_name == want.node
        && s.azure_identity_ref.as_deref().is_some_and(|i| same_identity(i, &want.identity))
        && s.azure_binding_ref.as_deref().is_some_and(|b| same_binding(b, &want.binding))
}

fn same_object<K: Resource>(a: &K, b: &K) -> bool {
    let (a, b) = (a.meta(), b.meta());
    a.name == b.name && a.namespace == b.namespace && a.uid == b.uid
}

fn same_identity(a: &AzureIdentity, b: &AzureIdentity) -> bool {
    same_object(a, b) && a.spec == b.spec && a.is_namespaced() == b.is_namespaced()
}

fn same_binding(a: &AzureIdentityBinding, b: &AzureIdentityBinding) -> bool {
    same_object(a, b) && a.spec == b.spec
}

/// Strips what should not be copied into an embedded reference (server-side bookkeeping that
/// only bloats the object).
fn embedded_meta(meta: &ObjectMeta) -> ObjectMeta {
    ObjectMeta { managed_fields: None, ..meta.clone() }
}

impl Assignment {
    /// The object upstream's controller would write for this assignment, in state `Created`:
    /// name, namespace, `nodename` label, finalizer, embedded copies. `preexisting` marks an
    /// identity found on the scale set before podid needed it (podid will never remove it).
    pub fn to_object(&self, preexisting: bool) -> AzureAssignedIdentity {
        let mut identity = self.identity.clone();
        identity.metadata = embedded_meta(&identity.metadata);
        let mut binding = self.binding.clone();
        binding.metadata = embedded_meta(&binding.metadata);
        let annotations =
            preexisting.then(|| BTreeMap::from([(PREEXISTING_ANNOTATION.to_string(), "true".to_string())]));
        AzureAssignedIdentity {
            metadata: ObjectMeta {
                name: Some(self.key.name.clone()),
                namespace: Some(self.key.namespace.clone()),
                labels: Some(BTreeMap::from([(NODENAME_LABEL.to_string(), self.node.clone())])),
                annotations,
                finalizers: Some(vec![AAI_FINALIZER.to_string()]),
                ..ObjectMeta::default()
            },
            spec: AzureAssignedIdentitySpec {
                azure_identity_ref: Some(Box::new(identity)),
                azure_binding_ref: Some(Box::new(binding)),
                pod: self.pod.name.clone(),
                pod_namespace: self.pod.namespace.clone(),
                node_name: self.node.clone(),
                ..AzureAssignedIdentitySpec::default()
            },
            status: Some(AzureAssignedIdentityStatus {
                status: AssignedState::Created.as_str().to_string(),
                available_replicas: Some(1),
                ..AzureAssignedIdentityStatus::default()
            }),
        }
    }

    /// The rewrite of `old` for this assignment: keeps the old object's metadata (name,
    /// resourceVersion, finalizers, annotations) but takes the new node label and references,
    /// and goes back to `Created`.
    pub fn to_update(&self, old: &AzureAssignedIdentity, preexisting: bool) -> AzureAssignedIdentity {
        let mut new = self.to_object(preexisting);
        let mut meta = old.metadata.clone();
        meta.labels.get_or_insert_with(BTreeMap::new).insert(NODENAME_LABEL.to_string(), self.node.clone());
        let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
        if !finalizers.iter().any(|f| f == AAI_FINALIZER) {
            finalizers.push(AAI_FINALIZER.to_string());
        }
        if preexisting {
            meta.annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(PREEXISTING_ANNOTATION.into(), "true".into());
        }
        new.metadata = meta;
        new
    }
}

/// Whether an assigned identity is marked as holding a pre-existing identity.
pub fn is_preexisting(aai: &AzureAssignedIdentity) -> bool {
    aai.metadata.annotations.as_ref().and_then(|a| a.get(PREEXISTING_ANNOTATION)).is_some_and(|v| v == "true")
}
