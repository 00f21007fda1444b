//! The ledger: what podid put on one scale set or VM, kept where podid can always read it back
//! (the controller stores it as a ConfigMap), so it can always take it off again.
//!
//! ```text
//!  first visit (no ledger yet):  preexisting := current − legacy;  added := legacy ∩ current
//!                                (legacy: what assigned identities written without a ledger hold
//!                                 and do not mark pre-existing)
//!  every state read (GET/PATCH): preexisting ∩= current
//!                                added := added ∩ (current ∪ needed), minus immutable
//!  before a PATCH adding A:      added ∪= A             (stored first: a crash after the PATCH
//!                                                        leaves nothing podid does not know it added)
//!  remove = (added ∩ current) − needed − preexisting − immutable
//!  add    = needed − current
//! ```
//!
//! The pre-existing decision is made once, from the identities on the target before podid first
//! added anything; deleting and re-creating assigned identities, restarts and leader changes do
//! not touch it. Invariants: `added` and `preexisting` are disjoint; a target podid added nothing
//! to needs no ledger (everything on it is someone else's), so a ledger whose `added` is empty is
//! deleted.
use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{IdentityRef, ResourceIdentity, Target, TargetNeeds};

/// The label every stored ledger carries (the controller stores one ConfigMap per target in its
/// leader-election namespace; `podid uninstall` reads them).
pub const LEDGER_LABEL: &str = "podid.io/ledger";
/// The ConfigMap data key holding the [`TargetLedger`] as JSON.
pub const LEDGER_KEY: &str = "ledger.json";

/// What podid put on one target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    /// Lower-cased ids that were on the target before podid first added anything (never removed).
    pub preexisting: BTreeSet<String>,
    /// Lower-cased ids podid added (or is about to add), with their client ids.
    pub added: BTreeMap<String, String>,
}

impl Ledger {
    /// The ledger of a target podid visits for the first time: everything on it is someone
    /// else's, except what assigned identities written without a ledger (by an earlier podid or by
    /// upstream's controller) hold without marking it pre-existing.
    pub fn first(current: &ResourceIdentity, legacy: &TargetNeeds) -> Self {
        let added: BTreeMap<String, String> = legacy
            .held
            .values()
            .filter(|r| current.user_assigned.contains(&r.key) && !legacy.marked_preexisting.contains(&r.key))
            .map(|r| (r.key.clone(), r.client_id.clone()))
            .collect();
        let preexisting = current.user_assigned.iter().filter(|k| !added.contains_key(*k)).cloned().collect();
        Self { preexisting, added }
    }

    /// Folds in a state read from ARM: what is gone is no longer pre-existing, and podid stops
    /// tracking what is gone and unneeded, and what is immutable (it will never remove those).
    pub fn observe(
        &mut self,
        current: &ResourceIdentity,
        needed: &BTreeMap<String, IdentityRef>,
        immutable_client_ids: &BTreeSet<String>,
    ) {
        self.preexisting.retain(|k| current.user_assigned.contains(k));
        self.added.retain(|k, client| {
            (current.user_assigned.contains(k) || needed.contains_key(k))
                && !immutable_client_ids.contains(&client.to_ascii_lowercase())
        });
    }

    /// Records that podid is about to add `add` (before the PATCH goes out).
    pub fn intend(&mut self, add: &BTreeSet<String>, needed: &BTreeMap<String, IdentityRef>) {
        for k in add {
            let client = needed.get(k).map(|r| r.client_id.clone()).unwrap_or_default();
            self.preexisting.remove(k);
            self.added.insert(k.clone(), client);
        }
    }

    /// Identities podid added that nothing needs any more: the target deserves a visit.
    pub fn unneeded(&self, needed: &BTreeMap<String, IdentityRef>) -> BTreeSet<String> {
        self.added.keys().filter(|k| !needed.contains_key(*k)).cloned().collect()
    }

    /// Whether the ledger records nothing podid must ever remove (it can be deleted).
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
    }
}

/// A ledger together with the target it describes, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetLedger {
    pub target: Target,
    #[serde(flatten)]
    pub ledger: Ledger,
}

/// The change that brings `current` to what is needed, removing only what the ledger says podid
/// added. `immutable_client_ids` must be lower-cased.
pub fn delta(
    needs: &TargetNeeds,
    ledger: &Ledger,
    current: &ResourceIdentity,
    immutable_client_ids: &BTreeSet<String>,
) -> super::Delta {
    let add = needs.needed.keys().filter(|k| !current.user_assigned.contains(*k)).cloned().collect();
    let remove = ledger
        .added
        .iter()
        .filter(|(k, _)| current.user_assigned.contains(*k))
        .filter(|(k, _)| !needs.needed.contains_key(*k))
        .filter(|(k, _)| !ledger.preexisting.contains(*k))
        .filter(|(_, client)| !immutable_client_ids.contains(&client.to_ascii_lowercase()))
        .map(|(k, _)| k.clone())
        .collect();
    super::Delta { add, remove }
}
