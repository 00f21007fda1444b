//! The `aadpodidentity.k8s.io/v1` custom resources, serialised exactly as aad-pod-identity v1.8 does.
//!
//! ```text
//!   Pod ──label aadpodidbinding=S──▶ AzureIdentityBinding{selector: S, azureIdentity: N}
//!                                          │ (same namespace as the binding)
//!                                          ▼
//!                                   AzureIdentity{name: N, type, resourceID, clientID, ...}
//!
//!   MIC writes one AzureAssignedIdentity per (pod, identity) with full copies of both objects,
//!   label nodename=<node>; NMI reads them. AzurePodIdentityException lets labelled pods reach
//!   IMDS directly.
//! ```
//!
//! Decoding is lenient by design: every spec field has a default, the identity `type` is kept as
//! the raw integer, and validation happens separately ([`AzureIdentitySpec::kind`],
//! [`resource_id::UserAssignedIdentityId::parse`]). A bad object is therefore something podid can
//! explain and skip, never something that breaks decoding of the objects around it.
#![forbid(unsafe_code)]

pub mod assigned;
pub mod binding;
pub mod crd;
pub mod exception;
pub mod guid;
pub mod identity;
pub mod labels;
pub mod legacy;
pub mod names;
pub mod resource_id;
mod schema;

pub use assigned::{
    AssignedState, AzureAssignedIdentity, AzureAssignedIdentitySpec, AzureAssignedIdentityStatus,
};
pub use binding::{AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentityBindingStatus};
pub use exception::{
    AzurePodIdentityException, AzurePodIdentityExceptionSpec, AzurePodIdentityExceptionStatus,
};
pub use identity::{
    AzureIdentity, AzureIdentitySpec, AzureIdentityStatus, IdentityKind, SecretReference,
    UnknownIdentityType, is_federated,
};

/// kube's object traits, re-exported for crates that must not depend on kube's client.
pub use kube::core::{Resource, ResourceExt};

/// Re-exported so every podid crate names Kubernetes types through one place.
pub use k8s_openapi;
pub use k8s_openapi::api::core::v1::{Node, Pod};

/// API group of all four resources.
pub const GROUP: &str = "aadpodidentity.k8s.io";
/// The only served and stored version.
pub const VERSION: &str = "v1";
/// `apiVersion` value written into embedded copies.
pub const API_VERSION: &str = "aadpodidentity.k8s.io/v1";

/// Pod label whose value must equal an `AzureIdentityBinding.spec.selector`.
pub const BINDING_LABEL: &str = "aadpodidbinding";
/// Label MIC puts on each assigned identity; NMI watches only its own node's.
pub const NODENAME_LABEL: &str = "nodename";
/// Annotation on an `AzureIdentity`; value [`BEHAVIOR_NAMESPACED`] restricts it to its namespace.
pub const BEHAVIOR_ANNOTATION: &str = "aadpodidentity.k8s.io/Behavior";
/// The only meaningful value of [`BEHAVIOR_ANNOTATION`] (compared exactly, as upstream does).
pub const BEHAVIOR_NAMESPACED: &str = "namespaced";
/// Finalizer MIC puts on assigned identities so it can unassign before they disappear.
pub const AAI_FINALIZER: &str = "azureassignedidentity.finalizers.aadpodidentity.k8s.io";
/// Pod label matched by the stock `aks-addon-exception`.
pub const AKS_MANAGED_BY_LABEL: &str = "kubernetes.azure.com/managedby";
/// Namespace assigned identities live in unless the identity is namespaced.
pub const DEFAULT_AAI_NAMESPACE: &str = "default";
/// Annotation podid adds to an assigned identity whose user-assigned identity was already on the
/// scale set or VM before podid needed it: podid will never remove such an identity.
pub const PREEXISTING_ANNOTATION: &str = "podid.io/identity-preexisting";
/// Annotation on an `AzureIdentity` (value `"true"`): the node agent obtains its tokens through
/// workload identity federation (a TokenRequest for the calling pod's own service account,
/// exchanged at Entra ID) instead of the node's IMDS; the controller ignores such identities.
pub const FEDERATED_ANNOTATION: &str = "podid.io/federated";
/// Audience of the service-account tokens the agent exchanges at Entra ID in federated mode.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
