//! Which of the bindings that select a pod give it an identity: the controller's matching rules
//! ([`crate::matching::desired`]) for one pod, with the reason for every binding that does not.
//!
//! ```text
//!  pod label aadpodidbinding=S ─▶ every binding with selector S ─▶ one Candidate each:
//!     managed mode and the binding is in another namespace      ─▶ OtherNamespace
//!     no identity <binding namespace>/<spec.azureIdentity>       ─▶ IdentityMissing
//!     identity invalid (type, resource id, missing fields)       ─▶ Invalid
//!     namespaced identity (or --forceNamespaced), other namespace ─▶ NamespaceRule
//!     same identity name already given through another namespace ─▶ DuplicateName (standard mode)
//!     otherwise                                                   ─▶ Applies
//! ```
//!
//! Candidates come oldest binding first (creation time, then namespace/name): the first that
//! applies is the pod's **default identity**, so a binding added later never displaces it.
use std::collections::BTreeMap;

use podid_api::{AzureIdentity, AzureIdentityBinding, Resource};

use crate::diagnostics::ObjectKey;
use crate::federation::validate_federated;
use crate::matching::{MatchOptions, assignment_namespace, object_key, validate_identity};
use crate::mode::Mode;
use crate::world::Objects;
use crate::{Diagnostic, PodKey, PodView};

/// Settings of the agent (or of `podid explain`, which describes it) that change decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings<'a> {
    pub mode: Mode,
    /// `--forceNamespaced`: pod, binding and identity must share one namespace.
    pub force_namespaced: bool,
    /// `--MICNamespace`: where the controller's own pods run.
    pub mic_namespace: &'a str,
    /// `--release-terminating-pods`: a pod with a deletionTimestamp gets no more tokens (upstream's
    /// controller did so); by default it keeps its identities until its containers have stopped.
    pub release_terminating: bool,
    /// `--verified-callers`: the agent confirms each caller through the kernel, so a hostNetwork
    /// pod is told apart from the node and from other hostNetwork pods and served its own
    /// identities; without it hostNetwork pods are refused (their address is the node's).
    pub verified_callers: bool,
}

impl Settings<'static> {
    /// The agent's defaults in `mode` (managed mode implies `--forceNamespaced`).
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            force_namespaced: mode == Mode::Managed,
            mic_namespace: "default",
            release_terminating: false,
            verified_callers: false,
        }
    }
}

/// How one binding that selects the pod applies to it.
#[derive(Clone, Debug, PartialEq)]
pub enum Fit<'a> {
    /// The binding gives the pod this identity.
    Applies(&'a AzureIdentity),
    /// Managed mode reads only bindings of the pod's own namespace.
    OtherNamespace,
    /// No identity `<binding namespace>/<spec.azureIdentity>` exists.
    IdentityMissing,
    /// The identity exists but cannot be used.
    Invalid { identity: &'a AzureIdentity, reason: String },
    /// Namespaced identity (`forced`: because of `--forceNamespaced`) from another namespace.
    NamespaceRule { identity: &'a AzureIdentity, forced: bool },
    /// An older binding already gives the pod another namespace's identity of the same name
    /// (both would have one assignment name; the controller keeps the older).
    DuplicateName { identity: &'a AzureIdentity, kept: ObjectKey },
}

/// One binding with the pod's selector, and what it gives the pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate<'a> {
    pub binding: &'a AzureIdentityBinding,
    pub fit: Fit<'a>,
    /// The identity is served through federation in this mode (no assignment, no scale set).
    pub federated: bool,
}

impl<'a> Candidate<'a> {
    /// The identity, when it applies.
    pub fn applied(&self) -> Option<&'a AzureIdentity> {
        match self.fit {
            Fit::Applies(i) => Some(i),
            _ => None,
        }
    }

    /// The binding's reason for giving the pod nothing, in the controller's words.
    pub fn diagnostic(&self, pod: &PodView) -> Option<Diagnostic> {
        let binding = object_key(self.binding);
        let ns = binding.namespace.clone();
        let identity = || PodKey::new(ns.clone(), self.binding.spec.azure_identity.clone());
        Some(match &self.fit {
            Fit::Applies(_) => return None,
            Fit::OtherNamespace => Diagnostic::OtherNamespace { pod: pod.key.clone(), binding },
            Fit::IdentityMissing => {
                Diagnostic::IdentityNotFound { identity: self.binding.spec.azure_identity.clone(), binding }
            }
            Fit::Invalid { reason, .. } => {
                Diagnostic::InvalidIdentity { identity: identity(), reason: reason.clone() }
            }
            Fit::NamespaceRule { forced, .. } => Diagnostic::NamespaceMismatch {
                pod: pod.key.clone(),
                binding,
                identity: identity(),
                forced: *forced,
            },
            Fit::DuplicateName { kept, .. } => Diagnostic::DuplicateIdentityName {
                pod: pod.key.clone(),
                kept: kept.clone(),
                dropped: identity(),
            },
        })
    }
}

fn name_of(binding: &AzureIdentityBinding) -> &str {
    binding.spec.azure_identity.as_str()
}

/// Oldest first: creation time (unknown last), then namespace and name.
pub fn age_order(b: &AzureIdentityBinding) -> impl Ord + '_ {
    let created = b.meta().creation_timestamp.as_ref();
    (created.is_none(), created, b.meta().namespace.as_deref(), b.meta().name.as_deref())
}

/// Every binding selecting `pod`, oldest first, with what it gives the pod. Empty for a pod
/// without the label.
pub fn candidates<'a>(pod: &PodView, objects: &'a impl Objects, s: &Settings<'_>) -> Vec<Candidate<'a>> {
    let Some(selector) = pod.binding_selector() else { return Vec::new() };
    let mut bindings: Vec<&AzureIdentityBinding> = objects.bindings_selecting(selector).collect();
    // Oldest first, as the controller reads them: of two same-named identities it keeps the
    // older binding's.
    bindings.sort_by(|a, b| age_order(a).cmp(&age_order(b)));
    let mut given = BTreeMap::new();
    bindings.into_iter().map(|b| judge(pod, b, objects, s, &mut given)).collect()
}

fn judge<'a>(
    pod: &PodView,
    binding: &'a AzureIdentityBinding,
    objects: &'a impl Objects,
    s: &Settings<'_>,
    given: &mut BTreeMap<(String, &'a str), ObjectKey>,
) -> Candidate<'a> {
    let ns = binding.metadata.namespace.as_deref().unwrap_or_default();
    let with = |fit, federated| Candidate { binding, fit, federated };
    if s.mode == Mode::Managed && ns != pod.key.namespace {
        return with(Fit::OtherNamespace, false);
    }
    let Some(identity) = objects.identity(ns, &binding.spec.azure_identity) else {
        return with(Fit::IdentityMissing, false);
    };
    let federated = s.mode.federation().covers(identity);
    let valid =
        if federated { validate_federated(identity) } else { validate_identity(identity).map(|_| ()) };
    if let Err(reason) = valid {
        return with(Fit::Invalid { identity, reason }, federated);
    }
    let namespaced = s.force_namespaced || identity.is_namespaced();
    if namespaced && ns != pod.key.namespace {
        return with(Fit::NamespaceRule { identity, forced: !identity.is_namespaced() }, federated);
    }
    if s.mode == Mode::Standard && !federated {
        // One assigned identity per (its namespace, pod, identity name), as the controller names them.
        let slot = (
            assignment_namespace(
                identity,
                MatchOptions { force_namespaced: s.force_namespaced, ..MatchOptions::default() },
            ),
            name_of(binding),
        );
        match given.get(&slot) {
            Some(kept) if kept.namespace != ns => {
                return with(Fit::DuplicateName { identity, kept: kept.clone() }, false);
            }
            Some(_) => {}
            None => {
                given.insert(slot, object_key(identity));
            }
        }
    }
    with(Fit::Applies(identity), federated)
}
