//! The controller's view of the cluster: a synchronous index fed by the watches.
//!
//! ```text
//!  watch pods ──────┐   PodView (only what matching needs) + when it became eligible
//!  watch nodes ─────┤   node name → Target (from spec.providerID) or why not
//!  watch identities ┼─▶ ClusterIndex ──snapshot()──▶ plan (pure) ──▶ executor
//!  watch bindings ──┤        │ revision bumps only on changes that can alter a decision
//!  watch AAIs ──────┘        └─▶ tokio::sync::watch<u64> wakes the reconcile loop
//! ```
//!
//! The executor writes its own results through ([`ClusterIndex::record_aai`]), so the next pass
//! does not act on a stale copy while the watch catches up; older watch events (by
//! resourceVersion) never overwrite a newer write-through, and a deleted object is not revived by
//! a late event for it.
//!
//! With a namespace scope (`--watch-namespace`), pods, identities and bindings outside it are
//! ignored, and so are assigned identities whose *pod* namespace is outside it (assigned
//! identities of non-namespaced identities live in `default`).
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, Node, Pod, Resource};
use podid_core::matching::{is_eligible, object_key};
use podid_core::scaleset::Target;
use podid_core::{PodKey, PodView};
use podid_runtime::watch::{Change, lean};
use tokio::sync::watch;

/// A node as the controller sees it: its scale set or VM, or why it has none.
pub type NodeTarget = Result<Target, String>;

/// Everything one reconcile pass needs, copied out of the index.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub pods: Vec<PodView>,
    pub bindings: Vec<AzureIdentityBinding>,
    pub identities: Vec<AzureIdentity>,
    /// Shared with the index: a pass copies pointers, not thousands of objects.
    pub aais: Vec<Arc<AzureAssignedIdentity>>,
    pub nodes: BTreeMap<String, NodeTarget>,
    /// When each eligible pod was first seen eligible (for the assignment-latency metric).
    pub eligible_since: BTreeMap<PodKey, Instant>,
}

#[derive(Clone, Debug)]
struct PodEntry {
    view: PodView,
    eligible_since: Option<Instant>,
}

/// The index proper.
#[derive(Debug, Default)]
pub struct ClusterIndex {
    scope: Option<BTreeSet<String>>,
    pods: BTreeMap<PodKey, PodEntry>,
    nodes: BTreeMap<String, NodeTarget>,
    identities: BTreeMap<PodKey, AzureIdentity>,
    bindings: BTreeMap<PodKey, AzureIdentityBinding>,
    aais: BTreeMap<PodKey, Arc<AzureAssignedIdentity>>,
    /// Assigned identities the executor deleted: key → resourceVersion of its last write.
    tombstones: BTreeMap<PodKey, u64>,
}

/// A node as the pod watch delivers it to the index: its name and target, nothing else (a
/// node's status, with its image list, is most of its size).
#[derive(Clone, Debug)]
pub struct NodeView {
    pub name: String,
    pub target: NodeTarget,
}

impl NodeView {
    pub fn from_node(node: Node) -> Self {
        Self { name: node.metadata.name.clone().unwrap_or_default(), target: node_target(&node) }
    }
}

/// A pod reduced to what matching reads, as soon as the watch decodes it.
pub fn pod_view(pod: Pod) -> PodView {
    PodView::from_pod(&pod)
}

fn rv<K: Resource>(o: &K) -> Option<u64> {
    o.meta().resource_version.as_deref().and_then(|v| v.parse().ok())
}

/// What decides whether a pod change matters.
fn pod_signature(v: &PodView) -> (Option<&str>, Option<&str>, bool) {
    (v.node.as_deref(), v.binding_selector(), is_eligible(v))
}

fn node_target(node: &Node) -> NodeTarget {
    let provider = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or_default();
    Target::from_provider_id(provider).map_err(|e| e.to_string())
}

impl ClusterIndex {
    /// An index limited to `scope` namespaces (`None`: all).
    pub fn new(scope: Option<BTreeSet<String>>) -> Self {
        Self { scope, ..Self::default() }
    }

    fn in_scope(&self, namespace: &str) -> bool {
        self.scope.as_ref().is_none_or(|s| s.contains(namespace))
    }

    fn ns_of<K: Resource>(o: &K) -> String {
        o.meta().namespace.clone().unwrap_or_default()
    }

    /// Applies a pod change; true if a decision may change.
    pub fn pods(&mut self, change: Change<PodView>) -> bool {
        let now = Instant::now();
        match change {
            Change::Reset(all) => {
                let old = std::mem::take(&mut self.pods);
                let scope = self.scope.clone();
                let in_scope = |ns: &str| scope.as_ref().is_none_or(|s| s.contains(ns));
                for view in all.into_iter().filter(|v| in_scope(&v.key.namespace)) {
                    let since = old.get(&view.key).and_then(|e| e.eligible_since);
                    let eligible_since = is_eligible(&view).then(|| since.unwrap_or(now));
                    self.pods.insert(view.key.clone(), PodEntry { view, eligible_since });
                }
                true
            }
            Change::Apply(view) => {
                if !self.in_scope(&view.key.namespace) {
                    return false;
                }
                let old = self.pods.get(&view.key);
                let changed = old.is_none_or(|o| pod_signature(&o.view) != pod_signature(&view));
                let eligible_since = match (is_eligible(&view), old.and_then(|o| o.eligible_since)) {
                    (false, _) => None,
                    (true, Some(t)) => Some(t),
                    (true, None) => Some(now),
                };
                self.pods.insert(view.key.clone(), PodEntry { view, eligible_since });
                changed
            }
            Change::Delete(key) => self.pods.remove(&key).is_some(),
        }
    }

    /// Applies a node change.
    pub fn nodes(&mut self, change: Change<NodeView>) -> bool {
        match change {
            Change::Reset(all) => {
                self.nodes = all.into_iter().map(|n| (n.name, n.target)).collect();
                true
            }
            Change::Apply(node) => self.nodes.insert(node.name, node.target.clone()) != Some(node.target),
            Change::Delete(key) => self.nodes.remove(&key.name).is_some(),
        }
    }

    /// Applies an identity change.
    pub fn identities(&mut self, change: Change<AzureIdentity>) -> bool {
        let scope = self.scope.clone();
        keyed(&mut self.identities, change, |o| scope.as_ref().is_none_or(|s| s.contains(&Self::ns_of(o))))
    }

    /// Applies a binding change.
    pub fn bindings(&mut self, change: Change<AzureIdentityBinding>) -> bool {
        let scope = self.scope.clone();
        keyed(&mut self.bindings, change, |o| scope.as_ref().is_none_or(|s| s.contains(&Self::ns_of(o))))
    }

    fn aai_in_scope(&self, aai: &AzureAssignedIdentity) -> bool {
        self.in_scope(&aai.spec.pod_namespace)
    }

    /// Applies an assigned-identity change from the watch.
    pub fn aais(&mut self, change: Change<AzureAssignedIdentity>) -> bool {
        match change {
            Change::Reset(all) => {
                self.aais = all
                    .into_iter()
                    .filter(|a| self.aai_in_scope(a))
                    .map(|a| (object_key(&a), Arc::new(lean(a))))
                    .collect();
                self.tombstones.clear();
                true
            }
            Change::Apply(aai) => self.record_aai(aai),
            Change::Delete(key) => {
                self.tombstones.remove(&key);
                self.aais.remove(&key).is_some()
            }
        }
    }

    /// Records an assigned identity the executor wrote (or the watch reported), unless a newer
    /// version is already known or it was deleted since.
    pub fn record_aai(&mut self, aai: AzureAssignedIdentity) -> bool {
        if !self.aai_in_scope(&aai) {
            return false;
        }
        let key = object_key(&aai);
        let incoming = rv(&aai);
        if let (Some(dead), Some(v)) = (self.tombstones.get(&key), incoming)
            && v <= *dead
        {
            return false;
        }
        if let Some(have) = self.aais.get(&key)
            && let (Some(h), Some(v)) = (rv(have.as_ref()), incoming)
            && v <= h
        {
            return false;
        }
        self.tombstones.remove(&key);
        self.aais.insert(key, Arc::new(lean(aai)));
        true
    }

    /// Records that the executor deleted an assigned identity (its last known version).
    pub fn forget_aai(&mut self, key: &PodKey, last_rv: Option<u64>) -> bool {
        if let Some(v) = last_rv {
            self.tombstones.insert(key.clone(), v);
        }
        self.aais.remove(key).is_some()
    }

    /// Copies out what a pass needs.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            pods: self.pods.values().map(|e| e.view.clone()).collect(),
            bindings: self.bindings.values().cloned().collect(),
            identities: self.identities.values().cloned().collect(),
            aais: self.aais.values().cloned().collect(),
            nodes: self.nodes.clone(),
            eligible_since: self
                .pods
                .iter()
                .filter_map(|(k, e)| e.eligible_since.map(|t| (k.clone(), t)))
                .collect(),
        }
    }
}

fn keyed<K: Resource + PartialEq + Clone>(
    map: &mut BTreeMap<PodKey, K>,
    change: Change<K>,
    in_scope: impl Fn(&K) -> bool,
) -> bool {
    match change {
        Change::Reset(all) => {
            *map = all.into_iter().filter(|o| in_scope(o)).map(|o| (object_key(&o), lean(o))).collect();
            true
        }
        Change::Apply(o) if in_scope(&o) => {
            let o = lean(o);
            let key = object_key(&o);
            map.insert(key, o.clone()).is_none_or(|old| old != o)
        }
        Change::Apply(_) => false,
        Change::Delete(key) => map.remove(&key).is_some(),
    }
}

/// The index shared by the watches, the reconcile loop and the executor, with a revision
/// counter that wakes the loop.
#[derive(Debug)]
pub struct SharedIndex {
    index: Mutex<ClusterIndex>,
    revision: watch::Sender<u64>,
}

impl SharedIndex {
    pub fn new(index: ClusterIndex) -> Self {
        Self { index: Mutex::new(index), revision: watch::Sender::new(0) }
    }

    /// Runs `f` on the index; wakes the loop if it reports a change.
    pub fn update(&self, f: impl FnOnce(&mut ClusterIndex) -> bool) {
        let changed = f(&mut self.index.lock());
        if changed {
            self.revision.send_modify(|r| *r += 1);
        }
    }

    /// Runs `f` on the index without waking anyone (the executor's write-through).
    pub fn quietly(&self, f: impl FnOnce(&mut ClusterIndex) -> bool) {
        f(&mut self.index.lock());
    }

    pub fn snapshot(&self) -> Snapshot {
        self.index.lock().snapshot()
    }

    /// A receiver that sees every revision bump.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Wakes the loop without a change (leadership gained, retry due, drift check).
    pub fn poke(&self) {
        self.revision.send_modify(|r| *r += 1);
    }
}

/// Namespaces of a scope, `None` when empty (all namespaces).
pub fn scope(namespaces: &[String]) -> Option<BTreeSet<String>> {
    (!namespaces.is_empty()).then(|| namespaces.iter().cloned().collect())
}
