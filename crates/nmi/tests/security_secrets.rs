//! Secrets never leak (issue #9, item 3): a service principal's token flow through the agent with
//! the production provider — the client secret read from a Secret on the real kube-apiserver,
//! tokens from the emulator's Entra ID — a token issued, a wrong secret refused, and every log
//! line (JSON and text formats, every target at TRACE) and every HTTP error body checked for the
//! client secret, the wrong secret and the access token. (The agent writes no Kubernetes Events,
//! so there are none to check here.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use http::StatusCode;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use parking_lot::Mutex;
use podid_api::k8s_openapi;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentitySpec, SecretReference};
use podid_emulator::{Emulator, EmulatorConfig};
use podid_nmi::cache::TokenCache;
use podid_nmi::metrics::Metrics;
use podid_nmi::provider::AzureProvider;
use podid_nmi::token::SystemClock;
use podid_testkit::TestCluster;
use support::*;
use tracing_subscriber::layer::SubscriberExt;

const WRONG_SECRET: &str = "wrong-secret-7c1f0e9a-never-log-me";
const BAD_IP: &str = "10.244.0.30";

/// A `MakeWriter` appending to a shared buffer.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }
}

fn sp_identity(
    ns: &str,
    name: &str,
    secret: &str,
    client_id: &str,
    tenant: &str,
    login: &str,
) -> AzureIdentity {
    AzureIdentity {
        metadata: ObjectMeta { namespace: Some(ns.into()), name: Some(name.into()), ..Default::default() },
        spec: AzureIdentitySpec {
            identity_type: 1,
            client_id: client_id.into(),
            tenant_id: tenant.into(),
            client_password: SecretReference { name: secret.into(), namespace: ns.into() },
            ad_endpoint: login.into(),
            ..Default::default()
        },
        status: None,
    }
}

#[tokio::test]
async fn no_secret_or_token_appears_in_logs_or_error_bodies() {
    let json_logs = Capture::default();
    let text_logs = Capture::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(tracing_subscriber::fmt::layer().json().with_writer(json_logs.clone()))
        .with(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(text_logs.clone()));
    let _guard = tracing::subscriber::set_default(subscriber);

    let cluster = TestCluster::shared().await.unwrap();
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("nmi-secrets").await.unwrap();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let app = emulator.info().applications["podid-cluster"].clone();
    let secret = app.secrets.first().cloned().expect("the emulator's application has a secret");
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    for (name, value) in [("sp", secret.as_str()), ("bad", WRONG_SECRET)] {
        let s = Secret {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(BTreeMap::from([("clientSecret".to_string(), ByteString(value.as_bytes().to_vec()))])),
            ..Default::default()
        };
        secrets.create(&PostParams::default(), &s).await.unwrap();
    }

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
    let mut agent = Agent::managed();
    agent.state.cache = TokenCache::new(Arc::new(provider), Arc::new(SystemClock), 60);
    let (tenant, login) = (emulator.tenant_id(), emulator.login_url());
    for (pod, ip, secret_name) in [("web", POD_IP, "sp"), ("bad", BAD_IP, "bad")] {
        agent.add_pod(&ns, pod, ip, pod);
        agent.add_binding(&ns, pod, pod, pod);
        let identity = sp_identity(&ns, pod, secret_name, &app.client_id, &tenant, &login);
        agent.state.shared.update(|i| i.apply_identity(identity));
    }

    let ok = agent.token(POD_IP, "resource=https://management.azure.com/").await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let v: serde_json::Value = serde_json::from_str(&ok.body).unwrap();
    let access_token = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(access_token.split('.').count(), 3, "a JWT from the emulator's Entra ID");
    let refused = agent.token(BAD_IP, "resource=https://management.azure.com/").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("AADSTS7000215"), "Entra's reason reaches the caller: {}", refused.body);
    let not_bound = agent.token(POD_IP, "resource=r&client_id=00000000-0000-0000-0000-000000000000").await;
    assert_eq!(not_bound.status, StatusCode::NOT_FOUND);

    let (json_text, plain_text) = (json_logs.text(), text_logs.text());
    assert!(json_text.contains("\"decision\":\"token\""), "the audit line was captured (JSON)");
    assert!(plain_text.contains("decision=\"refused\"") || plain_text.contains("decision=refused"));
    // The JWT's signature part alone must not appear either (a token cut at a dot is still usable
    // for correlation by an attacker who holds the rest).
    let signature = access_token.rsplit('.').next().unwrap();
    for (what, haystack) in [
        ("JSON logs", &json_text),
        ("text logs", &plain_text),
        ("refusal body", &refused.body),
        ("not-bound body", &not_bound.body),
    ] {
        for (name, needle) in [
            ("client secret", secret.as_str()),
            ("wrong secret", WRONG_SECRET),
            ("access token", &access_token),
        ] {
            assert!(!haystack.contains(needle), "{name} leaked into {what}");
        }
        assert!(!haystack.contains(signature), "the token's signature leaked into {what}");
    }
    emulator.shutdown().await;
}
