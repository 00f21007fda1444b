use super::*;
use crate::diff::{is_preexisting, plan};
use crate::matching::{MatchOptions, desired};
use podid_api::{
    AAI_FINALIZER, AssignedState, AzureAssignedIdentity, AzureAssignedIdentityStatus, NODENAME_LABEL,
};

fn one(pod: PodView, identity: AzureIdentity) -> crate::matching::Desired {
    let name = identity.metadata.name.clone().unwrap();
    let ns = identity.metadata.namespace.clone().unwrap();
    desired(&[pod], &[mk_binding(&ns, "b", &name, "demo")], &[identity], MatchOptions::default())
}

fn with_state(mut a: AzureAssignedIdentity, state: AssignedState) -> AzureAssignedIdentity {
    a.status = Some(AzureAssignedIdentityStatus { status: state.as_str().into(), ..Default::default() });
    a
}

fn objects(d: &crate::matching::Desired, state: AssignedState) -> Vec<AzureAssignedIdentity> {
    d.assignments.values().map(|a| with_state(a.to_object(false), state)).collect()
}

#[test]
fn new_assignment_is_created_as_upstream_writes_it() {
    let d = one(mk_pod("app", "web-1", "aks-np-0000", "demo"), namespaced(mk_identity("app", "demo-id")));
    let p = plan(&d, NO_AAIS);
    assert_eq!(p.create.len(), 1);
    let obj = p.create[0].to_object(false);
    assert_eq!(obj.metadata.name.as_deref(), Some("web-1-app-demo-id"));
    assert_eq!(obj.metadata.namespace.as_deref(), Some("app"));
    assert_eq!(obj.metadata.labels.as_ref().unwrap()[NODENAME_LABEL], "aks-np-0000");
    assert_eq!(obj.metadata.finalizers.as_deref(), Some(&[AAI_FINALIZER.to_string()][..]));
    assert_eq!(obj.state(), AssignedState::Created);
    let json = serde_json::to_value(&obj).unwrap();
    assert_eq!(json["spec"]["nodename"], "aks-np-0000");
    assert_eq!(json["spec"]["podNamespace"], "app");
    assert_eq!(json["spec"]["azureIdentityRef"]["kind"], "AzureIdentity");
    assert_eq!(json["spec"]["azureIdentityRef"]["apiVersion"], "aadpodidentity.k8s.io/v1");
    assert_eq!(json["spec"]["azureBindingRef"]["spec"]["selector"], "demo");
    assert_eq!(json["status"]["status"], "Created");
    assert!(!is_preexisting(&obj));
}

#[test]
fn unchanged_cluster_plans_no_work() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let p = plan(&d, &objects(&d, AssignedState::Assigned));
    assert!(p.is_idle() && p.pending.is_empty(), "{p:?}");
}

#[test]
fn metadata_only_edit_of_identity_rewrites_nothing() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let current = objects(&d, AssignedState::Assigned);
    let mut edited = mk_identity("app", "id");
    edited.metadata.resource_version = Some("999".into());
    edited.metadata.labels = Some([("team".to_string(), "x".to_string())].into());
    let d2 = one(mk_pod("app", "p", "n", "demo"), edited);
    assert!(plan(&d2, &current).is_idle());
}

#[test]
fn in_place_identity_spec_change_updates_the_assignment_back_to_created() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let mut current = objects(&d, AssignedState::Assigned);
    current[0].metadata.resource_version = Some("7".into());
    let mut changed = mk_identity("app", "id");
    changed.spec.client_id = "new-client".into();
    let d2 = one(mk_pod("app", "p", "n", "demo"), changed);
    let p = plan(&d2, &current);
    assert_eq!(p.update.len(), 1);
    let (want, old) = &p.update[0];
    let new = want.to_update(old, false);
    assert_eq!(new.metadata.resource_version.as_deref(), Some("7"));
    assert_eq!(new.state(), AssignedState::Created);
    assert_eq!(new.spec.azure_identity_ref.unwrap().spec.client_id, "new-client");
}

#[test]
fn pod_moving_nodes_updates_label_and_nodename() {
    let d = one(mk_pod("app", "p", "node-a", "demo"), mk_identity("app", "id"));
    let current = objects(&d, AssignedState::Assigned);
    let d2 = one(mk_pod("app", "p", "node-b", "demo"), mk_identity("app", "id"));
    let p = plan(&d2, &current);
    let (want, old) = &p.update[0];
    let new = want.to_update(old, false);
    assert_eq!(new.metadata.labels.unwrap()[NODENAME_LABEL], "node-b");
    assert_eq!(new.spec.node_name, "node-b");
}

#[test]
fn recreated_identity_with_new_uid_updates_the_assignment() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let current = objects(&d, AssignedState::Assigned);
    let mut recreated = mk_identity("app", "id");
    recreated.metadata.uid = Some("another-uid".into());
    assert_eq!(plan(&one(mk_pod("app", "p", "n", "demo"), recreated), &current).update.len(), 1);
}

#[test]
fn deleted_pod_deletes_its_assignment() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let current = objects(&d, AssignedState::Assigned);
    let empty = desired(&[], &[], &[], MatchOptions::default());
    assert_eq!(plan(&empty, &current).delete.len(), 1);
}

#[test]
fn created_assignment_is_pending_until_assigned() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let p = plan(&d, &objects(&d, AssignedState::Created));
    assert!(p.is_idle());
    assert_eq!(p.pending.len(), 1);
}

#[test]
fn assignment_being_deleted_is_finished_before_it_is_recreated() {
    let d = one(mk_pod("app", "p", "n", "demo"), mk_identity("app", "id"));
    let mut current = objects(&d, AssignedState::Assigned);
    current[0].metadata.deletion_timestamp =
        Some(podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Default::default()));
    let p = plan(&d, &current);
    assert_eq!((p.delete.len(), p.create.len()), (1, 0));
}
