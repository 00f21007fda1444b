//! `podid explain identity NS/NAME`: the reverse view — bindings pointing at the identity, the
//! pods they select, and the assignments the controller keeps for it.
use std::io::Write;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};
use podid_core::matching::{self, MatchOptions, validate_identity};
use podid_core::{Diagnostic, PodKey, PodView};

use super::{Report, key};
use crate::args::ExplainIdentity;
use crate::error::{Error, KubeContext, Result};
use crate::kube_util::{list_all, split_ref};

/// `podid explain identity`.
pub(crate) async fn identity(
    client: &kube::Client,
    args: &ExplainIdentity,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (ns, name) = split_ref(&args.identity, "the identity")?;
    let identity = Api::<AzureIdentity>::namespaced(client.clone(), &ns)
        .get_opt(&name)
        .await
        .doing(|| format!("read AzureIdentity {ns}/{name}"))?
        .ok_or_else(|| Error::NotFound {
            kind: "AzureIdentity",
            namespace: ns.clone(),
            name: name.clone(),
            hint: ": see podid identity list -A",
        })?;
    let bindings = list_all::<AzureIdentityBinding>(client, None, "AzureIdentityBindings").await?;
    let identities = list_all::<AzureIdentity>(client, None, "AzureIdentities").await?;
    let pods: Vec<PodView> =
        list_all::<Pod>(client, None, "pods").await?.iter().map(PodView::from_pod).collect();
    let assigned = list_all::<AzureAssignedIdentity>(client, None, "AzureAssignedIdentities").await?;

    let ikey = PodKey::new(ns.clone(), name.clone());
    let mut r = Report::new(format!("identity {ikey}"));
    r.step(
        "identity",
        vec![match validate_identity(&identity) {
            Ok((kind, _)) => format!(
                "{}, client id {}, resource id {}{}",
                kind.describe(),
                identity.spec.client_id,
                identity.spec.resource_id,
                if identity.is_namespaced() { ", namespaced (only pods of its namespace)" } else { "" }
            ),
            Err(reason) => format!("invalid, the controller and agent ignore it: {reason}"),
        }],
    );
    let mine: Vec<&AzureIdentityBinding> = bindings
        .iter()
        .filter(|b| b.metadata.namespace.as_deref() == Some(ns.as_str()) && b.spec.azure_identity == name)
        .collect();
    r.step(
        "bindings",
        if mine.is_empty() {
            vec!["none points at it: no pod can get it".into()]
        } else {
            mine.iter()
                .map(|b| format!("{} selects pods labelled aadpodidbinding={}", key(*b), b.spec.selector))
                .collect()
        },
    );
    let desired = matching::desired(
        &pods,
        &bindings,
        &identities,
        MatchOptions { force_namespaced: args.force_namespaced, ..MatchOptions::default() },
    );
    let users: Vec<&matching::Assignment> =
        desired.assignments.values().filter(|a| matching::object_key(&a.identity) == ikey).collect();
    let mut pod_lines: Vec<String> = users
        .iter()
        .map(|a| format!("{} on node {} gets it (assignment {})", a.pod, a.node, a.key))
        .collect();
    for d in &desired.diagnostics {
        if let Diagnostic::NamespaceMismatch { identity, .. } = d
            && *identity == ikey
        {
            pod_lines.push(format!("refused: {d}"));
        }
    }
    for p in &pods {
        let selected = p.binding_selector().is_some_and(|s| mine.iter().any(|b| b.spec.selector == s));
        if selected && !matching::holds_identities(p, MatchOptions::default()) {
            pod_lines
                .push(format!("{} is selected but holds no identities (unscheduled or finished)", p.key));
        }
    }
    if pod_lines.is_empty() {
        pod_lines.push("no pod is selected".into());
    }
    r.step("pods", pod_lines);
    let mut states = (0, 0);
    let mut aai_lines: Vec<String> = assigned
        .iter()
        .filter(|a| a.spec.azure_identity_ref.as_deref().is_some_and(|i| matching::object_key(i) == ikey))
        .map(|a| {
            let state = a.state();
            if state.is_usable() {
                states.0 += 1;
            } else {
                states.1 += 1;
            }
            format!(
                "{} → pod {}/{}, node {}, state {}",
                key(a),
                a.spec.pod_namespace,
                a.spec.pod,
                a.spec.node_name,
                state.as_str()
            )
        })
        .collect();
    if aai_lines.is_empty() {
        aai_lines.push("none".into());
    }
    r.step("assigned identities", aai_lines);
    r.verdict = if let Err(reason) = validate_identity(&identity) {
        format!("identity {ikey} is unusable: {reason}")
    } else if mine.is_empty() {
        format!("identity {ikey} is unused: no AzureIdentityBinding points at it")
    } else {
        format!(
            "identity {ikey} is wanted by {} pod(s); {} assignment(s) usable, {} not yet or no longer",
            users.len(),
            states.0,
            states.1
        )
    };
    r.write(args.output, out)?;
    Ok(ExitCode::SUCCESS)
}
