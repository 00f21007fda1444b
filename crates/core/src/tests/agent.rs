use super::*;
use crate::agent::*;
use crate::exception::ExceptReason;
use crate::matching::{MatchOptions, desired};
use podid_api::{AssignedState, AzureAssignedIdentity};

const OPTS: Options<'static> = Options { force_namespaced: false, mic_namespace: "kube-system" };

fn assigned_for(pod: &PodView, ids: &[AzureIdentity], state: AssignedState) -> Vec<AzureAssignedIdentity> {
    let bindings: Vec<_> = ids
        .iter()
        .map(|i| {
            mk_binding(
                i.metadata.namespace.as_deref().unwrap(),
                &format!("b-{}", i.metadata.name.as_deref().unwrap()),
                i.metadata.name.as_deref().unwrap(),
                "demo",
            )
        })
        .collect();
    let d = desired(std::slice::from_ref(pod), &bindings, ids, MatchOptions::default());
    d.assignments
        .values()
        .map(|a| {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = state.as_str().into();
            o
        })
        .collect()
}

fn served<'a>(o: &Outcome<'a>) -> &'a str {
    match o {
        Outcome::Serve(i) => i.metadata.name.as_deref().unwrap(),
        other => panic!("expected a token, got {other:?}"),
    }
}

fn refused<'o>(o: &'o Outcome<'_>) -> &'o Refusal {
    match o {
        Outcome::Refuse(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn caller_is_the_single_live_pod_with_the_source_ip() {
    let pods = [
        mk_pod("a", "p", "n", "demo").ip("10.0.0.5"),
        mk_pod("a", "old", "n", "demo").ip("10.0.0.5").phase(crate::pod::Phase::Succeeded),
    ];
    assert_eq!(find_caller("10.0.0.5".parse().unwrap(), &pods).unwrap().key.name, "p");
}

#[test]
fn unknown_source_ip_is_a_500_with_upstream_wording() {
    let err = find_caller("10.0.0.9".parse().unwrap(), &[mk_pod("a", "p", "n", "demo").ip("10.0.0.5")])
        .unwrap_err();
    assert_eq!(err.status(false), (500, false));
    assert!(err.message.starts_with("pod list is empty"));
}

#[test]
fn two_pods_with_one_ip_are_refused_by_name() {
    let pods = [mk_pod("a", "p", "n", "demo").ip("10.0.0.5"), mk_pod("a", "q", "n", "demo").ip("10.0.0.5")];
    let err = find_caller("10.0.0.5".parse().unwrap(), &pods).unwrap_err();
    assert_eq!(err.message, "failed to match pod IP 10.0.0.5 with [a/p a/q]");
}

#[test]
fn host_network_pods_sharing_the_node_address_are_forbidden() {
    let pods = [
        mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network(),
        mk_pod("b", "q", "n", "x").ip("10.1.0.4").host_network(),
    ];
    assert_eq!(find_caller("10.1.0.4".parse().unwrap(), &pods).unwrap_err().status(false).0, 403);
}

#[test]
fn single_host_network_pod_without_exception_is_forbidden() {
    let pod = mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network();
    let o = decide_standard(&pod, &Request::default(), &[], &[], OPTS);
    assert_eq!(refused(&o).kind, RefusalKind::Forbidden);
}

#[test]
fn host_network_pod_with_exception_goes_direct() {
    let pod = mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network().label("app", "agent");
    let ex = [mk_exception("a", "agents", &[("app", "AGENT")])];
    assert!(matches!(
        decide_standard(&pod, &Request::default(), &[], &ex, OPTS),
        Outcome::Direct(ExceptReason::Exception { .. })
    ));
}

#[test]
fn exception_in_another_namespace_does_not_apply() {
    let pod = mk_pod("a", "p", "n", "demo").label("app", "agent");
    let ex = [mk_exception("other", "agents", &[("app", "agent")])];
    assert!(matches!(decide_standard(&pod, &Request::default(), &[], &ex, OPTS), Outcome::Pending(_)));
}

#[test]
fn controller_pod_goes_direct_but_micro_services_do_not() {
    let mic = mk_pod("kube-system", "mic-abc-1", "n", "").replica_set("mic-7d9f8");
    assert_eq!(
        decide_standard(&mic, &Request::default(), &[], &[], OPTS),
        Outcome::Direct(ExceptReason::Controller)
    );
    let micro = mk_pod("kube-system", "m", "n", "demo").replica_set("microservice-1");
    assert!(matches!(decide_standard(&micro, &Request::default(), &[], &[], OPTS), Outcome::Pending(_)));
}

#[test]
fn assigned_identity_is_served() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais = assigned_for(&pod, &[mk_identity("app", "id")], AssignedState::Assigned);
    assert_eq!(served(&decide_standard(&pod, &Request::default(), &aais, &[], OPTS)), "id");
}

#[test]
fn legacy_empty_status_is_usable() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais = assigned_for(&pod, &[mk_identity("app", "id")], AssignedState::Legacy);
    assert_eq!(served(&decide_standard(&pod, &Request::default(), &aais, &[], OPTS)), "id");
}

#[test]
fn created_assignment_makes_the_request_wait() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais = assigned_for(&pod, &[mk_identity("app", "id")], AssignedState::Created);
    assert_eq!(
        decide_standard(&pod, &Request::default(), &aais, &[], OPTS),
        Outcome::Pending(Pending::Created)
    );
}

#[test]
fn no_assignment_yet_waits_then_refuses_with_404_or_503() {
    let pod = mk_pod("app", "p", "n", "demo");
    let req = Request { client_id: Some("abcd1234-0000-0000-0000-00000000wxyz"), ..Request::default() };
    assert_eq!(decide_standard(&pod, &req, &[], &[], OPTS), Outcome::Pending(Pending::NotCreated));
    let r = pending_refusal(&pod, &req, Pending::NotCreated, 80);
    assert_eq!(r.status(false), (404, false));
    assert_eq!(r.status(true), (503, true));
    assert!(r.message.starts_with("clientID in request: abcd##### REDACTED #####wxyz, getting assigned identities for pod app/p in CREATED state failed after 80s"));
    assert!(!r.message.contains("abcd1234"));
}

#[test]
fn requested_client_id_selects_among_several_case_insensitively() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais =
        assigned_for(&pod, &[mk_identity("app", "one"), mk_identity("app", "two")], AssignedState::Assigned);
    let upper = client_id("two").to_uppercase();
    let req = Request { client_id: Some(&upper), ..Request::default() };
    assert_eq!(served(&decide_standard(&pod, &req, &aais, &[], OPTS)), "two");
}

#[test]
fn requested_resource_id_selects_by_canonical_id() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais =
        assigned_for(&pod, &[mk_identity("app", "one"), mk_identity("app", "two")], AssignedState::Assigned);
    let rid = resource_id("two").replace("resourcegroups", "resourceGroups");
    let req = Request { resource_id: Some(&rid), ..Request::default() };
    assert_eq!(served(&decide_standard(&pod, &req, &aais, &[], OPTS)), "two");
}

#[test]
fn identity_not_bound_to_the_pod_is_never_served() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais = assigned_for(&pod, &[mk_identity("app", "one")], AssignedState::Assigned);
    let other = client_id("other");
    let req = Request { client_id: Some(&other), ..Request::default() };
    assert_eq!(decide_standard(&pod, &req, &aais, &[], OPTS), Outcome::Pending(Pending::NotCreated));
}

#[test]
fn another_pods_assignment_is_never_served() {
    let owner = mk_pod("app", "owner", "n", "demo");
    let aais = assigned_for(&owner, &[mk_identity("app", "id")], AssignedState::Assigned);
    let thief = mk_pod("app", "thief", "n", "demo");
    assert!(matches!(decide_standard(&thief, &Request::default(), &aais, &[], OPTS), Outcome::Pending(_)));
}

#[test]
fn without_a_selector_the_choice_is_deterministic() {
    let pod = mk_pod("app", "p", "n", "demo");
    let mut aais = assigned_for(
        &pod,
        &[mk_identity("app", "zeta"), mk_identity("app", "alpha")],
        AssignedState::Assigned,
    );
    assert_eq!(served(&decide_standard(&pod, &Request::default(), &aais, &[], OPTS)), "alpha");
    aais.reverse();
    assert_eq!(served(&decide_standard(&pod, &Request::default(), &aais, &[], OPTS)), "alpha");
}

#[test]
fn object_id_selection_is_refused_with_400() {
    let pod = mk_pod("app", "p", "n", "demo");
    let o = decide_standard(&pod, &Request { object_id: Some("oid"), ..Request::default() }, &[], &[], OPTS);
    assert_eq!(refused(&o).status(false).0, 400);
}

#[test]
fn force_namespaced_agent_ignores_identity_from_another_namespace() {
    let pod = mk_pod("app", "p", "n", "demo");
    let aais = assigned_for(&pod, &[mk_identity("elsewhere", "id")], AssignedState::Assigned);
    let opts = Options { force_namespaced: true, ..OPTS };
    assert!(matches!(decide_standard(&pod, &Request::default(), &aais, &[], opts), Outcome::Pending(_)));
}

#[test]
fn managed_mode_serves_bound_identity_of_the_pod_namespace() {
    let pod = mk_pod("app", "p", "n", "demo");
    let bindings = [mk_binding("app", "b", "id", "demo"), mk_binding("other", "b", "id", "demo")];
    let ids = [mk_identity("app", "id"), mk_identity("other", "id")];
    let o = decide_managed(&pod, &Request::default(), &bindings, &ids, &[], OPTS);
    let Outcome::Serve(i) = o else { panic!("{o:?}") };
    assert_eq!(i.metadata.namespace.as_deref(), Some("app"));
}

#[test]
fn managed_mode_label_impersonation_across_namespaces_gets_nothing() {
    let thief = mk_pod("attacker", "p", "n", "demo");
    let (bindings, ids) = ([mk_binding("app", "b", "id", "demo")], [mk_identity("app", "id")]);
    let o = decide_managed(&thief, &Request::default(), &bindings, &ids, &[], OPTS);
    assert_eq!(refused(&o).status(false).0, 404);
}

#[test]
fn managed_mode_unbound_client_id_is_404_with_redacted_id() {
    let pod = mk_pod("app", "p", "n", "demo");
    let other = client_id("other");
    let req = Request { client_id: Some(&other), ..Request::default() };
    let (bindings, ids) = ([mk_binding("app", "b", "id", "demo")], [mk_identity("app", "id")]);
    let o = decide_managed(&pod, &req, &bindings, &ids, &[], OPTS);
    let r = refused(&o);
    assert!(r.message.starts_with("no azure identity found for request clientID clie##### REDACTED #####"));
}

#[test]
fn managed_mode_skips_invalid_identity_and_serves_valid_one() {
    let pod = mk_pod("app", "p", "n", "demo");
    let mut bad = mk_identity("app", "aaa");
    bad.spec.identity_type = 9;
    let bindings = [mk_binding("app", "b1", "aaa", "demo"), mk_binding("app", "b2", "good", "demo")];
    let ids = [bad, mk_identity("app", "good")];
    assert_eq!(served(&decide_managed(&pod, &Request::default(), &bindings, &ids, &[], OPTS)), "good");
}
