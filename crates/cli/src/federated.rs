//! Federated identities on the CLI side (docs/federated.md): the cluster's service-account issuer,
//! and the federated identity credential (FIC) on the user-assigned identity that lets Entra ID
//! accept a service account's token for it.
//!
//! ```text
//!  issuer  = --issuer | GET /.well-known/openid-configuration (API server) → "issuer"
//!  subject = system:serviceaccount:<namespace>:<service account>   (podid_core::federation::subject)
//!  FIC     = PUT …/userAssignedIdentities/<id>/federatedIdentityCredentials/podid-<ns>-<sa>
//!            {issuer, subject, audiences: [api://AzureADTokenExchange]}
//! ```
use podid_api::TOKEN_EXCHANGE_AUDIENCE;
use podid_api::resource_id::UserAssignedIdentityId;
use podid_azure::ArmClient;
use podid_azure::arm::FederatedCredential;

use crate::error::{Error, Result};

/// Longest FIC name ARM accepts.
const MAX_FIC_NAME: usize = 120;

/// The FIC name `identity add --federated` uses: `podid-<namespace>-<sa>`, dots as dashes, and
/// when longer than ARM allows, cut and suffixed with a hash of the full name so it stays unique.
pub(crate) fn credential_name(namespace: &str, service_account: &str) -> String {
    let full: String = format!("podid-{namespace}-{service_account}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' })
        .collect();
    if full.len() <= MAX_FIC_NAME {
        return full;
    }
    // FNV-1a: stable across runs and platforms, no dependency.
    let hash =
        full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    let suffix = format!("-{:08x}", hash & 0xffff_ffff);
    format!("{}{suffix}", &full[..MAX_FIC_NAME - suffix.len()])
}

/// Checks an issuer given on the command line: an absolute `https://` URL (Entra ID fetches its
/// discovery document). Kept as typed: the issuer is compared with the tokens' `iss` verbatim.
pub(crate) fn check_issuer(issuer: &str) -> Result<String> {
    match url::Url::parse(issuer) {
        Ok(u) if u.scheme() == "https" && u.host().is_some() => Ok(issuer.to_string()),
        _ => Err(Error::Usage(format!(
            "--issuer {issuer:?} is not an https:// URL: pass the cluster's service-account issuer \
             (e.g. az aks show --query oidcIssuerProfile.issuerUrl)"
        ))),
    }
}

/// The issuer the API server announces in its service-account discovery document.
pub(crate) async fn discover_issuer(client: &kube::Client) -> std::result::Result<String, String> {
    const PATH: &str = "/.well-known/openid-configuration";
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = http::Uri::from_static(PATH);
    let document: serde_json::Value =
        client.request(request).await.map_err(|e| format!("GET {PATH} from the API server failed: {e}"))?;
    match document.get("issuer").and_then(serde_json::Value::as_str) {
        Some(issuer) if !issuer.is_empty() => Ok(issuer.to_string()),
        _ => Err(format!("the API server's {PATH} names no issuer")),
    }
}

/// `--issuer`, else the discovered one; one clear error line when neither is available.
pub(crate) async fn issuer(client: &kube::Client, given: Option<&str>) -> Result<String> {
    if let Some(given) = given {
        return check_issuer(given);
    }
    discover_issuer(client).await.map_err(|why| {
        Error::Usage(format!(
            "cannot find the cluster's service-account issuer ({why}): pass --issuer https://… (e.g. the AKS \
             OIDC issuer URL)"
        ))
    })
}

/// Whether `fic` lets Entra ID accept tokens of `issuer`/`subject` for the token exchange.
pub(crate) fn matches(fic: &FederatedCredential, issuer: &str, subject: &str) -> bool {
    fic.issuer == issuer
        && fic.subject == subject
        && fic.audiences.iter().any(|a| a == TOKEN_EXCHANGE_AUDIENCE)
}

/// What became of the credential.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Credential {
    /// One with this issuer and subject was there already (its name).
    Existing(String),
    /// podid created it (its name).
    Created(String),
}

/// The identity's federated credentials, with a readable error.
pub(crate) async fn list(arm: &ArmClient, id: &UserAssignedIdentityId) -> Result<Vec<FederatedCredential>> {
    arm.list_federated_credentials(&id.subscription, &id.resource_group, &id.name).await.map_err(|e| {
        if e.is_not_found() {
            Error::Azure(format!("user-assigned identity {id} does not exist in ARM: check the resource id"))
        } else {
            Error::Azure(format!("cannot list the federated credentials of {id}: {e}"))
        }
    })
}

/// Makes sure a FIC for `issuer`/`subject` exists on the identity, creating `name` if none does.
pub(crate) async fn ensure(
    arm: &ArmClient,
    id: &UserAssignedIdentityId,
    name: &str,
    issuer: &str,
    subject: &str,
) -> Result<Credential> {
    let existing = list(arm, id).await?;
    if let Some(found) = existing.iter().find(|f| matches(f, issuer, subject)) {
        return Ok(Credential::Existing(found.name.clone()));
    }
    if existing.iter().any(|f| f.name.eq_ignore_ascii_case(name)) {
        return Err(Error::Conflict(format!(
            "federated identity credential {name} on {id} already exists with another issuer or subject: delete it \
             (az identity federated-credential delete) or fix it by hand"
        )));
    }
    let audiences = [TOKEN_EXCHANGE_AUDIENCE.to_string()];
    arm.put_federated_credential(
        &id.subscription,
        &id.resource_group,
        &id.name,
        name,
        issuer,
        subject,
        &audiences,
    )
    .await
    .map_err(|e| Error::Azure(format!("cannot create federated identity credential {name} on {id}: {e}")))?;
    Ok(Credential::Created(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_names_follow_namespace_and_service_account() {
        assert_eq!(credential_name("team-a", "app.sa"), "podid-team-a-app-sa");
    }

    #[test]
    fn long_credential_names_are_cut_to_arms_limit_and_stay_distinct() {
        let (a, b) =
            (credential_name("n", &"a".repeat(200)), credential_name("n", &format!("{}b", "a".repeat(199))));
        assert_eq!((a.len(), b.len()), (MAX_FIC_NAME, MAX_FIC_NAME));
        assert_ne!(a, b);
    }

    #[test]
    fn issuers_must_be_https_urls_and_are_kept_verbatim() {
        assert_eq!(check_issuer("https://127.0.0.1:6443").unwrap(), "https://127.0.0.1:6443");
        assert!(check_issuer("http://issuer.example").is_err());
        assert!(check_issuer("not a url").is_err());
    }
}
