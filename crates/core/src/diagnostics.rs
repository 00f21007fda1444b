//! Why an object was skipped. The pure functions never fail on a bad object: they skip it, record
//! a [`Diagnostic`], and go on computing the answer for every good object. The controller logs
//! them and turns them into Kubernetes Events; `podid explain` prints them.
use std::fmt;

use crate::PodKey;

/// `namespace/name` of a custom resource.
pub type ObjectKey = PodKey;

/// One reason something was left out of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Diagnostic {
    /// A pod carries `aadpodidbinding=<selector>` but no binding has that selector.
    NoBindingForSelector { pod: PodKey, selector: String },
    /// A binding names an identity that does not exist in the binding's namespace.
    IdentityNotFound { binding: ObjectKey, identity: String },
    /// An identity that cannot be used (unknown type, malformed resource id, missing fields).
    InvalidIdentity { identity: ObjectKey, reason: String },
    /// A namespaced identity (`forced`: any identity, because of `--forceNamespaced`) matched
    /// across namespaces.
    NamespaceMismatch { pod: PodKey, binding: ObjectKey, identity: ObjectKey, forced: bool },
    /// Managed mode reads only the bindings of the pod's own namespace.
    OtherNamespace { pod: PodKey, binding: ObjectKey },
    /// Two identities of the same name in different namespaces would produce the same assigned
    /// identity name for a pod; the one of the older binding (then by namespace and name) is kept.
    DuplicateIdentityName { pod: PodKey, kept: ObjectKey, dropped: ObjectKey },
    /// A node with no usable `spec.providerID`, or not known at all.
    UnknownNode { node: String, reason: String },
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoBindingForSelector { pod, selector } => {
                write!(
                    f,
                    "no AzureIdentityBinding has selector {selector:?} (label aadpodidbinding of pod {pod})"
                )
            }
            Self::IdentityNotFound { binding, identity } => write!(
                f,
                "AzureIdentityBinding {binding} refers to AzureIdentity {identity:?}, which does not exist in namespace {}",
                binding.namespace
            ),
            Self::InvalidIdentity { identity, reason } => {
                write!(f, "ignoring AzureIdentity {identity}: {reason}")
            }
            Self::NamespaceMismatch { pod, binding, identity, forced } => write!(
                f,
                "pod {pod} may not use AzureIdentity {identity} through binding {binding}: {}, so pod, binding and \
                 identity must share one namespace",
                if *forced {
                    "podid runs with --forceNamespaced"
                } else {
                    "the identity is annotated aadpodidentity.k8s.io/Behavior: namespaced"
                }
            ),
            Self::OtherNamespace { pod, binding } => write!(
                f,
                "binding {binding} is ignored for pod {pod}: managed mode reads only the bindings of the pod's own \
                 namespace ({})",
                pod.namespace
            ),
            Self::DuplicateIdentityName { pod, kept, dropped } => write!(
                f,
                "AzureIdentity {:?} exists in both {} and {} namespace; pod {pod} keeps {kept}. Consider renaming it \
                 or enabling namespaced mode",
                kept.name, kept.namespace, dropped.namespace
            ),
            Self::UnknownNode { node, reason } => write!(f, "node {node}: {reason}"),
        }
    }
}
