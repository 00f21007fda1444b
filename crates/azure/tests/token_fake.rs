//! Exact-call tests of the IMDS and Entra ID clients against a scripted server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use podid_azure::aad::{AadClient, ClientCredential};
use podid_azure::http::{Backoff, build_client};
use podid_azure::imds::{ImdsClient, ImdsOptions, ManagedIdentity};
use podid_azure::{ClientCertificate, Secret, TokenError};
use support::{Fake, Recorded, Step};

const IMDS_OK: &str = r#"{"access_token":"imds-token","client_id":"c1","expires_in":"86399","expires_on":"1900000000","ext_expires_in":"86399","not_before":"1899913601","resource":"https://vault.azure.net","token_type":"Bearer"}"#;
const AAD_OK: &str = r#"{"token_type":"Bearer","expires_in":"3599","ext_expires_in":"3599","expires_on":"1900000000","not_before":"1899996101","resource":"https://management.azure.com/","access_token":"aad-token"}"#;

fn imds(fake: &Fake) -> ImdsClient {
    let delays = vec![Duration::from_millis(10), Duration::from_millis(20)];
    ImdsClient::new(ImdsOptions { retry_delays: delays, ..ImdsOptions::at(fake.url.clone()) }).unwrap()
}

fn aad(fake: &Fake) -> AadClient {
    let backoff = Backoff {
        max_retries: 1,
        initial: Duration::from_millis(10),
        max: Duration::from_millis(10),
        jitter: false,
    };
    AadClient::new(build_client(&support::test_http()).unwrap(), fake.url.clone()).with_backoff(backoff)
}

fn form(r: &Recorded) -> Vec<(String, String)> {
    url::form_urlencoded::parse(r.body.as_bytes()).into_owned().collect()
}

fn field(r: &Recorded, key: &str) -> Option<String> {
    form(r).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn query(r: &Recorded) -> Vec<(String, String)> {
    url::form_urlencoded::parse(r.query.as_bytes()).into_owned().collect()
}

#[tokio::test]
async fn imds_request_shape_per_identity_kind() {
    let path = "/metadata/identity/oauth2/token";
    let fake = Fake::start((0..3).map(|_| Step::new(200, IMDS_OK).expect(Method::GET, path)).collect()).await;
    let client = imds(&fake);
    let t = client.token("https://vault.azure.net", &ManagedIdentity::ClientId("c1".into())).await.unwrap();
    assert_eq!(
        (t.access_token.expose(), t.expires_at(), t.client_id.as_deref()),
        ("imds-token", 1_900_000_000, Some("c1"))
    );
    client.token("https://vault.azure.net", &ManagedIdentity::SystemAssigned).await.unwrap();
    client
        .token("https://vault.azure.net", &ManagedIdentity::ResourceId("/subscriptions/s/x".into()))
        .await
        .unwrap();
    fake.assert_done();
    let log = fake.log();
    assert!(log.iter().all(|r| r.header("metadata") == Some("true")));
    let q =
        |i: usize| query(&log[i]).into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    assert_eq!(q(0), "api-version=2018-02-01&resource=https://vault.azure.net&client_id=c1");
    assert_eq!(q(1), "api-version=2018-02-01&resource=https://vault.azure.net");
    assert_eq!(q(2), "api-version=2018-02-01&resource=https://vault.azure.net&msi_res_id=/subscriptions/s/x");
}

#[tokio::test]
async fn imds_refusal_is_upstream_and_not_retried() {
    let fake = Fake::start(vec![Step::new(
        400,
        r#"{"error":"invalid_request","error_description":"Identity not found"}"#,
    )])
    .await;
    let err = imds(&fake).token("https://r", &ManagedIdentity::ClientId("x".into())).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert_eq!(err.entra().unwrap().error_description, "Identity not found");
    assert!(
        err.to_string()
            .starts_with("adal: Refresh request failed. Status Code = '400'. Response body: {\"error\"")
    );
    fake.assert_done();
}

#[tokio::test]
async fn imds_retries_like_adal_then_gives_up() {
    let fake = Fake::start(vec![Step::new(500, "{}"), Step::new(404, "{}"), Step::new(200, IMDS_OK)]).await;
    imds(&fake).token("https://r", &ManagedIdentity::SystemAssigned).await.unwrap();
    fake.assert_done();

    let fake = Fake::start(vec![Step::new(429, "{}"), Step::new(410, "{}"), Step::new(503, "busy")]).await;
    let err = imds(&fake).token("https://r", &ManagedIdentity::SystemAssigned).await.unwrap_err();
    assert_eq!(err.status(), Some(503), "the last answer is reported after the retries run out");
    fake.assert_done();
}

#[tokio::test]
async fn imds_unreachable_is_a_transport_error() {
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let options = ImdsOptions {
        retry_delays: vec![],
        ..ImdsOptions::at(url::Url::parse(&format!("http://{addr}")).unwrap())
    };
    let err = ImdsClient::new(options)
        .unwrap()
        .token("https://r", &ManagedIdentity::SystemAssigned)
        .await
        .unwrap_err();
    assert!(err.is_transport(), "{err}");
}

#[tokio::test]
async fn imds_success_with_garbage_is_invalid_response() {
    let fake = Fake::start(vec![Step::new(200, "<html>")]).await;
    let err = imds(&fake).token("https://r", &ManagedIdentity::SystemAssigned).await.unwrap_err();
    assert!(matches!(err, TokenError::InvalidResponse { .. }), "{err}");
}

#[tokio::test]
async fn secret_uses_the_v1_endpoint_with_resource() {
    let fake = Fake::start(vec![Step::new(200, AAD_OK).expect(Method::POST, "/tenant-1/oauth2/token")]).await;
    let secret = ClientCredential::Secret(Secret::new("s3cret"));
    let t = aad(&fake).token("tenant-1", "app-1", &secret, "https://management.azure.com/").await.unwrap();
    assert_eq!((t.access_token.expose(), t.expires_at()), ("aad-token", 1_900_000_000));
    fake.assert_done();
    let r = &fake.log()[0];
    assert_eq!(r.query, "api-version=1.0");
    assert_eq!(r.header("content-type"), Some("application/x-www-form-urlencoded"));
    assert_eq!(
        form(r),
        [
            ("grant_type", "client_credentials"),
            ("client_id", "app-1"),
            ("client_secret", "s3cret"),
            ("resource", "https://management.azure.com/")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

#[tokio::test]
async fn certificate_assertion_targets_the_v1_endpoint() {
    let fake = Fake::start(vec![Step::new(200, AAD_OK).expect(Method::POST, "/tenant-1/oauth2/token")]).await;
    let pfx =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openssl3-default.pfx")).unwrap();
    let cert = ClientCertificate::from_pkcs12(&pfx, "podid-test").unwrap();
    let credential = ClientCredential::Certificate(Arc::new(cert));
    aad(&fake).token("tenant-1", "app-1", &credential, "https://vault.azure.net").await.unwrap();
    let r = &fake.log()[0];
    assert_eq!(field(r, "client_assertion_type").as_deref(), Some(podid_azure::aad::JWT_BEARER));
    assert_eq!(field(r, "client_secret"), None);
    let jwt = field(r, "client_assertion").unwrap();
    let claims = jwt.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap())
            .unwrap();
    assert_eq!(claims["aud"], fake.at("/tenant-1/oauth2/token"), "aud is the endpoint without its query");
    assert_eq!((claims["iss"].as_str(), claims["sub"].as_str()), (Some("app-1"), Some("app-1")));
}

#[tokio::test]
async fn federated_assertion_uses_v2_with_a_default_scope() {
    let v2 = r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"v2-token"}"#;
    let fake =
        Fake::start(vec![Step::new(200, v2).expect(Method::POST, "/tenant-1/oauth2/v2.0/token")]).await;
    let credential = ClientCredential::Federated(Secret::new("sa-token"));
    let t = aad(&fake).token("tenant-1", "app-1", &credential, "https://vault.azure.net").await.unwrap();
    assert_eq!(t.resource, "https://vault.azure.net", "v2 answers carry no resource; the request's is kept");
    let r = &fake.log()[0];
    assert_eq!(r.query, "");
    assert_eq!(field(r, "scope").as_deref(), Some("https://vault.azure.net/.default"));
    assert_eq!(field(r, "client_assertion").as_deref(), Some("sa-token"));
    assert_eq!(field(r, "resource"), None);
}

#[tokio::test]
async fn multi_tenant_asks_each_tenant_primary_first() {
    let fake = Fake::start(vec![
        Step::new(200, AAD_OK).expect(Method::POST, "/primary/oauth2/token"),
        Step::new(200, AAD_OK).expect(Method::POST, "/aux-1/oauth2/token"),
        Step::new(200, AAD_OK).expect(Method::POST, "/aux-2/oauth2/token"),
    ])
    .await;
    let tenants = ["primary", "aux-1", "aux-2"].map(String::from);
    let secret = ClientCredential::Secret(Secret::new("s"));
    let tokens = aad(&fake).token_multi_tenant(&tenants, "app", &secret, "https://r/").await.unwrap();
    assert_eq!(tokens.len(), 3);
    fake.assert_done();
}

#[tokio::test]
async fn entra_errors_are_preserved_and_5xx_retried() {
    let body = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided.","error_codes":[7000215],"trace_id":"t","correlation_id":"c"}"#;
    let fake = Fake::start(vec![Step::new(401, body)]).await;
    let secret = ClientCredential::Secret(Secret::new("wrong"));
    let err = aad(&fake).token("t", "app", &secret, "https://r/").await.unwrap_err();
    let entra = err.entra().unwrap();
    assert_eq!((entra.error.as_str(), entra.error_codes.as_slice()), ("invalid_client", &[7_000_215][..]));
    assert_eq!(entra.correlation_id.as_deref(), Some("c"));
    assert!(!err.to_string().contains("wrong"), "the secret never appears in errors");
    fake.assert_done();

    let fake = Fake::start(vec![Step::new(503, "{}"), Step::new(200, AAD_OK)]).await;
    aad(&fake).token("t", "app", &secret, "https://r/").await.unwrap();
    fake.assert_done();
}
