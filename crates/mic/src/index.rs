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

use k8s_openapi::api::core::v1::Event as CoreEvent;
use parking_lot::Mutex;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, Node, Pod, Resource};
use podid_core::matching::{is_eligible, object_key};
use podid_core::scaleset::Target;
use podid_core::{PodKey, PodView};
use podid_runtime::watch::{Change, lean};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::warn;

use crate::ledger::{BadLedger, StoredLedger};

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
    /// What podid added to each target (shared with the index).
    pub ledgers: BTreeMap<Target, Arc<StoredLedger>>,
}

#[derive(Clone, Debug)]
struct PodEntry {
    view: PodView,
    uid: Option<String>,
    eligible_since: Option<Instant>,
}

/// A pod as the watch delivers it to the index: what matching reads, and its uid (for Events).
#[derive(Clone, Debug)]
pub struct PodSlim {
    pub view: PodView,
    pub uid: Option<String>,
}

/// An agent's report that IMDS refused an identity of an `Assigned` assigned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DriftReport {
    /// The assigned identity the Event is about.
    pub aai: PodKey,
}

/// The reason agents give such reports (the controller watches Events with it).
pub const DRIFT_REASON: &str = "IdentityNotOnNode";

impl DriftReport {
    pub fn from_event(e: CoreEvent) -> Self {
        let o = e.involved_object;
        Self { aai: PodKey::new(o.namespace.unwrap_or_default(), o.name.unwrap_or_default()) }
    }
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
    ledgers: BTreeMap<Target, Arc<StoredLedger>>,
    /// Ledger object name → its target (deletions arrive by name).
    ledger_names: BTreeMap<String, Target>,
    /// Ledgers the executor deleted: object name → resourceVersion of its last write.
    ledger_tombstones: BTreeMap<String, u64>,
    /// Targets agents reported since the loop last looked.
    rechecks: BTreeSet<Target>,
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

/// A pod reduced to what matching reads (and its uid), as soon as the watch decodes it.
pub fn pod_slim(pod: Pod) -> PodSlim {
    PodSlim { view: PodView::from_pod(&pod), uid: pod.metadata.uid }
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
    pub fn pods(&mut self, change: Change<PodSlim>) -> bool {
        let now = Instant::now();
        match change {
            Change::Reset(all) => {
                let old = std::mem::take(&mut self.pods);
                let scope = self.scope.clone();
                let in_scope = |ns: &str| scope.as_ref().is_none_or(|s| s.contains(ns));
                for PodSlim { view, uid } in all.into_iter().filter(|p| in_scope(&p.view.key.namespace)) {
                    let since = old.get(&view.key).and_then(|e| e.eligible_since);
                    let eligible_since = is_eligible(&view).then(|| since.unwrap_or(now));
                    self.pods.insert(view.key.clone(), PodEntry { view, uid, eligible_since });
                }
                true
            }
            Change::Apply(PodSlim { view, uid }) => {
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
                self.pods.insert(view.key.clone(), PodEntry { view, uid, eligible_since });
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

    /// The uid of a pod (for the Events that concern it).
    pub fn pod_uid(&self, key: &PodKey) -> Option<String> {
        self.pods.get(key).and_then(|p| p.uid.clone())
    }

    /// Applies a ledger change from the watch (bad ledgers are logged and left out).
    pub fn ledgers(&mut self, change: Change<Result<StoredLedger, BadLedger>>) -> bool {
        match change {
            Change::Reset(all) => {
                self.ledgers.clear();
                self.ledger_names.clear();
                self.ledger_tombstones.clear();
                for l in all {
                    self.insert_ledger(l);
                }
                true
            }
            Change::Apply(l) => self.insert_ledger(l),
            Change::Delete(key) => {
                self.ledger_tombstones.remove(&key.name);
                match self.ledger_names.remove(&key.name) {
                    Some(t) => self.ledgers.remove(&t).is_some(),
                    None => false,
                }
            }
        }
    }

    fn insert_ledger(&mut self, l: Result<StoredLedger, BadLedger>) -> bool {
        match l {
            Ok(l) => self.record_ledger(l),
            Err(bad) => {
                warn!(error = %bad, "Ignoring a ledger that cannot be read");
                false
            }
        }
    }

    /// Records a ledger the executor wrote (or the watch reported), unless a newer version is
    /// known or it was deleted since.
    pub fn record_ledger(&mut self, l: StoredLedger) -> bool {
        let incoming = l.rv();
        if let (Some(dead), Some(v)) = (self.ledger_tombstones.get(&l.name), incoming)
            && v <= *dead
        {
            return false;
        }
        let target = l.value.target.clone();
        if let Some(have) = self.ledgers.get(&target)
            && let (Some(h), Some(v)) = (have.rv(), incoming)
            && v <= h
        {
            return false;
        }
        self.ledger_tombstones.remove(&l.name);
        self.ledger_names.insert(l.name.clone(), target.clone());
        self.ledgers.insert(target, Arc::new(l));
        true
    }

    /// Records that the executor deleted a ledger (its last known version).
    pub fn forget_ledger(&mut self, name: &str, last_rv: Option<u64>) -> bool {
        if let Some(v) = last_rv {
            self.ledger_tombstones.insert(name.to_string(), v);
        }
        match self.ledger_names.remove(name) {
            Some(t) => self.ledgers.remove(&t).is_some(),
            None => false,
        }
    }

    /// Applies an agent's drift report: queues the target of the assigned identity it names (only
    /// a live event counts; a listing is history).
    pub fn drift_reports(&mut self, change: Change<DriftReport>) -> bool {
        let Change::Apply(report) = change else { return false };
        let Some(aai) = self.aais.get(&report.aai) else { return false };
        if aai.state() != podid_api::AssignedState::Assigned {
            return false;
        }
        match self.nodes.get(&aai.spec.node_name) {
            Some(Ok(t)) => {
                self.rechecks.insert(t.clone());
                true
            }
            _ => false,
        }
    }

    /// The targets agents reported since the last call.
    pub fn take_rechecks(&mut self) -> BTreeSet<Target> {
        std::mem::take(&mut self.rechecks)
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
            ledgers: self.ledgers.clone(),
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

    /// Runs `f` on the index without waking anyone (the executor's write-through, reads).
    pub fn quietly<R>(&self, f: impl FnOnce(&mut ClusterIndex) -> R) -> R {
        f(&mut self.index.lock())
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
