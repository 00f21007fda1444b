//! User-assigned identities and their federated credentials (for the CLI).
//!
//! ```text
//!  GET {rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}
//!      ─▶ {id, name, location, properties: {clientId, principalId, tenantId}}
//!  PUT …/userAssignedIdentities/{name}/federatedIdentityCredentials/{fic}
//!      {"properties":{"issuer","subject","audiences":[…]}}
//!  GET …/userAssignedIdentities/{name}/federatedIdentityCredentials   (paged: value, nextLink)
//! ```
use reqwest::Method;
use serde_json::{Value, json};

use super::{ArmClient, Error, Mode, Operation, request_id};

/// A user-assigned managed identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserAssignedIdentity {
    /// ARM id as ARM spells it.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub location: String,
    /// Application (client) id: what IMDS and AzureIdentity `clientID` use.
    pub client_id: String,
    /// Service principal object id: what role assignments use.
    pub principal_id: String,
    /// Tenant.
    pub tenant_id: String,
}

/// A federated identity credential on a user-assigned identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedCredential {
    /// ARM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Token issuer URL (the cluster's OIDC issuer).
    pub issuer: String,
    /// Token subject, e.g. `system:serviceaccount:ns:sa`.
    pub subject: String,
    /// Accepted audiences, usually `api://AzureADTokenExchange`.
    pub audiences: Vec<String>,
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string()
}

impl FederatedCredential {
    fn from_body(v: &Value) -> Self {
        Self {
            id: text(v, "/id"),
            name: text(v, "/name"),
            issuer: text(v, "/properties/issuer"),
            subject: text(v, "/properties/subject"),
            audiences: v
                .pointer("/properties/audiences")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }
}

impl ArmClient {
    fn identity_segments<'a>(subscription: &'a str, resource_group: &'a str, name: &'a str) -> Vec<&'a str> {
        vec![
            "subscriptions",
            subscription,
            "resourceGroups",
            resource_group,
            "providers",
            "Microsoft.ManagedIdentity",
            "userAssignedIdentities",
            name,
        ]
    }

    /// GET a user-assigned identity (`identity_get`).
    pub async fn get_user_assigned_identity(
        &self,
        subscription: &str,
        resource_group: &str,
        name: &str,
    ) -> Result<UserAssignedIdentity, Error> {
        let segments = Self::identity_segments(subscription, resource_group, name);
        let resource = format!("/{}", segments.join("/"));
        self.observed(Operation::IdentityGet, &resource, async {
            let url = self.url(&segments, &self.options().identity_api_version)?;
            let body =
                self.send(Method::GET, &url, None, subscription, &request_id(), Mode::Call).await?.json()?;
            let identity = UserAssignedIdentity {
                id: text(&body, "/id"),
                name: text(&body, "/name"),
                location: text(&body, "/location"),
                client_id: text(&body, "/properties/clientId"),
                principal_id: text(&body, "/properties/principalId"),
                tenant_id: text(&body, "/properties/tenantId"),
            };
            if identity.client_id.is_empty() {
                return Err(Error::InvalidResponse {
                    url: url.to_string(),
                    message: "the identity has no clientId".into(),
                });
            }
            Ok(identity)
        })
        .await
    }

    /// Creates or replaces a federated identity credential (`federated_credential_put`).
    #[allow(clippy::too_many_arguments)]
    pub async fn put_federated_credential(
        &self,
        subscription: &str,
        resource_group: &str,
        identity: &str,
        name: &str,
        issuer: &str,
        subject: &str,
        audiences: &[String],
    ) -> Result<FederatedCredential, Error> {
        let mut segments = Self::identity_segments(subscription, resource_group, identity);
        segments.extend(["federatedIdentityCredentials", name]);
        let resource = format!("/{}", segments.join("/"));
        self.observed(Operation::FederatedCredentialPut, &resource, async {
            let url = self.url(&segments, &self.options().identity_api_version)?;
            let body = json!({"properties": {"issuer": issuer, "subject": subject, "audiences": audiences}});
            let id = request_id();
            let initial = self.send(Method::PUT, &url, Some(&body), subscription, &id, Mode::Call).await?;
            let done = self.complete(initial, &url, &resource, subscription, &id).await?;
            Ok(FederatedCredential::from_body(&done))
        })
        .await
    }

    /// Every federated identity credential of an identity, all pages (`federated_credential_list`).
    pub async fn list_federated_credentials(
        &self,
        subscription: &str,
        resource_group: &str,
        identity: &str,
    ) -> Result<Vec<FederatedCredential>, Error> {
        let mut segments = Self::identity_segments(subscription, resource_group, identity);
        segments.push("federatedIdentityCredentials");
        let resource = format!("/{}", segments.join("/"));
        self.observed(Operation::FederatedCredentialList, &resource, async {
            let url = self.url(&segments, &self.options().identity_api_version)?;
            let items = self.list_all(url, subscription).await?;
            Ok(items.iter().map(FederatedCredential::from_body).collect())
        })
        .await
    }
}
