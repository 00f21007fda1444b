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
//! A federated identity is decided from bindings directly, like managed mode: nothing waits for the
//! controller, and the controller ([`crate::matching::desired`]) never assigns one. Only
//! user-assigned identities (type 0) can be federated: a service principal annotated federated is
//! refused with the reason.
use podid_api::{AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, IdentityKind, Resource};

use crate::PodView;
use crate::agent::{
    Options, Outcome, Refusal, RefusalKind, Request, allowed_namespace, not_bound, preflight, wanted,
};

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

/// Identities bound to `pod` by `bindings`, with the controller's rules: the binding's selector
/// equals the pod's `aadpodidbinding` label, the identity lives in the binding's namespace, and a
/// namespaced identity (or any, with `--forceNamespaced`) only serves pods of that namespace.
/// Sorted by (identity namespace/name, binding namespace/name). `lookup(ns, name)` finds identities.
pub fn bound_identities<'a>(
    pod: &PodView,
    bindings: impl IntoIterator<Item = &'a AzureIdentityBinding>,
    lookup: impl Fn(&str, &str) -> Option<&'a AzureIdentity>,
    opts: Options<'_>,
) -> Vec<(&'a AzureIdentity, &'a AzureIdentityBinding)> {
    let Some(selector) = pod.binding_selector() else { return Vec::new() };
    let mut out: Vec<(&AzureIdentity, &AzureIdentityBinding)> = bindings
        .into_iter()
        .filter(|b| b.spec.selector == selector)
        .filter_map(|b| {
            let ns = b.metadata.namespace.as_deref().unwrap_or_default();
            lookup(ns, &b.spec.azure_identity).map(|i| (i, b))
        })
        .filter(|(i, _)| allowed_namespace(i, pod, opts))
        .collect();
    out.sort_by(|(i1, b1), (i2, b2)| (key(*i1), key(*b1)).cmp(&(key(*i2), key(*b2))));
    out
}

fn key<K: Resource>(o: &K) -> (Option<&String>, Option<&String>) {
    (o.meta().namespace.as_ref(), o.meta().name.as_ref())
}

/// Decides a request among `bound` (from [`bound_identities`]).
///
/// With [`Federation::Annotated`], `None` means no federated identity is bound to the pod for this
/// request: the caller goes on with the standard or managed decision. With
/// [`Federation::Cluster`] the answer is always `Some`: every bound identity is considered, a
/// service principal being served as such.
pub fn decide_federated<'a, 'e>(
    pod: &PodView,
    req: &Request<'_>,
    bound: &[(&'a AzureIdentity, &'a AzureIdentityBinding)],
    exceptions: impl IntoIterator<Item = &'e AzurePodIdentityException>,
    opts: Options<'_>,
    federation: Federation,
) -> Option<Outcome<'a>> {
    if let Some(outcome) = preflight(pod, req, exceptions, opts) {
        return Some(outcome);
    }
    let candidates: Vec<&'a AzureIdentity> = bound
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| wanted(i, req) && (federation == Federation::Cluster || federation.covers(i)))
        .collect();
    let mut first_error = None;
    for identity in &candidates {
        let check = if federation.covers(identity) {
            validate_federated(identity)
        } else {
            crate::matching::validate_identity(identity).map(|_| ())
        };
        match check {
            Ok(()) => return Some(Outcome::Serve(identity)),
            Err(reason) => {
                first_error.get_or_insert(reason);
            }
        }
    }
    match (first_error, federation) {
        (Some(reason), _) => Some(Outcome::Refuse(Refusal { kind: RefusalKind::Forbidden, message: reason })),
        (None, Federation::Cluster) => Some(Outcome::Refuse(not_bound(pod, req))),
        (None, Federation::Annotated) => None,
    }
}
