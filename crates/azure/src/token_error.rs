//! Why a token could not be had. The node agent maps [`TokenError::Upstream`] (the endpoint
//! answered, but not with a token) to 403 and [`TokenError::Transport`] (no answer) to 503, as
//! upstream NMI does with ADAL's `TokenRefreshError`.
use serde::Deserialize;

use crate::certificate::CertificateError;

/// The error JSON Entra ID and IMDS send: `{"error","error_description","error_codes",...}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct EntraError {
    /// OAuth error code, e.g. `invalid_client`, `invalid_request`.
    #[serde(default)]
    pub error: String,
    /// Human-readable description (`AADSTS…: …` from Entra ID, `Identity not found` from IMDS).
    #[serde(default)]
    pub error_description: String,
    /// Entra's numeric codes (e.g. `[7000215]`).
    #[serde(default)]
    pub error_codes: Vec<i64>,
    /// Entra's trace id.
    #[serde(default)]
    pub trace_id: Option<String>,
    /// Entra's correlation id.
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// When Entra produced the error.
    #[serde(default)]
    pub timestamp: Option<String>,
}

impl EntraError {
    /// Parses an error body; `None` if it is not the Entra/IMDS error shape.
    pub fn parse(body: &[u8]) -> Option<Box<Self>> {
        serde_json::from_slice::<Self>(body).ok().filter(|e| !e.error.is_empty()).map(Box::new)
    }
}

/// A failed token request.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The endpoint answered with a non-success status. The text is ADAL's, which upstream NMI
    /// put in its 403 bodies.
    #[error(
        "adal: Refresh request failed. Status Code = '{status}'. Response body: {body} Endpoint {endpoint}"
    )]
    Upstream {
        /// HTTP status.
        status: u16,
        /// The body as received (truncated to 4 KiB).
        body: String,
        /// The URL requested (no secrets: those travel in headers or form bodies).
        endpoint: String,
        /// The parsed error, when the body has the Entra/IMDS shape.
        entra: Option<Box<EntraError>>,
    },
    /// No answer: connection refused or reset, DNS failure, timeout.
    #[error("token request to {endpoint} failed: {message}")]
    Transport { endpoint: String, message: String },
    /// A success status with a body that is not a usable token.
    #[error("token response from {endpoint} is unusable: {message}")]
    InvalidResponse { endpoint: String, message: String },
    /// The request itself is not acceptable (bad tenant id, empty resource, ...).
    #[error("invalid token request: {0}")]
    InvalidRequest(String),
    /// The client certificate cannot be used.
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

impl TokenError {
    /// The upstream status, for [`TokenError::Upstream`].
    pub fn status(&self) -> Option<u16> {
        match self {
            TokenError::Upstream { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The parsed Entra/IMDS error, if the endpoint sent one.
    pub fn entra(&self) -> Option<&EntraError> {
        match self {
            TokenError::Upstream { entra, .. } => entra.as_deref(),
            _ => None,
        }
    }

    /// Whether the endpoint could not be reached (the agent answers 503 rather than 403).
    pub fn is_transport(&self) -> bool {
        matches!(self, TokenError::Transport { .. })
    }

    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TokenError::Upstream { .. } => "upstream",
            TokenError::Transport { .. } => "transport",
            TokenError::InvalidResponse { .. } => "invalid_response",
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::Certificate(_) => "certificate",
        }
    }
}

/// A reqwest error with its causes, e.g. `error sending request: connection refused`.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entra_error_bodies() {
        let body = br#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.",
            "error_codes":[7000215],"timestamp":"2024-01-01 00:00:00Z","trace_id":"t","correlation_id":"c","error_uri":"u"}"#;
        let e = EntraError::parse(body).unwrap();
        assert_eq!((e.error.as_str(), e.error_codes.as_slice()), ("invalid_client", &[7_000_215][..]));
        assert_eq!(e.correlation_id.as_deref(), Some("c"));
        let imds =
            EntraError::parse(br#"{"error":"invalid_request","error_description":"Identity not found"}"#)
                .unwrap();
        assert_eq!(imds.error_description, "Identity not found");
        assert_eq!(EntraError::parse(b"<html>"), None);
        assert_eq!(EntraError::parse(br#"{"message":"x"}"#), None);
    }

    #[test]
    fn upstream_error_text_is_adals() {
        let e = TokenError::Upstream {
            status: 400,
            body: r#"{"error":"invalid_request"}"#.into(),
            endpoint: "http://127.0.0.1:1/metadata/identity/oauth2/token?api-version=2018-02-01".into(),
            entra: None,
        };
        assert_eq!(
            e.to_string(),
            "adal: Refresh request failed. Status Code = '400'. Response body: {\"error\":\"invalid_request\"} \
             Endpoint http://127.0.0.1:1/metadata/identity/oauth2/token?api-version=2018-02-01"
        );
        assert_eq!((e.status(), e.is_transport(), e.metric_label()), (Some(400), false, "upstream"));
    }
}
