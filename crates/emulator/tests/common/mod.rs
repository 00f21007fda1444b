//! Shared helpers of the emulator's integration tests: start an emulator, a reqwest client trusting its
//! CA, and tokens obtained the way SDKs obtain them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use serde_json::Value;

pub const ARM_SCOPE: &str = "https://management.azure.com/.default";

pub async fn start() -> RunningEmulator {
    start_with(EmulatorConfig::default()).await
}

pub async fn start_with(config: EmulatorConfig) -> RunningEmulator {
    Emulator::start(config).await.expect("emulator starts")
}

pub fn client(emu: &RunningEmulator) -> reqwest::Client {
    let roots: Vec<_> = podid_emulator::crypto::pem_blocks(emu.ca_pem(), "CERTIFICATE")
        .into_iter()
        .map(rustls::pki_types::CertificateDer::from)
        .collect();
    let tls = podid_emulator::tls::client_config(&roots).unwrap();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap()
}

/// A client for the plain-HTTP listeners (admin, IMDS).
pub fn plain_client() -> reqwest::Client {
    let tls = podid_emulator::tls::client_config(&[]).unwrap();
    reqwest::Client::builder().tls_backend_preconfigured(tls).build().unwrap()
}

pub fn app(emu: &RunningEmulator, name: &str) -> podid_emulator::AppInfo {
    emu.info().applications.get(name).cloned().unwrap()
}

/// Client-credentials token (v2) with a secret.
pub async fn secret_token(emu: &RunningEmulator, http: &reqwest::Client, app_name: &str) -> String {
    let a = app(emu, app_name);
    let url = format!("{}/{}/oauth2/v2.0/token", emu.login_url(), emu.tenant_id());
    let form = [
        ("client_id", a.client_id.as_str()),
        ("grant_type", "client_credentials"),
        ("client_secret", a.secrets[0].as_str()),
        ("scope", ARM_SCOPE),
    ];
    let resp: Value = http.post(url).form(&form).send().await.unwrap().json().await.unwrap();
    resp["access_token"].as_str().unwrap().to_string()
}

pub fn vmss_path(emu: &RunningEmulator) -> String {
    format!(
        "/subscriptions/{}/resourceGroups/MC_podid_podid_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss",
        emu.subscription_id()
    )
}

pub fn identity_id(emu: &RunningEmulator, name: &str) -> String {
    emu.info().identities.get(name).unwrap().id.clone()
}

pub async fn arm(
    emu: &RunningEmulator,
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut req = http
        .request(method, format!("{}{path}{sep}api-version=2026-04-01", emu.arm_url()))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub async fn imds_token(http: &reqwest::Client, imds: &str, query: &str) -> (u16, Value) {
    let resp = http
        .get(format!("{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/{query}"))
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}
