//! The production [`TokenProvider`]: user-assigned and node identities from this node's IMDS,
//! service principals from Entra ID with the secret or PKCS#12 certificate read from the
//! referenced Kubernetes Secret at fetch time (only on a cache miss or refresh).
//!
//! Federated identities: a TokenRequest for the calling pod's own service account (audience
//! `api://AzureADTokenExchange`, bound to the pod, 10 minutes), exchanged at once at Entra ID's v2
//! endpoint (client credentials with a jwt-bearer client assertion). The service-account token is
//! dropped right after the exchange: it is never cached, logged or put into an error.
//!
//! Error mapping follows upstream: an endpoint that answered with an error (or an unusable body)
//! is a refusal (the caller gets 403 with the ADAL-style text); everything else — unreachable
//! endpoint, unreadable Secret, bad certificate — is unavailability (503).
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret as KubeSecret, ServiceAccount};
use kube::Api;
use kube::api::PostParams;
use podid_api::k8s_openapi;
use podid_azure::{AadClient, ClientCertificate, ClientCredential, ImdsClient, ManagedIdentity, Secret};
use url::Url;

use crate::metrics::Metrics;
use crate::token::{BoundPod, TokenError, TokenFuture, TokenProvider, TokenSet, TokenSource};

/// Lifetime asked for the service-account tokens exchanged in federated mode (the API server's
/// minimum; the token is used once, within the second).
pub const FEDERATED_SA_TOKEN_SECONDS: i64 = 600;

/// Fetches tokens from IMDS and Entra ID.
#[derive(Clone)]
pub struct AzureProvider {
    pub imds: ImdsClient,
    /// HTTP client for Entra ID (trusts the configured extra CAs).
    pub http: reqwest::Client,
    /// Reads service principals' Secrets; `None` serves user-assigned identities only.
    pub kube: Option<kube::Client>,
    pub metrics: Arc<Metrics>,
}

impl TokenProvider for AzureProvider {
    fn fetch(&self, source: &TokenSource, resource: &str) -> TokenFuture {
        let this = self.clone();
        let source = source.clone();
        let resource = resource.to_string();
        Box::pin(async move {
            let started = Instant::now();
            let result = this.fetch_now(&source, &resource).await;
            this.metrics.upstream(source.operation(), started.elapsed(), result.is_ok());
            result
        })
    }
}

fn map_err(e: podid_azure::TokenError) -> TokenError {
    use podid_azure::TokenError as E;
    match e {
        E::Upstream { .. } | E::InvalidResponse { .. } => TokenError::Refused(e.to_string()),
        other => TokenError::Unavailable(other.to_string()),
    }
}

impl AzureProvider {
    async fn fetch_now(&self, source: &TokenSource, resource: &str) -> Result<TokenSet, TokenError> {
        match source {
            TokenSource::Imds { client_id } => {
                let identity =
                    client_id.clone().map_or(ManagedIdentity::SystemAssigned, ManagedIdentity::ClientId);
                self.imds.token(resource, &identity).await.map(TokenSet::single).map_err(map_err)
            }
            TokenSource::ServicePrincipal {
                authority,
                tenant_id,
                auxiliary_tenants,
                client_id,
                secret_namespace,
                secret_name,
                certificate,
            } => {
                let credential = self.credential(secret_namespace, secret_name, *certificate).await?;
                let authority = Url::parse(authority)
                    .map_err(|e| TokenError::Unavailable(format!("invalid adEndpoint {authority:?}: {e}")))?;
                let client = AadClient::new(self.http.clone(), authority);
                if auxiliary_tenants.is_empty() {
                    let token =
                        client.token(tenant_id, client_id, &credential, resource).await.map_err(map_err)?;
                    Ok(TokenSet::single(token))
                } else {
                    let tenants: Vec<String> =
                        std::iter::once(tenant_id.clone()).chain(auxiliary_tenants.iter().cloned()).collect();
                    let tokens = client
                        .token_multi_tenant(&tenants, client_id, &credential, resource)
                        .await
                        .map_err(map_err)?;
                    Ok(TokenSet { tokens, multi_tenant: true })
                }
            }
            TokenSource::Federated { authority, tenant_id, client_id, namespace, service_account, pod } => {
                let authority = Url::parse(authority).map_err(|e| {
                    TokenError::Unavailable(format!("invalid Entra ID authority {authority:?}: {e}"))
                })?;
                let assertion = self.service_account_token(namespace, service_account, pod).await?;
                let client = AadClient::new(self.http.clone(), authority);
                let credential = ClientCredential::Federated(assertion);
                let result = client.token(tenant_id, client_id, &credential, resource).await;
                drop(credential);
                result.map(TokenSet::single).map_err(map_err)
            }
        }
    }

    /// A TokenRequest token for `namespace/service_account`, bound to `pod`, for Entra ID.
    async fn service_account_token(
        &self,
        namespace: &str,
        service_account: &str,
        pod: &BoundPod,
    ) -> Result<Secret, TokenError> {
        let kube = self.kube.clone().ok_or_else(|| {
            TokenError::Unavailable(format!(
                "cannot request a token for service account {namespace}/{service_account}: this agent has no Kubernetes client"
            ))
        })?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec![podid_api::TOKEN_EXCHANGE_AUDIENCE.to_string()]),
                expiration_seconds: Some(FEDERATED_SA_TOKEN_SECONDS),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name.clone()),
                    uid: Some(pod.uid.clone()).filter(|u| !u.is_empty()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api = Api::<ServiceAccount>::namespaced(kube, namespace);
        let answer = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                self.metrics.k8s_error("create_token_request");
                match e {
                    // Not transient: the agent's RBAC lacks the grant (standard/managed install
                    // without --federated-identities). Refuse with what to do.
                    kube::Error::Api(ae) if ae.code == 403 => TokenError::Refused(format!(
                        "this agent may not create tokens for service account {namespace}/{service_account}: \
                         federated identities need `create` on serviceaccounts/token (podid install \
                         --federated-identities, or --mode federated): {}",
                        ae.message
                    )),
                    e => TokenError::Unavailable(format!(
                        "TokenRequest for service account {namespace}/{service_account} (pod {}) failed: {e}",
                        pod.name
                    )),
                }
            })?;
        answer.status.and_then(|s| s.token).map(Secret::new).filter(|s| !s.expose().is_empty()).ok_or_else(
            || {
                TokenError::Unavailable(format!(
                    "TokenRequest for service account {namespace}/{service_account} returned no token"
                ))
            },
        )
    }

    /// Reads the Secret: type 1 uses key `clientSecret` (or, as upstream, the only/first key);
    /// type 2 uses `certificate` (PKCS#12) and `password`.
    async fn credential(
        &self,
        ns: &str,
        name: &str,
        certificate: bool,
    ) -> Result<ClientCredential, TokenError> {
        let kube = self.kube.clone().ok_or_else(|| {
            TokenError::Unavailable(format!(
                "cannot read secret {ns}/{name}: this agent has no Kubernetes client"
            ))
        })?;
        let secret = Api::<KubeSecret>::namespaced(kube, ns).get(name).await.map_err(|e| {
            self.metrics.k8s_error("get_secret");
            TokenError::Unavailable(format!("failed to get secret {ns}/{name}: {e}"))
        })?;
        let data = secret.data.unwrap_or_default();
        let value = |key: &str| data.get(key).map(|b| b.0.clone());
        if certificate {
            let cert = value("certificate").ok_or_else(|| {
                TokenError::Unavailable(format!("secret {ns}/{name} has no key \"certificate\""))
            })?;
            let password =
                value("password").map(|p| String::from_utf8_lossy(&p).into_owned()).unwrap_or_default();
            let cert = ClientCertificate::from_pkcs12(&cert, &password)
                .map_err(|e| TokenError::Unavailable(format!("secret {ns}/{name}: {e}")))?;
            Ok(ClientCredential::Certificate(Arc::new(cert)))
        } else {
            let raw = value("clientSecret")
                .or_else(|| data.values().next().map(|b| b.0.clone()))
                .ok_or_else(|| TokenError::Unavailable(format!("secret {ns}/{name} has no data")))?;
            let text = String::from_utf8(raw).map_err(|_| {
                TokenError::Unavailable(format!("secret {ns}/{name}: client secret is not UTF-8"))
            })?;
            Ok(ClientCredential::Secret(Secret::new(text.trim_end_matches('\n').to_string())))
        }
    }
}
