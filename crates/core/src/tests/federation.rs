use super::*;
use crate::agent::{Options, Outcome, Request};
use crate::federation::*;
use crate::matching::{MatchOptions, desired};
use crate::{Diagnostic, PodView};

const OPTS: Options<'static> = Options { force_namespaced: false, mic_namespace: "kube-system" };

fn federated(mut identity: AzureIdentity) -> AzureIdentity {
    identity
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(podid_api::FEDERATED_ANNOTATION.into(), "true".into());
    identity
}

fn decide<'a>(
    pod: &PodView,
    req: &Request<'_>,
    bindings: &'a [AzureIdentityBinding],
    identities: &'a [AzureIdentity],
    federation: Federation,
) -> Option<Outcome<'a>> {
    let lookup = |ns: &str, name: &str| {
        identities
            .iter()
            .find(|i| i.metadata.namespace.as_deref() == Some(ns) && i.metadata.name.as_deref() == Some(name))
    };
    let bound = bound_identities(pod, bindings, lookup, OPTS);
    decide_federated(pod, req, &bound, [], OPTS, federation)
}

fn served<'a>(o: Option<Outcome<'a>>) -> &'a str {
    match o {
        Some(Outcome::Serve(i)) => i.metadata.name.as_deref().unwrap(),
        other => panic!("expected a token, got {other:?}"),
    }
}

#[test]
fn annotated_identity_is_served_from_bindings_without_an_assignment() {
    let ids = [federated(mk_identity("a", "fed"))];
    let bindings = [mk_binding("a", "b", "fed", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    assert_eq!(served(decide(&pod, &Request::default(), &bindings, &ids, Federation::Annotated)), "fed");
}

#[test]
fn unannotated_identity_is_left_to_the_standard_decision() {
    let ids = [mk_identity("a", "plain")];
    let bindings = [mk_binding("a", "b", "plain", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    assert_eq!(decide(&pod, &Request::default(), &bindings, &ids, Federation::Annotated), None);
}

#[test]
fn cluster_mode_federates_every_user_assigned_identity() {
    let ids = [mk_identity("a", "plain")];
    let bindings = [mk_binding("a", "b", "plain", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    assert!(Federation::Cluster.covers(&ids[0]) && !Federation::Annotated.covers(&ids[0]));
    assert_eq!(served(decide(&pod, &Request::default(), &bindings, &ids, Federation::Cluster)), "plain");
}

#[test]
fn cluster_mode_refuses_a_pod_with_no_binding_as_not_found() {
    let ids = [mk_identity("a", "plain")];
    let bindings = [mk_binding("a", "b", "plain", "demo")];
    let pod = mk_pod("a", "p", "n", "other");
    match decide(&pod, &Request::default(), &bindings, &ids, Federation::Cluster) {
        Some(Outcome::Refuse(r)) => assert_eq!(r.status(false), (404, false)),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn cluster_mode_keeps_service_principals_as_service_principals() {
    let ids = [mk_sp_identity("a", "sp")];
    let bindings = [mk_binding("a", "b", "sp", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    assert!(!Federation::Cluster.covers(&ids[0]));
    assert_eq!(served(decide(&pod, &Request::default(), &bindings, &ids, Federation::Cluster)), "sp");
}

#[test]
fn annotated_service_principal_is_refused_with_the_reason() {
    let ids = [federated(mk_sp_identity("a", "sp"))];
    let bindings = [mk_binding("a", "b", "sp", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    match decide(&pod, &Request::default(), &bindings, &ids, Federation::Annotated) {
        Some(Outcome::Refuse(r)) => {
            assert_eq!(r.status(false), (403, false));
            assert!(
                r.message.contains("only user-assigned identities (type 0) can be federated"),
                "{}",
                r.message
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn request_naming_another_client_id_is_not_served_the_federated_identity() {
    let ids = [federated(mk_identity("a", "fed"))];
    let bindings = [mk_binding("a", "b", "fed", "demo")];
    let pod = mk_pod("a", "p", "n", "demo");
    let other = client_id("other");
    let req = Request { client_id: Some(&other), ..Request::default() };
    assert_eq!(decide(&pod, &req, &bindings, &ids, Federation::Annotated), None);
    let mine = client_id("fed").to_uppercase();
    let req = Request { client_id: Some(&mine), ..Request::default() };
    assert_eq!(served(decide(&pod, &req, &bindings, &ids, Federation::Annotated)), "fed");
}

#[test]
fn namespaced_federated_identity_does_not_serve_other_namespaces() {
    let ids = [namespaced(federated(mk_identity("a", "fed")))];
    let bindings = [mk_binding("a", "b", "fed", "demo")];
    let pod = mk_pod("other", "p", "n", "demo");
    assert_eq!(decide(&pod, &Request::default(), &bindings, &ids, Federation::Annotated), None);
}

#[test]
fn excepted_pod_goes_direct_before_any_federation() {
    let ids = [federated(mk_identity("a", "fed"))];
    let bindings = [mk_binding("a", "b", "fed", "demo")];
    let pod = mk_pod("a", "p", "n", "demo").label("skip", "yes");
    let exceptions = [mk_exception("a", "e", &[("skip", "yes")])];
    let lookup = |_: &str, _: &str| ids.first();
    let bound = bound_identities(&pod, &bindings, lookup, OPTS);
    let outcome =
        decide_federated(&pod, &Request::default(), &bound, &exceptions, OPTS, Federation::Annotated);
    assert!(matches!(outcome, Some(Outcome::Direct(_))), "{outcome:?}");
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
    let ids = [federated(mk_identity("a", "id"))];
    let served_by_agent = decide(&pods[0], &Request::default(), &bindings, &ids, Federation::Annotated);
    assert_eq!(served(served_by_agent), "id", "and the agent serves it through federation");
}
