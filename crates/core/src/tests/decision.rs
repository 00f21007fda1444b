//! The agent's decision ([`crate::decision::decide`]) on small worlds built with [`Case`].
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use podid_api::{AssignedState, AzureAssignedIdentity};

use super::*;
use crate::agent::{Reason, Request};
use crate::decision::{Choice, Outcome, Pending, Settings, Step, decide, servable, timed_out};
use crate::exception::ExceptReason;
use crate::matching::{MatchOptions, desired};
use crate::{Mode, Snapshot};

/// A world (identities, bindings, assignments, exceptions) and the agent's settings.
pub(crate) struct Case {
    pub snap: Snapshot,
    pub settings: Settings<'static>,
}

pub(crate) fn case(mode: Mode) -> Case {
    Case {
        snap: Snapshot::default(),
        settings: Settings { mic_namespace: "kube-system", ..Settings::new(mode) },
    }
}

/// `seconds` after an arbitrary epoch, as a creation timestamp.
pub(crate) fn at(seconds: i64) -> Time {
    Time(podid_api::k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap())
}

impl Case {
    pub fn identity(mut self, identity: AzureIdentity) -> Self {
        self.snap.identities.push(identity);
        self
    }
    pub fn binding(mut self, binding: AzureIdentityBinding) -> Self {
        self.snap.bindings.push(binding);
        self
    }
    /// Identity `ns/name` and binding `ns/b-name` (selector `demo`) created at `created`.
    pub fn bound_at(self, ns: &str, name: &str, created: i64) -> Self {
        let mut b = mk_binding(ns, &format!("b-{name}"), name, "demo");
        b.metadata.creation_timestamp = Some(at(created));
        self.identity(mk_identity(ns, name)).binding(b)
    }
    pub fn bound(self, ns: &str, name: &str) -> Self {
        let n = self.snap.bindings.len() as i64;
        self.bound_at(ns, name, n)
    }
    pub fn exception(mut self, e: AzurePodIdentityException) -> Self {
        self.snap.exceptions.push(e);
        self
    }
    pub fn force_namespaced(mut self) -> Self {
        self.settings.force_namespaced = true;
        self
    }
    pub fn release_terminating(mut self) -> Self {
        self.settings.release_terminating = true;
        self
    }
    /// The controller's assignments for `pod` in `state`, from the current bindings.
    pub fn assigned(mut self, pod: &PodView, state: AssignedState) -> Self {
        let opts =
            MatchOptions { force_namespaced: self.settings.force_namespaced, ..MatchOptions::default() };
        let d = desired(std::slice::from_ref(pod), &self.snap.bindings, &self.snap.identities, opts);
        self.snap.assigned.extend(d.assignments.values().map(|a| with_state(a.to_object(false), state)));
        self
    }
    /// Only the assignment of identity `name` in `state` (others untouched).
    pub fn assigned_only(mut self, pod: &PodView, name: &str, state: AssignedState) -> Self {
        let d = desired(
            std::slice::from_ref(pod),
            &self.snap.bindings,
            &self.snap.identities,
            Default::default(),
        );
        let a = d.assignments.values().find(|a| a.identity.metadata.name.as_deref() == Some(name)).unwrap();
        self.snap.assigned.push(with_state(a.to_object(false), state));
        self
    }
    pub fn decide<'a>(&'a self, pod: &'a PodView, req: &Request<'_>) -> Outcome<'a> {
        decide(pod, req, &self.snap, &self.settings).outcome
    }
}

fn with_state(mut o: AzureAssignedIdentity, state: AssignedState) -> AzureAssignedIdentity {
    o.status.as_mut().unwrap().status = state.as_str().into();
    o
}

pub(crate) fn served<'a>(o: &Outcome<'a>) -> &'a str {
    match o {
        Outcome::Serve(s) => s.identity.metadata.name.as_deref().unwrap(),
        other => panic!("expected a token, got {other:?}"),
    }
}

pub(crate) fn refused<'o>(o: &'o Outcome<'_>) -> &'o crate::agent::Refusal {
    match o {
        Outcome::Refuse(r) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn client(name: &str) -> String {
    client_id(name)
}

fn by_client(c: &str) -> Request<'_> {
    Request { client_id: Some(c), ..Request::default() }
}

// === exceptions, host network, object id ===

#[test]
fn single_host_network_pod_without_exception_is_forbidden() {
    let pod = mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network();
    let c = case(Mode::Standard).bound("a", "id");
    assert_eq!(refused(&c.decide(&pod, &Request::default())).status(false).0, 403);
}

#[test]
fn host_network_pod_with_exception_goes_direct() {
    let pod = mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network().label("app", "agent");
    let c = case(Mode::Standard).exception(mk_exception("a", "agents", &[("app", "AGENT")]));
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Direct(ExceptReason::Exception { .. })));
}

#[test]
fn exception_in_another_namespace_does_not_apply() {
    let pod = mk_pod("a", "p", "n", "demo").label("app", "agent");
    let c =
        case(Mode::Standard).bound("a", "id").exception(mk_exception("other", "agents", &[("app", "agent")]));
    assert!(matches!(c.decide(&pod, &Request::default()), Outcome::Pending(_)));
}

#[test]
fn controller_pod_goes_direct_but_micro_services_do_not() {
    let c = case(Mode::Standard).bound("kube-system", "id");
    let mic = mk_pod("kube-system", "mic-abc-1", "n", "").replica_set("mic-7d9f8");
    assert_eq!(c.decide(&mic, &Request::default()), Outcome::Direct(ExceptReason::Controller));
    let micro = mk_pod("kube-system", "m", "n", "demo").replica_set("microservice-1");
    assert!(matches!(c.decide(&micro, &Request::default()), Outcome::Pending(_)));
}

#[test]
fn object_id_selection_is_refused_with_400() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard);
    let o = c.decide(&pod, &Request { object_id: Some("oid"), ..Request::default() });
    assert_eq!(refused(&o).status(false).0, 400);
}

// === standard mode: serve, wait, refuse at once ===

#[test]
fn assigned_identity_is_served() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound("app", "id").assigned(&pod, AssignedState::Assigned);
    assert_eq!(served(&c.decide(&pod, &Request::default())), "id");
}

#[test]
fn legacy_empty_status_is_usable() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound("app", "id").assigned(&pod, AssignedState::Legacy);
    assert_eq!(served(&c.decide(&pod, &Request::default())), "id");
}

#[test]
fn created_assignment_makes_the_request_wait() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound("app", "id").assigned(&pod, AssignedState::Created);
    assert!(
        matches!(c.decide(&pod, &Request::default()), Outcome::Pending(w) if w.state == Pending::Created)
    );
}

#[test]
fn bound_identity_without_an_assignment_waits_for_the_controller() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound("app", "id");
    let Outcome::Pending(wait) = c.decide(&pod, &Request::default()) else { panic!() };
    assert_eq!(wait.state, Pending::NotCreated);
    let cid = "abcd1234-0000-0000-0000-00000000wxyz";
    let r = timed_out(&pod, &by_client(cid), &wait, 80);
    assert_eq!((r.status(false), r.status(true), r.reason), ((404, false), (503, true), Reason::NotAssigned));
    assert!(r.message.starts_with("clientID in request: abcd##### REDACTED #####wxyz, getting assigned identities for pod app/p in CREATED state failed after 80s: the controller has not created the AzureAssignedIdentity for identity app/id"), "{}", r.message);
    assert!(!r.message.contains("abcd1234"));
}

#[test]
fn unbound_client_id_is_refused_at_once_naming_what_the_pod_has() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c =
        case(Mode::Standard).bound("app", "one").bound("app", "two").assigned(&pod, AssignedState::Assigned);
    let other = client("other");
    let r = refused(&c.decide(&pod, &by_client(&other))).clone();
    assert_eq!((r.status(false).0, r.reason), (404, Reason::NotBound));
    assert!(r.message.starts_with("no azure identity found for request clientID clie##### REDACTED #####0000 (pod app/p): the pod has app/one (clientID"), "{}", r.message);
    assert!(
        r.message.contains("app/two") && r.message.contains("To fix: ask for one of these"),
        "{}",
        r.message
    );
}

#[test]
fn pod_without_label_or_binding_is_refused_at_once() {
    let c = case(Mode::Standard).bound("app", "id");
    let unlabelled = PodView { labels: Default::default(), ..mk_pod("app", "p", "n", "x") };
    assert_eq!(refused(&c.decide(&unlabelled, &Request::default())).reason, Reason::NoLabel);
    let other_selector = mk_pod("app", "p", "n", "nothing");
    let r = refused(&c.decide(&other_selector, &Request::default())).clone();
    assert_eq!(r.reason, Reason::NoBinding);
    assert!(r.message.contains("no AzureIdentityBinding has selector \"nothing\""), "{}", r.message);
}

#[test]
fn requested_client_id_selects_among_several_case_insensitively() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c =
        case(Mode::Standard).bound("app", "one").bound("app", "two").assigned(&pod, AssignedState::Assigned);
    let upper = client("two").to_uppercase();
    assert_eq!(served(&c.decide(&pod, &by_client(&upper))), "two");
}

#[test]
fn requested_resource_id_selects_by_canonical_id() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c =
        case(Mode::Standard).bound("app", "one").bound("app", "two").assigned(&pod, AssignedState::Assigned);
    let rid = resource_id("two").replace("resourcegroups", "resourceGroups");
    let req = Request { resource_id: Some(&rid), ..Request::default() };
    assert_eq!(served(&c.decide(&pod, &req)), "two");
}

#[test]
fn another_pods_assignment_is_never_served() {
    let owner = mk_pod("app", "owner", "n", "demo");
    let c = case(Mode::Standard).bound("app", "id").assigned(&owner, AssignedState::Assigned);
    let thief = mk_pod("app", "thief", "n", "demo");
    assert!(
        matches!(c.decide(&thief, &Request::default()), Outcome::Pending(w) if w.state == Pending::NotCreated)
    );
}

#[test]
fn force_namespaced_refusal_names_the_namespace_rule() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound("elsewhere", "id").force_namespaced();
    let r = refused(&c.decide(&pod, &Request::default())).clone();
    assert_eq!(r.reason, Reason::NoUsableBinding);
    assert!(
        r.message.contains(
            "podid runs with --forceNamespaced, so pod, binding and identity must share one namespace"
        ),
        "{}",
        r.message
    );
}

#[test]
fn assignment_whose_binding_the_agent_has_not_seen_is_still_served() {
    let pod = mk_pod("app", "p", "n", "demo");
    let mut c = case(Mode::Standard).bound("app", "id").assigned(&pod, AssignedState::Assigned);
    c.snap.bindings.clear();
    let o = c.decide(&pod, &Request::default());
    assert!(matches!(o, Outcome::Serve(s) if s.binding.is_none()), "{o:?}");
}

// === the default identity ===

#[test]
fn default_identity_is_that_of_the_oldest_binding_whatever_the_names() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard)
        .bound_at("app", "zeta", 1)
        .bound_at("app", "alpha", 2)
        .assigned(&pod, AssignedState::Assigned);
    assert_eq!(served(&c.decide(&pod, &Request::default())), "zeta");
    let d = decide(&pod, &Request::default(), &c.snap, &c.settings);
    assert!(d.trace.iter().any(|s| matches!(s, Step::Chose { choice: Choice::Default, .. })));
}

#[test]
fn adding_a_binding_never_changes_the_default_identity() {
    let pod = mk_pod("app", "p", "n", "demo");
    for mode in Mode::ALL {
        let before = case(mode).bound_at("app", "demo", 10).assigned(&pod, AssignedState::Assigned);
        let after = case(mode)
            .bound_at("app", "demo", 10)
            .bound_at("app", "crd-aad1", 20)
            .assigned(&pod, AssignedState::Assigned);
        assert_eq!(served(&before.decide(&pod, &Request::default())), "demo", "{mode}");
        assert_eq!(served(&after.decide(&pod, &Request::default())), "demo", "{mode}");
    }
}

#[test]
fn the_default_identity_is_waited_for_rather_than_replaced_by_a_newer_one() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard).bound_at("app", "old", 1).bound_at("app", "new", 2).assigned_only(
        &pod,
        "new",
        AssignedState::Assigned,
    );
    assert!(
        matches!(c.decide(&pod, &Request::default()), Outcome::Pending(w) if w.identity.metadata.name.as_deref() == Some("old"))
    );
    let new = client("new");
    assert_eq!(
        served(&c.decide(&pod, &by_client(&new))),
        "new",
        "asked for by client id, it is served at once"
    );
}

#[test]
fn without_timestamps_the_default_is_the_first_binding_by_name() {
    let pod = mk_pod("app", "p", "n", "demo");
    let mut c = case(Mode::Managed).bound("app", "zeta").bound("app", "alpha");
    c.snap.bindings.iter_mut().for_each(|b| b.metadata.creation_timestamp = None);
    assert_eq!(served(&c.decide(&pod, &Request::default())), "alpha");
    c.snap.bindings.reverse();
    assert_eq!(served(&c.decide(&pod, &Request::default())), "alpha");
}

// === terminating and finished pods ===

#[test]
fn terminating_pod_keeps_its_identity_unless_released() {
    let pod = mk_pod("app", "p", "n", "demo").terminating();
    let keep = case(Mode::Standard).bound("app", "id").assigned(&pod, AssignedState::Assigned);
    assert_eq!(served(&keep.decide(&pod, &Request::default())), "id");
    let release = case(Mode::Managed).bound("app", "id").release_terminating();
    let r = refused(&release.decide(&pod, &Request::default())).clone();
    assert_eq!(r.reason, Reason::Terminating);
    assert!(r.message.contains("--release-terminating-pods"), "{}", r.message);
}

#[test]
fn finished_pod_gets_nothing() {
    let pod = mk_pod("app", "p", "n", "demo").phase(crate::pod::Phase::Succeeded);
    let c = case(Mode::Managed).bound("app", "id");
    assert_eq!(refused(&c.decide(&pod, &Request::default())).reason, Reason::Finished);
}

// === managed mode ===

#[test]
fn managed_mode_serves_bound_identity_of_the_pod_namespace() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Managed).bound("app", "id").bound("other", "id");
    let Outcome::Serve(s) = c.decide(&pod, &Request::default()) else { panic!() };
    assert_eq!(s.identity.metadata.namespace.as_deref(), Some("app"));
}

#[test]
fn managed_mode_label_impersonation_across_namespaces_gets_nothing() {
    let thief = mk_pod("attacker", "p", "n", "demo");
    let c = case(Mode::Managed).bound("app", "id");
    let r = refused(&c.decide(&thief, &Request::default())).clone();
    assert_eq!(r.status(false).0, 404);
    assert!(
        r.message.contains("managed mode reads only the bindings of the pod's own namespace"),
        "{}",
        r.message
    );
}

#[test]
fn managed_mode_skips_invalid_identity_and_serves_valid_one() {
    let pod = mk_pod("app", "p", "n", "demo");
    let mut bad = mk_identity("app", "aaa");
    bad.spec.identity_type = 9;
    let c = case(Mode::Managed)
        .identity(bad)
        .identity(mk_identity("app", "good"))
        .binding(mk_binding("app", "b1", "aaa", "demo"))
        .binding(mk_binding("app", "b2", "good", "demo"));
    assert_eq!(served(&c.decide(&pod, &Request::default())), "good");
}

// === prefetch's view ===

#[test]
fn servable_lists_every_identity_a_request_would_get_and_nothing_pending() {
    let pod = mk_pod("app", "p", "n", "demo");
    let c = case(Mode::Standard)
        .bound("app", "one")
        .bound("app", "two")
        .assigned_only(&pod, "one", AssignedState::Assigned)
        .assigned_only(&pod, "two", AssignedState::Created);
    let names: Vec<&str> = servable(&pod, &c.snap, &c.settings)
        .iter()
        .map(|s| s.identity.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["one"]);
    let excepted = pod.clone().label("skip", "yes");
    let c = c.exception(mk_exception("app", "e", &[("skip", "yes")]));
    assert!(servable(&excepted, &c.snap, &c.settings).is_empty());
}
