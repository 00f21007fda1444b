//! Azure Resource Manager: the VM/VMSS identity calls the controller makes, and the identity and
//! role-assignment calls the CLI makes.
//!
//! ```text
//!  operation (get_identity, patch_identity, …)      one tracing span + one CallRecord each
//!    └─ send(method, url)                          per attempt:
//!         throttle gate for the subscription ──closed──▶ Error::Throttled (nothing sent)
//!         bearer token (TokenSource, cached)
//!         2xx ─▶ Response
//!         429 or Retry-After ─▶ close the gate until then; 429 fails at once
//!         408, 5xx, no answer ─▶ back off (≥ Retry-After) and retry, bounded
//!    └─ lro::complete (PATCH/PUT)                  Azure-AsyncOperation │ Location │ provisioningState
//! ```
//!
//! One `x-ms-client-request-id` is sent on every attempt and poll of one operation. Poll and
//! paging URLs must be on the ARM endpoint's origin: the bearer token is never sent elsewhere.
mod compute;
mod error;
mod identity;
mod lro;
mod observe;
mod roles;
mod throttle;
mod transport;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use podid_core::scaleset::Target;
use tokio::time::Instant;
use url::Url;

pub use compute::{TargetIdentity, UserAssignedDetails, VirtualMachine};
pub use error::{ArmError, Error, erroneous_identities};
pub use identity::{FederatedCredential, UserAssignedIdentity};
pub use observe::{ArmObserver, CallRecord, Operation};
pub use roles::{RoleAssignment, builtin as builtin_roles, role_definition_id};
pub use throttle::Throttle;
pub(crate) use transport::{Mode, Response};

use crate::credential::TokenSource;
use crate::http::Backoff;

/// Tunables of an [`ArmClient`].
#[derive(Clone, Debug)]
pub struct ArmOptions {
    /// `Microsoft.Compute` api-version (upstream: `2019-12-01`).
    pub compute_api_version: String,
    /// `Microsoft.ManagedIdentity` api-version.
    pub identity_api_version: String,
    /// `Microsoft.Authorization` api-version.
    pub authorization_api_version: String,
    /// Retries of transient failures (408, 5xx, no answer).
    pub backoff: Backoff,
    /// The longest `Retry-After` a transient failure is waited out inside one call; longer ones
    /// fail the call (the subscription stays gated until then).
    pub max_retry_after: Duration,
    /// How long a 429 without `Retry-After` closes the gate.
    pub default_throttle: Duration,
    /// Wait between polls when ARM sends no (or a zero) `Retry-After`.
    pub poll_interval: Duration,
    /// Give up on a long-running operation after this long.
    pub max_poll_duration: Duration,
}

impl Default for ArmOptions {
    fn default() -> Self {
        Self {
            compute_api_version: "2019-12-01".into(),
            identity_api_version: "2023-01-31".into(),
            authorization_api_version: "2022-04-01".into(),
            backoff: Backoff::default(),
            max_retry_after: Duration::from_secs(30),
            default_throttle: Duration::from_secs(10),
            poll_interval: Duration::from_secs(5),
            max_poll_duration: Duration::from_secs(15 * 60),
        }
    }
}

/// A client of one ARM endpoint.
#[derive(Clone)]
pub struct ArmClient {
    inner: Arc<Inner>,
    observer: Option<Arc<dyn ArmObserver>>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    resource: String,
    credential: Arc<dyn TokenSource>,
    options: ArmOptions,
    throttle: Throttle,
    /// Last provisioning state seen per target (lower-cased resource id).
    states: Mutex<HashMap<String, String>>,
}

impl fmt::Debug for ArmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ArmClient")
            .field("endpoint", &self.inner.endpoint.as_str())
            .field("resource", &self.inner.resource)
            .field("credential", &self.inner.credential)
            .finish_non_exhaustive()
    }
}

impl ArmClient {
    /// A client of the ARM `endpoint`, authenticating with tokens for `resource` from `credential`.
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        resource: impl Into<String>,
        credential: Arc<dyn TokenSource>,
        options: ArmOptions,
    ) -> Self {
        let mut endpoint = endpoint;
        endpoint.set_query(None);
        endpoint.set_fragment(None);
        Self {
            inner: Arc::new(Inner {
                http,
                endpoint,
                resource: resource.into(),
                credential,
                options,
                throttle: Throttle::default(),
                states: Mutex::new(HashMap::new()),
            }),
            observer: None,
        }
    }

    /// A client of `cloud`'s ARM endpoint with tokens for `cloud.arm_resource`.
    pub fn for_cloud(
        http: reqwest::Client,
        cloud: &crate::cloud::Cloud,
        credential: Arc<dyn TokenSource>,
        options: ArmOptions,
    ) -> Self {
        Self::new(http, cloud.resource_manager.clone(), cloud.arm_resource.clone(), credential, options)
    }

    /// Reports every call to `observer`. Clones made before this share the throttle state but
    /// not the observer.
    pub fn with_observer(mut self, observer: Arc<dyn ArmObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The options in force.
    pub fn options(&self) -> &ArmOptions {
        &self.inner.options
    }

    /// When calls to `subscription` may resume, if ARM throttled it.
    pub fn throttled_until(&self, subscription: &str) -> Option<Instant> {
        self.inner.throttle.blocked_until(subscription)
    }

    /// `{endpoint}/{segments…}?api-version=…`, each segment percent-encoded.
    pub(crate) fn url(&self, segments: &[&str], api_version: &str) -> Result<Url, Error> {
        let mut url = self.inner.endpoint.clone();
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                Error::InvalidRequest(format!("ARM endpoint {} cannot take a path", self.inner.endpoint))
            })?;
            path.pop_if_empty();
            for s in segments {
                if s.is_empty() || *s == "." || *s == ".." {
                    return Err(Error::InvalidRequest(format!("{s:?} is not a valid ARM path segment")));
                }
                path.push(s);
            }
        }
        url.query_pairs_mut().append_pair("api-version", api_version);
        Ok(url)
    }

    /// Resolves a poll or paging link from ARM, refusing other origins (the token goes with it).
    pub(crate) fn follow(&self, link: &str, from: &Url) -> Result<Url, Error> {
        let url = from.join(link).map_err(|e| Error::InvalidResponse {
            url: from.to_string(),
            message: format!("bad link {link:?}: {e}"),
        })?;
        if url.origin() != self.inner.endpoint.origin() {
            return Err(Error::InvalidResponse {
                url: from.to_string(),
                message: format!(
                    "refusing to follow {link:?}: not on the ARM endpoint {}",
                    self.inner.endpoint
                ),
            });
        }
        Ok(url)
    }

    /// Runs one operation: a span, a duration, a [`CallRecord`].
    pub(crate) async fn observed<T, F>(
        &self,
        operation: Operation,
        resource: &str,
        call: F,
    ) -> Result<T, Error>
    where
        F: Future<Output = Result<T, Error>>,
    {
        use tracing::Instrument as _;
        let started = Instant::now();
        let span = tracing::debug_span!("arm", op = operation.as_str(), resource);
        let result = call.instrument(span.clone()).await;
        let duration = started.elapsed();
        let error = result.as_ref().err();
        let record =
            CallRecord { operation, result: error.map_or("success", Error::metric_label), error, duration };
        span.in_scope(|| match error {
            None => tracing::debug!(?duration, "ARM call succeeded"),
            Some(e) => tracing::debug!(?duration, error = %e, "ARM call failed"),
        });
        if let Some(observer) = &self.observer {
            observer.observe(&record);
        }
        result
    }

    /// Remembers the provisioning state ARM last reported for `target`.
    pub(crate) fn remember_state(&self, target: &Target, state: Option<&str>) {
        let key = target.to_string().to_ascii_lowercase();
        let mut states = self.inner.states.lock();
        match state {
            Some(s) => states.insert(key, s.to_string()),
            None => states.remove(&key),
        };
    }

    /// The provisioning state ARM last reported for `target`, if any.
    pub fn last_provisioning_state(&self, target: &Target) -> Option<String> {
        self.inner.states.lock().get(&target.to_string().to_ascii_lowercase()).cloned()
    }
}

/// A fresh `x-ms-client-request-id`.
pub(crate) fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
