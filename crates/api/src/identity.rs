//! `AzureIdentity`: an Azure identity pods may be given — a user-assigned managed identity or a
//! service principal whose secret or certificate lives in a Kubernetes Secret.
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema;

/// Spec of an `AzureIdentity` (JSON keys exactly as in upstream's v1 schema).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "aadpodidentity.k8s.io",
    version = "v1",
    kind = "AzureIdentity",
    plural = "azureidentities",
    singular = "azureidentity",
    namespaced,
    status = "AzureIdentityStatus",
    derive = "PartialEq",
    derive = "Default",
    annotation("api-approved.kubernetes.io", "unapproved"),
    printcolumn(name = "Type", type_ = "integer", json_path = ".spec.type"),
    printcolumn(name = "ClientID", type_ = "string", json_path = ".spec.clientID"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    doc = "AzureIdentity is the specification of the identity data structure."
)]
pub struct AzureIdentitySpec {
    /// Unused embedded ObjectMeta (a quirk of upstream's Go types); accepted and ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    /// Identity type: 0 user-assigned managed identity, 1 service principal with a client secret,
    /// 2 service principal with a PKCS#12 certificate.
    // Kept as the raw integer so that an unknown value still decodes and is reported by
    // `AzureIdentitySpec::kind` instead of failing the decoding of a whole list.
    #[serde(rename = "type", default)]
    #[schemars(schema_with = "schema::int32")]
    pub identity_type: i64,
    /// ARM id of the user-assigned identity (type 0).
    #[serde(rename = "resourceID", default, skip_serializing_if = "String::is_empty")]
    pub resource_id: String,
    /// Client (application) id; used by every type.
    #[serde(rename = "clientID", default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    /// Secret holding the client secret (type 1) or certificate (type 2).
    #[serde(rename = "clientPassword", default, skip_serializing_if = "SecretReference::is_empty")]
    pub client_password: SecretReference,
    /// Primary tenant for types 1 and 2.
    #[serde(rename = "tenantID", default, skip_serializing_if = "String::is_empty")]
    pub tenant_id: String,
    /// Extra tenants for a multi-tenant service principal (type 1).
    #[serde(rename = "auxiliaryTenantIDs", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::nullable_strings")]
    pub auxiliary_tenant_ids: Option<Vec<String>>,
    /// Declared by upstream, never read.
    #[serde(rename = "adResourceID", default, skip_serializing_if = "String::is_empty")]
    pub ad_resource_id: String,
    /// Entra ID authority for types 1 and 2 (default `https://login.microsoftonline.com/`).
    #[serde(rename = "adEndpoint", default, skip_serializing_if = "String::is_empty")]
    pub ad_endpoint: String,
    /// Unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::nullable_int32")]
    pub replicas: Option<i32>,
}

/// Status of an `AzureIdentity` (unused by upstream; kept for round-trips).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct AzureIdentityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::bare_object")]
    pub metadata: Option<serde_json::Value>,
    #[serde(rename = "availableReplicas", default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::int32")]
    pub available_replicas: Option<i32>,
}

/// Reference to a core/v1 Secret (`{name, namespace}`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl SecretReference {
    /// True when neither field is set.
    pub fn is_empty(&self) -> bool {
        self.name.is_empty() && self.namespace.is_empty()
    }
}

/// The identity types podid understands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IdentityKind {
    /// `0`: a user-assigned managed identity, assigned to the node and served by IMDS.
    UserAssigned,
    /// `1`: a service principal with a client secret.
    ServicePrincipal,
    /// `2`: a service principal with a PKCS#12 certificate.
    ServicePrincipalCertificate,
}

/// An `AzureIdentity` whose `type` is none of 0, 1, 2.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown identity type {0}: spec.type must be 0 (user-assigned managed identity), \
     1 (service principal with client secret) or 2 (service principal with PKCS#12 certificate)"
)]
pub struct UnknownIdentityType(pub i64);

impl IdentityKind {
    /// The integer upstream serialises.
    pub fn code(self) -> i64 {
        match self {
            Self::UserAssigned => 0,
            Self::ServicePrincipal => 1,
            Self::ServicePrincipalCertificate => 2,
        }
    }

    /// Short human name, used in tables and explanations.
    pub fn describe(self) -> &'static str {
        match self {
            Self::UserAssigned => "user-assigned managed identity",
            Self::ServicePrincipal => "service principal (client secret)",
            Self::ServicePrincipalCertificate => "service principal (certificate)",
        }
    }
}

impl TryFrom<i64> for IdentityKind {
    type Error = UnknownIdentityType;
    fn try_from(code: i64) -> Result<Self, Self::Error> {
        match code {
            0 => Ok(Self::UserAssigned),
            1 => Ok(Self::ServicePrincipal),
            2 => Ok(Self::ServicePrincipalCertificate),
            other => Err(UnknownIdentityType(other)),
        }
    }
}

impl AzureIdentitySpec {
    /// The identity type, or why it is not one podid knows.
    pub fn kind(&self) -> Result<IdentityKind, UnknownIdentityType> {
        IdentityKind::try_from(self.identity_type)
    }
}

impl AzureIdentity {
    /// True when the `aadpodidentity.k8s.io/Behavior: namespaced` annotation is present (exact match).
    pub fn is_namespaced(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::BEHAVIOR_ANNOTATION))
            .is_some_and(|v| v == crate::BEHAVIOR_NAMESPACED)
    }

    /// True when the `podid.io/federated: "true"` annotation is present (case-insensitive value):
    /// the agent obtains this identity's tokens through workload identity federation.
    pub fn is_federated(&self) -> bool {
        is_federated(self)
    }
}

/// Whether `identity` carries [`crate::FEDERATED_ANNOTATION`] with the value `true`.
pub fn is_federated(identity: &AzureIdentity) -> bool {
    identity
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(crate::FEDERATED_ANNOTATION))
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotated(value: Option<&str>) -> AzureIdentity {
        let mut i = AzureIdentity::new("id", AzureIdentitySpec::default());
        i.metadata.annotations =
            value.map(|v| [(crate::FEDERATED_ANNOTATION.to_string(), v.to_string())].into_iter().collect());
        i
    }

    #[test]
    fn federated_annotation_is_true_only_when_its_value_is_true() {
        assert!(annotated(Some("true")).is_federated());
        assert!(annotated(Some("True")).is_federated());
        assert!(!annotated(Some("false")).is_federated());
        assert!(!annotated(Some("")).is_federated());
        assert!(!annotated(None).is_federated());
    }
}
