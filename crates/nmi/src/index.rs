//! What the agent knows about its node, fed by watches and read on every request.
//!
//! ```text
//!  Pods (spec.nodeName=<node>) ──apply/delete──▶ pods: PodKey → PodView
//!                                               by_ip: IP → {PodKey}     (a pod's status.podIP)
//!  AzureAssignedIdentities (nodename=<node>) ──▶ assigned: PodKey → {AAI name → AAI}   (standard mode)
//!  AzureIdentityBindings, AzureIdentities  ───▶ bindings / identities by namespace, bindings by
//!                                               selector (every mode: the decision reads them)
//!  AzurePodIdentityExceptions              ───▶ exceptions by namespace
//! ```
//!
//! Plain synchronous state: watch tasks call `apply`/`delete`/`reset`; tests call them directly.
//! The decision ([`podid_core::decision::decide`]) reads it through [`Objects`].
//! Every change bumps [`NodeIndex::generation`] so waiting requests and the prefetcher can react.
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, Pod, ResourceExt,
};
use podid_core::{Objects, PodKey, PodView};

/// Index of one node's pods and the identity objects that concern them.
#[derive(Debug, Default)]
pub struct NodeIndex {
    pods: HashMap<PodKey, PodView>,
    /// `metadata.uid` of pods applied from the API (federated tokens are bound to it).
    uids: HashMap<PodKey, String>,
    /// Invariant: contains exactly the keys of `pods` whose view has an IP, under that IP.
    by_ip: HashMap<IpAddr, HashSet<PodKey>>,
    /// Assigned identities by the pod they are for (`spec.podNamespace`/`spec.pod`).
    assigned: HashMap<PodKey, BTreeMap<PodKey, Arc<AzureAssignedIdentity>>>,
    /// Where each assigned identity (by its own namespace/name) is filed in `assigned`.
    assigned_owner: HashMap<PodKey, PodKey>,
    bindings: NamespacedMap<AzureIdentityBinding>,
    /// Invariant: exactly the keys of `bindings`, filed under each one's `spec.selector`.
    selecting: HashMap<String, BTreeSet<PodKey>>,
    identities: NamespacedMap<AzureIdentity>,
    /// Invariant: the number of entries of `identities` annotated `podid.io/federated`. Lets a
    /// standard/managed-mode request skip the federated path when there are none.
    federated_identities: usize,
    exceptions: NamespacedMap<AzurePodIdentityException>,
    generation: u64,
}

/// Objects of one kind by namespace, then name.
type NamespacedMap<K> = HashMap<String, BTreeMap<String, Arc<K>>>;

fn key_of<K: ResourceExt>(o: &K) -> PodKey {
    PodKey::new(o.namespace().unwrap_or_default(), o.name_any())
}

fn ns_put<K: ResourceExt>(map: &mut NamespacedMap<K>, obj: K) {
    let k = key_of(&obj);
    map.entry(k.namespace).or_default().insert(k.name, Arc::new(obj));
}

fn ns_remove<K>(map: &mut NamespacedMap<K>, key: &PodKey) {
    if let Some(inner) = map.get_mut(&key.namespace) {
        inner.remove(&key.name);
        if inner.is_empty() {
            map.remove(&key.namespace);
        }
    }
}

impl NodeIndex {
    /// Increases on every change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    // === pods ===

    pub fn apply_pod(&mut self, pod: &Pod) {
        let view = PodView::from_pod(pod);
        match pod.metadata.uid.clone() {
            Some(uid) => self.uids.insert(view.key.clone(), uid),
            None => self.uids.remove(&view.key),
        };
        self.put_pod(view);
    }

    /// Adds or replaces a pod view.
    pub fn put_pod(&mut self, view: PodView) {
        self.unfile_pod(&view.key);
        if let Some(ip) = view.ip {
            self.by_ip.entry(ip).or_default().insert(view.key.clone());
        }
        self.pods.insert(view.key.clone(), view);
        self.changed();
    }

    pub fn delete_pod(&mut self, key: &PodKey) {
        self.unfile_pod(key);
        self.uids.remove(key);
        self.pods.remove(key);
        self.changed();
    }

    fn unfile_pod(&mut self, key: &PodKey) {
        if let Some(ip) = self.pods.get(key).and_then(|p| p.ip)
            && let Some(set) = self.by_ip.get_mut(&ip)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_ip.remove(&ip);
            }
        }
    }

    pub fn reset_pods(&mut self, pods: &[Pod]) {
        self.pods.clear();
        self.by_ip.clear();
        self.uids.clear();
        for p in pods {
            self.apply_pod(p);
        }
        self.changed();
    }

    /// Pods with this IP (live or not; the decision filters).
    pub fn pods_with_ip(&self, ip: IpAddr) -> impl Iterator<Item = &PodView> {
        self.by_ip.get(&ip).into_iter().flatten().filter_map(|k| self.pods.get(k))
    }

    pub fn pod(&self, key: &PodKey) -> Option<&PodView> {
        self.pods.get(key)
    }

    /// The pod's `metadata.uid`, when known.
    pub fn pod_uid(&self, key: &PodKey) -> Option<&str> {
        self.uids.get(key).map(String::as_str)
    }

    /// Every pod on this node.
    pub fn pods(&self) -> impl Iterator<Item = &PodView> {
        self.pods.values()
    }

    // === assigned identities ===

    pub fn apply_assigned(&mut self, aai: AzureAssignedIdentity) {
        let own = key_of(&aai);
        self.unfile_assigned(&own);
        let pod = PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone());
        self.assigned.entry(pod.clone()).or_default().insert(own.clone(), Arc::new(aai));
        self.assigned_owner.insert(own, pod);
        self.changed();
    }

    pub fn delete_assigned(&mut self, key: &PodKey) {
        self.unfile_assigned(key);
        self.changed();
    }

    fn unfile_assigned(&mut self, own: &PodKey) {
        if let Some(pod) = self.assigned_owner.remove(own)
            && let Some(map) = self.assigned.get_mut(&pod)
        {
            map.remove(own);
            if map.is_empty() {
                self.assigned.remove(&pod);
            }
        }
    }

    pub fn reset_assigned(&mut self, all: Vec<AzureAssignedIdentity>) {
        self.assigned.clear();
        self.assigned_owner.clear();
        for a in all {
            self.apply_assigned(a);
        }
        self.changed();
    }

    /// Assigned identities recorded for `pod`.
    pub fn assigned_for(&self, pod: &PodKey) -> impl Iterator<Item = &AzureAssignedIdentity> {
        self.assigned.get(pod).into_iter().flat_map(|m| m.values().map(|a| a.as_ref()))
    }

    /// Every assigned identity on this node.
    pub fn all_assigned(&self) -> impl Iterator<Item = &AzureAssignedIdentity> {
        self.assigned.values().flat_map(|m| m.values().map(|a| a.as_ref()))
    }

    // === bindings, identities, exceptions ===

    pub fn apply_binding(&mut self, b: AzureIdentityBinding) {
        self.put_binding(b);
        self.changed();
    }
    pub fn delete_binding(&mut self, key: &PodKey) {
        self.unfile_binding(key);
        ns_remove(&mut self.bindings, key);
        self.changed();
    }
    pub fn reset_bindings(&mut self, all: Vec<AzureIdentityBinding>) {
        self.bindings.clear();
        self.selecting.clear();
        all.into_iter().for_each(|b| self.put_binding(b));
        self.changed();
    }
    fn put_binding(&mut self, b: AzureIdentityBinding) {
        let key = key_of(&b);
        self.unfile_binding(&key);
        self.selecting.entry(b.spec.selector.clone()).or_default().insert(key);
        ns_put(&mut self.bindings, b);
    }
    fn unfile_binding(&mut self, key: &PodKey) {
        let Some(old) = self.binding(key) else { return };
        let selector = old.spec.selector.clone();
        if let Some(set) = self.selecting.get_mut(&selector) {
            set.remove(key);
            if set.is_empty() {
                self.selecting.remove(&selector);
            }
        }
    }
    fn binding(&self, key: &PodKey) -> Option<&AzureIdentityBinding> {
        self.bindings.get(&key.namespace).and_then(|m| m.get(&key.name)).map(|b| b.as_ref())
    }
    pub fn apply_identity(&mut self, i: AzureIdentity) {
        self.forget_federated(&key_of(&i));
        self.federated_identities += usize::from(i.is_federated());
        ns_put(&mut self.identities, i);
        self.changed();
    }
    pub fn delete_identity(&mut self, key: &PodKey) {
        self.forget_federated(key);
        ns_remove(&mut self.identities, key);
        self.changed();
    }
    pub fn reset_identities(&mut self, all: Vec<AzureIdentity>) {
        self.identities.clear();
        all.into_iter().for_each(|i| ns_put(&mut self.identities, i));
        self.federated_identities =
            self.identities.values().flat_map(|m| m.values()).filter(|i| i.is_federated()).count();
        self.changed();
    }
    /// Un-counts the identity stored under `key`, if it is federated (before it is replaced or
    /// removed).
    fn forget_federated(&mut self, key: &PodKey) {
        if self.identity(&key.namespace, &key.name).is_some_and(|i| i.is_federated()) {
            self.federated_identities -= 1;
        }
    }
    /// Whether any identity is annotated `podid.io/federated`.
    pub fn has_federated_identities(&self) -> bool {
        self.federated_identities > 0
    }
    pub fn apply_exception(&mut self, e: AzurePodIdentityException) {
        ns_put(&mut self.exceptions, e);
        self.changed();
    }
    pub fn delete_exception(&mut self, key: &PodKey) {
        ns_remove(&mut self.exceptions, key);
        self.changed();
    }
    pub fn reset_exceptions(&mut self, all: Vec<AzurePodIdentityException>) {
        self.exceptions.clear();
        all.into_iter().for_each(|e| ns_put(&mut self.exceptions, e));
        self.changed();
    }

    /// Bindings of one namespace.
    pub fn bindings_in(&self, ns: &str) -> impl Iterator<Item = &AzureIdentityBinding> {
        self.bindings.get(ns).into_iter().flat_map(|m| m.values().map(|b| b.as_ref()))
    }
    /// Every binding.
    pub fn all_bindings(&self) -> impl Iterator<Item = &AzureIdentityBinding> {
        self.bindings.values().flat_map(|m| m.values().map(|b| b.as_ref()))
    }
    /// The identity `ns/name`.
    pub fn identity(&self, ns: &str, name: &str) -> Option<&AzureIdentity> {
        self.identities.get(ns).and_then(|m| m.get(name)).map(|i| i.as_ref())
    }
    /// Identities of one namespace.
    pub fn identities_in(&self, ns: &str) -> impl Iterator<Item = &AzureIdentity> + Clone {
        self.identities.get(ns).into_iter().flat_map(|m| m.values().map(|i| i.as_ref()))
    }
    /// Exceptions of one namespace (only those can match a pod of that namespace).
    pub fn exceptions_in(&self, ns: &str) -> impl Iterator<Item = &AzurePodIdentityException> {
        self.exceptions.get(ns).into_iter().flat_map(|m| m.values().map(|e| e.as_ref()))
    }
}

impl Objects for NodeIndex {
    fn bindings_selecting(&self, selector: &str) -> impl Iterator<Item = &AzureIdentityBinding> {
        self.selecting.get(selector).into_iter().flatten().filter_map(|k| self.binding(k))
    }
    fn identity(&self, namespace: &str, name: &str) -> Option<&AzureIdentity> {
        NodeIndex::identity(self, namespace, name)
    }
    fn assigned_to(&self, pod: &PodKey) -> impl Iterator<Item = &AzureAssignedIdentity> {
        self.assigned_for(pod)
    }
    fn exceptions_in(&self, namespace: &str) -> impl Iterator<Item = &AzurePodIdentityException> {
        NodeIndex::exceptions_in(self, namespace)
    }
}

#[cfg(test)]
mod tests {
    use podid_api::{AzureIdentitySpec, FEDERATED_ANNOTATION};

    use super::*;

    fn mk_identity(ns: &str, name: &str, federated: bool) -> AzureIdentity {
        let mut i = AzureIdentity::new(name, AzureIdentitySpec::default());
        i.metadata.namespace = Some(ns.into());
        if federated {
            i.metadata.annotations = Some([(FEDERATED_ANNOTATION.to_string(), "true".to_string())].into());
        }
        i
    }

    fn mk_binding(ns: &str, name: &str, selector: &str) -> AzureIdentityBinding {
        let mut b = AzureIdentityBinding::new(name, podid_api::AzureIdentityBindingSpec::default());
        b.metadata.namespace = Some(ns.into());
        b.spec.selector = selector.into();
        b
    }

    fn selecting(idx: &NodeIndex, selector: &str) -> Vec<String> {
        idx.bindings_selecting(selector)
            .map(|b| format!("{}/{}", b.namespace().unwrap(), b.name_any()))
            .collect()
    }

    #[test]
    fn bindings_are_found_by_selector_through_change_delete_and_reset() {
        let mut idx = NodeIndex::default();
        idx.apply_binding(mk_binding("a", "b1", "web"));
        idx.apply_binding(mk_binding("b", "b2", "web"));
        assert_eq!(selecting(&idx, "web"), ["a/b1", "b/b2"]);
        idx.apply_binding(mk_binding("a", "b1", "api"));
        assert_eq!(
            (selecting(&idx, "web"), selecting(&idx, "api")),
            (vec!["b/b2".to_string()], vec!["a/b1".to_string()])
        );
        idx.delete_binding(&PodKey::new("b", "b2"));
        assert!(selecting(&idx, "web").is_empty() && !idx.selecting.contains_key("web"));
        idx.reset_bindings(vec![mk_binding("c", "b3", "web")]);
        assert_eq!((selecting(&idx, "web"), selecting(&idx, "api")), (vec!["c/b3".to_string()], vec![]));
    }

    #[test]
    fn federated_identities_are_counted_through_replace_delete_and_reset() {
        let mut idx = NodeIndex::default();
        assert!(!idx.has_federated_identities());
        idx.apply_identity(mk_identity("a", "x", true));
        idx.apply_identity(mk_identity("a", "x", true));
        idx.apply_identity(mk_identity("a", "y", false));
        assert!(idx.has_federated_identities());
        idx.apply_identity(mk_identity("a", "x", false));
        assert!(!idx.has_federated_identities(), "replaced by an unannotated identity");
        idx.apply_identity(mk_identity("b", "x", true));
        idx.delete_identity(&PodKey::new("b", "x"));
        assert!(!idx.has_federated_identities());
        idx.reset_identities(vec![mk_identity("a", "x", true), mk_identity("a", "x", true)]);
        assert!(idx.has_federated_identities());
        idx.delete_identity(&PodKey::new("a", "x"));
        assert!(!idx.has_federated_identities(), "duplicates in a list count once");
    }
}
