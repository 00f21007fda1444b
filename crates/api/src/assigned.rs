//! `AzureAssignedIdentity` (AAI): written by the controller, one per (pod, identity); read by the
//! node agent in standard mode. Carries full copies of the identity and binding it came from.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{AzureIdentity, AzureIdentityBinding, schema};
use crate::{AzureIdentityBindingSpec, AzureIdentityBindingStatus, AzureIdentitySpec, AzureIdentityStatus};

/// Spec of an `AzureAssignedIdentity`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureAssignedIdentity",
    plural = "azureassignedidentities",
    singular = "azureassignedidentity",
    namespaced,
    status = "AzureAssignedIdentityStatus",
    derive = "PartialEq",
    derive = "Default",
    annotation("api-approved.kubernetes.io", "unapproved"),
    doc = "AzureAssignedIdentity contains the identity <-> pod mapping which is matched."
)]
pub struct AzureAssignedIdentitySpec {
    /// Unused embedded ObjectMeta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    /// Full copy of the matched `AzureIdentity` (including its resourceVersion).
    #[serde(rename = "azureIdentityRef", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<AzureIdentitySpec, AzureIdentityStatus>")]
    pub azure_identity_ref: Option<Box<AzureIdentity>>,
    /// Full copy of the matched `AzureIdentityBinding`.
    #[serde(rename = "azureBindingRef", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::embedded::<AzureIdentityBindingSpec, AzureIdentityBindingStatus>")]
    pub azure_binding_ref: Option<Box<AzureIdentityBinding>>,
    /// Pod name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pod: String,
    /// Pod namespace.
    #[serde(rename = "podNamespace", default, skip_serializing_if = "String::is_empty")]
    pub pod_namespace: String,
    /// The pod's `spec.nodeName` (lower-case key, as upstream).
    #[serde(rename = "nodename", default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// Unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::nullable_int32")]
    pub replicas: Option<i32>,
}

/// Status of an `AzureAssignedIdentity`; `status` is the state string.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureAssignedIdentityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    /// `Created`, `Assigned` or `Unassigned` (empty for objects written by very old controllers).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "schema::string")]
    pub status: String,
    #[serde(rename = "availableReplicas", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32")]
    pub available_replicas: Option<i32>,
}

/// The state machine of an assigned identity:
/// absent → `Created` → `Assigned` → `Unassigned` → deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AssignedState {
    /// Empty status: written by a controller older than v1.6; the node agent treats it as usable.
    Legacy,
    /// Object exists; the identity is not yet on the node's scale set or VM.
    Created,
    /// The identity is on the node (or needs no assignment): the agent may serve tokens.
    Assigned,
    /// About to be deleted.
    Unassigned,
    /// Any other string: never usable.
    Unknown,
}

impl AssignedState {
    /// Parses the wire string.
    pub fn parse(s: &str) -> Self {
        match s {
            "" => Self::Legacy,
            "Created" => Self::Created,
            "Assigned" => Self::Assigned,
            "Unassigned" => Self::Unassigned,
            _ => Self::Unknown,
        }
    }

    /// The wire string (empty for [`AssignedState::Legacy`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "",
            Self::Created => "Created",
            Self::Assigned => "Assigned",
            Self::Unassigned => "Unassigned",
            Self::Unknown => "Unknown",
        }
    }

    /// Whether the node agent may serve tokens for an assignment in this state.
    pub fn is_usable(self) -> bool {
        matches!(self, Self::Legacy | Self::Assigned)
    }
}

impl AzureAssignedIdentity {
    /// State of this assignment (missing status counts as legacy, as upstream).
    pub fn state(&self) -> AssignedState {
        AssignedState::parse(self.status.as_ref().map_or("", |s| s.status.as_str()))
    }
}
