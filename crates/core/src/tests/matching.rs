use super::*;
use crate::Diagnostic;
use crate::matching::{MatchOptions, desired};

fn names(d: &crate::matching::Desired) -> Vec<String> {
    d.assignments.keys().map(|k| k.to_string()).collect()
}

#[test]
fn pod_label_equal_to_selector_gets_identity_in_default_namespace() {
    let d = desired(
        &[mk_pod("app", "web-1", "node-0", "demo")],
        &[mk_binding("app", "demo-binding", "demo-id", "demo")],
        &[mk_identity("app", "demo-id")],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["default/web-1-app-demo-id"]);
    let a = d.assignments.values().next().unwrap();
    assert_eq!(a.node, "node-0");
    assert_eq!(a.resource_key.as_deref(), Some(resource_id("demo-id").to_lowercase().as_str()));
}

#[test]
fn namespaced_identity_puts_assignment_in_its_own_namespace() {
    let d = desired(
        &[mk_pod("app", "web-1", "node-0", "demo")],
        &[mk_binding("app", "b", "demo-id", "demo")],
        &[namespaced(mk_identity("app", "demo-id"))],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["app/web-1-app-demo-id"]);
}

#[test]
fn selector_is_exact_string_equality_not_a_label_selector() {
    let d = desired(
        &[mk_pod("app", "p", "n", "Demo"), mk_pod("app", "q", "n", "demo=x")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    assert!(d.assignments.is_empty());
    assert_eq!(d.diagnostics.len(), 2);
}

#[test]
fn default_mode_matches_bindings_across_namespaces() {
    let d = desired(
        &[mk_pod("other", "p", "n", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["default/p-other-id"]);
}

#[test]
fn force_namespaced_refuses_cross_namespace_match_with_a_diagnostic() {
    let d = desired(
        &[mk_pod("other", "p", "n", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions { force_namespaced: true, ..MatchOptions::default() },
    );
    assert!(d.assignments.is_empty());
    assert!(matches!(d.diagnostics[..], [Diagnostic::NamespaceMismatch { .. }]));
}

#[test]
fn namespaced_annotation_refuses_cross_namespace_match() {
    let d = desired(
        &[mk_pod("other", "p", "n", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[namespaced(mk_identity("app", "id"))],
        MatchOptions::default(),
    );
    assert!(d.assignments.is_empty());
}

#[test]
fn identity_must_live_in_the_binding_namespace() {
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("elsewhere", "id")],
        MatchOptions::default(),
    );
    assert!(d.assignments.is_empty());
    assert!(d.diagnostics[0].to_string().contains("does not exist in namespace app"));
}

#[test]
fn same_named_identities_in_two_namespaces_keep_the_first_and_warn() {
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("b-ns", "b", "id", "demo"), mk_binding("a-ns", "b", "id", "demo")],
        &[mk_identity("a-ns", "id"), mk_identity("b-ns", "id")],
        MatchOptions::default(),
    );
    assert_eq!(d.assignments.len(), 1);
    let kept = d.assignments.values().next().unwrap();
    assert_eq!(kept.identity.metadata.namespace.as_deref(), Some("a-ns"));
    assert!(matches!(d.diagnostics[..], [Diagnostic::DuplicateIdentityName { .. }]));
}

#[test]
fn same_named_namespaced_identities_in_two_namespaces_both_work() {
    let d = desired(
        &[mk_pod("a", "p", "n", "demo"), mk_pod("b", "p", "n", "demo")],
        &[mk_binding("a", "b", "id", "demo"), mk_binding("b", "b", "id", "demo")],
        &[namespaced(mk_identity("a", "id")), namespaced(mk_identity("b", "id"))],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["a/p-a-id", "b/p-b-id"]);
}

#[test]
fn several_identities_behind_one_selector_all_apply() {
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b1", "id1", "demo"), mk_binding("app", "b2", "id2", "demo")],
        &[mk_identity("app", "id1"), mk_identity("app", "id2")],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["default/p-app-id1", "default/p-app-id2"]);
}

#[test]
fn unscheduled_and_finished_pods_get_nothing() {
    use crate::pod::Phase;
    let pods = [
        mk_pod("app", "a", "n", "demo").unscheduled(),
        mk_pod("app", "c", "n", "demo").phase(Phase::Succeeded),
        mk_pod("app", "d", "n", "demo").phase(Phase::Failed),
        mk_pod("app", "e", "n", "demo").phase(Phase::Pending),
    ];
    let d = desired(
        &pods,
        &[mk_binding("app", "b", "id", "demo")],
        &[mk_identity("app", "id")],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["default/e-app-id"]);
}

#[test]
fn terminating_pod_keeps_its_assignment_until_its_containers_stop_unless_released() {
    use crate::pod::Phase;
    let bindings = [mk_binding("app", "b", "id", "demo")];
    let ids = [mk_identity("app", "id")];
    let stopping = [mk_pod("app", "t", "n", "demo").terminating()];
    assert_eq!(names(&desired(&stopping, &bindings, &ids, MatchOptions::default())), ["default/t-app-id"]);
    let release = MatchOptions { release_terminating: true, ..MatchOptions::default() };
    assert!(names(&desired(&stopping, &bindings, &ids, release)).is_empty());
    let stopped = [mk_pod("app", "t", "n", "demo").terminating().phase(Phase::Failed)];
    assert!(names(&desired(&stopped, &bindings, &ids, MatchOptions::default())).is_empty());
}

#[test]
fn unknown_identity_type_is_skipped_with_its_reason() {
    let mut bad = mk_identity("app", "bad");
    bad.spec.identity_type = 3;
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b1", "bad", "demo"), mk_binding("app", "b2", "good", "demo")],
        &[bad, mk_identity("app", "good")],
        MatchOptions::default(),
    );
    assert_eq!(names(&d), ["default/p-app-good"]);
    assert!(d.diagnostics.iter().any(|x| x.to_string().contains("unknown identity type 3")));
    assert!(!d.diagnostics.iter().any(|x| matches!(x, Diagnostic::IdentityNotFound { .. })));
}

#[test]
fn malformed_resource_id_is_skipped_with_upstream_message() {
    let mut bad = mk_identity("app", "bad");
    bad.spec.resource_id = String::new();
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b", "bad", "demo")],
        &[bad],
        MatchOptions::default(),
    );
    assert!(d.assignments.is_empty());
    assert!(d.diagnostics[0].to_string().contains("invalid resource id: \"\""));
}

#[test]
fn service_principal_needs_client_tenant_and_secret() {
    let mut sp = mk_sp_identity("app", "sp");
    sp.spec.tenant_id.clear();
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b", "sp", "demo")],
        &[sp],
        MatchOptions::default(),
    );
    assert!(d.assignments.is_empty());
    assert!(d.diagnostics[0].to_string().contains("needs spec.tenantID"));
}

#[test]
fn service_principal_assignment_has_no_resource_key() {
    let d = desired(
        &[mk_pod("app", "p", "n", "demo")],
        &[mk_binding("app", "b", "sp", "demo")],
        &[mk_sp_identity("app", "sp")],
        MatchOptions::default(),
    );
    assert_eq!(d.assignments.values().next().unwrap().resource_key, None);
}
