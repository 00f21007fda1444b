//! Specs for the deciding parts: the index and the planner, with plain objects and no I/O.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::BTreeMap;

use podid_api::k8s_openapi::api::core::v1::{NodeSpec, PodSpec, PodStatus};
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec, Node, Pod,
};
use podid_core::PodView;
use podid_core::matching::{MatchOptions, desired};

mod index;
mod leader;
mod plan;
mod schedule;

pub const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";

pub fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{ns}-{name}")),
        ..ObjectMeta::default()
    }
}

pub fn rid(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourcegroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

pub fn key(name: &str) -> String {
    rid(name).to_ascii_lowercase()
}

pub fn mk_identity(ns: &str, name: &str) -> AzureIdentity {
    AzureIdentity {
        metadata: meta(ns, name),
        spec: AzureIdentitySpec {
            identity_type: 0,
            resource_id: rid(name),
            client_id: format!("client-{name}"),
            ..AzureIdentitySpec::default()
        },
        status: None,
    }
}

pub fn mk_binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
    AzureIdentityBinding {
        metadata: meta(ns, name),
        spec: AzureIdentityBindingSpec {
            azure_identity: identity.into(),
            selector: selector.into(),
            ..AzureIdentityBindingSpec::default()
        },
        status: None,
    }
}

pub fn mk_pod(ns: &str, name: &str, node: &str, selector: &str) -> Pod {
    let mut m = meta(ns, name);
    m.labels = Some(BTreeMap::from([("aadpodidbinding".to_string(), selector.to_string())]));
    Pod {
        metadata: m,
        spec: Some(PodSpec { node_name: Some(node.into()), ..PodSpec::default() }),
        status: Some(PodStatus { phase: Some("Running".into()), ..PodStatus::default() }),
    }
}

pub fn view(pod: &Pod) -> PodView {
    PodView::from_pod(pod)
}

/// Node `name` as instance `i` of scale set `vmss`.
pub fn mk_node(name: &str, vmss: &str, i: u32) -> Node {
    Node {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(NodeSpec {
            provider_id: Some(format!(
                "azure:///subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/{vmss}/virtualMachines/{i}"
            )),
            ..NodeSpec::default()
        }),
        status: None,
    }
}

/// The assigned identities the controller would have written for these objects, in `state`.
pub fn written(
    pods: &[Pod],
    bindings: &[AzureIdentityBinding],
    ids: &[AzureIdentity],
    state: AssignedState,
) -> Vec<AzureAssignedIdentity> {
    let views: Vec<PodView> = pods.iter().map(view).collect();
    desired(&views, bindings, ids, MatchOptions::default())
        .assignments
        .values()
        .map(|a| {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = state.as_str().into();
            o
        })
        .collect()
}
