//! Least-privilege RBAC: exactly the verbs the controller and the agent use (see docs/install.md
//! for each rule and the code that needs it).
//!
//! ```text
//!  podid-mic  ClusterRole: list/watch pods, nodes, identities, bindings;
//!                          list/watch/create/update/patch/delete assigned identities; create/patch events;
//!                          list/watch core events (agents' IdentityNotOnNode drift reports)
//!             Role (install ns): get/create/update the leader-election Lease; the per-scale-set
//!                          ledger ConfigMaps (list/watch/create/update/delete)
//!  podid-nmi  ClusterRole: list/watch pods, exceptions, identities, bindings; standard: list/watch
//!                          assigned identities, create events (drift reports); get secrets;
//!                          federated mode (or --federated-identities): create serviceaccounts/token
//! ```
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};

use super::{InstallOptions, MIC_SERVICE_ACCOUNT, Mode, NMI_SERVICE_ACCOUNT, Rendered, meta};
use crate::error::Result;

const GROUP: &str = "aadpodidentity.k8s.io";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// The controller's cluster-wide rules.
pub(crate) fn mic_rules() -> Vec<PolicyRule> {
    vec![
        rule("", &["pods", "nodes"], &["list", "watch"]),
        rule(GROUP, &["azureidentities", "azureidentitybindings"], &["list", "watch"]),
        rule(GROUP, &["azureassignedidentities"], &["list", "watch", "create", "update", "patch", "delete"]),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
        // Agents' drift reports (field selector reason=IdentityNotOnNode).
        rule("", &["events"], &["list", "watch"]),
    ]
}

/// The controller's rules in its own namespace: its leader-election Lease.
pub(crate) fn mic_lease_rules() -> Vec<PolicyRule> {
    vec![
        rule("coordination.k8s.io", &["leases"], &["get", "create", "update"]),
        // Ledgers: what podid added to each scale set or VM (crates/mic/src/ledger.rs).
        rule("", &["configmaps"], &["list", "watch", "create", "update", "delete"]),
    ]
}

/// The agent's cluster-wide rules in `mode`. Every mode watches identities and bindings (managed
/// and federated mode decide from them; standard mode for identities annotated
/// `podid.io/federated`). Only an agent that federates — federated mode, or `federated_identities`
/// (identities annotated `podid.io/federated` in a standard or managed cluster) — may request
/// tokens for pods' service accounts: the grant lets it mint a token for any service account, so it
/// is not rendered where nothing needs it.
pub(crate) fn nmi_rules(mode: Mode, federated_identities: bool) -> Vec<PolicyRule> {
    let mut rules = vec![
        rule("", &["pods"], &["list", "watch"]),
        rule(
            GROUP,
            &["azurepodidentityexceptions", "azureidentities", "azureidentitybindings"],
            &["list", "watch"],
        ),
    ];
    if mode == Mode::Standard {
        rules.push(rule(GROUP, &["azureassignedidentities"], &["list", "watch"]));
        // Drift reports: IMDS refused an Assigned identity (crates/nmi/src/drift.rs).
        rules.push(rule("events.k8s.io", &["events"], &["create"]));
    }
    // Service principal identities: the agent reads the secret the identity names.
    rules.push(rule("", &["secrets"], &["get"]));
    // Federation: a token for the calling pod's own service account, exchanged at Entra ID.
    if mode == Mode::Federated || federated_identities {
        rules.push(rule("", &["serviceaccounts/token"], &["create"]));
    }
    rules
}

fn subject(name: &str, ns: &str) -> Vec<Subject> {
    vec![Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(ns.into()),
        ..Default::default()
    }]
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef { api_group: Some(RBAC_GROUP.into()), kind: kind.into(), name: name.into() }
}

/// The ServiceAccount `name` of `component`, its ClusterRole and their binding.
fn account(out: &mut Rendered, name: &str, ns: &str, component: &str, rules: Vec<PolicyRule>) -> Result<()> {
    out.push(&ServiceAccount { metadata: meta(name, Some(ns), Some(component)), ..Default::default() })?;
    out.push(&ClusterRole {
        metadata: meta(name, None, Some(component)),
        rules: Some(rules),
        ..Default::default()
    })?;
    out.push(&ClusterRoleBinding {
        metadata: meta(name, None, Some(component)),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(subject(name, ns)),
    })
}

/// ServiceAccounts, roles and bindings of the components `opts.mode` deploys.
pub(crate) fn objects(opts: &InstallOptions, out: &mut Rendered) -> Result<()> {
    let ns = opts.namespace.as_str();
    if opts.mode.has_controller() {
        let name = MIC_SERVICE_ACCOUNT;
        account(out, name, ns, "mic", mic_rules())?;
        let lease_role = format!("{name}-leader-election");
        out.push(&Role {
            metadata: meta(&lease_role, Some(ns), Some("mic")),
            rules: Some(mic_lease_rules()),
        })?;
        out.push(&RoleBinding {
            metadata: meta(&lease_role, Some(ns), Some("mic")),
            role_ref: role_ref("Role", &lease_role),
            subjects: Some(subject(name, ns)),
        })?;
    }
    account(out, NMI_SERVICE_ACCOUNT, ns, "nmi", nmi_rules(opts.mode, opts.federated_identities))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(rules: &[PolicyRule], resource: &str, verb: &str) -> bool {
        rules.iter().any(|r| {
            r.resources.as_ref().is_some_and(|a| a.iter().any(|x| x == resource))
                && r.verbs.iter().any(|x| x == verb)
        })
    }

    #[test]
    fn the_agent_may_create_tokens_only_where_it_federates_and_never_read_service_accounts() {
        for mode in [Mode::Standard, Mode::Managed, Mode::Federated] {
            for federated_identities in [false, true] {
                let rules = nmi_rules(mode, federated_identities);
                let federates = mode == Mode::Federated || federated_identities;
                assert_eq!(grants(&rules, "serviceaccounts/token", "create"), federates, "{mode:?}");
                assert!(
                    !grants(&rules, "serviceaccounts", "get") && !grants(&rules, "serviceaccounts", "list")
                );
            }
        }
    }

    #[test]
    fn only_the_standard_agent_watches_assigned_identities() {
        assert!(grants(&nmi_rules(Mode::Standard, false), "azureassignedidentities", "watch"));
        assert!(!grants(&nmi_rules(Mode::Federated, false), "azureassignedidentities", "watch"));
        assert!(!grants(&nmi_rules(Mode::Managed, false), "azureassignedidentities", "list"));
    }

    #[test]
    fn no_rule_uses_wildcards_or_lists_secrets() {
        for rules in [
            mic_rules(),
            mic_lease_rules(),
            nmi_rules(Mode::Standard, false),
            nmi_rules(Mode::Federated, false),
        ] {
            let text = serde_json::to_string(&rules).unwrap();
            assert!(!text.contains('*'), "{text}");
            assert!(!grants(&rules, "secrets", "list") && !grants(&rules, "secrets", "watch"));
        }
    }

    #[test]
    fn the_agent_may_not_write_assigned_identities() {
        for verb in ["create", "update", "patch", "delete"] {
            assert!(!grants(&nmi_rules(Mode::Standard, false), "azureassignedidentities", verb), "{verb}");
        }
    }
}
