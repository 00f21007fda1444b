//! `AzurePodIdentityException`: pods of its namespace carrying any one of `podLabels` reach IMDS
//! directly (NMI fetches the token for them without any binding check).
use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// Spec of an `AzurePodIdentityException`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzurePodIdentityException",
    plural = "azurepodidentityexceptions",
    singular = "azurepodidentityexception",
    namespaced,
    status = "AzurePodIdentityExceptionStatus",
    derive = "PartialEq",
    derive = "Default",
    annotation("api-approved.kubernetes.io", "unapproved"),
    doc = "AzurePodIdentityException contains the pod selectors for all pods that don't require NMI to process and request token on their behalf."
)]
pub struct AzurePodIdentityExceptionSpec {
    /// Unused embedded ObjectMeta.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    /// A pod matches when any one pair matches one of its labels (key exact, value case-insensitive).
    #[serde(rename = "podLabels", default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "schema::string_map")]
    pub pod_labels: BTreeMap<String, String>,
}

/// Status of an `AzurePodIdentityException` (unused).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzurePodIdentityExceptionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(schema_with = "schema::string")]
    pub status: String,
}
