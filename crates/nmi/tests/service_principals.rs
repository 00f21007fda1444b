//! The production token provider for service principals: the identity's Secret is read from the
//! real kube-apiserver and the token comes from the emulator's Entra ID, with a client secret
//! (type 1), a PKCS#12 certificate made by `openssl pkcs12 -export` (type 2), and a wrong secret
//! (refused with Entra's error, which the agent answers with 403).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use podid_api::k8s_openapi;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_emulator::{Emulator, EmulatorConfig};
use podid_nmi::metrics::Metrics;
use podid_nmi::provider::AzureProvider;
use podid_nmi::token::{TokenError, TokenProvider, TokenSource};
use podid_testkit::TestCluster;

struct World {
    emulator: podid_emulator::RunningEmulator,
    provider: AzureProvider,
    secrets: Api<Secret>,
    ns: String,
}

async fn world() -> World {
    let cluster = TestCluster::shared().await.unwrap();
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("nmi-sp").await.unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let http = podid_azure::build_client(&podid_azure::HttpOptions {
        extra_ca_files: vec![emulator.ca_pem_path().to_path_buf()],
        proxy_from_env: false,
        ..Default::default()
    })
    .unwrap();
    let imds =
        podid_azure::ImdsClient::new(podid_azure::ImdsOptions::at("http://127.0.0.1:9".parse().unwrap()))
            .unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let provider = AzureProvider { imds, http, kube: Some(client.clone()), metrics };
    World { emulator, provider, secrets: Api::namespaced(client, &ns), ns }
}

impl World {
    async fn secret(&self, name: &str, data: &[(&str, Vec<u8>)]) {
        let secret = Secret {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(
                data.iter().map(|(k, v)| (k.to_string(), ByteString(v.clone()))).collect::<BTreeMap<_, _>>(),
            ),
            ..Default::default()
        };
        self.secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    fn source(&self, secret: &str, certificate: bool) -> TokenSource {
        let app = &self.emulator.info().applications["podid-cluster"];
        TokenSource::ServicePrincipal {
            authority: self.emulator.login_url(),
            tenant_id: self.emulator.tenant_id(),
            auxiliary_tenants: vec![],
            client_id: app.client_id.clone(),
            secret_namespace: self.ns.clone(),
            secret_name: secret.into(),
            certificate,
        }
    }
}

#[tokio::test]
async fn client_secret_from_the_secret_gets_an_entra_token() {
    let w = world().await;
    w.secret("sp", &[("clientSecret", b"podid-cluster-secret".to_vec())]).await;
    let set = w.provider.fetch(&w.source("sp", false), "https://management.azure.com/").await.unwrap();
    assert_eq!(set.tokens.len(), 1);
    assert!(set.tokens[0].access_token.expose().split('.').count() == 3, "a JWT");
    assert_eq!(set.tokens[0].resource, "https://management.azure.com/");
}

#[tokio::test]
async fn wrong_client_secret_is_refused_with_entras_error() {
    let w = world().await;
    w.secret("bad", &[("clientSecret", b"not-the-secret".to_vec())]).await;
    let err = w.provider.fetch(&w.source("bad", false), "https://management.azure.com/").await.unwrap_err();
    assert!(matches!(&err, TokenError::Refused(m) if m.contains("AADSTS7000215")), "{err:?}");
}

#[tokio::test]
async fn pkcs12_certificate_from_the_secret_gets_an_entra_token() {
    let w = world().await;
    let pem = w.emulator.info().applications["podid-cluster"]
        .certificate_pem
        .clone()
        .expect("the emulator made a certificate");
    let dir = tempfile::tempdir().unwrap();
    let pfx = dir.path().join("cert.pfx");
    let status = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(&pem)
        .arg("-inkey")
        .arg(&pem)
        .args(["-passout", "pass:podid-test", "-out"])
        .arg(&pfx)
        .status()
        .unwrap();
    assert!(status.success(), "openssl pkcs12 -export failed");
    w.secret("cert", &[("certificate", std::fs::read(&pfx).unwrap()), ("password", b"podid-test".to_vec())])
        .await;
    let set = w.provider.fetch(&w.source("cert", true), "https://vault.azure.net").await.unwrap();
    assert!(!set.tokens[0].access_token.expose().is_empty());
}

#[tokio::test]
async fn missing_secret_is_unavailable_not_refused() {
    let w = world().await;
    let err = w.provider.fetch(&w.source("nope", false), "https://management.azure.com/").await.unwrap_err();
    assert!(matches!(&err, TokenError::Unavailable(m) if m.contains("failed to get secret")), "{err:?}");
}
