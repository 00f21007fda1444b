//! The IMDS-compatible HTTP surface, built as `app(state) -> Router` so it is tested without a
//! socket. One dispatcher classifies the path ([`route`]) and hands the request to its handler;
//! [`serve`] is the bounded listener in front of it ([`limits`]), and [`caller`] asks the kernel
//! who owns a loopback caller's socket (for `/host/token`).
pub mod caller;
pub mod limits;
pub mod proxy;
pub mod route;
pub mod serve;
mod token;
mod verified;

pub use token::source_for;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::state::AgentState;
use route::Route;
use serve::Connection;

/// How long a request waits for its pod to appear in the index (watch lag after pod start), on
/// the token path and for proxied requests from a node address alike.
pub(crate) const POD_WAIT: Duration = Duration::from_millis(1200);

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
    let conn = req.extensions().get::<Connection>().copied();
    match route::classify(req.uri().path(), state.config.block_instance_metadata) {
        Route::Token => token::pod_token(state, peer, req).await,
        Route::HostToken if !state.config.host_token => plain(StatusCode::NOT_FOUND, "404 page not found"),
        Route::HostToken => match host_caller(peer, conn).await {
            Ok(()) => token::host_token(state, peer, req).await,
            Err(message) => plain(StatusCode::FORBIDDEN, &message),
        },
        Route::InvalidTokenPath => plain(StatusCode::BAD_REQUEST, "Invalid request"),
        Route::BlockedInstance => plain(StatusCode::FORBIDDEN, "Request blocked by AAD Pod Identity NMI"),
        Route::NotForwarded => plain(
            StatusCode::NOT_FOUND,
            "not forwarded to IMDS: podid-nmi forwards only /metadata/instance[/...], /metadata/attested/document, \
             /metadata/scheduledevents, /metadata/loadbalancer and /metadata/versions",
        ),
        Route::Proxy(endpoint) => {
            if !endpoint.allows(req.method()) {
                let mut resp =
                    plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this metadata endpoint");
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(endpoint.allowed()));
                return resp;
            }
            if state.config.metadata_header_required && !has_metadata_header(&req) {
                return metadata_header_missing();
            }
            if conn.is_some_and(|c| c.intercepted)
                && !is_pod_of_this_node(&state, peer.ip()).await
                && !verified::on_node_network(&state, conn).await
            {
                return plain(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "{} is not a pod on node {}: only this node's pods are served on its address",
                        peer.ip().to_canonical(),
                        state.config.node
                    ),
                );
            }
            state.proxy.forward(req).await
        }
    }
}

/// `/host/token` is for root processes of this node: a caller from 127.0.0.1 must own its socket
/// as uid 0, as the kernel's TCP table says. Other addresses are refused by the handler itself
/// with upstream's message.
async fn host_caller(peer: SocketAddr, conn: Option<Connection>) -> Result<(), String> {
    if peer.ip().to_canonical() != IpAddr::from([127, 0, 0, 1]) {
        return Ok(());
    }
    let Some(conn) = conn else {
        return Err("cannot tell which process is calling (no socket): /host/token is only for root processes on this node".into());
    };
    let looked_up = tokio::task::spawn_blocking(move || {
        caller::socket_owner(Path::new("/proc/self/net"), conn.peer, conn.local)
    })
    .await
    .map_err(|e| format!("cannot look up the calling socket: {e}"))?;
    match looked_up {
        Ok(Some(0)) => Ok(()),
        Ok(Some(uid)) => Err(format!(
            "/host/token is only for root processes on this node; the calling socket belongs to uid {uid}"
        )),
        Ok(None) => Err("cannot find the calling socket in the kernel's TCP table: /host/token is only for root processes on this node".into()),
        Err(e) => Err(format!("cannot read the kernel's TCP table to check the caller: {e}")),
    }
}

/// Whether `ip` belongs to a pod of this node, waiting briefly for a just-started pod.
async fn is_pod_of_this_node(state: &AgentState, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    state.shared.wait_for(POD_WAIT, |idx| idx.pods_with_ip(ip).next().map(|_| ())).await.is_some()
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
