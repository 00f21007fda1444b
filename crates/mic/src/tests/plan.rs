//! The planner: which units get work (grouping), and what stops them (gating).
use std::collections::BTreeMap;
use std::time::Duration;

use podid_api::AssignedState::{Assigned, Created};
use podid_core::matching::MatchOptions;
use podid_core::scaleset::{Ledger, TargetLedger};
use podid_runtime::watch::Change;
use tokio::time::Instant;

use super::*;
use crate::index::{ClusterIndex, NodeView, Snapshot, pod_slim};
use crate::ledger::StoredLedger;
use crate::plan::{Gates, Unit, Visits, WorkPlan, gate, group};

fn decide(snap: &Snapshot, _: MatchOptions, gates: &Gates, now: Instant) -> WorkPlan {
    crate::plan::decide(snap, MatchOptions::default(), &Visits::default(), gates, now)
}

fn with_ledger(mut snap: Snapshot, vmss: &str, added: &[&str]) -> Snapshot {
    let target = NodeView::from_node(mk_node("x", vmss, 0)).target.unwrap();
    let ledger = Ledger {
        added: added.iter().map(|i| (key(i), format!("client-{i}"))).collect(),
        ..Ledger::default()
    };
    let stored = StoredLedger {
        name: crate::ledger::object_name(&target),
        resource_version: Some("1".into()),
        value: TargetLedger { target: target.clone(), ledger },
    };
    snap.ledgers.insert(target, std::sync::Arc::new(stored));
    snap
}

fn snapshot(
    pods: Vec<Pod>,
    nodes: Vec<Node>,
    ids: Vec<AzureIdentity>,
    bindings: Vec<AzureIdentityBinding>,
    aais: Vec<AzureAssignedIdentity>,
) -> Snapshot {
    let mut idx = ClusterIndex::new(None);
    idx.pods(Change::Reset(pods.into_iter().map(pod_slim).collect()));
    idx.nodes(Change::Reset(nodes.into_iter().map(NodeView::from_node).collect()));
    idx.identities(Change::Reset(ids));
    idx.bindings(Change::Reset(bindings));
    idx.aais(Change::Reset(aais));
    idx.snapshot()
}

fn world() -> (Vec<Pod>, Vec<Node>, Vec<AzureIdentity>, Vec<AzureIdentityBinding>) {
    (
        vec![mk_pod("ns", "web", "n0", "app")],
        vec![mk_node("n0", "vmss0", 0), mk_node("n1", "vmss0", 1)],
        vec![mk_identity("ns", "id")],
        vec![mk_binding("ns", "b", "id", "app")],
    )
}

fn target_units(plan: &crate::plan::WorkPlan) -> Vec<String> {
    plan.units
        .keys()
        .filter_map(|u| match u {
            Unit::Target(t) => Some(t.name.clone()),
            Unit::Direct => None,
        })
        .collect()
}

#[test]
fn a_new_pod_gives_its_scale_set_one_unit_with_the_creation() {
    let (pods, nodes, ids, bindings) = world();
    let snap = snapshot(pods, nodes, ids, bindings, vec![]);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert_eq!(target_units(&plan), vec!["vmss0"]);
    let work = plan.units.values().next().unwrap();
    assert_eq!(work.create.len(), 1);
    assert!(work.needs.needed.contains_key(&key("id")));
}

#[test]
fn nothing_changed_means_no_unit_at_all() {
    let (pods, nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Assigned);
    let snap = snapshot(pods, nodes, ids, bindings, aais);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert!(plan.units.is_empty(), "{:?}", plan.units.keys());
}

#[test]
fn drift_check_visits_every_scale_set_with_needed_identities() {
    let (pods, nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Assigned);
    let snap = snapshot(pods, nodes, ids, bindings, aais);
    let visits = Visits { all_needed: true, ..Visits::default() };
    let plan =
        crate::plan::decide(&snap, MatchOptions::default(), &visits, &Gates::default(), Instant::now());
    assert_eq!(target_units(&plan), vec!["vmss0"]);
}

#[test]
fn an_agent_s_recheck_visits_that_scale_set_only() {
    let (pods, mut nodes, ids, bindings) = world();
    nodes.push(mk_node("m0", "vmss1", 0));
    let mut pods = pods;
    pods.push(mk_pod("ns", "api", "m0", "app"));
    let aais = written(&pods, &bindings, &ids, Assigned);
    let snap = snapshot(pods, nodes, ids, bindings, aais);
    let t1 = snap.nodes["m0"].clone().unwrap();
    let visits = Visits { targets: [t1].into(), ..Visits::default() };
    let plan =
        crate::plan::decide(&snap, MatchOptions::default(), &visits, &Gates::default(), Instant::now());
    assert_eq!(target_units(&plan), vec!["vmss1"]);
    assert!(plan.units.values().all(|w| w.visit));
}

#[test]
fn a_ledger_holding_an_identity_nothing_needs_visits_its_scale_set() {
    // The assignment was deleted by hand (finalizer stripped) and its pod is gone: only the
    // ledger remembers that podid put the identity there.
    let (_, nodes, ids, bindings) = world();
    let snap = with_ledger(snapshot(vec![], nodes, ids, bindings, vec![]), "vmss0", &["id"]);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert_eq!(target_units(&plan), vec!["vmss0"]);
    let work = plan.units.values().next().unwrap();
    assert!(work.visit && work.ledger.is_some() && work.needs.needed.is_empty());
}

#[test]
fn a_ledger_whose_identities_are_all_needed_asks_for_nothing() {
    let (pods, nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Assigned);
    let snap = with_ledger(snapshot(pods, nodes, ids, bindings, aais), "vmss0", &["id"]);
    assert!(decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now()).units.is_empty());
}

#[test]
fn grouping_ignores_gates_and_gating_defers_what_is_in_flight() {
    let (pods, nodes, ids, bindings) = world();
    let snap = snapshot(pods, nodes, ids, bindings, vec![]);
    let grouped = group(&snap, MatchOptions::default(), &Visits::default());
    assert_eq!(grouped.units.len(), 1);
    let unit = grouped.units.keys().next().unwrap().clone();
    let gated = gate(grouped, &Gates { in_flight: [unit].into(), ..Gates::default() }, Instant::now());
    assert!(gated.units.is_empty());
    assert_eq!(gated.deferred, 1);
}

#[test]
fn an_object_whose_write_failed_waits_for_its_backoff_while_the_others_proceed() {
    let (mut pods, nodes, ids, bindings) = world();
    pods.push(mk_pod("ns", "api", "n1", "app"));
    let snap = snapshot(pods, nodes, ids, bindings, vec![]);
    let now = Instant::now();
    let bad = podid_core::PodKey::new("default", "web-ns-id".to_string());
    let gates = Gates {
        object_retry: BTreeMap::from([(bad.clone(), now + Duration::from_secs(5))]),
        ..Gates::default()
    };
    let plan = decide(&snap, MatchOptions::default(), &gates, now);
    let work = plan.units.values().next().unwrap();
    assert_eq!(work.create.iter().map(|a| a.key.name.as_str()).collect::<Vec<_>>(), ["api-ns-id"]);
    assert_eq!(plan.next_due, Some(now + Duration::from_secs(5)));
}

#[test]
fn units_in_flight_or_backing_off_wait() {
    let (pods, nodes, ids, bindings) = world();
    let snap = snapshot(pods, nodes, ids, bindings, vec![]);
    let now = Instant::now();
    let target = snap.nodes["n0"].clone().unwrap();
    let busy = Gates { in_flight: [Unit::Target(target.clone())].into(), ..Gates::default() };
    let plan = decide(&snap, MatchOptions::default(), &busy, now);
    assert!(plan.units.is_empty());
    assert_eq!(plan.deferred, 1);

    let until = now + Duration::from_secs(3);
    let backing = Gates { unit_retry: BTreeMap::from([(Unit::Target(target), until)]), ..Gates::default() };
    let plan = decide(&snap, MatchOptions::default(), &backing, now);
    assert!(plan.units.is_empty());
    assert_eq!(plan.next_due, Some(until));
    let later = decide(&snap, MatchOptions::default(), &backing, until + Duration::from_millis(1));
    assert_eq!(later.units.len(), 1);
}

#[test]
fn a_refused_identity_pending_in_created_is_not_retried_before_its_backoff() {
    let (pods, nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Created);
    let snap = snapshot(pods, nodes, ids, bindings, aais);
    let now = Instant::now();
    let target = snap.nodes["n0"].clone().unwrap();
    let gates = Gates {
        identity_retry: BTreeMap::from([((target, key("id")), now + Duration::from_secs(10))]),
        ..Gates::default()
    };
    assert!(decide(&snap, MatchOptions::default(), &gates, now).units.is_empty());
    assert_eq!(decide(&snap, MatchOptions::default(), &Gates::default(), now).units.len(), 1, "due: retried");
}

#[test]
fn assignments_of_a_deleted_node_are_deleted_without_arm() {
    let (pods, nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Assigned);
    let snap = snapshot(pods, nodes[1..].to_vec(), ids, bindings, aais);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert_eq!(plan.units.keys().collect::<Vec<_>>(), vec![&Unit::Direct]);
    let work = &plan.units[&Unit::Direct];
    assert!(work.node_gone);
    assert_eq!(work.delete.len(), 1);
    assert!(work.create.is_empty());
}

#[test]
fn a_pod_moving_to_another_scale_set_visits_the_old_one_where_podid_added_its_identity() {
    let (pods, mut nodes, ids, bindings) = world();
    let aais = written(&pods, &bindings, &ids, Assigned);
    nodes.push(mk_node("m0", "vmss1", 0));
    let moved = vec![mk_pod("ns", "web", "m0", "app")];
    let snap = snapshot(moved, nodes, ids, bindings, aais);
    let without = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert_eq!(target_units(&without), vec!["vmss1"], "podid added nothing to vmss0: nothing to take off");
    let snap = with_ledger(snap, "vmss0", &["id"]);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert_eq!(target_units(&plan), vec!["vmss0", "vmss1"]);
    let old = plan.units.iter().find(|(u, _)| matches!(u, Unit::Target(t) if t.name == "vmss0")).unwrap().1;
    assert!(old.visit && old.needs.needed.is_empty());
}

#[test]
fn a_node_without_a_usable_provider_id_is_reported_and_skipped() {
    let (pods, mut nodes, ids, bindings) = world();
    nodes[0].spec.as_mut().unwrap().provider_id = Some("kind://docker/n0".into());
    let snap = snapshot(pods, nodes, ids, bindings, vec![]);
    let plan = decide(&snap, MatchOptions::default(), &Gates::default(), Instant::now());
    assert!(plan.units.is_empty());
    assert!(plan.diagnostics.iter().any(|d| d.to_string().contains("n0")), "{:?}", plan.diagnostics);
}
