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

#[test]
fn needed_identity_missing_on_scale_set_is_added() {
    let d = desired(
        &[mk_pod("app", "p", "node-0", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    let (needs, unknown) = needs(&d, NO_AAIS, &targets());
    assert!(unknown.is_empty());
    let n = &needs[&Target::from_provider_id(VMSS0).unwrap()];
    let delta = delta(n, &current(&[], false), &BTreeSet::new());
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
    let bindings = [mk_binding("app", "b", "id", "demo")];
    let ids = [mk_identity("app", "id")];
    let both = desired(
        &[mk_pod("app", "p0", "node-0", "demo"), mk_pod("app", "p1", "node-1", "demo")],
        &bindings,
        &ids,
        MatchOptions::default(),
    );
    let held = assigned(&both);
    let after = desired(&[mk_pod("app", "p1", "node-1", "demo")], &bindings, &ids, MatchOptions::default());
    let (needs, _) = needs(&after, &held, &targets());
    let delta = delta(needs.values().next().unwrap(), &current(&["id"], false), &BTreeSet::new());
    assert!(delta.is_empty(), "{delta:?}");
}

#[test]
fn identity_no_longer_needed_anywhere_on_the_scale_set_is_removed() {
    let d = desired(
        &[mk_pod("app", "p", "node-0", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    let held = assigned(&d);
    let empty = desired(&[], &[], &[], MatchOptions::default());
    let (needs, _) = needs(&empty, &held, &targets());
    let delta =
        delta(needs.values().next().unwrap(), &current(&["id", "cluster-id"], true), &BTreeSet::new());
    assert_eq!(delta.remove, BTreeSet::from([key("id")]));
}

#[test]
fn immutable_identity_is_never_removed() {
    let d = desired(
        &[mk_pod("app", "p", "node-0", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    let (needs, _) = needs(&desired(&[], &[], &[], MatchOptions::default()), &assigned(&d), &targets());
    let immutable = BTreeSet::from([client_id("id").to_uppercase().to_lowercase()]);
    assert!(delta(needs.values().next().unwrap(), &current(&["id"], false), &immutable).is_empty());
}

#[test]
fn identity_present_before_podid_is_marked_preexisting_and_never_removed() {
    let d = desired(
        &[mk_pod("app", "p", "node-0", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    let before = current(&["id"], false);
    let (n, _) = needs(&d, NO_AAIS, &targets());
    let n = n.values().next().unwrap();
    assert_eq!(preexisting_for_new(n, &before), BTreeSet::from([key("id")]));
    let held: Vec<_> = d.assignments.values().map(|a| a.to_object(true)).collect();
    let (gone, _) = needs(&desired(&[], &[], &[], MatchOptions::default()), &held, &targets());
    assert!(delta(gone.values().next().unwrap(), &before, &BTreeSet::new()).is_empty());
}

#[test]
fn identity_podid_added_is_not_preexisting_for_later_pods() {
    let bindings = [mk_binding("app", "b", "id", "demo")];
    let ids = [mk_identity("app", "id")];
    let first = desired(&[mk_pod("app", "p0", "node-0", "demo")], &bindings, &ids, MatchOptions::default());
    let held = assigned(&first);
    let both = desired(
        &[mk_pod("app", "p0", "node-0", "demo"), mk_pod("app", "p1", "node-1", "demo")],
        &bindings,
        &ids,
        MatchOptions::default(),
    );
    let (n, _) = needs(&both, &held, &targets());
    assert!(preexisting_for_new(n.values().next().unwrap(), &current(&["id"], false)).is_empty());
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
