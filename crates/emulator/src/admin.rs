//! The admin API (plain HTTP): health, endpoint info, request log, fault rules, settings, runtime
//! additions (nodes, applications, federated credentials, trusted CAs) and a token minting helper.
//!
//! | method and path | body | answer |
//! |---|---|---|
//! | `GET /healthz` | | `ok` |
//! | `GET /admin/info` | | the ready-file JSON ([`crate::ReadyInfo`]) |
//! | `GET /admin/requests?surface=&method=&path=` | | logged requests (`path` is a substring filter) |
//! | `DELETE /admin/requests` | | 204 |
//! | `GET`/`POST`/`DELETE /admin/faults`, `DELETE /admin/faults/{id}` | [`crate::FaultSpec`] | rules / `{"id"}` |
//! | `GET`/`PUT /admin/settings` | [`crate::SettingsUpdate`] | [`crate::Settings`] |
//! | `POST /admin/nodes` | [`NodeRequest`] | `{"nodes": {name: imds_url}}` |
//! | `POST /admin/applications` | [`crate::config::AppConfig`] | [`crate::AppInfo`] |
//! | `POST /admin/applications/{name}/federated-credentials` | [`crate::config::FederatedCredentialConfig`] | 204 |
//! | `POST /admin/trusted-cas` | PEM text | 204 |
//! | `POST /admin/tokens` | [`TokenRequest`] | `{"access_token", "expires_on"}` |

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{AppConfig, FederatedCredentialConfig};
use crate::emulator::{self, EmulatorError};
use crate::faults::{FaultSpec, Surface, SurfaceCtx};
use crate::state::{SettingsUpdate, SharedState};
use crate::tokens::TokenVersion;

/// Adds nodes: instances to a scale set (created if missing), or a standalone VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    pub resource_group: String,
    #[serde(default)]
    pub scale_set: Option<String>,
    /// Instances to add to the scale set (default 1).
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default)]
    pub vm: Option<String>,
}

/// Mints a token without a credential: for an application, identity (by name or client id) or object id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub principal: String,
    #[serde(default = "default_audience")]
    pub audience: String,
    #[serde(default)]
    pub v2: bool,
}

fn default_audience() -> String {
    "https://management.azure.com/".into()
}

#[derive(Debug, Deserialize)]
struct LogFilter {
    surface: Option<Surface>,
    method: Option<String>,
    path: Option<String>,
}

/// The admin router.
pub fn app(shared: SharedState) -> Router {
    let ctx = SurfaceCtx { shared: shared.clone(), surface: Surface::Admin, node: None };
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/admin/info", get(info))
        .route("/admin/requests", get(requests).delete(clear_requests))
        .route("/admin/faults", get(list_faults).post(add_fault).delete(clear_faults))
        .route("/admin/faults/{id}", delete(remove_fault))
        .route("/admin/settings", get(get_settings).put(put_settings))
        .route("/admin/nodes", post(add_nodes))
        .route("/admin/applications", post(add_application))
        .route("/admin/applications/{name}/federated-credentials", post(add_app_fic))
        .route("/admin/trusted-cas", post(add_trusted_ca))
        .route("/admin/tokens", post(mint))
        .layer(axum::middleware::from_fn_with_state(ctx, crate::faults::layer))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": message.to_string()}))).into_response()
}

impl IntoResponse for EmulatorError {
    fn into_response(self) -> Response {
        error(StatusCode::BAD_REQUEST, self)
    }
}

async fn info(State(s): State<SharedState>) -> Response {
    Json(emulator::ready_info(&s)).into_response()
}

async fn requests(State(s): State<SharedState>, Query(f): Query<LogFilter>) -> Response {
    let all = s.faults.requests();
    let out: Vec<_> = all
        .into_iter()
        .filter(|r| f.surface.is_none_or(|x| x == r.surface))
        .filter(|r| f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(&r.method)))
        .filter(|r| {
            f.path.as_deref().is_none_or(|p| r.path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()))
        })
        .collect();
    Json(out).into_response()
}

async fn clear_requests(State(s): State<SharedState>) -> StatusCode {
    s.faults.clear_requests();
    StatusCode::NO_CONTENT
}

async fn list_faults(State(s): State<SharedState>) -> Response {
    Json(s.faults.list()).into_response()
}

async fn add_fault(State(s): State<SharedState>, body: axum::body::Bytes) -> Response {
    let spec: FaultSpec = match serde_json::from_slice(&body) {
        Ok(spec) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match s.faults.add(spec) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn clear_faults(State(s): State<SharedState>) -> StatusCode {
    s.faults.clear();
    StatusCode::NO_CONTENT
}

async fn remove_fault(State(s): State<SharedState>, Path(id): Path<u64>) -> StatusCode {
    if s.faults.remove(id) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn get_settings(State(s): State<SharedState>) -> Response {
    Json(s.settings.read().clone()).into_response()
}

async fn put_settings(State(s): State<SharedState>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<SettingsUpdate>(&body) {
        Ok(u) => {
            s.settings.write().apply(&u);
            Json(s.settings.read().clone()).into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn add_nodes(State(s): State<SharedState>, body: axum::body::Bytes) -> Response {
    let req: NodeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match emulator::add_nodes(&s, &req).await {
        Ok(nodes) => Json(json!({"nodes": nodes})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add_application(State(s): State<SharedState>, body: axum::body::Bytes) -> Response {
    let app: AppConfig = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match emulator::add_application(&s, &app) {
        Ok(info) => (StatusCode::CREATED, Json(info)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn add_app_fic(
    State(s): State<SharedState>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let fic: FederatedCredentialConfig = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let mut world = s.world.write();
    match world.applications.iter_mut().find(|a| a.name.eq_ignore_ascii_case(&name)) {
        Some(app) => {
            app.federated.retain(|f| !f.name.eq_ignore_ascii_case(&fic.name));
            app.federated.push((&fic).into());
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, format!("no application '{name}'")),
    }
}

async fn add_trusted_ca(State(s): State<SharedState>, body: String) -> Response {
    match emulator::add_trusted_ca_pem(&s, &body) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn mint(State(s): State<SharedState>, body: axum::body::Bytes) -> Response {
    let req: TokenRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let version = if req.v2 { TokenVersion::V2 } else { TokenVersion::V1 };
    match emulator::mint_token(&s, &req.principal, &req.audience, version) {
        Ok(m) => Json(json!({"access_token": m.access_token, "expires_on": m.expires_on})).into_response(),
        Err(e) => e.into_response(),
    }
}
