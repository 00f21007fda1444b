//! `AzureIdentityBinding`: binds pods labelled `aadpodidbinding=<selector>` to an `AzureIdentity`
//! of the binding's own namespace.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// Spec of an `AzureIdentityBinding`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureIdentityBinding",
    plural = "azureidentitybindings",
    singular = "azureidentitybinding",
    namespaced,
    status = "AzureIdentityBindingStatus",
    derive = "PartialEq",
    derive = "Default",
    annotation("api-approved.kubernetes.io", "unapproved"),
    printcolumn = r#"{"name":"AzureIdentity","type":"string","jsonPath":".spec.azureIdentity"}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.selector"}"#,
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "AzureIdentityBinding brings together the spec of matching pods and the identity which they can use."
)]
pub struct AzureIdentityBindingSpec {
    /// Unused embedded ObjectMeta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    /// Name of an `AzureIdentity` in the binding's namespace.
    #[serde(rename = "azureIdentity", default, skip_serializing_if = "String::is_empty")]
    pub azure_identity: String,
    /// Compared for exact string equality with the pod label `aadpodidbinding` (not a label selector).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub selector: String,
    /// Declared by upstream, never used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32")]
    pub weight: Option<i32>,
}

/// Status of an `AzureIdentityBinding` (unused; kept for round-trips).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureIdentityBindingStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    #[serde(rename = "availableReplicas", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32")]
    pub available_replicas: Option<i32>,
}
