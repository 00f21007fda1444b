//! Managed identity tokens from the Instance Metadata Service.
//!
//! ```text
//!  GET {endpoint}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=R[&client_id=C|&msi_res_id=ID|&object_id=O]
//!  Metadata: true
//!    2xx ─▶ Token
//!    404, 408, 410, 429, 5xx, no answer ─▶ retried after each delay of `retry_delays`
//!    other status (e.g. 400 "Identity not found") ─▶ TokenError::Upstream at once
//! ```
//!
//! ADAL, which upstream NMI used, waits 2, 6, 14, 30 and 60 s between attempts (≈112 s before a
//! client hears anything); podid's default is 0.5, 1 and 2 s, so a failing IMDS answers within
//! about 4 s and the caller's own retry logic stays in charge.
use std::time::{Duration, SystemTime};

use url::Url;

use crate::http::{HttpError, default_user_agent, install_crypto_provider, truncate_body};
use crate::token::Token;
use crate::token_error::{EntraError, TokenError, error_chain};

/// The link-local IMDS address. Tests always override it.
pub const DEFAULT_ENDPOINT: &str = "http://169.254.169.254";

/// The identity endpoint's api-version upstream used.
pub const API_VERSION: &str = "2018-02-01";

/// Which managed identity a token is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ManagedIdentity {
    /// The VM's system-assigned identity (or the only user-assigned one).
    SystemAssigned,
    /// A user-assigned identity by client id.
    ClientId(String),
    /// A user-assigned identity by ARM resource id (`msi_res_id`).
    ResourceId(String),
    /// A user-assigned identity by principal (object) id.
    ObjectId(String),
}

impl ManagedIdentity {
    /// The query parameter naming the identity, if any.
    fn query(&self) -> Option<(&'static str, &str)> {
        match self {
            ManagedIdentity::SystemAssigned => None,
            ManagedIdentity::ClientId(id) => Some(("client_id", id)),
            ManagedIdentity::ResourceId(id) => Some(("msi_res_id", id)),
            ManagedIdentity::ObjectId(id) => Some(("object_id", id)),
        }
    }

    /// `adal_token_msi` or `adal_token_msi_userassignedid`, upstream's metric labels.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ManagedIdentity::SystemAssigned => "adal_token_msi",
            _ => "adal_token_msi_userassignedid",
        }
    }
}

/// Settings of an [`ImdsClient`].
#[derive(Clone, Debug)]
pub struct ImdsOptions {
    /// Scheme, host and port of IMDS (path ignored).
    pub endpoint: Url,
    /// Delays before each retry; its length is the number of retries.
    pub retry_delays: Vec<Duration>,
    /// Time limit of one attempt. `None` disables it.
    pub timeout: Option<Duration>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Local address to connect from (a process standing in for a pod on loopback); `None`: any.
    pub local_address: Option<std::net::IpAddr>,
}

impl Default for ImdsOptions {
    fn default() -> Self {
        Self {
            endpoint: default_endpoint(),
            retry_delays: vec![Duration::from_millis(500), Duration::from_secs(1), Duration::from_secs(2)],
            timeout: Some(Duration::from_secs(10)),
            user_agent: default_user_agent(),
            local_address: None,
        }
    }
}

impl ImdsOptions {
    /// Options for an IMDS at `endpoint` (e.g. the emulator), defaults otherwise.
    pub fn at(endpoint: Url) -> Self {
        Self { endpoint, ..Self::default() }
    }

    /// ADAL's schedule (2, 6, 14, 30, 60 s), for callers that want upstream's exact timing.
    pub fn adal_retry_delays() -> Vec<Duration> {
        [2, 6, 14, 30, 60].into_iter().map(Duration::from_secs).collect()
    }
}

#[allow(clippy::expect_used)] // a literal
fn default_endpoint() -> Url {
    Url::parse(DEFAULT_ENDPOINT).expect("the IMDS address is a valid URL")
}

/// A client of the IMDS identity endpoint.
#[derive(Clone, Debug)]
pub struct ImdsClient {
    http: reqwest::Client,
    token_url: Url,
    retry_delays: Vec<Duration>,
}

impl ImdsClient {
    /// Builds a client. It never uses a proxy: IMDS is link-local.
    pub fn new(options: ImdsOptions) -> Result<Self, HttpError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .user_agent(options.user_agent.clone())
            .redirect(reqwest::redirect::Policy::none());
        if let Some(t) = options.timeout {
            builder = builder.timeout(t);
        }
        if let Some(address) = options.local_address {
            builder = builder.local_address(address);
        }
        let http = builder.build().map_err(|e| HttpError::Build(e.to_string()))?;
        let mut token_url = options.endpoint.clone();
        token_url.set_path("/metadata/identity/oauth2/token");
        token_url.set_query(None);
        Ok(Self { http, token_url, retry_delays: options.retry_delays })
    }

    /// A token for `resource` as `identity`.
    pub async fn token(&self, resource: &str, identity: &ManagedIdentity) -> Result<Token, TokenError> {
        if resource.trim().is_empty() {
            return Err(TokenError::InvalidRequest("the resource to request a token for is empty".into()));
        }
        let mut url = self.token_url.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", API_VERSION).append_pair("resource", resource);
            if let Some((k, v)) = identity.query() {
                q.append_pair(k, v);
            }
        }
        let mut attempt = 0;
        loop {
            let result = self.attempt(&url, resource).await;
            let retriable = match &result {
                Ok(_) => false,
                Err(TokenError::Transport { .. }) => true,
                Err(TokenError::Upstream { status, .. }) => retriable_status(*status),
                Err(_) => false,
            };
            match self.retry_delays.get(attempt) {
                Some(delay) if retriable => {
                    if let Err(e) = &result {
                        tracing::debug!(attempt, error = %e, ?delay, "IMDS token request failed, retrying");
                    }
                    tokio::time::sleep(*delay).await;
                    attempt += 1;
                }
                _ => return result,
            }
        }
    }

    async fn attempt(&self, url: &Url, resource: &str) -> Result<Token, TokenError> {
        let endpoint = url.to_string();
        let response =
            self.http.get(url.clone()).header("Metadata", "true").send().await.map_err(|e| {
                TokenError::Transport { endpoint: endpoint.clone(), message: error_chain(&e) }
            })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Transport { endpoint: endpoint.clone(), message: error_chain(&e) })?;
        if !status.is_success() {
            return Err(TokenError::Upstream {
                status: status.as_u16(),
                body: truncate_body(&body),
                endpoint,
                entra: EntraError::parse(&body),
            });
        }
        Token::from_response(&body, resource, SystemTime::now())
            .map_err(|e| TokenError::InvalidResponse { endpoint, message: e.to_string() })
    }
}

/// The statuses ADAL retries for IMDS.
fn retriable_status(status: u16) -> bool {
    matches!(status, 404 | 408 | 410 | 429) || (500..=599).contains(&status)
}
