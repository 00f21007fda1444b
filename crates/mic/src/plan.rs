//! Deciding: a snapshot of the cluster → per-unit work for the executor. Pure (no I/O; time is
//! passed in).
//!
//! ```text
//!  Snapshot ─▶ matching::desired ─▶ diff::plan(current AAIs) ─▶ create/update/delete/pending
//!          └─▶ scaleset::needs (per Target: needed, held, pre-existing)
//!                                   │
//!   grouped into Units by the node's Target:
//!     Unit::Target(t) — assignments of user-assigned identities on t's nodes (ARM work)
//!     Unit::Direct    — service-principal assignments (no ARM) and assigned identities of nodes
//!                       that no longer exist (deleted without any ARM call)
//! ```
//!
//! A unit is left out when it is still being worked on, when its target is backing off after a
//! failure, or when all it has is `Created` assignments whose identities are backing off. With
//! nothing changed, no unit has work, so the executor makes no ARM call at all. A drift check
//! adds every target that has needed identities.
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use podid_api::{AzureAssignedIdentity, IdentityKind};
use podid_core::Diagnostic;
use podid_core::diff::plan;
use podid_core::matching::{Assignment, MatchOptions, desired};
use podid_core::scaleset::{Target, TargetNeeds, needs};

use crate::index::Snapshot;

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
    pub create: Vec<Assignment>,
    pub update: Vec<(Assignment, AzureAssignedIdentity)>,
    pub pending: Vec<(Assignment, AzureAssignedIdentity)>,
    /// Assigned identities to unassign (if needed) and delete.
    pub delete: Vec<AzureAssignedIdentity>,
    /// Identities not to add in this pass (backing off after ARM refused them).
    pub hold_back: BTreeSet<String>,
    /// Set when the node of these deletions is gone (events say `binding removed`).
    pub node_gone: bool,
    /// Visit the target even without object work: an assignment moved away from it, so it may
    /// hold identities nothing needs any more.
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
}

/// What the loop remembers between passes and hands in.
#[derive(Clone, Debug, Default)]
pub struct Gates {
    /// Units being worked on right now.
    pub in_flight: BTreeSet<Unit>,
    /// Targets backing off after a failure, until then.
    pub target_retry: BTreeMap<Target, Instant>,
    /// Identities (per target) ARM refused, not to be retried before then.
    pub identity_retry: BTreeMap<(Target, String), Instant>,
    /// Visit every target with needed identities (drift check).
    pub drift_check: bool,
}

/// The outcome of deciding.
#[derive(Clone, Debug, Default)]
pub struct WorkPlan {
    pub units: BTreeMap<Unit, UnitWork>,
    /// Everything skipped while matching, plus nodes without a usable provider id.
    pub diagnostics: Vec<Diagnostic>,
    /// Units with work that wait for a gate (in flight or backing off).
    pub deferred: usize,
    /// The earliest instant a backing-off unit becomes due.
    pub next_due: Option<Instant>,
}

/// Whether an assignment needs ARM.
fn uses_arm(a: &Assignment) -> bool {
    a.kind == IdentityKind::UserAssigned && a.resource_key.is_some()
}

/// Decides the work for one pass.
pub fn decide(snap: &Snapshot, opts: MatchOptions, gates: &Gates, now: Instant) -> WorkPlan {
    let want = desired(&snap.pods, &snap.bindings, &snap.identities, opts);
    let diff = plan(&want, &snap.aais);
    let targets: BTreeMap<String, Target> =
        snap.nodes.iter().filter_map(|(n, t)| t.as_ref().ok().map(|t| (n.clone(), t.clone()))).collect();
    let (mut per_target, _) = needs(&want, &snap.aais, &targets);

    let mut out = WorkPlan { diagnostics: want.diagnostics.clone(), ..WorkPlan::default() };
    let mut units: BTreeMap<Unit, UnitWork> = BTreeMap::new();
    let mut bad_nodes = BTreeSet::new();
    // The unit of a node: None when it exists without a usable target.
    let mut unit_of = |node: &str, arm: bool| -> Option<Unit> {
        match snap.nodes.get(node) {
            None => Some(Unit::Direct),
            Some(_) if !arm => Some(Unit::Direct),
            Some(Ok(t)) => Some(Unit::Target(t.clone())),
            Some(Err(reason)) => {
                if bad_nodes.insert(node.to_string()) {
                    out.diagnostics
                        .push(Diagnostic::UnknownNode { node: node.into(), reason: reason.clone() });
                }
                None
            }
        }
    };
    let node_exists = |node: &str| snap.nodes.contains_key(node);

    for a in diff.create {
        if !node_exists(&a.node) {
            continue; // a pod on a node that is gone gets nothing
        }
        if let Some(u) = unit_of(&a.node, uses_arm(&a)) {
            units.entry(u).or_default().create.push(a);
        }
    }
    for (a, old) in diff.update {
        if !node_exists(&a.node) {
            push_gone(&mut units, old);
            continue;
        }
        if let Some(u) = unit_of(&a.node, uses_arm(&a)) {
            // The old node's target must also drop what it no longer needs.
            if let Some(Ok(t)) = snap.nodes.get(&old.spec.node_name)
                && Unit::Target(t.clone()) != u
                && aai_uses_arm(&old)
            {
                units.entry(Unit::Target(t.clone())).or_default().visit = true;
            }
            units.entry(u).or_default().update.push((a, old));
        }
    }
    for (a, have) in diff.pending {
        if !node_exists(&a.node) {
            push_gone(&mut units, have);
            continue;
        }
        if let Some(u) = unit_of(&a.node, uses_arm(&a)) {
            units.entry(u).or_default().pending.push((a, have));
        }
    }
    for old in diff.delete {
        if !node_exists(&old.spec.node_name) {
            push_gone(&mut units, old);
            continue;
        }
        if let Some(u) = unit_of(&old.spec.node_name, aai_uses_arm(&old)) {
            units.entry(u).or_default().delete.push(old);
        }
    }
    // Assigned identities whose node is gone, even if still desired (upstream §2.12).
    for aai in &snap.aais {
        if !node_exists(&aai.spec.node_name)
            && !units.get(&Unit::Direct).is_some_and(|w| w.delete.iter().any(|d| same(d, aai)))
        {
            push_gone(&mut units, (**aai).clone());
        }
    }
    if gates.drift_check {
        for (t, n) in &per_target {
            if !n.needed.is_empty() {
                units.entry(Unit::Target(t.clone())).or_default();
            }
        }
    }

    for (unit, mut work) in units {
        if let Unit::Target(t) = &unit {
            work.needs = per_target.remove(t).unwrap_or_default();
            for ((rt, key), until) in &gates.identity_retry {
                if rt == t && *until > now {
                    work.hold_back.insert(key.clone());
                    out.next_due = min_instant(out.next_due, *until);
                }
            }
        }
        let drift = gates.drift_check && matches!(unit, Unit::Target(_));
        if !(work.has_object_work() || work.has_due_pending() || drift || work.visit) {
            continue;
        }
        if gates.in_flight.contains(&unit) {
            out.deferred += 1;
            continue;
        }
        if let Unit::Target(t) = &unit
            && let Some(until) = gates.target_retry.get(t).filter(|u| **u > now)
        {
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

fn push_gone(units: &mut BTreeMap<Unit, UnitWork>, aai: AzureAssignedIdentity) {
    let work = units.entry(Unit::Direct).or_default();
    work.node_gone = true;
    if !work.delete.iter().any(|d| same(d, &aai)) {
        work.delete.push(aai);
    }
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
