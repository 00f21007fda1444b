//! Service principal tokens from Entra ID (client-credentials grant).
//!
//! ```text
//!  secret       POST {authority}/{tenant}/oauth2/token?api-version=1.0
//!               grant_type=client_credentials&client_id&client_secret&resource
//!  certificate  same endpoint, client_assertion=<RS256 JWT, aud = the endpoint without query>
//!               &client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer
//!  federated    POST {authority}/{tenant}/oauth2/v2.0/token
//!               client_assertion=<caller's JWT>&client_assertion_type=…&scope=<resource>/.default
//! ```
//!
//! Multi-tenant principals (upstream's `auxiliaryTenantIDs`) get one request per tenant, primary
//! first. Transport failures, 408 and 5xx are retried with a short back-off.
use std::sync::Arc;
use std::time::SystemTime;

use url::Url;

use crate::certificate::ClientCertificate;
use crate::http::{Backoff, truncate_body};
use crate::secret::Secret;
use crate::token::{Token, epoch_seconds};
use crate::token_error::{EntraError, TokenError, error_chain};

/// The assertion type for certificate and federated assertions.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a service principal proves who it is.
#[derive(Clone, Debug)]
pub enum ClientCredential {
    /// A client secret (v1 endpoint).
    Secret(Secret),
    /// A certificate; each request carries a fresh assertion (v1 endpoint).
    Certificate(Arc<ClientCertificate>),
    /// A caller-provided assertion, e.g. a Kubernetes service-account token (v2 endpoint).
    Federated(Secret),
}

impl ClientCredential {
    fn uses_v2(&self) -> bool {
        matches!(self, ClientCredential::Federated(_))
    }
}

/// A client of one Entra ID authority host.
#[derive(Clone, Debug)]
pub struct AadClient {
    http: reqwest::Client,
    authority: Url,
    backoff: Backoff,
}

impl AadClient {
    /// A client of `authority_host` (e.g. `https://login.microsoftonline.com/`).
    pub fn new(http: reqwest::Client, authority_host: Url) -> Self {
        let mut authority = authority_host;
        if !authority.path().ends_with('/') {
            let path = format!("{}/", authority.path());
            authority.set_path(&path);
        }
        authority.set_query(None);
        let backoff = Backoff {
            max_retries: 2,
            initial: std::time::Duration::from_millis(500),
            max: std::time::Duration::from_secs(2),
            jitter: true,
        };
        Self { http, authority, backoff }
    }

    /// Replaces the retry policy for transient failures.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// `{authority}/{tenant}/oauth2/token` (without the `api-version` query).
    pub fn token_endpoint_v1(&self, tenant: &str) -> Result<Url, TokenError> {
        self.endpoint(tenant, "oauth2/token")
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    pub fn token_endpoint_v2(&self, tenant: &str) -> Result<Url, TokenError> {
        self.endpoint(tenant, "oauth2/v2.0/token")
    }

    fn endpoint(&self, tenant: &str, path: &str) -> Result<Url, TokenError> {
        check_tenant(tenant)?;
        self.authority
            .join(&format!("{tenant}/{path}"))
            .map_err(|e| TokenError::InvalidRequest(format!("token endpoint for tenant {tenant:?}: {e}")))
    }

    /// A token for `resource` (a v1 resource such as `https://management.azure.com/`).
    pub async fn token(
        &self,
        tenant: &str,
        client_id: &str,
        credential: &ClientCredential,
        resource: &str,
    ) -> Result<Token, TokenError> {
        if client_id.trim().is_empty() {
            return Err(TokenError::InvalidRequest("the client id is empty".into()));
        }
        if resource.trim().is_empty() {
            return Err(TokenError::InvalidRequest("the resource to request a token for is empty".into()));
        }
        let (url, audience) = if credential.uses_v2() {
            let url = self.token_endpoint_v2(tenant)?;
            (url.clone(), url)
        } else {
            let aud = self.token_endpoint_v1(tenant)?;
            let mut url = aud.clone();
            url.set_query(Some("api-version=1.0"));
            (url, aud)
        };
        let mut retry = 0;
        loop {
            let form = form(client_id, credential, resource, audience.as_str())?;
            let result = self.attempt(&url, &form, resource).await;
            let transient = match &result {
                Err(TokenError::Transport { .. }) => true,
                Err(TokenError::Upstream { status, .. }) => *status == 408 || (500..=599).contains(status),
                _ => false,
            };
            if !transient || retry >= self.backoff.max_retries {
                return result;
            }
            let delay = self.backoff.delay(retry);
            tracing::debug!(retry, ?delay, tenant, "Entra token request failed transiently, retrying");
            tokio::time::sleep(delay).await;
            retry += 1;
        }
    }

    /// One token per tenant, `tenants[0]` (the primary) first. Fails on the first tenant that
    /// fails, as upstream's multi-tenant ADAL token does.
    pub async fn token_multi_tenant(
        &self,
        tenants: &[String],
        client_id: &str,
        credential: &ClientCredential,
        resource: &str,
    ) -> Result<Vec<Token>, TokenError> {
        if tenants.is_empty() {
            return Err(TokenError::InvalidRequest("no tenant given".into()));
        }
        let mut tokens = Vec::with_capacity(tenants.len());
        for tenant in tenants {
            tokens.push(self.token(tenant, client_id, credential, resource).await?);
        }
        Ok(tokens)
    }

    async fn attempt(&self, url: &Url, form: &[(&str, String)], resource: &str) -> Result<Token, TokenError> {
        let endpoint = url.to_string();
        let response = self
            .http
            .post(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(form)
            .send()
            .await
            .map_err(|e| TokenError::Transport { endpoint: endpoint.clone(), message: error_chain(&e) })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Transport { endpoint: endpoint.clone(), message: error_chain(&e) })?;
        if !status.is_success() {
            let entra = EntraError::parse(&body);
            if let Some(e) = &entra {
                tracing::debug!(status = status.as_u16(), error = e.error, codes = ?e.error_codes, "Entra refused the token request");
            }
            return Err(TokenError::Upstream {
                status: status.as_u16(),
                body: truncate_body(&body),
                endpoint,
                entra,
            });
        }
        Token::from_response(&body, resource, SystemTime::now())
            .map_err(|e| TokenError::InvalidResponse { endpoint, message: e.to_string() })
    }
}

/// The form fields for one request (a certificate signs a new assertion each time).
fn form(
    client_id: &str,
    credential: &ClientCredential,
    resource: &str,
    audience: &str,
) -> Result<Vec<(&'static str, String)>, TokenError> {
    let mut form =
        vec![("grant_type", "client_credentials".to_string()), ("client_id", client_id.to_string())];
    match credential {
        ClientCredential::Secret(secret) => {
            form.push(("client_secret", secret.expose().to_string()));
            form.push(("resource", resource.to_string()));
        }
        ClientCredential::Certificate(cert) => {
            form.push((
                "client_assertion",
                cert.assertion(client_id, audience, epoch_seconds(SystemTime::now()))?,
            ));
            form.push(("client_assertion_type", JWT_BEARER.to_string()));
            form.push(("resource", resource.to_string()));
        }
        ClientCredential::Federated(assertion) => {
            form.push(("client_assertion", assertion.expose().to_string()));
            form.push(("client_assertion_type", JWT_BEARER.to_string()));
            form.push(("scope", scope(resource)));
        }
    }
    Ok(form)
}

/// The v2 scope for a v1 resource: `<resource>/.default` (kept as is if it already ends so).
/// `https://management.azure.com/` becomes `https://management.azure.com//.default`, which Entra
/// maps back to the audience with the trailing slash, as azure-workload-identity does.
pub fn scope(resource: &str) -> String {
    if resource.ends_with("/.default") { resource.to_string() } else { format!("{resource}/.default") }
}

/// Tenants end up in the URL path, and identity specs are user input: only letters, digits,
/// `.`, `-` and `_` are allowed.
fn check_tenant(tenant: &str) -> Result<(), TokenError> {
    let ok = !tenant.is_empty()
        && tenant.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(TokenError::InvalidRequest(format!(
            "tenant id {tenant:?} is not valid: use the tenant's GUID or domain name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(authority: &str) -> AadClient {
        AadClient::new(
            crate::http::build_client(&Default::default()).unwrap(),
            Url::parse(authority).unwrap(),
        )
    }

    #[test]
    fn endpoints_follow_the_authority_host() {
        let c = client("https://127.0.0.1:8443");
        assert_eq!(c.token_endpoint_v1("t1").unwrap().as_str(), "https://127.0.0.1:8443/t1/oauth2/token");
        assert_eq!(
            c.token_endpoint_v2("t1").unwrap().as_str(),
            "https://127.0.0.1:8443/t1/oauth2/v2.0/token"
        );
        let prefixed = client("https://login.local/prefix");
        assert_eq!(
            prefixed.token_endpoint_v1("t").unwrap().as_str(),
            "https://login.local/prefix/t/oauth2/token"
        );
    }

    #[test]
    fn hostile_tenants_are_refused() {
        let c = client("https://login.microsoftonline.com/");
        for bad in ["", "../evil", "a/b", "t?x=1", "t#f", "t%2F"] {
            assert!(matches!(c.token_endpoint_v1(bad), Err(TokenError::InvalidRequest(_))), "{bad:?}");
        }
        assert!(c.token_endpoint_v1("contoso.onmicrosoft.com").is_ok());
    }

    #[test]
    fn scopes_append_default_once() {
        assert_eq!(scope("https://management.azure.com/"), "https://management.azure.com//.default");
        assert_eq!(scope("api://AzureADTokenExchange"), "api://AzureADTokenExchange/.default");
        assert_eq!(scope("https://vault.azure.net/.default"), "https://vault.azure.net/.default");
    }

    #[test]
    fn forms_carry_the_right_fields() {
        let keys = |f: Vec<(&str, String)>| f.into_iter().map(|(k, _)| k).collect::<Vec<_>>().join(",");
        let secret = form("c", &ClientCredential::Secret(Secret::new("s")), "r", "aud").unwrap();
        assert_eq!(keys(secret), "grant_type,client_id,client_secret,resource");
        let federated = form("c", &ClientCredential::Federated(Secret::new("jwt")), "r", "aud").unwrap();
        assert_eq!(
            keys(federated.clone()),
            "grant_type,client_id,client_assertion,client_assertion_type,scope"
        );
        assert_eq!(federated[4].1, "r/.default");
    }
}
