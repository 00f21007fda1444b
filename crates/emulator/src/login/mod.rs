//! Entra ID (the `login` surface): OIDC discovery (v1 and v2), JWKS, and the v1 and v2 token endpoints
//! for the client-credentials grant with a secret, a certificate assertion or a federated assertion.
//!
//! URLs in discovery documents use the host the client connected to (its `Host` header), because the
//! SDKs post to exactly the advertised `token_endpoint` and put it in their assertions' `aud`.

mod assertion;
mod error;
mod token;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use error::AadError;

use crate::faults::{Surface, SurfaceCtx};
use crate::state::SharedState;

/// The Entra ID router.
pub fn app(shared: SharedState) -> Router {
    let ctx = SurfaceCtx { shared: shared.clone(), surface: Surface::Login, node: None };
    Router::new()
        .route("/{tenant}/v2.0/.well-known/openid-configuration", get(discovery_v2))
        .route("/{tenant}/.well-known/openid-configuration", get(discovery_v1))
        .route("/{tenant}/discovery/v2.0/keys", get(jwks))
        .route("/{tenant}/discovery/keys", get(jwks))
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_v2))
        .route("/{tenant}/oauth2/token", post(token::token_v1))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(ctx, crate::faults::layer))
        .with_state(shared)
}

/// `https://{Host}` when the Host header is a plain host[:port], else the configured login URL.
pub(crate) fn base_url(shared: &SharedState, headers: &HeaderMap) -> String {
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let plain = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
    if plain { format!("https://{host}") } else { shared.urls.read().login.clone() }
}

/// Resolves the tenant path segment: our tenant id (any case) or an error.
pub(crate) fn check_tenant(shared: &SharedState, tenant: &str) -> Result<String, AadError> {
    let ours = shared.tenant_id();
    if tenant.eq_ignore_ascii_case(&ours) { Ok(ours) } else { Err(AadError::tenant_not_found(tenant)) }
}

fn json_ok(body: serde_json::Value) -> Response {
    ([(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

async fn discovery_v2(
    State(shared): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&shared, &headers);
    let tenant = match check_tenant(&shared, &tenant) {
        Ok(t) => t,
        Err(e) => return e.into_response_for(&base),
    };
    let t = format!("{base}/{tenant}");
    json_ok(json!({
        "token_endpoint": format!("{t}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{t}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{t}/v2.0"),
        "request_uri_parameter_supported": false,
        "authorization_endpoint": format!("{t}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{t}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{t}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "acr", "nonce", "tid", "ver", "oid"],
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }))
}

async fn discovery_v1(
    State(shared): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    let base = base_url(&shared, &headers);
    let tenant = match check_tenant(&shared, &tenant) {
        Ok(t) => t,
        Err(e) => return e.into_response_for(&base),
    };
    let t = format!("{base}/{tenant}");
    json_ok(json!({
        "token_endpoint": format!("{t}/oauth2/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/{tenant}/discovery/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token", "token"],
        "scopes_supported": ["openid"],
        "issuer": format!("{t}/"),
        "authorization_endpoint": format!("{t}/oauth2/authorize"),
        "device_authorization_endpoint": format!("{t}/oauth2/devicecode"),
        "end_session_endpoint": format!("{t}/oauth2/logout"),
        "tenant_region_scope": "NA",
        "cloud_instance_name": "microsoftonline.com",
    }))
}

async fn jwks(State(shared): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Response {
    if let Err(e) = check_tenant(&shared, &tenant) {
        return e.into_response_for(&base_url(&shared, &headers));
    }
    json_ok(shared.signing.jwks())
}

async fn not_found() -> Response {
    (
        http::StatusCode::NOT_FOUND,
        [(http::header::CONTENT_TYPE, "text/html")],
        "<html><body>Not Found</body></html>",
    )
        .into_response()
}
