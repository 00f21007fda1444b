//! Specs for the pure core. Builders keep each test to the behaviour it names.
use std::collections::BTreeMap;
use std::net::IpAddr;

use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec,
    AzurePodIdentityException, AzurePodIdentityExceptionSpec, BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED,
    SecretReference,
};

use crate::pod::Phase;
use crate::{PodKey, PodView};

mod agent;
mod decision;
mod diff;
mod federation;
mod matching;
mod props;
mod props_decision;
mod scaleset;

/// No assigned identities yet.
pub(crate) const NO_AAIS: &[podid_api::AzureAssignedIdentity] = &[];
pub(crate) const SUB: &str = "00000000-0000-0000-0000-00000000aaaa";

pub(crate) fn meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{ns}-{name}")),
        ..ObjectMeta::default()
    }
}

pub(crate) fn resource_id(name: &str) -> String {
    format!(
        "/subscriptions/{SUB}/resourcegroups/identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

pub(crate) fn client_id(name: &str) -> String {
    format!("client-{name}-0000-0000-000000000000")
}

/// A user-assigned identity `ns/name` with a resource id and client id derived from its name.
pub(crate) fn mk_identity(ns: &str, name: &str) -> AzureIdentity {
    AzureIdentity {
        metadata: meta(ns, name),
        spec: AzureIdentitySpec {
            identity_type: 0,
            resource_id: resource_id(name),
            client_id: client_id(name),
            ..AzureIdentitySpec::default()
        },
        status: None,
    }
}

/// A service principal identity (type 1) with its secret reference.
pub(crate) fn mk_sp_identity(ns: &str, name: &str) -> AzureIdentity {
    AzureIdentity {
        metadata: meta(ns, name),
        spec: AzureIdentitySpec {
            identity_type: 1,
            client_id: client_id(name),
            tenant_id: "tenant".into(),
            client_password: SecretReference { name: format!("{name}-secret"), namespace: ns.into() },
            ..AzureIdentitySpec::default()
        },
        status: None,
    }
}

pub(crate) fn namespaced(mut identity: AzureIdentity) -> AzureIdentity {
    identity
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(BEHAVIOR_ANNOTATION.into(), BEHAVIOR_NAMESPACED.into());
    identity
}

pub(crate) fn mk_binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
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

pub(crate) fn mk_exception(ns: &str, name: &str, labels: &[(&str, &str)]) -> AzurePodIdentityException {
    AzurePodIdentityException {
        metadata: meta(ns, name),
        spec: AzurePodIdentityExceptionSpec {
            pod_labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..AzurePodIdentityExceptionSpec::default()
        },
        status: None,
    }
}

/// A running pod `ns/name` on `node`, labelled `aadpodidbinding=selector`.
pub(crate) fn mk_pod(ns: &str, name: &str, node: &str, selector: &str) -> PodView {
    PodView {
        key: PodKey::new(ns, name),
        node: Some(node.into()),
        labels: BTreeMap::from([("aadpodidbinding".to_string(), selector.to_string())]),
        phase: Phase::Running,
        ip: None,
        terminating: false,
        host_network: false,
        replica_set: None,
        service_account: "default".into(),
    }
}

pub(crate) trait PodExt {
    fn ip(self, ip: &str) -> Self;
    fn phase(self, phase: Phase) -> Self;
    fn label(self, k: &str, v: &str) -> Self;
    fn unscheduled(self) -> Self;
    fn terminating(self) -> Self;
    fn host_network(self) -> Self;
    fn replica_set(self, rs: &str) -> Self;
}

impl PodExt for PodView {
    fn ip(mut self, ip: &str) -> Self {
        self.ip = ip.parse::<IpAddr>().ok();
        self
    }
    fn phase(mut self, phase: Phase) -> Self {
        self.phase = phase;
        self
    }
    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.insert(k.into(), v.into());
        self
    }
    fn unscheduled(mut self) -> Self {
        self.node = None;
        self
    }
    fn terminating(mut self) -> Self {
        self.terminating = true;
        self
    }
    fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }
    fn replica_set(mut self, rs: &str) -> Self {
        self.replica_set = Some(rs.into());
        self
    }
}
