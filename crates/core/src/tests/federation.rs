use super::decision::{case, refused, served};
use super::*;
use crate::agent::Request;
use crate::decision::Outcome;
use crate::federation::*;
use crate::matching::{MatchOptions, desired};
use crate::{Diagnostic, Mode};

fn federated(mut identity: AzureIdentity) -> AzureIdentity {
    identity
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(podid_api::FEDERATED_ANNOTATION.into(), "true".into());
    identity
}

#[test]
fn annotated_identity_is_served_from_bindings_without_an_assignment() {
    let c = case(Mode::Standard)
        .identity(federated(mk_identity("a", "fed")))
        .binding(mk_binding("a", "b", "fed", "demo"));
    let pod = mk_pod("a", "p", "n", "demo");
    let o = c.decide(&pod, &Request::default());
    assert_eq!(served(&o), "fed");
    assert!(matches!(o, Outcome::Serve(s) if s.federated && s.assignment.is_none()));
}

#[test]
fn unannotated_identity_is_left_to_the_assignment() {
    let c = case(Mode::Standard).bound("a", "plain");
    let pod = mk_pod("a", "p", "n", "demo");
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Pending(_)));
}

#[test]
fn cluster_mode_federates_every_user_assigned_identity() {
    let c = case(Mode::Federated).bound("a", "plain");
    let pod = mk_pod("a", "p", "n", "demo");
    assert!(
        Federation::Cluster.covers(&c.snap.identities[0])
            && !Federation::Annotated.covers(&c.snap.identities[0])
    );
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Serve(s) if s.federated));
}

#[test]
fn cluster_mode_refuses_a_pod_with_no_binding_as_not_found() {
    let c = case(Mode::Federated).bound("a", "plain");
    let pod = mk_pod("a", "p", "n", "other");
    assert_eq!(refused(&c.decide(&pod, &Request::default())).status(false), (404, false));
}

#[test]
fn cluster_mode_keeps_service_principals_as_service_principals() {
    let c =
        case(Mode::Federated).identity(mk_sp_identity("a", "sp")).binding(mk_binding("a", "b", "sp", "demo"));
    let pod = mk_pod("a", "p", "n", "demo");
    assert!(!Federation::Cluster.covers(&c.snap.identities[0]));
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Serve(s) if !s.federated));
}

#[test]
fn annotated_service_principal_is_refused_with_the_reason() {
    let c = case(Mode::Standard)
        .identity(federated(mk_sp_identity("a", "sp")))
        .binding(mk_binding("a", "b", "sp", "demo"));
    let pod = mk_pod("a", "p", "n", "demo");
    let r = refused(&c.decide(&pod, &Request::default())).clone();
    assert_eq!(r.status(false), (403, false));
    assert!(r.message.contains("only user-assigned identities (type 0) can be federated"), "{}", r.message);
}

#[test]
fn request_naming_another_client_id_is_not_served_the_federated_identity() {
    let c = case(Mode::Standard)
        .identity(federated(mk_identity("a", "fed")))
        .binding(mk_binding("a", "b", "fed", "demo"));
    let pod = mk_pod("a", "p", "n", "demo");
    let other = client_id("other");
    let req = Request { client_id: Some(&other), ..Request::default() };
    assert_eq!(refused(&c.decide(&pod, &req)).status(false), (404, false));
    let mine = client_id("fed").to_uppercase();
    let req = Request { client_id: Some(&mine), ..Request::default() };
    assert_eq!(served(&c.decide(&pod, &req)), "fed");
}

#[test]
fn namespaced_federated_identity_does_not_serve_other_namespaces() {
    let c = case(Mode::Standard)
        .identity(namespaced(federated(mk_identity("a", "fed"))))
        .binding(mk_binding("a", "b", "fed", "demo"));
    let pod = mk_pod("other", "p", "n", "demo");
    assert_eq!(refused(&c.decide(&pod, &Request::default())).status(false), (404, false));
}

#[test]
fn excepted_pod_goes_direct_before_any_federation() {
    let c = case(Mode::Standard)
        .identity(federated(mk_identity("a", "fed")))
        .binding(mk_binding("a", "b", "fed", "demo"))
        .exception(mk_exception("a", "e", &[("skip", "yes")]));
    let pod = mk_pod("a", "p", "n", "demo").label("skip", "yes");
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Direct(_)));
}

#[test]
fn subject_names_the_service_account() {
    assert_eq!(subject("team-a", "app"), "system:serviceaccount:team-a:app");
}

#[test]
fn controller_desires_no_assignment_for_a_federated_identity_and_reports_nothing() {
    let ids = [federated(mk_identity("a", "fed")), mk_identity("a", "plain")];
    let bindings = [mk_binding("a", "bf", "fed", "demo"), mk_binding("a", "bp", "plain", "demo")];
    let pods = [mk_pod("a", "p", "n", "demo")];
    let d = desired(&pods, &bindings, &ids, MatchOptions::default());
    let names: Vec<&str> =
        d.assignments.values().map(|a| a.identity.metadata.name.as_deref().unwrap()).collect();
    assert_eq!(names, ["plain"]);
    assert!(
        !d.diagnostics.iter().any(|x| matches!(x, Diagnostic::IdentityNotFound { .. })),
        "{:?}",
        d.diagnostics
    );
}

#[test]
fn assigned_identity_later_annotated_federated_is_handed_over_to_the_agent() {
    let pods = [mk_pod("a", "p", "n", "demo")];
    let bindings = [mk_binding("a", "b", "id", "demo")];
    let standard = desired(&pods, &bindings, &[mk_identity("a", "id")], MatchOptions::default());
    let assigned: Vec<_> = standard.assignments.values().map(|a| a.to_object(false)).collect();
    assert_eq!(assigned.len(), 1, "standard mode assigns it first");

    let annotated = desired(&pods, &bindings, &[federated(mk_identity("a", "id"))], MatchOptions::default());
    let p = crate::diff::plan(&annotated, &assigned);
    assert!(p.create.is_empty() && p.update.is_empty(), "{p:?}");
    assert_eq!(
        p.delete.iter().map(|a| a.metadata.name.clone()).collect::<Vec<_>>(),
        assigned.iter().map(|a| a.metadata.name.clone()).collect::<Vec<_>>(),
        "the controller removes the assignment (and the identity from the scale set) once it is federated"
    );
    let c = case(Mode::Standard).identity(federated(mk_identity("a", "id"))).binding(bindings[0].clone());
    assert_eq!(
        served(&c.decide(&pods[0], &Request::default())),
        "id",
        "and the agent serves it through federation"
    );
}
