//! The ARM side of `identity add`: the identity's client id, and the Managed Identity Operator
//! role the controller's identity needs on it.
use std::sync::Arc;

use podid_api::resource_id::UserAssignedIdentityId;
use podid_azure::arm::{builtin_roles, role_definition_id};
use podid_azure::credential::ServicePrincipal;
use podid_azure::http::{HttpOptions, build_client};
use podid_azure::{AadClient, ArmClient, ArmOptions, CachedTokenSource, ClientCredential, Cloud, Secret};

use crate::args::AzureArgs;
use crate::error::{Error, Result};

/// An ARM client from the flags (a service principal with a client secret). `why` ends the
/// error when credentials are missing: what needs ARM, or how to do without it.
pub(crate) fn client(args: &AzureArgs, why: &str) -> Result<ArmClient> {
    let (Some(tenant), Some(client_id), Some(secret)) =
        (&args.tenant_id, &args.azure_client_id, &args.azure_client_secret)
    else {
        return Err(Error::Azure(format!(
            "ARM credentials missing: set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET \
             (or --tenant-id/--azure-client-id/--azure-client-secret); {why}"
        )));
    };
    let mut cloud = Cloud::public();
    if let Some(url) = &args.arm_endpoint {
        cloud = cloud.with_resource_manager(url.clone());
    }
    if let Some(url) = &args.aad_authority {
        cloud = cloud.with_authority_host(url.clone());
    }
    let http = HttpOptions {
        extra_ca_files: args.trusted_ca_files.clone(),
        user_agent: format!("podid/cli/{}", env!("CARGO_PKG_VERSION")),
        ..HttpOptions::default()
    };
    let reqwest = build_client(&http).map_err(|e| Error::Azure(format!("cannot set up HTTPS: {e}")))?;
    let principal = ServicePrincipal {
        aad: AadClient::new(reqwest.clone(), cloud.authority_host.clone()),
        tenant_id: tenant.clone(),
        client_id: client_id.clone(),
        credential: ClientCredential::Secret(Secret::new(secret.clone())),
    };
    let credential = Arc::new(CachedTokenSource::new(principal));
    Ok(ArmClient::for_cloud(reqwest, &cloud, credential, ArmOptions::default()))
}

/// The client id ARM records for the identity.
pub(crate) async fn client_id(arm: &ArmClient, id: &UserAssignedIdentityId) -> Result<String> {
    match arm.get_user_assigned_identity(&id.subscription, &id.resource_group, &id.name).await {
        Ok(found) => Ok(found.client_id),
        Err(e) if e.is_not_found() => Err(Error::Azure(format!(
            "user-assigned identity {id} does not exist in ARM: check the resource id, or create it \
             (az identity create -g {} -n {})",
            id.resource_group, id.name
        ))),
        Err(e) => Err(Error::Azure(format!("cannot read identity {id} from ARM: {e}"))),
    }
}

/// What happened to the role assignment.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Grant {
    /// It was there already.
    Verified,
    /// podid created it.
    Granted,
}

/// Makes sure `principal` holds Managed Identity Operator on the identity.
pub(crate) async fn ensure_operator(
    arm: &ArmClient,
    id: &UserAssignedIdentityId,
    principal: &str,
    subscription: Option<&str>,
) -> std::result::Result<Grant, String> {
    let scope = id.to_string();
    let role_guid = builtin_roles::MANAGED_IDENTITY_OPERATOR;
    let existing =
        arm.list_role_assignments(&scope, Some(principal)).await.map_err(|e| format!("listing: {e}"))?;
    let holds = existing.iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(principal)
            && a.role_definition_id.to_ascii_lowercase().ends_with(&format!("/{role_guid}"))
    });
    if holds {
        return Ok(Grant::Verified);
    }
    let role = role_definition_id(subscription.unwrap_or(&id.subscription), role_guid);
    match arm.create_role_assignment(&scope, &role, principal, "ServicePrincipal").await {
        Ok(_) => Ok(Grant::Granted),
        Err(e) if e.code() == Some("RoleAssignmentExists") => Ok(Grant::Verified),
        Err(e) => Err(format!("granting: {e}")),
    }
}
