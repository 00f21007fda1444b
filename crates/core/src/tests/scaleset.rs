use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use super::*;
use crate::diff::plan;
use crate::matching::{MatchOptions, desired};
use crate::scaleset::*;

const VMSS0: &str = "azure:///subscriptions/S/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0/virtualMachines/0";
const VMSS0_1: &str = "azure:///subscriptions/S/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0/virtualMachines/1";

fn key(name: &str) -> String {
    resource_id(name).to_lowercase()
}

fn current(ids: &[&str], system: bool) -> ResourceIdentity {
    ResourceIdentity { system_assigned: system, user_assigned: ids.iter().map(|i| key(i)).collect() }
}

fn targets() -> BTreeMap<String, Target> {
    BTreeMap::from([
        ("node-0".to_string(), Target::from_provider_id(VMSS0).unwrap()),
        ("node-1".to_string(), Target::from_provider_id(VMSS0_1).unwrap()),
    ])
}

#[test]
fn scale_set_instance_provider_id_maps_to_the_scale_set() {
    let t = Target::from_provider_id(VMSS0).unwrap();
    assert_eq!(
        (t.kind, t.name.as_str(), t.resource_group.as_str()),
        (TargetKind::ScaleSet, "vmss0", "MC_rg")
    );
    assert_eq!(t, Target::from_provider_id(VMSS0_1).unwrap());
}

#[test]
fn vm_provider_id_maps_to_the_vm_case_insensitively() {
    let t = Target::from_provider_id(
        "azure:///SUBSCRIPTIONS/S/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-1",
    )
    .unwrap();
    assert_eq!((t.kind, t.name.as_str()), (TargetKind::VirtualMachine, "vm-1"));
}

#[test]
fn non_azure_provider_id_is_rejected_with_the_expected_shape() {
    let err = Target::from_provider_id("kind://docker/kind/node").unwrap_err();
    assert!(err.to_string().contains("expected azure:///subscriptions/"));
}

fn pod_on(node: &str) -> crate::matching::Desired {
    desired(
        &[mk_pod("app", "p", node, "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    )
}

fn nothing() -> crate::matching::Desired {
    desired(&[], &[], &[], MatchOptions::default())
}

/// The needs of vmss0 (empty when nothing is needed or held there).
fn vmss0(d: &crate::matching::Desired, aais: &[podid_api::AzureAssignedIdentity]) -> TargetNeeds {
    needs(d, aais, &targets()).0.remove(&Target::from_provider_id(VMSS0).unwrap()).unwrap_or_default()
}

/// A ledger saying podid added `ids` (and found `pre` there first).
fn ledger(ids: &[&str], pre: &[&str]) -> Ledger {
    Ledger {
        preexisting: pre.iter().map(|i| key(i)).collect(),
        added: ids.iter().map(|i| (key(i), client_id(i))).collect(),
    }
}

#[test]
fn needed_identity_missing_on_scale_set_is_added() {
    let n = vmss0(&pod_on("node-0"), NO_AAIS);
    let delta = delta(&n, &Ledger::default(), &current(&[], false), &BTreeSet::new());
    assert_eq!(delta.add, BTreeSet::from([key("id")]));
    assert!(delta.remove.is_empty());
}

fn assigned(d: &crate::matching::Desired) -> Vec<podid_api::AzureAssignedIdentity> {
    d.assignments
        .values()
        .map(|a| {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = "Assigned".into();
            o
        })
        .collect()
}

#[test]
fn identity_still_used_on_another_node_of_the_same_scale_set_is_kept() {
    let n = vmss0(&pod_on("node-1"), NO_AAIS);
    let delta = delta(&n, &ledger(&["id"], &[]), &current(&["id"], false), &BTreeSet::new());
    assert!(delta.is_empty(), "{delta:?}");
}

#[test]
fn identity_podid_added_and_nothing_needs_is_removed() {
    let n = vmss0(&nothing(), NO_AAIS);
    let delta = delta(&n, &ledger(&["id"], &[]), &current(&["id", "cluster-id"], true), &BTreeSet::new());
    assert_eq!(delta.remove, BTreeSet::from([key("id")]), "only what podid added goes");
}

#[test]
fn identity_podid_added_is_removed_even_when_its_assignment_was_deleted_by_hand() {
    // No assigned identity holds it any more: the ledger alone says podid put it there.
    let n = vmss0(&nothing(), NO_AAIS);
    assert!(n.held.is_empty());
    let delta = delta(&n, &ledger(&["id"], &[]), &current(&["id"], false), &BTreeSet::new());
    assert_eq!(delta.remove, BTreeSet::from([key("id")]));
}

#[test]
fn identity_podid_did_not_add_is_never_removed_even_when_an_assignment_held_it() {
    let held = assigned(&pod_on("node-0"));
    let n = vmss0(&nothing(), &held);
    assert!(delta(&n, &Ledger::default(), &current(&["id"], false), &BTreeSet::new()).is_empty());
}

#[test]
fn immutable_identity_is_never_removed() {
    let immutable = BTreeSet::from([client_id("id").to_lowercase()]);
    let n = vmss0(&nothing(), NO_AAIS);
    let mut l = ledger(&["id"], &[]);
    l.added.insert(key("id"), client_id("id").to_uppercase());
    assert!(delta(&n, &l, &current(&["id"], false), &immutable).is_empty());
}

#[test]
fn the_first_ledger_holds_everything_on_the_target_as_preexisting() {
    let l = Ledger::first(&current(&["id", "pool"], true), &vmss0(&pod_on("node-0"), NO_AAIS));
    assert_eq!(l, ledger(&[], &["id", "pool"]));
    let gone = vmss0(&nothing(), NO_AAIS);
    assert!(delta(&gone, &l, &current(&["id", "pool"], true), &BTreeSet::new()).is_empty());
}

#[test]
fn the_first_ledger_takes_over_what_legacy_assignments_hold_unless_they_mark_it_preexisting() {
    let d = pod_on("node-0");
    let legacy = vmss0(&d, &assigned(&d));
    let l = Ledger::first(&current(&["id", "pool"], false), &legacy);
    assert_eq!(l, ledger(&["id"], &["pool"]), "held and unmarked: podid's");
    let marked: Vec<_> = d.assignments.values().map(|a| a.to_object(true)).collect();
    let l = Ledger::first(&current(&["id", "pool"], false), &vmss0(&d, &marked));
    assert_eq!(l, ledger(&[], &["id", "pool"]), "marked pre-existing: not podid's");
}

#[test]
fn intending_an_addition_records_it_before_the_patch_and_makes_it_podids() {
    let n = vmss0(&pod_on("node-0"), NO_AAIS);
    // Pre-existing once, then removed by hand: podid adds it back, and it is podid's from then on.
    let mut l = ledger(&[], &["id"]);
    l.observe(&current(&[], false), &n.needed, &BTreeSet::new());
    let d = delta(&n, &l, &current(&[], false), &BTreeSet::new());
    l.intend(&d.add, &n.needed);
    assert_eq!(l, ledger(&["id"], &[]));
    assert_eq!(l.added[&key("id")], client_id("id"));
}

#[test]
fn observing_forgets_what_is_gone_and_unneeded_and_what_is_immutable() {
    let n = vmss0(&pod_on("node-0"), NO_AAIS);
    let mut l = ledger(&["id", "old", "gone", "frozen"], &["pool", "was-pool"]);
    let immutable = BTreeSet::from([client_id("frozen").to_lowercase()]);
    l.observe(&current(&["old", "pool", "frozen"], false), &n.needed, &immutable);
    assert_eq!(
        l,
        ledger(&["id", "old"], &["pool"]),
        "needed stays; on the target stays; gone and unneeded goes"
    );
}

#[test]
fn a_target_with_unneeded_additions_deserves_a_visit() {
    let n = vmss0(&pod_on("node-0"), NO_AAIS);
    assert_eq!(ledger(&["id", "old"], &[]).unneeded(&n.needed), BTreeSet::from([key("old")]));
    assert!(ledger(&["id"], &["pool"]).unneeded(&n.needed).is_empty());
    assert!(Ledger::default().is_empty() && !ledger(&["id"], &[]).is_empty());
}

#[test]
fn a_stored_ledger_reads_back_as_written() {
    let stored =
        TargetLedger { target: Target::from_provider_id(VMSS0).unwrap(), ledger: ledger(&["id"], &["pool"]) };
    let text = serde_json::to_string(&stored).unwrap();
    assert!(text.contains("\"kind\":\"scaleSet\"") && text.contains("\"preexisting\""), "{text}");
    assert_eq!(serde_json::from_str::<TargetLedger>(&text).unwrap(), stored);
}

#[test]
fn identity_on_unknown_node_is_reported_for_cleanup_without_arm_work() {
    let d = desired(
        &[mk_pod("app", "p", "gone-node", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    let (needs, unknown) = needs(&d, NO_AAIS, &targets());
    assert!(needs.is_empty());
    assert_eq!(unknown, BTreeSet::from(["gone-node".to_string()]));
}

#[test]
fn service_principal_assignments_never_touch_arm() {
    let d = desired(
        &[mk_pod("app", "p", "node-0", "demo")],
        &[mk_binding("app", "b", "sp", "demo")],
        &[mk_sp_identity("app", "sp")],
        MatchOptions::default(),
    );
    assert!(plan(&d, NO_AAIS).create.len() == 1);
    assert!(needs(&d, NO_AAIS, &targets()).0.is_empty());
}

#[test]
fn first_identity_turns_none_into_user_assigned() {
    let p =
        patches(&current(&[], false), &Delta { add: BTreeSet::from([key("a")]), remove: BTreeSet::new() });
    assert_eq!(
        p[0].body(),
        json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {key("a"): {}}}})
    );
}

#[test]
fn system_assigned_is_kept_in_the_combined_type() {
    let p = patches(&current(&[], true), &Delta { add: BTreeSet::from([key("a")]), remove: BTreeSet::new() });
    assert_eq!(p[0].type_, "SystemAssigned, UserAssigned");
}

#[test]
fn removing_the_last_identity_omits_the_map_and_keeps_system_assigned() {
    let p =
        patches(&current(&["a"], true), &Delta { add: BTreeSet::new(), remove: BTreeSet::from([key("a")]) });
    assert_eq!(p[0].body(), json!({"identity": {"type": "SystemAssigned"}}));
    let p =
        patches(&current(&["a"], false), &Delta { add: BTreeSet::new(), remove: BTreeSet::from([key("a")]) });
    assert_eq!(p[0].body(), json!({"identity": {"type": "None"}}));
}

#[test]
fn removal_of_one_of_several_sends_null_for_it_only() {
    let p = patches(
        &current(&["a", "b"], false),
        &Delta { add: BTreeSet::new(), remove: BTreeSet::from([key("a")]) },
    );
    assert_eq!(
        p[0].body(),
        json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {key("a"): null}}})
    );
}

#[test]
fn empty_delta_sends_no_patch() {
    assert!(patches(&current(&["a"], false), &Delta::default()).is_empty());
}

#[test]
fn more_than_150_changes_are_split_into_patches_of_at_most_150() {
    let add: BTreeSet<String> = (0..320).map(|i| key(&format!("id{i:03}"))).collect();
    let p = patches(&current(&[], false), &Delta { add, remove: BTreeSet::new() });
    assert_eq!(p.iter().map(|x| x.entries.len()).collect::<Vec<_>>(), [150, 150, 20]);
    assert_eq!(p.last().unwrap().after.user_assigned.len(), 320);
}

#[test]
fn arm_identity_block_is_read_case_insensitively() {
    let r = ResourceIdentity::from_arm(Some(&json!({"type": "SystemAssigned, UserAssigned",
        "userAssignedIdentities": {resource_id("A").replace("resourcegroups", "resourceGroups"): {"clientId": "c"}}})));
    assert!(r.system_assigned);
    assert_eq!(r.user_assigned, BTreeSet::from([key("a")]));
    assert_eq!(ResourceIdentity::from_arm(None), ResourceIdentity::default());
}
