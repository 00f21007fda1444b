//! The IMDS-compatible HTTP surface, built as `app(state) -> Router` so it is tested without a
//! socket. One dispatcher classifies the path ([`route`]) and hands the request to its handler.
pub mod proxy;
pub mod route;
mod token;

pub use token::source_for;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::state::AgentState;
use route::Route;

/// The agent's router. Needs `ConnectInfo<SocketAddr>` (serve with
/// `into_make_service_with_connect_info`, or add `MockConnectInfo` in tests).
pub fn app(state: AgentState) -> Router {
    Router::new().fallback(dispatch).with_state(state)
}

async fn dispatch(
    State(state): State<AgentState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    match route::classify(req.uri().path(), state.config.block_instance_metadata) {
        Route::Token => token::pod_token(state, peer, req).await,
        Route::HostToken if state.config.host_token => token::host_token(state, peer, req).await,
        Route::HostToken => plain(StatusCode::NOT_FOUND, "404 page not found"),
        Route::InvalidTokenPath => plain(StatusCode::BAD_REQUEST, "Invalid request"),
        Route::BlockedInstance => plain(StatusCode::FORBIDDEN, "Request blocked by AAD Pod Identity NMI"),
        Route::Proxy => {
            if state.config.metadata_header_required && !has_metadata_header(&req) {
                return metadata_header_missing();
            }
            state.proxy.forward(req).await
        }
    }
}

/// `Metadata: true`, exactly (as upstream compares it).
pub(crate) fn has_metadata_header(req: &Request) -> bool {
    req.headers().get("metadata").is_some_and(|v| v.as_bytes() == b"true")
}

/// Go's `http.Error`: plain text, `nosniff`, message plus newline.
pub(crate) fn plain(status: StatusCode, message: &str) -> Response {
    let mut resp = (status, format!("{message}\n")).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    resp
}

/// The 400 IMDS itself sends when `Metadata: true` is missing.
pub(crate) fn metadata_header_missing() -> Response {
    let body =
        "{\"error\":\"invalid_request\",\"error_description\":\"Required metadata header not specified\"}\n";
    let mut resp = (StatusCode::BAD_REQUEST, Body::from(body)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// An error in IMDS's JSON shape (`{"error":"invalid_request","error_description":...}`).
pub(crate) fn imds_error(status: StatusCode, description: &str) -> Response {
    let body =
        serde_json::json!({ "error": "invalid_request", "error_description": description }).to_string();
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
    resp
}

/// A JSON success body with an explicit length.
pub(crate) fn json(value: &serde_json::Value) -> Response {
    let body = value.to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
