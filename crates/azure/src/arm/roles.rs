//! Role assignments (for the CLI): the roles the controller's identity needs, and granting them.
//!
//! ```text
//!  PUT {scope}/providers/Microsoft.Authorization/roleAssignments/{uuid}?api-version=2022-04-01
//!      {"properties":{"roleDefinitionId":"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
//!                     "principalId","principalType":"ServicePrincipal"}}
//!  GET {scope}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId eq '{id}'
//! ```
use reqwest::Method;
use serde_json::{Value, json};

use super::{ArmClient, Error, Mode, Operation, request_id};

/// Built-in role definition GUIDs (the same in every subscription).
pub mod builtin {
    /// Reader.
    pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
    /// Virtual Machine Contributor: what the controller needs on the node resource group.
    pub const VIRTUAL_MACHINE_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
    /// Managed Identity Operator: what the controller needs on the identities' scope.
    pub const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";
    /// Managed Identity Contributor.
    pub const MANAGED_IDENTITY_CONTRIBUTOR: &str = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59";
    /// Contributor.
    pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
    /// Owner.
    pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
}

/// `/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}`.
pub fn role_definition_id(subscription: &str, role_guid: &str) -> String {
    format!("/subscriptions/{subscription}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}")
}

/// A role assignment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleAssignment {
    /// ARM id.
    pub id: String,
    /// Name (a GUID).
    pub name: String,
    /// Scope it applies to.
    pub scope: String,
    /// Full role definition id.
    pub role_definition_id: String,
    /// The principal's object id.
    pub principal_id: String,
    /// `ServicePrincipal`, `User`, `Group`, …
    pub principal_type: String,
}

impl RoleAssignment {
    fn from_body(v: &Value) -> Self {
        let text = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or_default().to_string();
        Self {
            id: text("/id"),
            name: text("/name"),
            scope: text("/properties/scope"),
            role_definition_id: text("/properties/roleDefinitionId"),
            principal_id: text("/properties/principalId"),
            principal_type: text("/properties/principalType"),
        }
    }
}

/// The path segments of an ARM scope (`/subscriptions/s/resourceGroups/rg`).
fn scope_segments(scope: &str) -> Result<Vec<&str>, Error> {
    let segments: Vec<&str> = scope.split('/').filter(|s| !s.is_empty()).collect();
    if !scope.starts_with('/') || segments.first().is_none_or(|s| !s.eq_ignore_ascii_case("subscriptions")) {
        return Err(Error::InvalidRequest(format!("scope {scope:?} must start with /subscriptions/")));
    }
    Ok(segments)
}

fn subscription_of<'a>(segments: &[&'a str]) -> &'a str {
    segments.get(1).copied().unwrap_or_default()
}

impl ArmClient {
    /// Grants `role_definition_id` to `principal_id` at `scope` under a new random name
    /// (`role_assignment_put`). ARM answers 409 `RoleAssignmentExists` for a duplicate.
    pub async fn create_role_assignment(
        &self,
        scope: &str,
        role_definition_id: &str,
        principal_id: &str,
        principal_type: &str,
    ) -> Result<RoleAssignment, Error> {
        self.observed(Operation::RoleAssignmentPut, scope, async {
            let mut segments = scope_segments(scope)?;
            let subscription = subscription_of(&segments);
            let name = uuid::Uuid::new_v4().to_string();
            segments.extend(["providers", "Microsoft.Authorization", "roleAssignments", name.as_str()]);
            let url = self.url(&segments, &self.options().authorization_api_version)?;
            let body = json!({"properties": {
                "roleDefinitionId": role_definition_id,
                "principalId": principal_id,
                "principalType": principal_type,
            }});
            let r =
                self.send(Method::PUT, &url, Some(&body), subscription, &request_id(), Mode::Call).await?;
            Ok(RoleAssignment::from_body(&r.json()?))
        })
        .await
    }

    /// Lists the role assignments at and above `scope`, only `principal_id`'s when given
    /// (`role_assignment_list`).
    pub async fn list_role_assignments(
        &self,
        scope: &str,
        principal_id: Option<&str>,
    ) -> Result<Vec<RoleAssignment>, Error> {
        self.observed(Operation::RoleAssignmentList, scope, async {
            let mut segments = scope_segments(scope)?;
            let subscription = subscription_of(&segments);
            segments.extend(["providers", "Microsoft.Authorization", "roleAssignments"]);
            let mut url = self.url(&segments, &self.options().authorization_api_version)?;
            if let Some(p) = principal_id {
                if p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(Error::InvalidRequest(format!("principal id {p:?} is not an object id")));
                }
                // The wire form the Azure SDKs use: `$` and quotes unescaped, spaces as %20.
                let query = format!("{}&$filter=principalId%20eq%20'{p}'", url.query().unwrap_or_default());
                url.set_query(Some(&query));
            }
            let items = self.list_all(url, subscription).await?;
            Ok(items.iter().map(RoleAssignment::from_body).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_must_be_subscription_paths() {
        assert_eq!(
            scope_segments("/subscriptions/s/resourceGroups/rg").unwrap(),
            ["subscriptions", "s", "resourceGroups", "rg"]
        );
        assert!(scope_segments("subscriptions/s").is_err());
        assert!(scope_segments("/providers/x").is_err());
        assert_eq!(
            role_definition_id("s", builtin::READER),
            "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/acdd72a7-3385-48ef-bd42-f606fba81ae7"
        );
    }
}
