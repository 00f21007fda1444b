//! Desired assigned identities: pods × bindings × identities (upstream §2.6).
//!
//! A pod labelled `aadpodidbinding=S` matches every binding (in any namespace, unless namespaced)
//! whose `selector` is exactly `S`; each binding names an identity in the binding's own namespace.
//! With force-namespaced mode or the identity's `namespaced` annotation, pod, binding and identity
//! must share a namespace. Only scheduled, labelled pods that have not finished count; a terminating
//! pod keeps its identities until its containers have stopped (see [`holds_identities`]).
//! Invalid identities are skipped with a [`Diagnostic`]; they never hide valid ones.
//! Federated identities (annotated `podid.io/federated: "true"`) are left out silently: the agent
//! serves them through federation, with no assigned identity and no ARM call.
use std::collections::{BTreeMap, HashMap, HashSet};

use podid_api::names::assigned_identity_name;
use podid_api::resource_id::UserAssignedIdentityId;
use podid_api::{AzureIdentity, AzureIdentityBinding, DEFAULT_AAI_NAMESPACE, IdentityKind, Resource};

use crate::diagnostics::ObjectKey;
use crate::{Diagnostic, PodKey, PodView};

/// Settings that change matching.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatchOptions {
    /// `--forceNamespaced`: every identity behaves as if annotated `namespaced`.
    pub force_namespaced: bool,
    /// `--release-terminating-pods`: a pod loses its identities as soon as it is deleted
    /// (deletionTimestamp set), not when its containers have stopped.
    pub release_terminating: bool,
}

/// One pod's use of one identity: what an `AzureAssignedIdentity` records.
#[derive(Clone, Debug, PartialEq)]
pub struct Assignment {
    /// Key of the assigned-identity object (its namespace and name).
    pub key: ObjectKey,
    pub pod: PodKey,
    /// The pod's node. Invariant: non-empty.
    pub node: String,
    pub identity: AzureIdentity,
    pub binding: AzureIdentityBinding,
    pub kind: IdentityKind,
    /// Lower-cased ARM id for user-assigned identities (the only kind that touches ARM).
    pub resource_key: Option<String>,
}

/// The desired state of all assignments, keyed by assigned-identity namespace/name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Desired {
    pub assignments: BTreeMap<ObjectKey, Assignment>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A validated identity.
struct Usable<'a> {
    identity: &'a AzureIdentity,
    kind: IdentityKind,
    resource_key: Option<String>,
}

/// `namespace/name` of any object.
pub fn object_key<K: Resource>(o: &K) -> ObjectKey {
    let meta = o.meta();
    PodKey::new(meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

/// Checks an identity; `Err` carries the reason it cannot be used.
pub fn validate_identity(identity: &AzureIdentity) -> Result<(IdentityKind, Option<String>), String> {
    let kind = identity.spec.kind().map_err(|e| e.to_string())?;
    match kind {
        IdentityKind::UserAssigned => {
            let id = UserAssignedIdentityId::parse(&identity.spec.resource_id).map_err(|e| e.to_string())?;
            Ok((kind, Some(id.key())))
        }
        IdentityKind::ServicePrincipal | IdentityKind::ServicePrincipalCertificate => {
            let missing: Vec<&str> = [
                ("clientID", identity.spec.client_id.is_empty()),
                ("tenantID", identity.spec.tenant_id.is_empty()),
                ("clientPassword.name", identity.spec.client_password.name.is_empty()),
            ]
            .into_iter()
            .filter_map(|(f, empty)| empty.then_some(f))
            .collect();
            if missing.is_empty() {
                Ok((kind, None))
            } else {
                Err(format!("a {} needs spec.{}", kind.describe(), missing.join(", spec.")))
            }
        }
    }
}

fn usable_identities<'a>(
    identities: &'a [AzureIdentity],
    diagnostics: &mut Vec<Diagnostic>,
) -> HashMap<ObjectKey, Usable<'a>> {
    let mut out = HashMap::new();
    for identity in identities.iter().filter(|i| !i.is_federated()) {
        match validate_identity(identity) {
            Ok((kind, resource_key)) => {
                out.insert(object_key(identity), Usable { identity, kind, resource_key });
            }
            Err(reason) => {
                diagnostics.push(Diagnostic::InvalidIdentity { identity: object_key(identity), reason })
            }
        }
    }
    out
}

/// Namespace the assigned identity for `identity` lives in.
pub fn assignment_namespace(identity: &AzureIdentity, opts: MatchOptions) -> String {
    if opts.force_namespaced || identity.is_namespaced() {
        identity.metadata.namespace.clone().unwrap_or_default()
    } else {
        DEFAULT_AAI_NAMESPACE.to_string()
    }
}

/// Whether `pod` may be given identities now: scheduled, labelled, Pending or Running, and not
/// terminating. (The controller's index compares it between versions of a pod to notice a
/// deletion; what a pod keeps is [`holds_identities`].)
pub fn is_eligible(pod: &PodView) -> bool {
    pod.node.is_some() && !pod.terminating && pod.phase.is_live() && pod.binding_selector().is_some()
}

/// Whether `pod` holds identities: eligible, or terminating (deletionTimestamp set) while its
/// phase is still Pending or Running — its containers are still stopping and may flush work with
/// their tokens — unless `--release-terminating-pods` releases them at deletion, as upstream did.
pub fn holds_identities(pod: &PodView, opts: MatchOptions) -> bool {
    let labelled_and_live = pod.node.is_some() && pod.phase.is_live() && pod.binding_selector().is_some();
    labelled_and_live && !(pod.terminating && opts.release_terminating)
}

/// Computes the desired assignments.
pub fn desired(
    pods: &[PodView],
    bindings: &[AzureIdentityBinding],
    identities: &[AzureIdentity],
    opts: MatchOptions,
) -> Desired {
    let mut out = Desired::default();
    let usable = usable_identities(identities, &mut out.diagnostics);
    let federated: HashSet<ObjectKey> =
        identities.iter().filter(|i| i.is_federated()).map(object_key).collect();
    let mut by_selector: BTreeMap<&str, Vec<&AzureIdentityBinding>> = BTreeMap::new();
    for binding in bindings {
        by_selector.entry(binding.spec.selector.as_str()).or_default().push(binding);
    }
    for list in by_selector.values_mut() {
        // Oldest first: of two same-named identities the older binding's is kept, so a binding
        // added later never takes an identity away from a pod.
        list.sort_by(|a, b| crate::candidates::age_order(a).cmp(&crate::candidates::age_order(b)));
    }
    let mut sorted: Vec<&PodView> = pods.iter().filter(|p| holds_identities(p, opts)).collect();
    sorted.sort_by(|a, b| a.key.cmp(&b.key));
    for pod in sorted {
        match_pod(pod, &by_selector, &usable, &federated, opts, &mut out);
    }
    out
}

fn match_pod(
    pod: &PodView,
    by_selector: &BTreeMap<&str, Vec<&AzureIdentityBinding>>,
    usable: &HashMap<ObjectKey, Usable<'_>>,
    federated: &HashSet<ObjectKey>,
    opts: MatchOptions,
    out: &mut Desired,
) {
    let (Some(selector), Some(node)) = (pod.binding_selector(), pod.node.as_deref()) else { return };
    let Some(candidates) = by_selector.get(selector) else {
        out.diagnostics
            .push(Diagnostic::NoBindingForSelector { pod: pod.key.clone(), selector: selector.into() });
        return;
    };
    for binding in candidates {
        let binding_key = object_key(*binding);
        let identity_key = PodKey::new(binding_key.namespace.clone(), binding.spec.azure_identity.clone());
        let Some(found) = usable.get(&identity_key) else {
            if federated.contains(&identity_key) {
                continue;
            }
            if !binding_identity_is_invalid(&identity_key, &out.diagnostics) {
                out.diagnostics.push(Diagnostic::IdentityNotFound {
                    binding: binding_key,
                    identity: binding.spec.azure_identity.clone(),
                });
            }
            continue;
        };
        if (opts.force_namespaced || found.identity.is_namespaced())
            && binding_key.namespace != pod.key.namespace
        {
            out.diagnostics.push(Diagnostic::NamespaceMismatch {
                pod: pod.key.clone(),
                binding: binding_key,
                identity: identity_key,
                forced: !found.identity.is_namespaced(),
            });
            continue;
        }
        let key = PodKey::new(
            assignment_namespace(found.identity, opts),
            assigned_identity_name(&pod.key.name, &pod.key.namespace, &identity_key.name),
        );
        if let Some(kept) = out.assignments.get(&key) {
            out.diagnostics.push(Diagnostic::DuplicateIdentityName {
                pod: pod.key.clone(),
                kept: object_key(&kept.identity),
                dropped: identity_key,
            });
            continue;
        }
        out.assignments.insert(
            key.clone(),
            Assignment {
                key,
                pod: pod.key.clone(),
                node: node.to_string(),
                identity: found.identity.clone(),
                binding: (*binding).clone(),
                kind: found.kind,
                resource_key: found.resource_key.clone(),
            },
        );
    }
}

/// An identity already reported invalid is not also reported "not found".
fn binding_identity_is_invalid(identity: &ObjectKey, diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(|d| matches!(d, Diagnostic::InvalidIdentity { identity: i, .. } if i == identity))
}
