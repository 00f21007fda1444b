//! Federated identities: tokens through workload identity federation instead of the node's IMDS.
//!
//! ```text
//!  per identity: AzureIdentity annotated podid.io/federated: "true"  (standard or managed mode)
//!  per cluster:  --operation-mode=federated: every type-0 identity   (no controller at all)
//!
//!  pod ─label─▶ bindings ─▶ identities (the controller's matching rules, but no assigned identity)
//!      └─ federated, type 0 ─▶ Serve: the agent exchanges a TokenRequest token of the pod's own
//!                              service account at Entra ID for the identity's client id
//! ```
//!
//! A federated identity is decided from bindings directly ([`crate::decision::decide`]), like
//! managed mode: nothing waits for the controller, and the controller
//! ([`crate::matching::desired`]) never assigns one. Only user-assigned identities (type 0) can be
//! federated: a service principal annotated federated is refused with the reason.
use podid_api::{AzureIdentity, IdentityKind, Resource};

/// Which identities the agent federates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Federation {
    /// Only identities annotated `podid.io/federated: "true"` (standard and managed mode).
    Annotated,
    /// `--operation-mode=federated`: every user-assigned identity (type 0) and annotated ones;
    /// service principals (types 1 and 2) keep their meaning.
    Cluster,
}

impl Federation {
    /// Whether `identity` is federated under this setting.
    pub fn covers(self, identity: &AzureIdentity) -> bool {
        identity.is_federated() || (self == Self::Cluster && identity.spec.identity_type == 0)
    }
}

/// Checks a federated identity; `Err` carries the reason it cannot be used.
pub fn validate_federated(identity: &AzureIdentity) -> Result<(), String> {
    match identity.spec.kind() {
        Err(e) => Err(e.to_string()),
        Ok(IdentityKind::UserAssigned) if identity.spec.client_id.trim().is_empty() => {
            Err("a federated identity needs spec.clientID".into())
        }
        Ok(IdentityKind::UserAssigned) => Ok(()),
        Ok(kind) => Err(format!(
            "identity {}/{} is annotated {}=true but is a {} (type {}): only user-assigned identities \
             (type 0) can be federated; remove the annotation or use type 0",
            identity.meta().namespace.as_deref().unwrap_or_default(),
            identity.meta().name.as_deref().unwrap_or_default(),
            podid_api::FEDERATED_ANNOTATION,
            kind.describe(),
            kind.code()
        )),
    }
}

/// The expected subject of a federated identity credential for a pod's service account.
pub fn subject(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}
