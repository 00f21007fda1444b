//! Fault injection through the admin API, and the request log, over real sockets.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns panic on failure by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn faults_and_request_log_through_the_admin_api() {
    let emu = start().await;
    let http = client(&emu);
    let admin = emu.admin_url();
    let plain = plain_client();
    assert_eq!(plain.get(format!("{admin}/healthz")).send().await.unwrap().text().await.unwrap(), "ok");
    let info: Value = plain.get(format!("{admin}/admin/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["arm_url"], emu.arm_url().as_str());
    let add = |spec: Value| {
        let plain = plain.clone();
        let admin = admin.clone();
        async move {
            let r = plain.post(format!("{admin}/admin/faults")).json(&spec).send().await.unwrap();
            assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        }
    };
    let imds = emu.imds_url("aks-nodepool1-12345678-vmss000000").unwrap();
    // 429 with Retry-After, twice, then normal.
    add(json!({"surface": "imds", "path": "/metadata/identity", "action": {"kind": "throttle", "retry_after_secs": 3}, "count": 2})).await;
    for _ in 0..2 {
        let r = http
            .get(format!("{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x"))
            .header("Metadata", "true")
            .send()
            .await
            .unwrap();
        assert_eq!((r.status().as_u16(), r.headers()["retry-after"].to_str().unwrap()), (429, "3"));
    }
    assert_eq!(imds_token(&http, &imds, "").await.0, 200);
    // Status with a custom body, on ARM GETs only.
    add(json!({"surface": "arm", "method": "GET", "action": {"kind": "status", "status": 503, "body": {"error": {"code": "ServiceUnavailable", "message": "m"}}}, "count": 1})).await;
    let token = secret_token(&emu, &http, "podid-cluster").await;
    let (status, _, body) = arm(&emu, &http, &token, reqwest::Method::GET, &vmss_path(&emu), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (503, Some("ServiceUnavailable")));
    // Latency.
    add(json!({"surface": "login", "action": {"kind": "latency", "ms": 300}, "count": 1})).await;
    let t = Instant::now();
    secret_token(&emu, &http, "podid-admin").await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    // Dropped connection: the client sees a transport error, not a response.
    add(json!({"surface": "arm", "action": {"kind": "drop"}, "count": 1})).await;
    let err = http.get(format!("{}{}?api-version=1", emu.arm_url(), vmss_path(&emu))).send().await;
    assert!(err.is_err(), "{err:?}");
    // Time-window rule.
    add(json!({"surface": "imds", "action": {"kind": "status", "status": 500}, "duration_ms": 200})).await;
    assert_eq!(imds_token(&http, &imds, "").await.0, 500);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(imds_token(&http, &imds, "").await.0, 200);
    // Bad rules are refused.
    let r = plain
        .post(format!("{admin}/admin/faults"))
        .json(&json!({"path": "(", "action": {"kind": "drop"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = plain.post(format!("{admin}/admin/faults")).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // The log counts ARM calls and names the caller.
    let (status, _, _) = arm(&emu, &http, &token, reqwest::Method::GET, &vmss_path(&emu), None).await;
    assert_eq!(status, 200);
    let log: Vec<Value> =
        plain.get(format!("{admin}/admin/requests?surface=arm")).send().await.unwrap().json().await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0]["status"], 503);
    assert!(log[0]["fault"].is_u64());
    assert_eq!(log[1]["status"], 0, "dropped");
    assert_eq!(log[2]["principal"], app(&emu, "podid-cluster").object_id.as_str());
    plain.delete(format!("{admin}/admin/requests")).send().await.unwrap();
    assert!(emu.requests().is_empty());
}

#[tokio::test]
async fn runtime_settings_and_applications() {
    let emu = start().await;
    let plain = plain_client();
    let admin = emu.admin_url();
    let s: Value = plain
        .put(format!("{admin}/admin/settings"))
        .json(&json!({"token_lifetime_secs": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["token_lifetime_secs"], 600);
    let r = plain.put(format!("{admin}/admin/settings")).json(&json!({"bogus": 1})).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let created: Value = plain
        .post(format!("{admin}/admin/applications"))
        .json(&json!({"name": "extra", "secrets": ["s3cret"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(created["client_id"].is_string());
    let http = client(&emu);
    let token = secret_token(&emu, &http, "extra").await;
    assert!(!token.is_empty());
    let minted: Value = plain
        .post(format!("{admin}/admin/tokens"))
        .json(&json!({"principal": "nobody"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(minted["error"].is_string());
    let r = plain.post(format!("{admin}/admin/trusted-cas")).body("not a pem").send().await.unwrap();
    assert_eq!(r.status(), 400);
}
