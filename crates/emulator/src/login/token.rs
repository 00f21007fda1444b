//! The token endpoints. v1 (`/oauth2/token`) takes `resource` and answers with string-typed numbers;
//! v2 (`/oauth2/v2.0/token`) takes one `scope` ending in `/.default` and answers with integers.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::assertion::{self, Verified};
use super::{AadError, base_url, check_tenant};
use crate::faults::LoggedPrincipal;
use crate::state::SharedState;
use crate::tokens::{self, ClientAuth, TokenVersion};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub async fn token_v1(
    State(s): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(s, tenant, headers, body, TokenVersion::V1).await
}

pub async fn token_v2(
    State(s): State<SharedState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    token(s, tenant, headers, body, TokenVersion::V2).await
}

/// The form fields the endpoint reads.
#[derive(Debug, Default)]
struct Form {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    client_assertion: Option<String>,
    client_assertion_type: Option<String>,
    scope: Option<String>,
    resource: Option<String>,
}

impl Form {
    fn parse(body: &[u8]) -> Self {
        let mut f = Self::default();
        for (k, v) in url::form_urlencoded::parse(body) {
            let slot = match k.as_ref() {
                "grant_type" => &mut f.grant_type,
                "client_id" => &mut f.client_id,
                "client_secret" => &mut f.client_secret,
                "client_assertion" => &mut f.client_assertion,
                "client_assertion_type" => &mut f.client_assertion_type,
                "scope" => &mut f.scope,
                "resource" => &mut f.resource,
                _ => continue,
            };
            *slot = Some(v.into_owned()).filter(|s| !s.is_empty());
        }
        f
    }
}

async fn token(
    shared: SharedState,
    tenant: String,
    headers: HeaderMap,
    body: Bytes,
    version: TokenVersion,
) -> Response {
    let base = base_url(&shared, &headers);
    match issue(&shared, &tenant, &base, &body, version).await {
        Ok((client_id, resp)) => {
            let mut r = resp;
            r.extensions_mut().insert(LoggedPrincipal(client_id));
            r
        }
        Err(e) => {
            tracing::info!(tenant, code = e.code, error = e.error, "Token request refused");
            e.into_response_for(&base)
        }
    }
}

/// The audience a v2 scope asks for: exactly one scope ending in `/.default`.
fn audience_from_scope(scope: &str) -> Result<String, AadError> {
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let [one] = scopes.as_slice() else {
        return Err(AadError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_scope",
            70011,
            format!(
                "The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."
            ),
        ));
    };
    match one.strip_suffix("/.default") {
        Some(resource) if !resource.is_empty() => Ok(resource.to_string()),
        _ => Err(AadError::new(
            http::StatusCode::BAD_REQUEST,
            "invalid_scope",
            1_002_012,
            format!(
                "The provided value for scope {one} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        )),
    }
}

async fn issue(
    shared: &SharedState,
    tenant: &str,
    base: &str,
    body: &[u8],
    version: TokenVersion,
) -> Result<(String, Response), AadError> {
    let tenant = check_tenant(shared, tenant)?;
    let form = Form::parse(body);
    let grant = form.grant_type.as_deref().ok_or_else(|| AadError::missing_parameter("grant_type"))?;
    if grant != "client_credentials" {
        return Err(AadError::new(
            http::StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            format!("The app requested an unsupported grant type '{grant}'."),
        ));
    }
    let client_id = form.client_id.clone().ok_or_else(|| AadError::missing_parameter("client_id"))?;
    let audience = match version {
        TokenVersion::V2 => {
            audience_from_scope(form.scope.as_deref().ok_or_else(|| AadError::missing_parameter("scope"))?)?
        }
        TokenVersion::V1 => form.resource.clone().ok_or_else(|| AadError::missing_parameter("resource"))?,
    };
    let verified = if let Some(secret) = &form.client_secret {
        let world = shared.world.read();
        let app =
            world.app_by_client_id(&client_id).ok_or_else(|| AadError::app_not_found(&client_id, &tenant))?;
        if !app.secrets.iter().any(|s| s == secret) {
            return Err(AadError::invalid_secret(&client_id));
        }
        Verified::app(app, ClientAuth::Secret)
    } else if let Some(jwt) = &form.client_assertion {
        if form.client_assertion_type.as_deref() != Some(JWT_BEARER) {
            return Err(AadError::invalid_request(
                50027,
                format!("Invalid client_assertion_type. Expected '{JWT_BEARER}'."),
            ));
        }
        let endpoints =
            [format!("{base}/{tenant}/oauth2/v2.0/token"), format!("{base}/{tenant}/oauth2/token")];
        assertion::verify(shared, &tenant, &client_id, jwt, &endpoints).await?
    } else {
        return Err(AadError::invalid_client(
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        ));
    };
    let lifetime = shared.settings.read().token_lifetime_secs;
    let minted = tokens::mint(
        &shared.signing,
        base,
        &tenant,
        &verified.subject,
        &audience,
        version,
        verified.auth,
        lifetime,
    )
    .map_err(|e| {
        AadError::new(http::StatusCode::INTERNAL_SERVER_ERROR, "server_error", 50000, e.to_string())
    })?;
    tracing::info!(client_id, audience, ?version, "Issued token");
    let body = match version {
        TokenVersion::V2 => json!({
            "token_type": "Bearer",
            "expires_in": minted.lifetime,
            "ext_expires_in": minted.lifetime,
            "access_token": minted.access_token,
        }),
        TokenVersion::V1 => json!({
            "token_type": "Bearer",
            "expires_in": minted.lifetime.to_string(),
            "ext_expires_in": minted.lifetime.to_string(),
            "expires_on": minted.expires_on.to_string(),
            "not_before": minted.issued_at.saturating_sub(300).to_string(),
            "resource": audience,
            "access_token": minted.access_token,
        }),
    };
    let resp =
        ([(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response();
    Ok((client_id, resp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes() {
        assert_eq!(
            audience_from_scope("https://management.azure.com/.default").unwrap(),
            "https://management.azure.com"
        );
        assert_eq!(audience_from_scope("api://x/.default").unwrap(), "api://x");
        assert_eq!(audience_from_scope("https://x/user.read").unwrap_err().code, 1_002_012);
        assert_eq!(audience_from_scope("a/.default b/.default").unwrap_err().code, 70011);
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let f =
            Form::parse(b"grant_type=client_credentials&scope=https%3A%2F%2Fx%2F.default&client_secret=a+b");
        assert_eq!(f.scope.as_deref(), Some("https://x/.default"));
        assert_eq!(f.client_secret.as_deref(), Some("a b"));
    }
}
