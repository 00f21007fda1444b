//! Client assertions: a certificate assertion (`iss == sub == client_id`, signed RS256/PS256 with a
//! certificate registered on the app, found by `x5t` or `x5t#S256`) or a federated assertion (a token
//! from an external issuer that matches one of the app's or identity's federated identity credentials,
//! verified against the issuer's OIDC discovery document and JWKS).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::AadError;
use crate::clock;
use crate::model::{Application, FederatedCredential, TokenSubject};
use crate::state::SharedState;
use crate::tokens::ClientAuth;

/// Allowed clock skew for assertion times, seconds.
const SKEW: f64 = 300.0;

/// A verified client.
#[derive(Debug, Clone)]
pub struct Verified {
    pub subject: TokenSubject,
    pub auth: ClientAuth,
}

impl Verified {
    pub fn app(app: &Application, auth: ClientAuth) -> Self {
        Self {
            subject: TokenSubject {
                object_id: app.object_id.clone(),
                app_id: app.client_id.clone(),
                mi_res_id: None,
            },
            auth,
        }
    }
}

fn decode_part(part: &str) -> Result<Value, AadError> {
    let bytes =
        URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| AadError::malformed_assertion())?;
    serde_json::from_slice(&bytes).map_err(|_| AadError::malformed_assertion())
}

fn str_claim<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_default()
}

fn audiences(claims: &Value) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => vec![],
    }
}

/// Checks `exp` (required) and `nbf` (optional); numbers may be fractional.
fn check_times(claims: &Value) -> Result<(), AadError> {
    let now = clock::now_unix() as f64;
    let exp = claims.get("exp").and_then(Value::as_f64);
    let nbf = claims.get("nbf").and_then(Value::as_f64).or_else(|| claims.get("iat").and_then(Value::as_f64));
    let fmt = |t: Option<f64>| {
        t.map_or_else(|| "(none)".to_string(), |t| clock::entra_timestamp(t.max(0.0) as u64))
    };
    let expired = exp.is_none_or(|e| e + SKEW <= now);
    let early = claims.get("nbf").and_then(Value::as_f64).is_some_and(|n| n - SKEW > now);
    if expired || early {
        return Err(AadError::invalid_client(
            700_024,
            format!(
                "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
                clock::entra_timestamp(now as u64),
                fmt(nbf),
                fmt(exp)
            ),
        ));
    }
    Ok(())
}

fn verify_signature(
    jwt: &str,
    key: &jsonwebtoken::DecodingKey,
    alg: jsonwebtoken::Algorithm,
) -> Result<(), AadError> {
    let mut v = jsonwebtoken::Validation::new(alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    jsonwebtoken::decode::<Value>(jwt, key, &v).map(|_| ()).map_err(|_| AadError::bad_signature())
}

/// Verifies a client assertion for `client_id`. `endpoints` are the token endpoint URLs the client may
/// have been told (the assertion's `aud` must be one of them).
pub async fn verify(
    shared: &SharedState,
    tenant: &str,
    client_id: &str,
    jwt: &str,
    endpoints: &[String],
) -> Result<Verified, AadError> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [h, c, _] = parts.as_slice() else {
        return Err(AadError::malformed_assertion());
    };
    let header = decode_part(h)?;
    let claims = decode_part(c)?;
    let iss = str_claim(&claims, "iss");
    let sub = str_claim(&claims, "sub");
    if iss.eq_ignore_ascii_case(client_id) && sub.eq_ignore_ascii_case(client_id) {
        certificate(shared, tenant, client_id, jwt, &header, &claims, endpoints)
    } else if iss.eq_ignore_ascii_case(client_id) || sub.eq_ignore_ascii_case(client_id) {
        Err(AadError::invalid_client(
            700_021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/azure/active-directory/develop/active-directory-certificate-credentials .",
        ))
    } else {
        federated(shared, tenant, client_id, jwt, &header, &claims).await
    }
}

fn certificate(
    shared: &SharedState,
    tenant: &str,
    client_id: &str,
    jwt: &str,
    header: &Value,
    claims: &Value,
    endpoints: &[String],
) -> Result<Verified, AadError> {
    let world = shared.world.read();
    let app = world.app_by_client_id(client_id).ok_or_else(|| AadError::app_not_found(client_id, tenant))?;
    let alg = match str_claim(header, "alg") {
        "RS256" => jsonwebtoken::Algorithm::RS256,
        "PS256" => jsonwebtoken::Algorithm::PS256,
        other => {
            return Err(AadError::invalid_client(
                5_002_738,
                format!(
                    "Invalid JWT token. '{other}' is not a supported signature algorithm. Supported signing algorithms are: 'RS256,RS384,RS512,PS256,PS384,PS512'"
                ),
            ));
        }
    };
    let x5t = str_claim(header, "x5t").trim_end_matches('=');
    let x5t_s256 = str_claim(header, "x5t#S256").trim_end_matches('=');
    let cert = app
        .certificates
        .iter()
        .find(|c| (!x5t.is_empty() && c.x5t == x5t) || (!x5t_s256.is_empty() && c.x5t_s256 == x5t_s256))
        .ok_or_else(|| {
            let used = if x5t.is_empty() { x5t_s256 } else { x5t };
            AadError::invalid_client(
                700_027,
                format!(
                    "The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '{used}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'.]"
                ),
            )
        })?;
    let key = cert.decoding_key().map_err(|_| AadError::bad_signature())?;
    verify_signature(jwt, &key, alg)?;
    let auds = audiences(claims);
    if !auds.iter().any(|a| endpoints.iter().any(|e| e.eq_ignore_ascii_case(a))) {
        return Err(AadError::invalid_client(
            700_023,
            format!(
                "Client assertion audience claim does not match Realm issuer. Presented audience: '{}'.",
                auds.join(",")
            ),
        ));
    }
    check_times(claims)?;
    Ok(Verified::app(app, ClientAuth::Assertion))
}

/// The identity a federated assertion may be exchanged for: its federated credentials and subject.
fn federated_target(
    shared: &SharedState,
    tenant: &str,
    client_id: &str,
) -> Result<(Vec<FederatedCredential>, TokenSubject), AadError> {
    let world = shared.world.read();
    if let Some(app) = world.app_by_client_id(client_id) {
        return Ok((app.federated.clone(), Verified::app(app, ClientAuth::Assertion).subject));
    }
    if let Some(uai) = world.identity_by_client_id(client_id) {
        let subject = TokenSubject {
            object_id: uai.principal_id.clone(),
            app_id: uai.client_id.clone(),
            mi_res_id: Some(uai.id(&world.subscription_id)),
        };
        return Ok((uai.federated.values().cloned().collect(), subject));
    }
    Err(AadError::app_not_found(client_id, tenant))
}

async fn federated(
    shared: &SharedState,
    tenant: &str,
    client_id: &str,
    jwt: &str,
    header: &Value,
    claims: &Value,
) -> Result<Verified, AadError> {
    let (creds, subject) = federated_target(shared, tenant, client_id)?;
    let iss = str_claim(claims, "iss").to_string();
    let sub = str_claim(claims, "sub").to_string();
    let auds = audiences(claims);
    if !creds.iter().any(|c| c.issuer == iss) {
        // An unknown issuer is refused before anything is fetched from it.
        match_credential(&creds, &iss, &sub, &auds)?;
    }
    check_times(claims)?;
    verify_with_issuer(shared, &iss, jwt, header).await?;
    match_credential(&creds, &iss, &sub, &auds)?;
    tracing::info!(client_id, issuer = iss, subject = sub, "Federated assertion accepted");
    Ok(Verified { subject, auth: ClientAuth::Assertion })
}

/// Matches a verified assertion's claims against federated identity credentials as Entra ID does:
/// the issuer exactly (AADSTS700211), then one of the credential's audiences (AADSTS700212), then
/// the subject exactly (AADSTS70021, the error workload-identity users meet most).
pub fn match_credential(
    creds: &[FederatedCredential],
    iss: &str,
    sub: &str,
    auds: &[String],
) -> Result<(), AadError> {
    let presented = auds.join(",");
    let by_issuer: Vec<&FederatedCredential> = creds.iter().filter(|c| c.issuer == iss).collect();
    if by_issuer.is_empty() {
        return Err(AadError::invalid_request(
            700_211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{iss}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    let by_audience: Vec<&&FederatedCredential> =
        by_issuer.iter().filter(|c| c.audiences.iter().any(|a| auds.iter().any(|x| x == a))).collect();
    if by_audience.is_empty() {
        return Err(AadError::invalid_request(
            700_212,
            format!(
                "No matching federated identity record found for presented assertion audience '{presented}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion. https://learn.microsoft.com/entra/workload-id/workload-identity-federation"
            ),
        ));
    }
    if by_audience.iter().any(|c| c.subject == sub) {
        return Ok(());
    }
    Err(AadError::invalid_request(
        70021,
        format!(
            "No matching federated identity record found for presented assertion. Assertion Issuer: '{iss}'. Assertion Subject: '{sub}'. Assertion Audience: '{presented}'. https://docs.microsoft.com/en-us/azure/active-directory/develop/workload-identity-federation"
        ),
    ))
}

fn oidc_failure(detail: impl std::fmt::Display) -> AadError {
    AadError::invalid_request(90061, format!("Request to External OIDC endpoint failed. {detail}"))
}

/// Fetches the issuer's discovery document and JWKS and checks the assertion's signature.
async fn verify_with_issuer(
    shared: &SharedState,
    issuer: &str,
    jwt: &str,
    header: &Value,
) -> Result<(), AadError> {
    let roots = shared.trusted_cas.read().clone();
    let discovery_url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
    let discovery = crate::fetch::get_json(&discovery_url, &roots).await.map_err(oidc_failure)?;
    let jwks_uri =
        discovery.get("jwks_uri").and_then(Value::as_str).ok_or_else(|| oidc_failure("no jwks_uri"))?;
    let jwks = crate::fetch::get_json(jwks_uri, &roots).await.map_err(oidc_failure)?;
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).map_err(oidc_failure)?;
    let kid = header.get("kid").and_then(Value::as_str);
    let alg = match str_claim(header, "alg") {
        "RS256" => jsonwebtoken::Algorithm::RS256,
        "RS384" => jsonwebtoken::Algorithm::RS384,
        "RS512" => jsonwebtoken::Algorithm::RS512,
        "PS256" => jsonwebtoken::Algorithm::PS256,
        "ES256" => jsonwebtoken::Algorithm::ES256,
        "ES384" => jsonwebtoken::Algorithm::ES384,
        _ => return Err(AadError::bad_signature()),
    };
    let ok = set
        .keys
        .iter()
        .filter(|k| kid.is_none() || k.common.key_id.as_deref() == kid)
        .filter_map(|k| jsonwebtoken::DecodingKey::from_jwk(k).ok())
        .any(|key| verify_signature(jwt, &key, alg).is_ok());
    if ok { Ok(()) } else { Err(AadError::bad_signature()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://127.0.0.1:6443";
    const SUB: &str = "system:serviceaccount:team:app";
    const AUD: &str = "api://AzureADTokenExchange";

    fn creds() -> Vec<FederatedCredential> {
        vec![FederatedCredential {
            name: "kube".into(),
            issuer: ISS.into(),
            subject: SUB.into(),
            audiences: vec![AUD.into()],
        }]
    }

    fn code(r: Result<(), AadError>) -> u32 {
        r.err().map(|e| e.code).unwrap_or(0)
    }

    #[test]
    fn matching_credential_is_accepted() {
        assert!(match_credential(&creds(), ISS, SUB, &[AUD.into()]).is_ok());
    }

    #[test]
    fn unknown_issuer_is_700211_and_issuer_must_match_exactly() {
        assert_eq!(code(match_credential(&creds(), "https://127.0.0.1:6443/", SUB, &[AUD.into()])), 700_211);
        assert_eq!(code(match_credential(&[], ISS, SUB, &[AUD.into()])), 700_211);
    }

    #[test]
    fn audience_outside_the_credential_s_audiences_is_700212() {
        assert_eq!(code(match_credential(&creds(), ISS, SUB, &["https://127.0.0.1:6443".into()])), 700_212);
    }

    #[test]
    fn other_service_account_is_70021_naming_the_presented_subject() {
        let err =
            match_credential(&creds(), ISS, "system:serviceaccount:team:other", &[AUD.into()]).unwrap_err();
        assert_eq!(err.code, 70021);
        assert!(err.message.contains("system:serviceaccount:team:other"));
    }

    #[test]
    fn expired_or_not_yet_valid_assertion_is_700024() {
        let now = clock::now_unix() as f64;
        let expired = serde_json::json!({"exp": now - 3600.0, "nbf": now - 7200.0});
        let early = serde_json::json!({"exp": now + 7200.0, "nbf": now + 3600.0});
        let fine = serde_json::json!({"exp": now + 600.0, "nbf": now - 10.0});
        assert_eq!(code(check_times(&expired)), 700_024);
        assert_eq!(code(check_times(&early)), 700_024);
        assert_eq!(code(check_times(&serde_json::json!({}))), 700_024);
        assert!(check_times(&fine).is_ok());
    }
}
