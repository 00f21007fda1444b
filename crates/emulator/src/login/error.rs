//! Entra ID's error body: `error`, `error_description` (`AADSTS<code>: ... Trace ID: ... Correlation ID:
//! ... Timestamp: ...`), `error_codes`, `timestamp`, `trace_id`, `correlation_id`, `error_uri`.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::clock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AadError {
    pub status: StatusCode,
    pub error: &'static str,
    pub code: u32,
    pub message: String,
}

impl AadError {
    pub fn new(status: StatusCode, error: &'static str, code: u32, message: impl Into<String>) -> Self {
        Self { status, error, code, message: message.into() }
    }

    pub fn invalid_request(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", code, message)
    }

    pub fn invalid_client(code: u32, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", code, message)
    }

    pub fn missing_parameter(name: &str) -> Self {
        Self::invalid_request(
            900_144,
            format!("The request body must contain the following parameter: '{name}'."),
        )
    }

    pub fn tenant_not_found(tenant: &str) -> Self {
        Self::invalid_request(
            90002,
            format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."
            ),
        )
    }

    pub fn app_not_found(client_id: &str, tenant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700_016,
            format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."
            ),
        )
    }

    pub fn invalid_secret(client_id: &str) -> Self {
        Self::invalid_client(
            7_000_215,
            format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        )
    }

    pub fn malformed_assertion() -> Self {
        Self::invalid_client(50027, "JWT token is invalid or malformed.")
    }

    pub fn bad_signature() -> Self {
        Self::invalid_client(700_027, "Client assertion failed signature validation.")
    }

    /// The body Entra sends, with `error_uri` on the host the client used.
    pub fn body(&self, base: &str) -> serde_json::Value {
        let trace = uuid::Uuid::new_v4().to_string();
        let correlation = uuid::Uuid::new_v4().to_string();
        let ts = clock::entra_timestamp(clock::now_unix());
        json!({
            "error": self.error,
            "error_description": format!(
                "AADSTS{}: {} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {ts}",
                self.code, self.message
            ),
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": format!("{base}/error?code={}", self.code),
        })
    }

    pub fn into_response_for(self, base: &str) -> Response {
        let body = self.body(base);
        (self.status, [(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string())
            .into_response()
    }
}
