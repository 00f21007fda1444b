//! ARM failures: the error body ARM sends ([`ArmError`]) and everything else that can go wrong
//! in a call ([`Error`]), plus the identity ids ARM quotes when it refuses an assignment.
use std::sync::LazyLock;
use std::time::Duration;

use podid_api::resource_id::UserAssignedIdentityId;
use regex::Regex;
use serde_json::Value;
use tokio::time::Instant;

use crate::token_error::TokenError;

/// An ARM error response: `{"error":{"code","message","details":[…]}}` and its status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ARM answered {status} {code}: {message}")]
pub struct ArmError {
    /// HTTP status (for a failed long-running operation, the status of the poll that said so).
    pub status: u16,
    /// ARM error code, e.g. `LinkedAuthorizationFailed`; empty if the body had none.
    pub code: String,
    /// ARM's message (or the raw body, truncated, when it was not ARM's error JSON).
    pub message: String,
    /// How long ARM asked the client to wait (`Retry-After`), if it did.
    pub retry_after: Option<Duration>,
    /// `details[].code` and `.message`.
    pub details: Vec<(String, String)>,
    /// ARM's `x-ms-request-id`, for support cases.
    pub request_id: Option<String>,
}

impl ArmError {
    /// Reads an error body. Accepts `{"error":{…}}` and a bare `{"code","message"}`.
    pub fn from_body(
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
        request_id: Option<String>,
    ) -> Self {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let error = json.as_ref().map(|v| v.get("error").unwrap_or(v));
        let text =
            |v: Option<&Value>, k: &str| v.and_then(|e| e.get(k)).and_then(Value::as_str).map(str::to_string);
        let code = text(error, "code").unwrap_or_default();
        let message = text(error, "message").unwrap_or_else(|| crate::http::truncate_body(body));
        let details = error
            .and_then(|e| e.get("details"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|d| {
                        (
                            text(Some(d), "code").unwrap_or_default(),
                            text(Some(d), "message").unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self { status, code, message, retry_after, details, request_id }
    }

    /// Identity ids ARM quoted in this error (see [`erroneous_identities`]).
    pub fn erroneous_identities(&self) -> Vec<String> {
        if !matches!(self.code.as_str(), "LinkedAuthorizationFailed" | "FailedIdentityOperation") {
            return Vec::new();
        }
        erroneous_identities(&self.message)
    }
}

/// Anything that makes an ARM call fail.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ARM answered with an error.
    #[error(transparent)]
    Arm(Box<ArmError>),
    /// A long-running operation ended `Failed` or `Canceled`.
    #[error("ARM operation on {resource} ended {state}: {code} {message}")]
    OperationFailed { resource: String, state: String, code: String, message: String },
    /// ARM asked for a pause on this subscription that has not ended; nothing was sent.
    #[error("ARM calls for subscription {subscription} are throttled for another {remaining:?}")]
    Throttled {
        /// The subscription.
        subscription: String,
        /// When calls may resume.
        until: Instant,
        /// How long that was from when the call was refused.
        remaining: Duration,
    },
    /// The VM or scale set is being deleted; podid does not update it.
    #[error("{resource} is in Deleting provisioning state, not updating its identities")]
    Deleting { resource: String },
    /// More identities in one update than ARM accepts.
    #[error("an identity update for {resource} has {count} entries; ARM accepts at most {max}")]
    TooManyIdentities { resource: String, count: usize, max: usize },
    /// The ARM token could not be had.
    #[error("getting a token for ARM: {0}")]
    Token(#[from] TokenError),
    /// ARM could not be reached (after retries).
    #[error("ARM request {method} {url} failed: {message}")]
    Transport { method: String, url: String, message: String },
    /// A long-running operation did not finish in time.
    #[error("ARM operation on {resource} did not finish within {waited:?}")]
    PollTimeout { resource: String, waited: Duration },
    /// ARM answered success with something podid cannot use.
    #[error("unexpected ARM response from {url}: {message}")]
    InvalidResponse { url: String, message: String },
    /// The request cannot be built (a name that is not a path segment, …).
    #[error("invalid ARM request: {0}")]
    InvalidRequest(String),
}

impl From<ArmError> for Error {
    fn from(e: ArmError) -> Self {
        Error::Arm(Box::new(e))
    }
}

impl Error {
    /// The ARM error, if ARM sent one.
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            Error::Arm(e) => Some(e),
            _ => None,
        }
    }

    /// The ARM error code (or the operation's failure code), if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Arm(e) => Some(e.code.as_str()),
            Error::OperationFailed { code, .. } => Some(code.as_str()),
            _ => None,
        }
    }

    /// The HTTP status ARM answered with, if it did.
    pub fn status(&self) -> Option<u16> {
        self.arm().map(|e| e.status)
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Identity ids a `LinkedAuthorizationFailed` / `FailedIdentityOperation` error quotes, so
    /// the caller can retry without them (lower-cased keys).
    pub fn erroneous_identities(&self) -> Vec<String> {
        match self {
            Error::Arm(e) => e.erroneous_identities(),
            Error::OperationFailed { code, message, .. }
                if matches!(code.as_str(), "LinkedAuthorizationFailed" | "FailedIdentityOperation") =>
            {
                erroneous_identities(message)
            }
            _ => Vec::new(),
        }
    }

    /// A short label for the metrics `result` dimension.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Arm(e) if e.status == 429 => "throttled",
            Error::Arm(_) => "arm_error",
            Error::OperationFailed { .. } => "operation_failed",
            Error::Throttled { .. } => "throttled_locally",
            Error::Deleting { .. } => "deleting",
            Error::TooManyIdentities { .. } => "too_many_identities",
            Error::Token(_) => "token",
            Error::Transport { .. } => "transport",
            Error::PollTimeout { .. } => "timeout",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// Quoted, comma-separated lists of user-assigned identity ids, as ARM writes them in
/// `LinkedAuthorizationFailed` and `FailedIdentityOperation` messages. Upstream's pattern only
/// allowed `[a-zA-Z0-9-_]` in names; resource group names may also hold `.` and `()`.
static QUOTED_IDS: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)'((?:,?\s*/subscriptions/[^/',\s]+/resourcegroups/[^/',\s]+/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/[^/',\s]+)+)'",
    )
    .ok()
});

/// The user-assigned identity ids quoted in an ARM error message, lower-cased (the keys podid's
/// identity bookkeeping uses), deduplicated, in order of appearance. Every quoted list counts,
/// not just the first as upstream did.
pub fn erroneous_identities(message: &str) -> Vec<String> {
    let Some(re) = QUOTED_IDS.as_ref() else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    for caps in re.captures_iter(message) {
        for id in caps[1].split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match UserAssignedIdentityId::parse(id) {
                Ok(parsed) if !out.contains(&parsed.key()) => out.push(parsed.key()),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "Ignoring an id quoted in an ARM error"),
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "../tests/arm_error.rs"]
mod tests;
