//! IMDS per node: selection by client id / object id / resource id, refusals with IMDS's bodies,
//! propagation delay after an assignment, the instance document, and nodes added at run time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns panic on failure by design

mod common;

use std::time::Duration;

use common::*;
use podid_emulator::{EmulatorConfig, NodeRequest, SettingsUpdate};
use reqwest::Method;
use serde_json::{Value, json};

const NODE0: &str = "aks-nodepool1-12345678-vmss000000";

#[tokio::test]
async fn tokens_only_for_identities_on_the_node() {
    let emu = start().await;
    let http = client(&emu);
    let imds = emu.imds_url(NODE0).unwrap();
    let agentpool = emu.info().identities.get("podid-agentpool").cloned().unwrap();
    // The only user-assigned identity is the default.
    let (status, body) = imds_token(&http, &imds, "").await;
    assert_eq!(status, 200, "{body}");
    for key in [
        "access_token",
        "client_id",
        "expires_in",
        "expires_on",
        "ext_expires_in",
        "not_before",
        "resource",
        "token_type",
    ] {
        assert!(body[key].is_string(), "{key} must be a string: {body}");
    }
    assert_eq!(body["client_id"], agentpool.client_id.as_str());
    assert_eq!(body["resource"], "https://management.azure.com/");
    for q in [
        format!("&client_id={}", agentpool.client_id),
        format!("&object_id={}", agentpool.principal_id),
        format!("&msi_res_id={}", agentpool.id),
        format!("&mi_res_id={}", agentpool.id.replace('/', "%2F")),
    ] {
        let (status, body) = imds_token(&http, &imds, &q).await;
        assert_eq!(status, 200, "{q}: {body}");
    }
    let other = emu.info().identities.get("podid-app").cloned().unwrap();
    let (status, body) = imds_token(&http, &imds, &format!("&client_id={}", other.client_id)).await;
    assert_eq!(
        (status, body),
        (400, json!({"error": "invalid_request", "error_description": "Identity not found"}))
    );
    // Header and query checks.
    let url = format!(
        "{imds}/metadata/identity/oauth2/token/?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net"
    );
    let resp = http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_description"],
        "Required metadata header not specified"
    );
    let resp = http.get(&url).header("Metadata", "true").send().await.unwrap();
    assert_eq!(resp.status(), 200, "percent-encoded query and trailing slash");
    let resp = http
        .get(format!("{imds}/metadata/identity/oauth2/token?resource=x"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{imds}/metadata/identity/oauth2/token?api-version=bogus&resource=x"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = http
        .get(format!("{imds}/metadata/identity/oauth2/token?api-version=2018-02-01"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error_description"],
        "Required audience parameter not specified"
    );
    // Instance metadata.
    let doc: Value = http
        .get(format!("{imds}/metadata/instance?api-version=2021-02-01"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["compute"]["vmScaleSetName"], "aks-nodepool1-12345678-vmss");
    assert_eq!(doc["compute"]["osProfile"]["computerName"], NODE0);
    let ip: Value = http
        .get(format!("{imds}/metadata/instance/network/interface/0/ipv4/ipAddress/0?api-version=2021-02-01"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(ip["privateIpAddress"].as_str().unwrap().starts_with("10.224."));
}

async fn imds_get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let resp = http.get(url).header("Metadata", "true").send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn paths_match_case_insensitively_like_azures_imds() {
    let emu = start().await;
    let http = plain_client();
    let imds = emu.imds_url(NODE0).unwrap();
    let resource = "resource=https://management.azure.com/";
    for path in ["/Metadata/Identity/OAuth2/Token", "/METADATA/IDENTITY/OAUTH2/TOKEN/"] {
        let (status, body) = imds_get(&http, format!("{imds}{path}?api-version=2018-02-01&{resource}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body["access_token"].is_string(), "{path}: {body}");
    }
    let (status, doc) = imds_get(&http, format!("{imds}/Metadata/Instance?api-version=2021-02-01")).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["compute"]["osProfile"]["computerName"], NODE0);
    let (status, vm_id) =
        imds_get(&http, format!("{imds}/metadata/instance/Compute/VMID?api-version=2021-02-01")).await;
    assert_eq!((status, &vm_id), (200, &doc["compute"]["vmId"]), "sections ignore case too");
    let (status, _) = imds_get(&http, format!("{imds}/Metadata/Nothing?api-version=2021-02-01")).await;
    assert_eq!(status, 404, "an unknown path is still unknown");
    let logged: Vec<String> = emu.requests().into_iter().map(|r| r.path).collect();
    assert!(logged.contains(&"/Metadata/Instance".to_string()), "the log keeps the path as sent: {logged:?}");
}

#[tokio::test]
async fn assignments_show_up_after_the_operation_and_propagation_delay() {
    let emu = start().await;
    emu.update_settings(&SettingsUpdate {
        operation_duration_ms: Some(200),
        imds_propagation_delay_ms: Some(300),
        ..Default::default()
    });
    let http = client(&emu);
    let cluster = secret_token(&emu, &http, "podid-cluster").await;
    let app_identity = emu.info().identities.get("podid-app").cloned().unwrap();
    let body = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {app_identity.id.to_lowercase(): {}}}});
    let (status, _, _) = arm(&emu, &http, &cluster, Method::PATCH, &vmss_path(&emu), Some(body)).await;
    assert_eq!(status, 200);
    let q = format!("&client_id={}", app_identity.client_id);
    for node in emu.imds_urls().values() {
        assert_eq!(imds_token(&http, node, &q).await.0, 400, "not visible yet");
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    for node in emu.imds_urls().values() {
        let (status, body) = imds_token(&http, node, &q).await;
        assert_eq!(status, 200, "{body}");
    }
    // Two user-assigned identities and no system one: a selector is required.
    let (status, body) = imds_token(&http, &emu.imds_url(NODE0).unwrap(), "").await;
    assert_eq!(status, 400);
    assert!(
        body["error_description"].as_str().unwrap().starts_with("Multiple user assigned identities exist")
    );
}

#[tokio::test]
async fn vms_system_identities_and_runtime_nodes() {
    let mut config = EmulatorConfig::default();
    config.virtual_machines.push(podid_emulator::config::VmConfig {
        name: "podid-vm-0".into(),
        resource_group: "MC_podid_podid_eastus".into(),
        system_assigned: true,
        identities: vec!["podid-app".into()],
    });
    let emu = start_with(config).await;
    let http = client(&emu);
    let vm = emu.imds_url("podid-vm-0").unwrap();
    let (status, body) = imds_token(&http, &vm, "").await;
    assert_eq!(status, 200, "system-assigned is the default: {body}");
    let token = body["access_token"].as_str().unwrap();
    let admin = secret_token(&emu, &http, "podid-admin").await;
    let vm_path = format!(
        "/subscriptions/{}/resourceGroups/MC_podid_podid_eastus/providers/Microsoft.Compute/virtualMachines/podid-vm-0",
        emu.subscription_id()
    );
    let (_, _, vm_json) = arm(&emu, &http, &admin, Method::GET, &vm_path, None).await;
    assert_eq!(vm_json["identity"]["type"], "SystemAssigned, UserAssigned");
    let payload = token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap())
            .unwrap();
    assert_eq!(claims["oid"], vm_json["identity"]["principalId"]);
    assert!(claims["xms_mirid"].as_str().unwrap().ends_with("/virtualMachines/podid-vm-0"));
    let (_, _, list) = arm(&emu, &http, &admin, Method::GET, &vm_path.replace("/podid-vm-0", ""), None).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
    // A node added at run time gets its own IMDS.
    let added = emu
        .add_nodes(&NodeRequest {
            resource_group: "MC_podid_podid_eastus".into(),
            scale_set: Some("aks-nodepool1-12345678-vmss".into()),
            count: Some(1),
            vm: None,
        })
        .await
        .unwrap();
    let url = added.get("aks-nodepool1-12345678-vmss000002").unwrap();
    assert_eq!(imds_token(&http, url, "").await.0, 200, "inherits the scale set's identity");
}

#[tokio::test]
async fn routers_answer_in_process_without_sockets() {
    use tower::ServiceExt as _;
    let dir = tempfile::tempdir().unwrap();
    let shared = podid_emulator::build_state(&EmulatorConfig::default(), dir.path()).unwrap();
    let app = podid_emulator::imds::app(shared.clone(), NODE0);
    let req = http::Request::get(
        "/metadata/identity/oauth2/token?api-version=2019-08-01&resource=https%3A%2F%2Fvault.azure.net",
    )
    .header("Metadata", "true")
    .body(axum::body::Body::empty())
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["resource"], "https://vault.azure.net");
    let req = http::Request::get("/metadata/identity/oauth2/token").body(axum::body::Body::empty()).unwrap();
    assert_eq!(app.oneshot(req).await.unwrap().status(), 400);
    let arm = podid_emulator::arm::app(shared);
    let req = http::Request::get("/subscriptions/x").body(axum::body::Body::empty()).unwrap();
    assert_eq!(arm.oneshot(req).await.unwrap().status(), 400, "missing api-version");
}
