//! Where a client's own tokens come from ([`TokenSource`]), and a cache in front of it.
//!
//! ```text
//!  ArmAuth (from azure.json) ─▶ token_source() ─▶ Arc<dyn TokenSource>
//!     Secret / Certificate ─▶ ServicePrincipal { AadClient, tenant, client id, credential }
//!     ManagedIdentity      ─▶ ManagedIdentitySource { ImdsClient, system | user-assigned }
//!  CachedTokenSource: one token per resource, refreshed when it has under `refresh_margin` left
//! ```
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aad::{AadClient, ClientCredential};
use crate::certificate::{CertificateError, ClientCertificate};
use crate::cloud::Cloud;
use crate::config::ArmAuth;
use crate::http::{HttpError, HttpOptions, build_client};
use crate::imds::{ImdsClient, ImdsOptions, ManagedIdentity};
use crate::token::Token;
use crate::token_error::TokenError;

/// The future a [`TokenSource`] returns.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<Token, TokenError>> + Send + 'a>>;

/// Something that can get a token for a resource.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token for `resource` (a v1 resource such as `https://management.azure.com/`).
    fn token<'a>(&'a self, resource: &'a str) -> TokenFuture<'a>;
}

/// A service principal authenticating with a secret, certificate or federated assertion.
#[derive(Clone, Debug)]
pub struct ServicePrincipal {
    /// The Entra ID client.
    pub aad: AadClient,
    /// The principal's tenant.
    pub tenant_id: String,
    /// The principal's application (client) id.
    pub client_id: String,
    /// Its credential.
    pub credential: ClientCredential,
}

impl TokenSource for ServicePrincipal {
    fn token<'a>(&'a self, resource: &'a str) -> TokenFuture<'a> {
        Box::pin(self.aad.token(&self.tenant_id, &self.client_id, &self.credential, resource))
    }
}

/// A managed identity through IMDS.
#[derive(Clone, Debug)]
pub struct ManagedIdentitySource {
    /// The IMDS client.
    pub imds: ImdsClient,
    /// Which identity.
    pub identity: ManagedIdentity,
}

impl TokenSource for ManagedIdentitySource {
    fn token<'a>(&'a self, resource: &'a str) -> TokenFuture<'a> {
        Box::pin(self.imds.token(resource, &self.identity))
    }
}

/// A fixed token, for tests and tools.
#[derive(Clone, Debug)]
pub struct StaticToken(pub Token);

impl TokenSource for StaticToken {
    fn token<'a>(&'a self, _resource: &'a str) -> TokenFuture<'a> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// Keeps one token per resource and asks `inner` again only when it nears expiry. Concurrent
/// callers for the same resource wait for one refresh instead of each sending a request.
#[derive(Debug)]
pub struct CachedTokenSource<S> {
    inner: S,
    refresh_margin: Duration,
    cache: tokio::sync::Mutex<HashMap<String, Token>>,
}

impl<S: TokenSource> CachedTokenSource<S> {
    /// Caches `inner`'s tokens until 5 minutes before they expire (ADAL's margin).
    pub fn new(inner: S) -> Self {
        Self::with_margin(inner, Duration::from_secs(300))
    }

    /// Caches `inner`'s tokens until `refresh_margin` before they expire.
    pub fn with_margin(inner: S, refresh_margin: Duration) -> Self {
        Self { inner, refresh_margin, cache: tokio::sync::Mutex::new(HashMap::new()) }
    }

    /// Forgets every cached token (e.g. after ARM rejected one).
    pub async fn clear(&self) {
        self.cache.lock().await.clear();
    }
}

impl<S: TokenSource> TokenSource for CachedTokenSource<S> {
    fn token<'a>(&'a self, resource: &'a str) -> TokenFuture<'a> {
        Box::pin(async move {
            let mut cache = self.cache.lock().await;
            if let Some(t) = cache.get(resource)
                && !t.expires_within(self.refresh_margin, SystemTime::now())
            {
                return Ok(t.clone());
            }
            let token = self.inner.token(resource).await?;
            cache.insert(resource.to_string(), token.clone());
            Ok(token)
        })
    }
}

/// A credential that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The HTTP client could not be built.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The certificate file could not be read.
    #[error("reading certificate file {path}: {source}")]
    ReadCertificate { path: std::path::PathBuf, source: std::io::Error },
    /// The certificate file is unusable.
    #[error("certificate file {path}: {source}")]
    Certificate { path: std::path::PathBuf, source: CertificateError },
}

/// The cached token source the controller uses for ARM, as the cloud config asks: a service
/// principal against `cloud.authority_host`, or a managed identity through IMDS.
pub fn token_source(
    auth: &ArmAuth,
    cloud: &Cloud,
    http: &HttpOptions,
    imds: ImdsOptions,
) -> Result<Arc<dyn TokenSource>, CredentialError> {
    let principal = |tenant_id: &str, client_id: &str, credential| -> Result<_, CredentialError> {
        let aad = AadClient::new(build_client(http)?, cloud.authority_host.clone());
        Ok(ServicePrincipal {
            aad,
            tenant_id: tenant_id.to_string(),
            client_id: client_id.to_string(),
            credential,
        })
    };
    Ok(match auth {
        ArmAuth::Secret { tenant_id, client_id, secret } => Arc::new(CachedTokenSource::new(principal(
            tenant_id,
            client_id,
            ClientCredential::Secret(secret.clone()),
        )?)),
        ArmAuth::Certificate { tenant_id, client_id, path, password } => {
            let data = std::fs::read(path)
                .map_err(|source| CredentialError::ReadCertificate { path: path.clone(), source })?;
            let cert = ClientCertificate::from_pkcs12(&data, password.expose())
                .map_err(|source| CredentialError::Certificate { path: path.clone(), source })?;
            let credential = ClientCredential::Certificate(Arc::new(cert));
            Arc::new(CachedTokenSource::new(principal(tenant_id, client_id, credential)?))
        }
        ArmAuth::ManagedIdentity { client_id } => {
            let identity =
                client_id.clone().map_or(ManagedIdentity::SystemAssigned, ManagedIdentity::ClientId);
            Arc::new(CachedTokenSource::new(ManagedIdentitySource { imds: ImdsClient::new(imds)?, identity }))
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[derive(Debug, Default)]
    struct Counting(AtomicU32, u64);

    impl TokenSource for Counting {
        fn token<'a>(&'a self, resource: &'a str) -> TokenFuture<'a> {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            let body = format!(r#"{{"access_token":"t{n}","expires_in":{}}}"#, self.1);
            Box::pin(async move {
                Token::from_response(body.as_bytes(), resource, SystemTime::now())
                    .map_err(|e| TokenError::InvalidRequest(e.to_string()))
            })
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let auth = ArmAuth::Secret { tenant_id: "t".into(), client_id: "c".into(), secret: "hunter2".into() };
        let imds = ImdsOptions::at(url::Url::parse("http://127.0.0.1:9").unwrap());
        let source = token_source(&auth, &Cloud::public(), &HttpOptions::default(), imds).unwrap();
        let shown = format!("{source:?}");
        assert!(shown.contains("<redacted>") && !shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn cache_reuses_tokens_per_resource_until_near_expiry() {
        let cached = CachedTokenSource::new(Counting(AtomicU32::new(0), 3600));
        assert_eq!(cached.token("a").await.unwrap().access_token.expose(), "t0");
        assert_eq!(cached.token("a").await.unwrap().access_token.expose(), "t0");
        assert_eq!(cached.token("b").await.unwrap().access_token.expose(), "t1");
        cached.clear().await;
        assert_eq!(cached.token("a").await.unwrap().access_token.expose(), "t2");

        let short = CachedTokenSource::new(Counting(AtomicU32::new(0), 120));
        short.token("a").await.unwrap();
        assert_eq!(
            short.token("a").await.unwrap().access_token.expose(),
            "t1",
            "a token with <5 min left is refreshed"
        );
    }
}
