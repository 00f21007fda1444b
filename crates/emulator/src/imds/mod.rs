//! IMDS, one plain-HTTP listener per node (scale set instance or VM), as `169.254.169.254` would be
//! seen from that machine: `/metadata/identity/oauth2/token` for the identities assigned to the node's
//! VM or scale set, and `/metadata/instance` with the compute and network documents.
//!
//! Paths match case-insensitively, as Azure's IMDS does (`/Metadata/Instance/Compute/VMID` is
//! `/metadata/instance/compute/vmId`): the path is lower-cased before routing and document sections
//! are looked up ignoring case. Faults and the request log see the path as it was sent.

mod instance;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::faults::{Surface, SurfaceCtx};
use crate::state::SharedState;

/// State of one node's IMDS.
#[derive(Clone)]
pub struct NodeState {
    pub shared: SharedState,
    pub node: Arc<str>,
}

/// The IMDS router for one node.
pub fn app(shared: SharedState, node: &str) -> Router {
    let node: Arc<str> = Arc::from(node);
    let ctx = SurfaceCtx { shared: shared.clone(), surface: Surface::Imds, node: Some(node.clone()) };
    let routes = Router::new()
        .route("/metadata/identity/oauth2/token", get(token::token))
        .route("/metadata/identity/oauth2/token/", get(token::token))
        .route("/metadata/instance", get(instance::instance))
        .route("/metadata/instance/", get(instance::instance))
        .route("/metadata/instance/{*section}", get(instance::section))
        .fallback(not_found)
        .with_state(NodeState { shared, node });
    Router::new()
        .fallback_service(tower::Layer::layer(&axum::middleware::map_request(lower_case_path), routes))
        .layer(axum::middleware::from_fn_with_state(ctx, crate::faults::layer))
}

/// The request with its path lower-cased (the query is kept as sent).
async fn lower_case_path(mut req: axum::extract::Request) -> axum::extract::Request {
    let uri = req.uri();
    if uri.path().bytes().any(|b| b.is_ascii_uppercase()) {
        let path = uri.path().to_ascii_lowercase();
        let path_and_query = match uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut parts = uri.clone().into_parts();
        if let Ok(pq) = http::uri::PathAndQuery::try_from(path_and_query) {
            parts.path_and_query = Some(pq);
            if let Ok(lowered) = http::Uri::from_parts(parts) {
                *req.uri_mut() = lowered;
            }
        }
    }
    req
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (status, [(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], format!("{body}\n"))
        .into_response()
}

pub(crate) fn has_metadata_header(headers: &HeaderMap) -> bool {
    headers.get("metadata").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

async fn not_found(headers: HeaderMap) -> Response {
    if !has_metadata_header(&headers) {
        return token::metadata_required();
    }
    json_response(StatusCode::NOT_FOUND, &json!({"error": "Not found"}))
}

/// Binds an IMDS listener for every node that has none yet, and records its URL.
pub async fn ensure_listeners(shared: &SharedState) {
    let _guard = shared.listener_lock.lock().await;
    let nodes: Vec<String> = shared.world.read().nodes().into_iter().map(|n| n.name).collect();
    for node in nodes {
        if shared.imds_urls.read().contains_key(&node) {
            continue;
        }
        let listener = match tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await {
            Ok(l) => l,
            Err(error) => {
                tracing::error!(%error, node, "Cannot bind an IMDS listener");
                continue;
            }
        };
        let url = match listener.local_addr() {
            Ok(a) => format!("http://{a}"),
            Err(_) => continue,
        };
        tracing::info!(node, url, "IMDS listening");
        let router = app(shared.clone(), &node);
        let shutdown = shared.shutdown.subscribe();
        tokio::spawn(crate::server::serve(listener, None, router, shutdown));
        shared.imds_urls.write().insert(node, url);
    }
}
