//! Tokens as the agent hands them out, where they come from, and the clock they are judged by.
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A token as IMDS or Entra ID sent it (the agent's answer is its upstream-NMI serialisation).
pub use podid_azure::Token;

/// The token(s) for one request: one, or (multi-tenant service principal) primary tenant first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenSet {
    pub tokens: Vec<Token>,
    /// Answer with a JSON array rather than a single object.
    pub multi_tenant: bool,
}

impl TokenSet {
    pub fn single(token: Token) -> Self {
        Self { tokens: vec![token], multi_tenant: false }
    }

    /// Only the primary tenant's token (what `/host/token` returns).
    pub fn single_of(set: &TokenSet) -> Self {
        Self { tokens: set.tokens.iter().take(1).cloned().collect(), multi_tenant: false }
    }

    /// Earliest expiry of the set (0 when empty).
    pub fn expires_on(&self) -> u64 {
        self.tokens.iter().map(Token::expires_at).min().unwrap_or(0)
    }

    /// The answer body: every value a string, `expires_in` counted from `now` so a cached token
    /// never claims more life than it has (SDKs such as msal derive their expiry from it).
    pub fn to_json(&self, now: u64) -> Value {
        let at = UNIX_EPOCH + Duration::from_secs(now);
        let one = |t: &Token| serde_json::to_value(t.aged(at)).unwrap_or(Value::Null);
        if self.multi_tenant {
            Value::Array(self.tokens.iter().map(one).collect())
        } else {
            self.tokens.first().map(one).unwrap_or(Value::Null)
        }
    }
}

/// Where a token comes from. Also the identity half of a cache key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TokenSource {
    /// This node's IMDS: a user-assigned identity by client id, or the node's own identity.
    Imds { client_id: Option<String> },
    /// A service principal whose secret (or PKCS#12 certificate) is in a Kubernetes Secret.
    ServicePrincipal {
        authority: String,
        tenant_id: String,
        auxiliary_tenants: Vec<String>,
        client_id: String,
        secret_namespace: String,
        secret_name: String,
        certificate: bool,
    },
    /// A user-assigned identity through workload identity federation: a TokenRequest token of the
    /// calling pod's service account exchanged at Entra ID. Cached per (namespace, service account,
    /// identity): pods sharing a service account share the Azure token, others never get it.
    Federated {
        authority: String,
        tenant_id: String,
        client_id: String,
        namespace: String,
        service_account: String,
        /// The pod the service-account token is bound to. Not part of the cache key.
        pod: BoundPod,
    },
}

/// The pod a federated fetch binds its service-account token to (`boundObjectRef`).
///
/// Deliberately equal to every other `BoundPod` (and hashed as nothing), so it never splits the
/// cache: the key of a federated token is its service account, not the pod that asked first.
#[derive(Clone, Debug, Default)]
pub struct BoundPod {
    pub name: String,
    /// Empty when unknown: the API server then binds to the pod of that name.
    pub uid: String,
}

impl PartialEq for BoundPod {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for BoundPod {}
impl std::hash::Hash for BoundPod {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}
impl PartialOrd for BoundPod {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for BoundPod {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl TokenSource {
    /// Label for metrics (upstream's `operation_type` values).
    pub fn operation(&self) -> &'static str {
        match self {
            Self::Imds { client_id: None } => "adal_token_msi",
            Self::Imds { client_id: Some(_) } => "adal_token_msi_userassignedid",
            Self::ServicePrincipal { .. } => "adal_token",
            Self::Federated { .. } => "federated",
        }
    }
}

/// Why a token could not be obtained.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint answered with an error (the caller gets 403, as upstream).
    #[error("{0}")]
    Refused(String),
    /// The token endpoint could not be reached or answered nonsense (the caller gets 503).
    #[error("{0}")]
    Unavailable(String),
}

/// A boxed token fetch.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<TokenSet, TokenError>> + Send>>;

/// Fetches tokens from IMDS or Entra ID. Implementations never cache; [`crate::cache`] does.
pub trait TokenProvider: Send + Sync + 'static {
    fn fetch(&self, source: &TokenSource, resource: &str) -> TokenFuture;
}

/// Wall-clock seconds, injectable so cache tests control time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
    }
}

/// A clock tests move by hand.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now: u64) -> Self {
        Self(AtomicU64::new(now))
    }
    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federated(sa: &str, pod: &str) -> TokenSource {
        TokenSource::Federated {
            authority: "https://login.example/".into(),
            tenant_id: "t".into(),
            client_id: "c".into(),
            namespace: "ns".into(),
            service_account: sa.into(),
            pod: BoundPod { name: pod.into(), uid: format!("uid-{pod}") },
        }
    }

    #[test]
    fn federated_cache_key_is_the_service_account_not_the_pod() {
        assert_eq!(federated("app", "p1"), federated("app", "p2"));
        assert_ne!(federated("app", "p1"), federated("other", "p1"));
        let set: std::collections::HashSet<_> = [federated("app", "p1"), federated("app", "p2")].into();
        assert_eq!(set.len(), 1);
    }
}
