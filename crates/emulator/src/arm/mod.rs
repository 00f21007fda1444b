//! ARM (the `arm` surface): resource groups, user-assigned identities and their federated credentials,
//! scale sets with their instances, VMs, long-running operations, role assignments and definitions.
//!
//! Every request needs an `api-version` (any value) and a bearer token this emulator issued for an ARM
//! audience; the token's `oid` is the caller whose role assignments are checked. Paths are parsed by
//! [`path::parse`] and dispatched by hand, since ARM matches them case-insensitively.

mod compute;
mod error;
mod groups;
mod identities;
pub mod members;
pub mod path;
mod roles;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

pub use error::ArmError;
use path::Route;

use crate::faults::{LoggedPrincipal, Surface, SurfaceCtx};
use crate::model::rbac;
use crate::state::SharedState;
use crate::tokens::{self, BearerError};

/// The ARM router.
pub fn app(shared: SharedState) -> Router {
    let ctx = SurfaceCtx { shared: shared.clone(), surface: Surface::Arm, node: None };
    Router::new()
        .fallback(dispatch)
        .layer(axum::middleware::from_fn_with_state(ctx, crate::faults::layer))
        .with_state(shared)
}

/// One authenticated ARM request.
pub struct Ctx {
    pub shared: SharedState,
    pub principal: String,
    /// `https://{Host}` as the client sees it.
    pub base: String,
    pub api_version: String,
    pub query: Vec<(String, String)>,
    pub method: Method,
    pub path: String,
    pub body: Bytes,
}

impl Ctx {
    pub fn subscription(&self) -> String {
        self.shared.world.read().subscription_id.clone()
    }

    pub fn can(&self, action: &str, scope: &str) -> bool {
        rbac::is_allowed(&self.shared.world.read().role_assignments, &self.principal, action, scope)
    }

    pub fn require(&self, action: &str, scope: &str) -> Result<(), ArmError> {
        if self.can(action, scope) {
            Ok(())
        } else {
            tracing::info!(principal = self.principal, action, scope, "ARM authorization failed");
            Err(ArmError::authorization_failed(&self.principal, action, scope))
        }
    }

    pub fn query(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }

    /// The request body as a JSON object (empty object for an empty body).
    pub fn json_body(&self) -> Result<serde_json::Map<String, Value>, ArmError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(other) => Err(ArmError::invalid_content(format!("expected an object, got {other}"))),
            Err(e) => Err(ArmError::invalid_content(e)),
        }
    }

    /// The request body as an object of `shape`'s model: unknown members refused as ARM refuses
    /// them, the others spelled as the model spells them (see [`members`]).
    pub fn body_as(&self, shape: &members::Shape) -> Result<serde_json::Map<String, Value>, ArmError> {
        members::conform(self.json_body()?, shape, &self.body)
    }

    /// A page of `items` with an absolute `nextLink` carrying `api-version` when more remain.
    pub fn page(&self, items: Vec<Value>) -> Response {
        let size = self.shared.settings.read().arm_page_size;
        let skip: usize = self.query("$skiptoken").and_then(|s| s.parse().ok()).unwrap_or(0);
        let end = (skip + size).min(items.len());
        let page: Vec<Value> = items.get(skip..end).map(<[Value]>::to_vec).unwrap_or_default();
        let mut body = json!({"value": page});
        if end < items.len() {
            let mut next = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &self.query {
                if !k.eq_ignore_ascii_case("$skiptoken") && !k.eq_ignore_ascii_case("api-version") {
                    next.append_pair(k, v);
                }
            }
            next.append_pair("api-version", &self.api_version);
            next.append_pair("$skiptoken", &end.to_string());
            body["nextLink"] = json!(format!("{}{}?{}", self.base, self.path, next.finish()));
        }
        ok(body)
    }
}

pub fn ok(body: Value) -> Response {
    with_status(http::StatusCode::OK, body)
}

pub fn with_status(status: http::StatusCode, body: Value) -> Response {
    (status, [(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string())
        .into_response()
}

fn authenticate(shared: &SharedState, headers: &HeaderMap) -> Result<String, ArmError> {
    let header = headers.get(http::header::AUTHORIZATION).and_then(|h| h.to_str().ok());
    let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
    let tenant = shared.tenant_id();
    let claims = match token {
        None => Err(BearerError::Missing),
        Some(t) => tokens::verify_arm(&shared.signing, &tenant, t.trim()),
    };
    match claims {
        Ok(c) => c.get("oid").and_then(Value::as_str).map(str::to_string).ok_or_else(|| {
            ArmError::unauthenticated("InvalidAuthenticationToken", "The access token is invalid.")
        }),
        Err(BearerError::Missing) => Err(ArmError::unauthenticated(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )),
        Err(BearerError::Malformed) => Err(ArmError::unauthenticated(
            "InvalidAuthenticationToken",
            "The access token is invalid. The token is malformed.",
        )),
        Err(BearerError::Invalid) => {
            Err(ArmError::unauthenticated("InvalidAuthenticationToken", "The access token is invalid."))
        }
        Err(BearerError::Expired { exp, now }) => Err(ArmError::unauthenticated(
            "ExpiredAuthenticationToken",
            format!(
                "The access token expiry UTC time '{}' is earlier than current UTC time '{}'.",
                crate::clock::entra_timestamp(exp),
                crate::clock::entra_timestamp(now)
            ),
        )),
        Err(BearerError::WrongAudience(aud)) => Err(ArmError::unauthenticated(
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{aud}'. It should exactly match with one of the allowed audiences '{}'.",
                tokens::ARM_AUDIENCES.join("','")
            ),
        )),
        Err(BearerError::WrongTenant(tid)) => Err(ArmError::unauthenticated(
            "InvalidAuthenticationTokenTenant",
            format!(
                "The access token is from the wrong issuer '{tid}'. It must match the tenant '{tenant}' associated with this subscription."
            ),
        )),
    }
}

async fn dispatch(
    State(shared): State<SharedState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let Some(api_version) =
        query.iter().find(|(k, _)| k.eq_ignore_ascii_case("api-version")).map(|(_, v)| v.clone())
    else {
        return ArmError::missing_api_version().into_response();
    };
    let principal = match authenticate(&shared, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let host = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
    let base = if !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)) {
        format!("https://{host}")
    } else {
        shared.urls.read().arm.clone()
    };
    let ctx = Ctx {
        shared: shared.clone(),
        principal: principal.clone(),
        base,
        api_version,
        query,
        method,
        path: uri.path().to_string(),
        body,
    };
    let mut resp = match route(&ctx).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(code = e.code, status = e.status.as_u16(), path = ctx.path, "ARM error");
            e.into_response()
        }
    };
    resp.extensions_mut().insert(LoggedPrincipal(principal));
    if let Ok(v) = http::HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
        resp.headers_mut().insert("x-ms-request-id", v);
    }
    if let Some(id) = headers.get("x-ms-client-request-id") {
        resp.headers_mut().insert("x-ms-client-request-id", id.clone());
    }
    resp
}

async fn route(ctx: &Ctx) -> Result<Response, ArmError> {
    let Some((sub, route)) = path::parse(&ctx.path) else {
        return Err(ArmError::new(
            http::StatusCode::NOT_FOUND,
            "InvalidResourceType",
            format!("The resource path '{}' is not a valid Azure Resource Manager path.", ctx.path),
        ));
    };
    if !sub.eq_ignore_ascii_case(&ctx.subscription()) {
        return Err(ArmError::subscription_not_found(&sub));
    }
    match route {
        Route::Subscription => groups::subscription(ctx),
        Route::Groups => groups::list(ctx),
        Route::Group { rg } => groups::group(ctx, &rg),
        Route::Identities { rg } => identities::list(ctx, rg.as_deref()),
        Route::Identity { rg, name } => identities::identity(ctx, &rg, &name),
        Route::Fics { rg, name } => identities::fics(ctx, &rg, &name),
        Route::Fic { rg, name, fic } => identities::fic(ctx, &rg, &name, &fic),
        Route::ScaleSets { rg } => compute::list_scale_sets(ctx, rg.as_deref()),
        Route::ScaleSet { rg, name } => compute::scale_set(ctx, &rg, &name).await,
        Route::ScaleSetVms { rg, name } => compute::scale_set_vms(ctx, &rg, &name, None),
        Route::ScaleSetVm { rg, name, instance } => compute::scale_set_vms(ctx, &rg, &name, Some(&instance)),
        Route::Vms { rg } => compute::list_vms(ctx, rg.as_deref()),
        Route::Vm { rg, name } => compute::vm(ctx, &rg, &name).await,
        Route::Operation { location, id } => compute::operation(ctx, &location, &id),
        Route::RoleAssignments { scope } => roles::assignments(ctx, &scope),
        Route::RoleAssignment { scope, name } => roles::assignment(ctx, &scope, &name),
        Route::RoleDefinitions { scope } => roles::definitions(ctx, &scope, None),
        Route::RoleDefinition { scope, id } => roles::definitions(ctx, &scope, Some(&id)),
        Route::UnknownType { namespace, kind } => Err(ArmError::bad_request(
            "InvalidResourceType",
            format!(
                "The resource type '{kind}' could not be found in the namespace '{namespace}' for api version '{}'.",
                ctx.api_version
            ),
        )),
    }
}
