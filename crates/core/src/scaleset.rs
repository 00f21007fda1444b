//! Which user-assigned identities must be on which scale set or VM (upstream §2.8–2.10).
//!
//! ```text
//!   node ──spec.providerID──▶ Target (scale set or VM)
//!   desired assignments on the target's nodes ──▶ needed   (identity ids, lower-cased)
//!   existing assigned identities on its nodes ──▶ held     (what podid may have put there)
//!   ARM GET of the target                      ──▶ current
//!   the target's ledger (what podid added)     ──▶ added, pre-existing   (see [`ledger`])
//!
//!   add    = needed − current
//!   remove = (added ∩ current) − needed − pre-existing − immutable
//! ```
//!
//! podid only ever removes an identity its ledger says it added to that target, that no desired
//! assignment on any node of the same target still needs, that was not on the target before podid
//! first added anything, and whose client id is not immutable. System-assigned identities are
//! never touched. Changes go out as delta PATCHes of at most 150 entries.
use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::LazyLock;

use podid_api::{AssignedState, AzureAssignedIdentity, IdentityKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub mod ledger;

pub use ledger::{Ledger, TargetLedger, delta};

use crate::diff::is_preexisting;
use crate::matching::Desired;

/// ARM accepts at most this many user-assigned identities in one update.
pub const MAX_IDENTITIES_PER_UPDATE: usize = 150;

/// The ARM resource whose identity list a node's pods use.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub subscription: String,
    pub resource_group: String,
    pub kind: TargetKind,
    pub name: String,
}

/// Scale set or standalone VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetKind {
    ScaleSet,
    VirtualMachine,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ty = match self.kind {
            TargetKind::ScaleSet => "virtualMachineScaleSets",
            TargetKind::VirtualMachine => "virtualMachines",
        };
        write!(
            f,
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/{ty}/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

/// A `spec.providerID` podid cannot map to a scale set or VM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "provider id {0:?} is not an Azure VM or scale set instance (expected \
     azure:///subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.Compute/virtualMachineScaleSets/<name>/virtualMachines/<n> \
     or .../virtualMachines/<name>)"
)]
pub struct InvalidProviderId(pub String);

static PROVIDER_ID: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    regex::Regex::new(
        r"(?i)^azure:///subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/Microsoft\.Compute/(virtualMachineScaleSets/([^/]+)/virtualMachines/[^/]+|virtualMachines/([^/]+))/?$",
    )
    .ok()
});

impl Target {
    /// Maps a node's `spec.providerID`. Subscription and resource group come from the provider id
    /// (upstream used the cloud config's, which broke nodes in other resource groups).
    pub fn from_provider_id(provider_id: &str) -> Result<Self, InvalidProviderId> {
        let caps = PROVIDER_ID
            .as_ref()
            .and_then(|re| re.captures(provider_id))
            .ok_or_else(|| InvalidProviderId(provider_id.to_string()))?;
        let (kind, name) = match (caps.get(4), caps.get(5)) {
            (Some(vmss), _) => (TargetKind::ScaleSet, vmss.as_str()),
            (None, Some(vm)) => (TargetKind::VirtualMachine, vm.as_str()),
            (None, None) => return Err(InvalidProviderId(provider_id.to_string())),
        };
        Ok(Self {
            subscription: caps[1].to_string(),
            resource_group: caps[2].to_string(),
            kind,
            name: name.to_string(),
        })
    }
}

/// A user-assigned identity as the target bookkeeping sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRef {
    /// Lower-cased ARM id.
    pub key: String,
    pub client_id: String,
}

/// What podid wants and holds on one target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetNeeds {
    /// Identities desired assignments on the target's nodes need.
    pub needed: BTreeMap<String, IdentityRef>,
    /// Identities existing assigned identities on the target's nodes hold (any state). Read only
    /// to seed a target's first ledger ([`Ledger::first`]) and to find legacy targets to visit.
    pub held: BTreeMap<String, IdentityRef>,
    /// Identities some existing assigned identity marks `podid.io/identity-preexisting` on this
    /// target (the same: only for the first ledger).
    pub marked_preexisting: BTreeSet<String>,
}

/// Groups needs and holdings by target. Nodes missing from `node_targets` are returned so the
/// caller can clean up their assignments without any ARM call (upstream §2.12).
pub fn needs<A: Borrow<AzureAssignedIdentity>>(
    desired: &Desired,
    current: &[A],
    node_targets: &BTreeMap<String, Target>,
) -> (BTreeMap<Target, TargetNeeds>, BTreeSet<String>) {
    let mut out: BTreeMap<Target, TargetNeeds> = BTreeMap::new();
    let mut unknown_nodes = BTreeSet::new();
    for a in desired.assignments.values() {
        let Some(key) = &a.resource_key else { continue };
        match node_targets.get(&a.node) {
            Some(t) => {
                let r = IdentityRef { key: key.clone(), client_id: a.identity.spec.client_id.clone() };
                out.entry(t.clone()).or_default().needed.insert(key.clone(), r);
            }
            None => {
                unknown_nodes.insert(a.node.clone());
            }
        }
    }
    for aai in current.iter().map(Borrow::borrow) {
        let Some(r) = held_identity(aai) else { continue };
        match node_targets.get(&aai.spec.node_name) {
            Some(t) => {
                let entry = out.entry(t.clone()).or_default();
                if is_preexisting(aai) {
                    entry.marked_preexisting.insert(r.key.clone());
                }
                entry.held.insert(r.key.clone(), r);
            }
            None => {
                unknown_nodes.insert(aai.spec.node_name.clone());
            }
        }
    }
    (out, unknown_nodes)
}

/// The user-assigned identity an existing assigned identity stands for, if it is one that ARM
/// assignment concerns. `Created` objects count too: a PATCH may have succeeded before the status
/// write failed, and holding them is what makes podid clean those up.
fn held_identity(aai: &AzureAssignedIdentity) -> Option<IdentityRef> {
    let identity = aai.spec.azure_identity_ref.as_deref()?;
    if identity.spec.kind() != Ok(IdentityKind::UserAssigned) || aai.state() == AssignedState::Unknown {
        return None;
    }
    let id = podid_api::resource_id::UserAssignedIdentityId::parse(&identity.spec.resource_id).ok()?;
    Some(IdentityRef { key: id.key(), client_id: identity.spec.client_id.clone() })
}

/// The identity block of a VM or scale set as ARM reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceIdentity {
    pub system_assigned: bool,
    /// Lower-cased ids of the user-assigned identities.
    pub user_assigned: BTreeSet<String>,
}

impl ResourceIdentity {
    /// Reads the `identity` object of an ARM VM/VMSS body (`None` or absent means no identity).
    pub fn from_arm(identity: Option<&Value>) -> Self {
        let Some(identity) = identity.filter(|v| v.is_object()) else { return Self::default() };
        let ty = identity.get("type").and_then(Value::as_str).unwrap_or("None");
        Self {
            system_assigned: ty.split(',').any(|t| t.trim().eq_ignore_ascii_case("SystemAssigned")),
            user_assigned: identity
                .get("userAssignedIdentities")
                .and_then(Value::as_object)
                .map(|m| m.keys().map(|k| k.to_ascii_lowercase()).collect())
                .unwrap_or_default(),
        }
    }

    /// The ARM `type` string for this state.
    pub fn type_str(&self) -> &'static str {
        match (self.system_assigned, !self.user_assigned.is_empty()) {
            (true, true) => "SystemAssigned, UserAssigned",
            (true, false) => "SystemAssigned",
            (false, true) => "UserAssigned",
            (false, false) => "None",
        }
    }
}

/// Identities to add to and remove from one target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub add: BTreeSet<String>,
    pub remove: BTreeSet<String>,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// One ARM PATCH body for the `identity` of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityPatch {
    /// The `type` after this patch.
    pub type_: &'static str,
    /// Delta entries: `true` adds (`{}`), `false` removes (`null`). Empty when the patch removes
    /// the last user-assigned identity (ARM wants the map omitted then).
    pub entries: BTreeMap<String, bool>,
    /// The state after this patch.
    pub after: ResourceIdentity,
}

impl IdentityPatch {
    /// The JSON body: `{"identity": {"type": ..., "userAssignedIdentities": {id: {} | null}}}`.
    pub fn body(&self) -> Value {
        let mut identity = Map::new();
        identity.insert("type".into(), Value::from(self.type_));
        if !self.entries.is_empty() {
            let map: Map<String, Value> = self
                .entries
                .iter()
                .map(|(k, add)| (k.clone(), if *add { json!({}) } else { Value::Null }))
                .collect();
            identity.insert("userAssignedIdentities".into(), Value::Object(map));
        }
        json!({ "identity": identity })
    }
}

/// Splits a delta into PATCHes of at most [`MAX_IDENTITIES_PER_UPDATE`] entries, removals first,
/// each with the `type` the resource has after it. An empty delta yields no PATCH.
pub fn patches(current: &ResourceIdentity, delta: &Delta) -> Vec<IdentityPatch> {
    let entries: Vec<(String, bool)> = delta
        .remove
        .iter()
        .filter(|k| current.user_assigned.contains(*k))
        .map(|k| (k.clone(), false))
        .chain(delta.add.iter().filter(|k| !current.user_assigned.contains(*k)).map(|k| (k.clone(), true)))
        .collect();
    let mut state = current.clone();
    let mut out = Vec::new();
    for chunk in entries.chunks(MAX_IDENTITIES_PER_UPDATE) {
        for (k, add) in chunk {
            if *add {
                state.user_assigned.insert(k.clone());
            } else {
                state.user_assigned.remove(k);
            }
        }
        let entries =
            if state.user_assigned.is_empty() { BTreeMap::new() } else { chunk.iter().cloned().collect() };
        out.push(IdentityPatch { type_: state.type_str(), entries, after: state.clone() });
    }
    out
}
