//! Access tokens: RS256 JWTs carrying the claims real Entra ID tokens carry, and their verification
//! (ARM checks every bearer token it is sent).
//!
//! v1 tokens (v1 endpoint, IMDS) have `iss = {login}/{tenant}/`, `appid`, `appidacr`, `ver = "1.0"`;
//! v2 tokens have `iss = {login}/{tenant}/v2.0`, `azp`, `azpacr`, `ver = "2.0"`. Managed identities get
//! `xms_mirid`. `sub` is the object id, as for app-only tokens.

use serde_json::{Value, json};

use crate::clock;
use crate::crypto::{CryptoError, SigningKey};
use crate::model::TokenSubject;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenVersion {
    V1,
    V2,
}

/// How the client authenticated (`appidacr`/`azpacr`): 0 none (managed identity), 1 secret, 2 cert/assertion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    ManagedIdentity,
    Secret,
    Assertion,
}

impl ClientAuth {
    fn acr(self) -> &'static str {
        match self {
            Self::ManagedIdentity => "0",
            Self::Secret => "1",
            Self::Assertion => "2",
        }
    }
}

/// A minted token.
#[derive(Debug, Clone)]
pub struct Minted {
    pub access_token: String,
    pub issued_at: u64,
    pub expires_on: u64,
    pub lifetime: u64,
}

pub fn issuer(login_base: &str, tenant: &str, version: TokenVersion) -> String {
    match version {
        TokenVersion::V1 => format!("{login_base}/{tenant}/"),
        TokenVersion::V2 => format!("{login_base}/{tenant}/v2.0"),
    }
}

/// Signs a token for `subject` and `audience`.
#[allow(clippy::too_many_arguments)]
pub fn mint(
    key: &SigningKey,
    login_base: &str,
    tenant: &str,
    subject: &TokenSubject,
    audience: &str,
    version: TokenVersion,
    auth: ClientAuth,
    lifetime: u64,
) -> Result<Minted, CryptoError> {
    let now = clock::now_unix();
    let nbf = now.saturating_sub(300);
    let exp = now + lifetime;
    let mut claims = json!({
        "aud": audience,
        "iss": issuer(login_base, tenant, version),
        "iat": nbf,
        "nbf": nbf,
        "exp": exp,
        "aio": uuid::Uuid::new_v4().simple().to_string(),
        "idp": format!("https://sts.windows.net/{tenant}/"),
        "idtyp": "app",
        "oid": subject.object_id,
        "rh": "0.AAAA.",
        "sub": subject.object_id,
        "tid": tenant,
        "uti": uuid::Uuid::new_v4().simple().to_string(),
        "ver": match version { TokenVersion::V1 => "1.0", TokenVersion::V2 => "2.0" },
    });
    if let Some(map) = claims.as_object_mut() {
        match version {
            TokenVersion::V1 => {
                map.insert("appid".into(), json!(subject.app_id));
                map.insert("appidacr".into(), json!(auth.acr()));
            }
            TokenVersion::V2 => {
                map.insert("azp".into(), json!(subject.app_id));
                map.insert("azpacr".into(), json!(auth.acr()));
            }
        }
        if let Some(mirid) = &subject.mi_res_id {
            map.insert("xms_mirid".into(), json!(mirid));
        }
    }
    Ok(Minted { access_token: key.sign(&claims)?, issued_at: now, expires_on: exp, lifetime })
}

/// Why a bearer token was refused by ARM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerError {
    Missing,
    Malformed,
    Invalid,
    Expired { exp: u64, now: u64 },
    WrongAudience(String),
    WrongTenant(String),
}

/// Checks a bearer token issued by this emulator: signature, expiry, tenant, and an ARM audience.
pub fn verify_arm(key: &SigningKey, tenant: &str, token: &str) -> Result<Value, BearerError> {
    if token.split('.').count() != 3 {
        return Err(BearerError::Malformed);
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Value>(token, key.decoding_key(), &validation)
        .map_err(|_| BearerError::Invalid)?;
    let claims = data.claims;
    let now = clock::now_unix();
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    if exp <= now {
        return Err(BearerError::Expired { exp, now });
    }
    let aud = claims.get("aud").and_then(Value::as_str).unwrap_or_default();
    if !is_arm_audience(aud) {
        return Err(BearerError::WrongAudience(aud.to_string()));
    }
    let tid = claims.get("tid").and_then(Value::as_str).unwrap_or_default();
    if !tid.eq_ignore_ascii_case(tenant) {
        return Err(BearerError::WrongTenant(tid.to_string()));
    }
    Ok(claims)
}

pub const ARM_AUDIENCES: &[&str] = &[
    "https://management.core.windows.net/",
    "https://management.core.windows.net",
    "https://management.azure.com/",
    "https://management.azure.com",
];

pub fn is_arm_audience(aud: &str) -> bool {
    ARM_AUDIENCES.iter().any(|a| a.eq_ignore_ascii_case(aud))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_rsa;

    #[test]
    fn tokens_carry_real_claims_and_verify() {
        let key = SigningKey::new(&generate_rsa().unwrap()).unwrap();
        let subject =
            TokenSubject { object_id: "oid".into(), app_id: "app".into(), mi_res_id: Some("/x".into()) };
        let t = mint(
            &key,
            "https://h",
            "tid",
            &subject,
            "https://management.azure.com/",
            TokenVersion::V1,
            ClientAuth::ManagedIdentity,
            3599,
        )
        .unwrap();
        let claims = verify_arm(&key, "TID", &t.access_token).unwrap();
        assert_eq!(claims["iss"], "https://h/tid/");
        assert_eq!(claims["appid"], "app");
        assert_eq!(claims["xms_mirid"], "/x");
        assert_eq!(claims["sub"], "oid");
        let other =
            mint(&key, "https://h", "tid", &subject, "api://x", TokenVersion::V2, ClientAuth::Secret, 60)
                .unwrap();
        assert_eq!(
            verify_arm(&key, "tid", &other.access_token),
            Err(BearerError::WrongAudience("api://x".into()))
        );
        assert_eq!(verify_arm(&key, "tid", "a.b"), Err(BearerError::Malformed));
        assert_eq!(verify_arm(&key, "tid", "a.b.c"), Err(BearerError::Invalid));
        assert!(matches!(verify_arm(&key, "other", &t.access_token), Err(BearerError::WrongTenant(_))));
    }
}
