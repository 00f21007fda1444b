//! The index: what wakes the loop, scoping, and write-through versus stale watch events.
use podid_api::AssignedState::{Assigned, Created};
use podid_runtime::watch::Change;

use super::*;
use crate::index::{ClusterIndex, pod_slim};

fn with_rv(mut a: AzureAssignedIdentity, rv: u64) -> AzureAssignedIdentity {
    a.metadata.resource_version = Some(rv.to_string());
    a
}

#[test]
fn pod_status_churn_does_not_wake_the_loop_but_relabelling_does() {
    let mut idx = ClusterIndex::new(None);
    let pod = mk_pod("ns", "web", "n0", "app");
    assert!(idx.pods(Change::Apply(pod_slim(pod.clone()))));
    let mut ip = pod.clone();
    ip.status.as_mut().unwrap().pod_ip = Some("10.0.0.1".into());
    assert!(!idx.pods(Change::Apply(pod_slim(ip))), "an IP change decides nothing");
    let relabelled = mk_pod("ns", "web", "n0", "other");
    assert!(idx.pods(Change::Apply(pod_slim(relabelled))));
}

#[test]
fn objects_outside_the_scope_are_ignored() {
    let mut idx = ClusterIndex::new(crate::index::scope(&["mine".into()]));
    assert!(!idx.pods(Change::Apply(pod_slim(mk_pod("theirs", "web", "n0", "app")))));
    assert!(!idx.identities(Change::Apply(mk_identity("theirs", "id"))));
    let aai = written(
        &[mk_pod("theirs", "web", "n0", "app")],
        &[mk_binding("theirs", "b", "id", "app")],
        &[mk_identity("theirs", "id")],
        Created,
    );
    idx.aais(Change::Reset(aai));
    assert!(idx.snapshot().aais.is_empty(), "assigned identities of pods outside the scope are ignored");
}

#[test]
fn a_stale_watch_event_does_not_undo_a_write_through() {
    let mut idx = ClusterIndex::new(None);
    let objs = written(
        &[mk_pod("ns", "web", "n0", "app")],
        &[mk_binding("ns", "b", "id", "app")],
        &[mk_identity("ns", "id")],
        Created,
    );
    let created = with_rv(objs[0].clone(), 10);
    let mut assigned = with_rv(objs[0].clone(), 11);
    assigned.status.as_mut().unwrap().status = Assigned.as_str().into();
    assert!(idx.record_aai(assigned));
    assert!(!idx.aais(Change::Apply(created)), "older version ignored");
    assert_eq!(idx.snapshot().aais[0].state(), Assigned);
}

#[test]
fn a_deleted_assignment_is_not_revived_by_a_late_event() {
    let mut idx = ClusterIndex::new(None);
    let objs = written(
        &[mk_pod("ns", "web", "n0", "app")],
        &[mk_binding("ns", "b", "id", "app")],
        &[mk_identity("ns", "id")],
        Assigned,
    );
    let key = podid_core::matching::object_key(&objs[0]);
    idx.record_aai(with_rv(objs[0].clone(), 5));
    idx.forget_aai(&key, Some(7));
    assert!(!idx.aais(Change::Apply(with_rv(objs[0].clone(), 6))));
    assert!(idx.snapshot().aais.is_empty());
}
