//! Deciding: a snapshot of the cluster → per-unit work for the executor. Pure (no I/O; time is
//! passed in), in two steps:
//!
//! ```text
//!  group (what has work)
//!   Snapshot ─▶ matching::desired ─▶ diff::plan(current AAIs) ─▶ create/update/delete/pending,
//!            │                                                     each to the Unit of its node
//!            └─▶ scaleset::needs + the ledgers ─▶ per Target: needed identities, what podid added
//!   a Target is also visited (no object work) when its ledger holds identities nothing needs,
//!   on the drift check (every Target with needed identities) and on an agent's re-check request
//!     Unit::Target(t) — assignments of user-assigned identities on t's nodes (ARM work)
//!     Unit::Direct    — service-principal assignments (no ARM) and assigned identities of nodes
//!                       that no longer exist (deleted without any ARM call)
//!  gate (what may start now)
//!   unit in flight, or backing off after a failure        ─▶ deferred (next_due when it is due)
//!   objects whose last write failed, still backing off    ─▶ left out until due
//!   identities ARM refused on t, still backing off        ─▶ held back from t's PATCH
//! ```
//!
//! With nothing changed, no unit has work, so the executor makes no ARM call at all.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use podid_api::{AzureAssignedIdentity, IdentityKind};
use podid_core::Diagnostic;
use podid_core::PodKey;
use podid_core::diff::plan;
use podid_core::matching::{Assignment, MatchOptions, desired, object_key};
use podid_core::scaleset::{Target, TargetNeeds, needs};
use tokio::time::Instant;

use crate::index::Snapshot;
use crate::ledger::StoredLedger;

/// Where a piece of work is carried out.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Unit {
    /// A scale set or VM: ARM GET and PATCH.
    Target(Target),
    /// No ARM call.
    Direct,
}

/// The work of one unit.
#[derive(Clone, Debug, Default)]
pub struct UnitWork {
    /// Identities podid wants and holds on the target (empty for [`Unit::Direct`]).
    pub needs: TargetNeeds,
    /// What podid added to the target, as stored (`None`: nothing yet).
    pub ledger: Option<Arc<StoredLedger>>,
    pub create: Vec<Assignment>,
    pub update: Vec<(Assignment, AzureAssignedIdentity)>,
    pub pending: Vec<(Assignment, AzureAssignedIdentity)>,
    /// Assigned identities to unassign (if needed) and delete.
    pub delete: Vec<AzureAssignedIdentity>,
    /// Identities not to add in this pass (backing off after ARM refused them).
    pub hold_back: BTreeSet<String>,
    /// Set when the node of these deletions is gone (events say `binding removed`).
    pub node_gone: bool,
    /// Read the target even without object work (drift check, re-check, unneeded additions).
    pub visit: bool,
}

impl UnitWork {
    fn has_object_work(&self) -> bool {
        !self.create.is_empty() || !self.update.is_empty() || !self.delete.is_empty()
    }

    /// Pending assignments whose identity may be tried now.
    fn has_due_pending(&self) -> bool {
        self.pending.iter().any(|(a, _)| a.resource_key.as_ref().is_none_or(|k| !self.hold_back.contains(k)))
    }

    fn has_work(&self) -> bool {
        self.has_object_work() || self.has_due_pending() || self.visit
    }

    /// Leaves out the objects `skip` names (their last write failed and is backing off).
    fn without(&mut self, skip: &BTreeSet<PodKey>) -> bool {
        let before = self.create.len() + self.update.len() + self.pending.len() + self.delete.len();
        self.create.retain(|a| !skip.contains(&a.key));
        self.update.retain(|(a, _)| !skip.contains(&a.key));
        self.pending.retain(|(a, _)| !skip.contains(&a.key));
        self.delete.retain(|d| !skip.contains(&object_key(d)));
        before != self.create.len() + self.update.len() + self.pending.len() + self.delete.len()
    }
}

/// Targets to read even without object work.
#[derive(Clone, Debug, Default)]
pub struct Visits {
    /// The drift check: every target with needed identities.
    pub all_needed: bool,
    /// Targets an agent asked to re-check.
    pub targets: BTreeSet<Target>,
}

/// What the loop remembers between passes and hands in.
#[derive(Clone, Debug, Default)]
pub struct Gates {
    /// Units being worked on right now.
    pub in_flight: BTreeSet<Unit>,
    /// Units backing off after a failure, until then.
    pub unit_retry: BTreeMap<Unit, Instant>,
    /// Identities (per target) ARM refused, not to be retried before then.
    pub identity_retry: BTreeMap<(Target, String), Instant>,
    /// Assigned identities whose last write failed, not to be retried before then.
    pub object_retry: BTreeMap<PodKey, Instant>,
}

/// Work per unit, before gating.
#[derive(Clone, Debug, Default)]
pub struct Grouped {
    pub units: BTreeMap<Unit, UnitWork>,
    /// Everything skipped while matching, plus nodes without a usable provider id.
    pub diagnostics: Vec<Diagnostic>,
}

/// The outcome of deciding.
#[derive(Clone, Debug, Default)]
pub struct WorkPlan {
    pub units: BTreeMap<Unit, UnitWork>,
    pub diagnostics: Vec<Diagnostic>,
    /// Units with work that wait for a gate (in flight or backing off).
    pub deferred: usize,
    /// The earliest instant something backing off becomes due.
    pub next_due: Option<Instant>,
}

/// Decides the work for one pass.
pub fn decide(snap: &Snapshot, opts: MatchOptions, visits: &Visits, gates: &Gates, now: Instant) -> WorkPlan {
    gate(group(snap, opts, visits), gates, now)
}

/// Whether an assignment needs ARM.
fn uses_arm(a: &Assignment) -> bool {
    a.kind == IdentityKind::UserAssigned && a.resource_key.is_some()
}

/// Groups the object work by unit and adds each target's needs, ledger and visits.
pub fn group(snap: &Snapshot, opts: MatchOptions, visits: &Visits) -> Grouped {
    let want = desired(&snap.pods, &snap.bindings, &snap.identities, opts);
    let targets: BTreeMap<String, Target> =
        snap.nodes.iter().filter_map(|(n, t)| t.as_ref().ok().map(|t| (n.clone(), t.clone()))).collect();
    let (mut per_target, _) = needs(&want, &snap.aais, &targets);
    let mut out = Grouped { diagnostics: want.diagnostics.clone(), ..Grouped::default() };
    let mut g = Grouper { snap, units: BTreeMap::new(), bad_nodes: BTreeSet::new(), diagnostics: Vec::new() };
    g.objects(plan(&want, &snap.aais));
    let mut units = g.units;
    out.diagnostics.extend(g.diagnostics);
    for t in snap.ledgers.keys() {
        per_target.entry(t.clone()).or_default();
    }
    for (t, n) in per_target {
        let ledger = snap.ledgers.get(&t).cloned();
        let unneeded = ledger.as_ref().is_some_and(|l| !l.value.ledger.unneeded(&n.needed).is_empty());
        let visit = unneeded || visits.targets.contains(&t) || (visits.all_needed && !n.needed.is_empty());
        let unit = Unit::Target(t);
        if visit || units.contains_key(&unit) {
            let work = units.entry(unit).or_default();
            work.visit |= visit;
            work.needs = n;
            work.ledger = ledger;
        }
    }
    out.units = units;
    out
}

/// Sorts a diff's objects into units.
struct Grouper<'a> {
    snap: &'a Snapshot,
    units: BTreeMap<Unit, UnitWork>,
    bad_nodes: BTreeSet<String>,
    diagnostics: Vec<Diagnostic>,
}

impl Grouper<'_> {
    fn objects(&mut self, diff: podid_core::diff::Plan) {
        for a in diff.create {
            if !self.node_exists(&a.node) {
                continue; // a pod on a node that is gone gets nothing
            }
            if let Some(u) = self.unit_of(&a.node, uses_arm(&a)) {
                self.units.entry(u).or_default().create.push(a);
            }
        }
        for (a, old) in diff.update {
            if !self.node_exists(&a.node) {
                self.gone(old);
            } else if let Some(u) = self.unit_of(&a.node, uses_arm(&a)) {
                self.units.entry(u).or_default().update.push((a, old));
            }
        }
        for (a, have) in diff.pending {
            if !self.node_exists(&a.node) {
                self.gone(have);
            } else if let Some(u) = self.unit_of(&a.node, uses_arm(&a)) {
                self.units.entry(u).or_default().pending.push((a, have));
            }
        }
        for old in diff.delete {
            if !self.node_exists(&old.spec.node_name) {
                self.gone(old);
            } else if let Some(u) = self.unit_of(&old.spec.node_name, aai_uses_arm(&old)) {
                self.units.entry(u).or_default().delete.push(old);
            }
        }
        // Assigned identities whose node is gone, even if still desired (upstream §2.12).
        for aai in &self.snap.aais {
            if !self.node_exists(&aai.spec.node_name) {
                self.gone((**aai).clone());
            }
        }
    }

    fn node_exists(&self, node: &str) -> bool {
        self.snap.nodes.contains_key(node)
    }

    /// The unit of a node: `None` when it exists without a usable target.
    fn unit_of(&mut self, node: &str, arm: bool) -> Option<Unit> {
        match self.snap.nodes.get(node) {
            None => Some(Unit::Direct),
            Some(_) if !arm => Some(Unit::Direct),
            Some(Ok(t)) => Some(Unit::Target(t.clone())),
            Some(Err(reason)) => {
                if self.bad_nodes.insert(node.to_string()) {
                    self.diagnostics
                        .push(Diagnostic::UnknownNode { node: node.into(), reason: reason.clone() });
                }
                None
            }
        }
    }

    fn gone(&mut self, aai: AzureAssignedIdentity) {
        let work = self.units.entry(Unit::Direct).or_default();
        work.node_gone = true;
        if !work.delete.iter().any(|d| same(d, &aai)) {
            work.delete.push(aai);
        }
    }
}

/// Keeps the units that may start now.
pub fn gate(grouped: Grouped, gates: &Gates, now: Instant) -> WorkPlan {
    let mut out = WorkPlan { diagnostics: grouped.diagnostics, ..WorkPlan::default() };
    let waiting_objects: BTreeSet<PodKey> = gates
        .object_retry
        .iter()
        .filter(|(_, until)| **until > now)
        .map(|(k, until)| {
            out.next_due = min_instant(out.next_due, *until);
            k.clone()
        })
        .collect();
    for (unit, mut work) in grouped.units {
        if let Unit::Target(t) = &unit {
            for ((rt, key), until) in &gates.identity_retry {
                if rt == t && *until > now {
                    work.hold_back.insert(key.clone());
                    out.next_due = min_instant(out.next_due, *until);
                }
            }
        }
        let skipped = work.without(&waiting_objects);
        if !work.has_work() {
            out.deferred += usize::from(skipped);
            continue;
        }
        if gates.in_flight.contains(&unit) {
            out.deferred += 1;
            continue;
        }
        if let Some(until) = gates.unit_retry.get(&unit).filter(|u| **u > now) {
            out.deferred += 1;
            out.next_due = min_instant(out.next_due, *until);
            continue;
        }
        out.units.insert(unit, work);
    }
    out
}

fn same(a: &AzureAssignedIdentity, b: &AzureAssignedIdentity) -> bool {
    a.metadata.name == b.metadata.name && a.metadata.namespace == b.metadata.namespace
}

fn min_instant(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The lower-cased ARM id of the user-assigned identity an assigned identity embeds.
pub fn aai_identity_key(aai: &AzureAssignedIdentity) -> Option<String> {
    let identity = aai.spec.azure_identity_ref.as_deref()?;
    if identity.spec.kind() != Ok(IdentityKind::UserAssigned) {
        return None;
    }
    podid_api::resource_id::UserAssignedIdentityId::parse(&identity.spec.resource_id).ok().map(|id| id.key())
}

fn aai_uses_arm(aai: &AzureAssignedIdentity) -> bool {
    aai_identity_key(aai).is_some()
}
