//! Entra ID wire behaviour: discovery, JWKS, client secret, certificate and federated assertions, and
//! the AADSTS error bodies.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns panic on failure by design

mod common;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};

async fn post_token(http: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http.post(url).form(form).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test]
async fn discovery_and_secret_tokens_verify_against_jwks() {
    let emu = start().await;
    let http = client(&emu);
    let tenant = emu.tenant_id();
    let disc: Value = http
        .get(format!("{}/{tenant}/v2.0/.well-known/openid-configuration", emu.login_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_endpoint = disc["token_endpoint"].as_str().unwrap();
    assert_eq!(token_endpoint, format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url()));
    assert!(disc["authorization_endpoint"].is_string());
    let jwks: Value =
        http.get(disc["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    let admin = app(&emu, "podid-admin");
    let (status, body) = post_token(
        &http,
        token_endpoint,
        &[
            ("client_id", &admin.client_id),
            ("grant_type", "client_credentials"),
            ("client_secret", &admin.secrets[0]),
            ("scope", ARM_SCOPE),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 3599);
    let jwk: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk.keys[0]).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["https://management.azure.com"]);
    v.set_issuer(&[disc["issuer"].as_str().unwrap()]);
    let claims =
        jsonwebtoken::decode::<Value>(body["access_token"].as_str().unwrap(), &key, &v).unwrap().claims;
    assert_eq!(claims["oid"], admin.object_id.as_str());
    assert_eq!(claims["azp"], admin.client_id.as_str());
    assert_eq!(claims["tid"], tenant.as_str());

    // v1: resource, string numbers.
    let (status, body) = post_token(
        &http,
        &format!("{}/{tenant}/oauth2/token", emu.login_url()),
        &[
            ("client_id", &admin.client_id),
            ("grant_type", "client_credentials"),
            ("client_secret", &admin.secrets[0]),
            ("resource", "https://management.azure.com/"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], "3599");
    assert_eq!(body["resource"], "https://management.azure.com/");
}

#[tokio::test]
async fn errors_carry_aadsts_codes() {
    let emu = start().await;
    let http = client(&emu);
    let tenant = emu.tenant_id();
    let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url());
    let admin = app(&emu, "podid-admin");
    type Case<'a> = (Vec<(&'a str, &'a str)>, u16, &'a str, u64);
    let cases: Vec<Case<'_>> = vec![
        (
            vec![
                ("client_id", &admin.client_id),
                ("grant_type", "client_credentials"),
                ("client_secret", "nope"),
                ("scope", ARM_SCOPE),
            ],
            401,
            "invalid_client",
            7_000_215,
        ),
        (
            vec![
                ("client_id", "00000000-0000-0000-0000-000000000001"),
                ("grant_type", "client_credentials"),
                ("client_secret", "x"),
                ("scope", ARM_SCOPE),
            ],
            400,
            "unauthorized_client",
            700_016,
        ),
        (vec![("client_id", &admin.client_id), ("scope", ARM_SCOPE)], 400, "invalid_request", 900_144),
        (
            vec![
                ("client_id", &admin.client_id),
                ("grant_type", "client_credentials"),
                ("client_secret", "x"),
                ("scope", "https://x/read"),
            ],
            400,
            "invalid_scope",
            1_002_012,
        ),
        (
            vec![("client_id", &admin.client_id), ("grant_type", "client_credentials"), ("scope", ARM_SCOPE)],
            401,
            "invalid_client",
            7_000_218,
        ),
        (
            vec![("client_id", &admin.client_id), ("grant_type", "password"), ("scope", ARM_SCOPE)],
            400,
            "unsupported_grant_type",
            70003,
        ),
    ];
    for (form, status, error, code) in cases {
        let (got, body) = post_token(&http, &url, &form).await;
        assert_eq!((got, body["error"].as_str().unwrap()), (status, error), "{body}");
        assert_eq!(body["error_codes"], json!([code]));
        let desc = body["error_description"].as_str().unwrap();
        assert!(desc.starts_with(&format!("AADSTS{code}: ")), "{desc}");
        assert!(
            desc.contains("Trace ID:") && body["correlation_id"].is_string() && body["timestamp"].is_string()
        );
    }
    let (status, body) =
        post_token(&http, &format!("{}/not-a-tenant/oauth2/v2.0/token", emu.login_url()), &[]).await;
    assert_eq!((status, body["error_codes"].clone()), (400, json!([90002])));
    let garbage = http.post(&url).body(vec![0xff, 0xfe, 0x00]).send().await.unwrap();
    assert_eq!(garbage.status(), 400);
}

fn assertion(pem: &str, header_alg: jsonwebtoken::Algorithm, x5t: Option<String>, claims: Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let mut header = jsonwebtoken::Header::new(header_alg);
    header.x5t = x5t;
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

#[tokio::test]
async fn certificate_assertions() {
    let emu = start().await;
    let http = client(&emu);
    let tenant = emu.tenant_id();
    let cluster = app(&emu, "podid-cluster");
    let pem = std::fs::read_to_string(cluster.certificate_pem.as_ref().unwrap()).unwrap();
    let der = podid_emulator::crypto::pem_blocks(&pem, "CERTIFICATE").remove(0);
    let cert = podid_emulator::crypto::RegisteredCert::from_der(&der).unwrap();
    let x5t_padded = format!("{}=", cert.x5t);
    let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url());
    let now = podid_emulator::clock::now_unix() as f64 + 0.25;
    let claims = |aud: &str, exp: f64| json!({"aud": aud, "iss": cluster.client_id, "sub": cluster.client_id, "iat": now, "exp": exp, "jti": "j"});
    let send = |jwt: String| {
        let http = http.clone();
        let url = url.clone();
        let client_id = cluster.client_id.clone();
        async move {
            let form = [
                ("client_id", client_id.as_str()),
                ("grant_type", "client_credentials"),
                ("client_assertion", jwt.as_str()),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("scope", ARM_SCOPE),
            ];
            post_token(&http, &url, &form).await
        }
    };
    let rs =
        assertion(&pem, jsonwebtoken::Algorithm::RS256, Some(x5t_padded.clone()), claims(&url, now + 600.0));
    let (status, body) = send(rs.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send(rs).await.0, 200, "the same assertion (same jti) is accepted again");
    // PS256 with x5t#S256, as msal signs without a thumbprint.
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
    header.x5t_s256 = Some(format!("{}=", cert.x5t_s256));
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let ps = jsonwebtoken::encode(&header, &claims(&url, now + 600.0), &key).unwrap();
    assert_eq!(send(ps).await.0, 200);
    let expect = |r: (u16, Value), code: u64| assert_eq!(r.1["error_codes"], json!([code]), "{}", r.1);
    expect(
        send(assertion(
            &pem,
            jsonwebtoken::Algorithm::RS256,
            Some(x5t_padded.clone()),
            claims("https://elsewhere/token", now + 600.0),
        ))
        .await,
        700_023,
    );
    expect(
        send(assertion(
            &pem,
            jsonwebtoken::Algorithm::RS256,
            Some(x5t_padded.clone()),
            claims(&url, now - 3600.0),
        ))
        .await,
        700_024,
    );
    expect(
        send(assertion(&pem, jsonwebtoken::Algorithm::RS256, Some("AAAA".into()), claims(&url, now + 600.0)))
            .await,
        700_027,
    );
    let other = podid_emulator::crypto::generate_client_certificate("other").unwrap();
    expect(
        send(assertion(
            &other.pem,
            jsonwebtoken::Algorithm::RS256,
            Some(x5t_padded),
            claims(&url, now + 600.0),
        ))
        .await,
        700_027,
    );
    expect(send("not.a.jwt".into()).await, 50027);
}

#[tokio::test]
async fn federated_assertions_are_checked_against_the_issuer() {
    let emu = start().await;
    let http = client(&emu);
    emu.add_trusted_ca_pem(emu.ca_pem()).unwrap();
    let tenant = emu.tenant_id();
    let issuer = format!("{}/{tenant}/v2.0", emu.login_url());
    // The emulator is its own external issuer: a v2 token it minted for podid-admin is the assertion.
    let admin = app(&emu, "podid-admin");
    let uai = emu.info().identities.get("podid-app").cloned().unwrap();
    emu.with_world(|w| {
        let key = uai.id.to_ascii_lowercase();
        let u = w.identities.get_mut(&key).unwrap();
        let fic = podid_emulator::model::FederatedCredential {
            name: "kube".into(),
            issuer: issuer.clone(),
            subject: admin.object_id.clone(),
            audiences: vec!["api://AzureADTokenExchange".into()],
        };
        u.federated.insert("kube".into(), fic);
    });
    let mint = |aud: &str| {
        let admin_url = emu.admin_url();
        let aud = aud.to_string();
        async move {
            let r: Value = plain_client()
                .post(format!("{admin_url}/admin/tokens"))
                .json(&json!({"principal": "podid-admin", "audience": aud, "v2": true}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["access_token"].as_str().unwrap().to_string()
        }
    };
    let url = format!("{}/{tenant}/oauth2/v2.0/token", emu.login_url());
    let exchange = |jwt: String| {
        let http = http.clone();
        let url = url.clone();
        let client_id = uai.client_id.clone();
        async move {
            let form = [
                ("client_id", client_id.as_str()),
                ("grant_type", "client_credentials"),
                ("client_assertion", jwt.as_str()),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("scope", ARM_SCOPE),
            ];
            post_token(&http, &url, &form).await
        }
    };
    // Minted tokens carry iss = {login}/{tenant}/v2.0, the FIC's issuer.
    let (status, body) = exchange(mint("api://AzureADTokenExchange").await).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    assert_eq!(claims["oid"], uai.principal_id.as_str());
    assert_eq!(claims["xms_mirid"], uai.id.as_str());
    let (_, body) = exchange(mint("api://wrong").await).await;
    assert_eq!(body["error_codes"], json!([700_212]), "{body}");
    // A tampered signature.
    let good = mint("api://AzureADTokenExchange").await;
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[2] = parts[2].chars().rev().collect();
    let (_, body) = exchange(parts.join(".")).await;
    assert_eq!(body["error_codes"], json!([700_027]), "{body}");
}
