//! `GET /metadata/identity/oauth2/token`: the managed identity token endpoint.
//!
//! Checks in IMDS's order: `Metadata: true`, `api-version`, `resource`, then the identity: by
//! `client_id`, `object_id` or `msi_res_id`/`mi_res_id`, else the system-assigned identity, else the only
//! user-assigned one. Only identities assigned to this node's VM or scale set, and already visible
//! (past the propagation delay), are served. The answer is all strings, as real IMDS sends it.

use std::time::Instant;

use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, StatusCode, Uri};
use serde_json::json;

use super::{NodeState, has_metadata_header, json_response};
use crate::faults::LoggedPrincipal;
use crate::model::{TokenSubject, World};
use crate::tokens::{self, ClientAuth, TokenVersion};

/// The smallest api-version the identity endpoint accepts.
const MIN_API_VERSION: &str = "2018-02-01";

fn invalid_request(description: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({"error": "invalid_request", "error_description": description}),
    )
}

pub(crate) fn metadata_required() -> Response {
    invalid_request("Required metadata header not specified")
}

fn valid_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && v >= MIN_API_VERSION
}

/// Which identity the request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Default,
    ClientId(String),
    ObjectId(String),
    ResourceId(String),
}

/// Resolves a selector against the node's identity block. `Err` carries IMDS's error description.
pub fn select(
    world: &World,
    node: &str,
    selector: &Selector,
    now: Instant,
) -> Result<TokenSubject, &'static str> {
    const NOT_FOUND: &str = "Identity not found";
    let node = world.node(node).ok_or(NOT_FOUND)?;
    let block = world.node_identity(&node).ok_or(NOT_FOUND)?;
    let visible: Vec<_> = block.user.values().filter(|u| u.visible_at <= now).collect();
    let system = block.system.as_ref().map(|s| TokenSubject {
        object_id: s.principal_id.clone(),
        app_id: s.client_id.clone(),
        mi_res_id: Some(match &node.kind {
            crate::model::NodeKind::ScaleSetInstance { scale_set_key, .. } => world
                .scale_sets
                .get(scale_set_key)
                .map(|s| {
                    crate::model::compute_id(
                        &world.subscription_id,
                        &s.resource_group,
                        "virtualMachineScaleSets",
                        &s.name,
                    )
                })
                .unwrap_or_default(),
            crate::model::NodeKind::Vm { vm_key } => world
                .vms
                .get(vm_key)
                .map(|v| {
                    crate::model::compute_id(
                        &world.subscription_id,
                        &v.resource_group,
                        "virtualMachines",
                        &v.name,
                    )
                })
                .unwrap_or_default(),
        }),
    });
    let user = |u: &crate::model::identity_block::UserIdentityRef| TokenSubject {
        object_id: u.principal_id.clone(),
        app_id: u.client_id.clone(),
        mi_res_id: Some(u.id.clone()),
    };
    let eq = |a: &str, b: &str| a.eq_ignore_ascii_case(b);
    match selector {
        Selector::Default => match (system, visible.as_slice()) {
            (Some(s), _) => Ok(s),
            (None, [one]) => Ok(user(one)),
            (None, []) => Err(NOT_FOUND),
            (None, _) => Err(
                "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token request",
            ),
        },
        Selector::ClientId(c) => system
            .filter(|s| eq(&s.app_id, c))
            .or_else(|| visible.iter().find(|u| eq(&u.client_id, c)).map(|u| user(u)))
            .ok_or(NOT_FOUND),
        Selector::ObjectId(o) => system
            .filter(|s| eq(&s.object_id, o))
            .or_else(|| visible.iter().find(|u| eq(&u.principal_id, o)).map(|u| user(u)))
            .ok_or(NOT_FOUND),
        Selector::ResourceId(r) => visible.iter().find(|u| eq(&u.id, r)).map(|u| user(u)).ok_or(NOT_FOUND),
    }
}

pub async fn token(State(state): State<NodeState>, headers: HeaderMap, uri: Uri) -> Response {
    if !has_metadata_header(&headers) {
        return metadata_required();
    }
    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |k: &str| {
        query.iter().find(|(key, v)| key.eq_ignore_ascii_case(k) && !v.is_empty()).map(|(_, v)| v.clone())
    };
    match get("api-version") {
        None => return invalid_request("Required query variable 'api-version' is missing"),
        Some(v) if !valid_api_version(&v) => return invalid_request("Invalid API version"),
        Some(_) => {}
    }
    let Some(resource) = get("resource") else {
        return invalid_request("Required audience parameter not specified");
    };
    let ids: Vec<Selector> = [
        get("client_id").map(Selector::ClientId),
        get("object_id").map(Selector::ObjectId),
        get("msi_res_id").or_else(|| get("mi_res_id")).map(Selector::ResourceId),
    ]
    .into_iter()
    .flatten()
    .collect();
    let selector = match ids.as_slice() {
        [] => Selector::Default,
        [one] => one.clone(),
        _ => {
            return invalid_request(
                "Multiple identity parameters specified, please specify only one of client_id, object_id or msi_res_id",
            );
        }
    };
    let (subject, tenant, login) = {
        let world = state.shared.world.read();
        match select(&world, &state.node, &selector, Instant::now()) {
            Ok(s) => (s, world.tenant_id.clone(), state.shared.urls.read().login.clone()),
            Err(description) => {
                tracing::info!(node = %state.node, ?selector, description, "IMDS token refused");
                return invalid_request(description);
            }
        }
    };
    let minted = match cached_or_mint(&state, &subject, &tenant, &login, &resource) {
        Ok(m) => m,
        Err(e) => {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "unknown_error", "error_description": e.to_string()}),
            );
        }
    };
    let remaining = minted.expires_on.saturating_sub(crate::clock::now_unix());
    let body = json!({
        "access_token": minted.access_token,
        "client_id": subject.app_id,
        "expires_in": remaining.to_string(),
        "expires_on": minted.expires_on.to_string(),
        "ext_expires_in": remaining.to_string(),
        "not_before": minted.issued_at.saturating_sub(300).to_string(),
        "resource": resource,
        "token_type": "Bearer",
    });
    let mut resp = json_response(StatusCode::OK, &body);
    resp.extensions_mut().insert(LoggedPrincipal(subject.object_id));
    resp
}

/// Reuses a cached token with more than 5 minutes left (and the current lifetime), or mints one.
fn cached_or_mint(
    state: &NodeState,
    subject: &TokenSubject,
    tenant: &str,
    login: &str,
    resource: &str,
) -> Result<tokens::Minted, crate::crypto::CryptoError> {
    let (lifetime, cache) = {
        let s = state.shared.settings.read();
        (s.imds_token_lifetime_secs, s.imds_token_cache)
    };
    let key = (subject.object_id.clone(), resource.to_string());
    let now = crate::clock::now_unix();
    if cache
        && let Some(m) = state.shared.imds_cache.lock().get(&key)
        && m.lifetime == lifetime
        && m.expires_on > now + 300
    {
        return Ok(m.clone());
    }
    let minted = tokens::mint(
        &state.shared.signing,
        login,
        tenant,
        subject,
        resource,
        TokenVersion::V1,
        ClientAuth::ManagedIdentity,
        lifetime,
    )?;
    if cache {
        state.shared.imds_cache.lock().insert(key, minted.clone());
    }
    Ok(minted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions() {
        assert!(valid_api_version("2018-02-01"));
        assert!(valid_api_version("2019-08-01"));
        assert!(!valid_api_version("2017-09-01"));
        assert!(!valid_api_version("latest"));
        assert!(!valid_api_version("2019-08-1"));
    }
}
