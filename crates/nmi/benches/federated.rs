//! Federated vs standard mode, from the same run: a newly started pod's first token, measured from
//! the moment the pod is reported Running until the agent (the real `podid-nmi` binary, standard
//! mode, asked through `/host/token`) returns a token.
//!
//! * federated: an identity annotated `podid.io/federated: "true"`; each sample is a pod with its
//!   own service account (so every sample is a cold TokenRequest + Entra ID exchange, no cache);
//! * standard: the controller (in process, as in the controller tests) assigns the pod's own
//!   identity to the scale set through the emulator's ARM (default settings, no extra latency),
//!   the agent waits for `Assigned` and fetches from the emulator's IMDS.
//!
//! Samples from `PODID_BENCH_SAMPLES` (7). The emulator runs with its defaults (ARM operations
//! complete at once, no IMDS propagation delay) unless `PODID_BENCH_ARM_OPERATION_MS` /
//! `PODID_BENCH_IMDS_PROPAGATION_MS` say otherwise (e.g. 20000 / 5000 to resemble Azure). Prints a
//! table and `BENCH-JSON` lines (suite `federated`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_azure::arm::ArmOptions;
use podid_azure::config::ArmAuth;
use podid_azure::credential::token_source;
use podid_azure::http::{HttpOptions, build_client};
use podid_azure::imds::ImdsOptions;
use podid_azure::{ArmClient, Cloud, Secret};
use podid_core::matching::MatchOptions;
use podid_emulator::config::IdentityConfig;
use podid_emulator::config::builtin::{
    APP_IDENTITY, CLUSTER_APP, IDENTITY_RESOURCE_GROUP, NODE_RESOURCE_GROUP, SCALE_SET,
};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use podid_mic::controller::Settings;
use podid_mic::leader::Election;
use podid_testkit::kubelet::set_running;
use podid_testkit::{NodeBuilder, PodBuilder, TOKEN_EXCHANGE_AUDIENCE, TestCluster};
use url::Url;

const RESOURCE: &str = "https://vault.azure.net";
const TARGET_MS: f64 = 200.0;

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn arm(emu: &RunningEmulator) -> ArmClient {
    let app = &emu.info().applications[CLUSTER_APP];
    let auth = ArmAuth::Secret {
        tenant_id: emu.tenant_id(),
        client_id: app.client_id.clone(),
        secret: Secret::new(app.secrets[0].clone()),
    };
    let cloud = Cloud::public()
        .with_resource_manager(Url::parse(&emu.arm_url()).unwrap())
        .with_authority_host(Url::parse(&emu.login_url()).unwrap());
    let http =
        HttpOptions { extra_ca_files: vec![emu.ca_pem_path().to_path_buf()], ..HttpOptions::default() };
    let credential = token_source(&auth, &cloud, &http, ImdsOptions::default()).unwrap();
    let options = ArmOptions { poll_interval: Duration::from_millis(50), ..ArmOptions::default() };
    ArmClient::for_cloud(build_client(&http).unwrap(), &cloud, credential, options)
}

async fn create_identity(client: &kube::Client, ns: &str, name: &str, rid: &str, cid: &str, federated: bool) {
    let mut id = AzureIdentity::new(
        name,
        AzureIdentitySpec { resource_id: rid.into(), client_id: cid.into(), ..AzureIdentitySpec::default() },
    );
    id.metadata.namespace = Some(ns.into());
    if federated {
        id.metadata.annotations =
            Some([(podid_api::FEDERATED_ANNOTATION.to_string(), "true".to_string())].into());
    }
    Api::<AzureIdentity>::namespaced(client.clone(), ns).create(&PostParams::default(), &id).await.unwrap();
    let b = AzureIdentityBinding {
        metadata: ObjectMeta {
            name: Some(format!("{name}-b")),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        spec: AzureIdentityBindingSpec {
            azure_identity: name.into(),
            selector: name.into(),
            ..Default::default()
        },
        status: None,
    };
    Api::<AzureIdentityBinding>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &b)
        .await
        .unwrap();
}

/// Creates a Pending pod, reports it Running, and polls `/host/token` until a token comes back.
async fn first_token(
    client: &kube::Client,
    http: &reqwest::Client,
    agent: &str,
    (ns, node, name, selector, sa, ip): (&str, &str, &str, &str, &str, IpAddr),
) -> Duration {
    PodBuilder::new(ns, name)
        .node(node)
        .label("aadpodidbinding", selector)
        .service_account(sa)
        .create(client)
        .await
        .unwrap();
    let started = Instant::now();
    set_running(client, ns, name, ip).await.unwrap();
    let url = format!("{agent}/host/token/?resource={RESOURCE}");
    loop {
        let r = http.get(&url).header("podns", ns).header("podname", name).send().await.unwrap();
        let status = r.status().as_u16();
        if status == 200 {
            return started.elapsed();
        }
        let body = r.text().await.unwrap_or_default();
        assert!(
            status == 500 && body.contains("doesn't exist") || status == 404,
            "{ns}/{name}: {status} {body}"
        );
        assert!(started.elapsed() < Duration::from_secs(120), "{ns}/{name}: no token after 120 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stats(mut v: Vec<Duration>) -> (f64, f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[0]), ms(v[v.len() / 2]), ms(v[v.len() - 1]))
}

#[tokio::main]
async fn main() {
    let samples: usize = std::env::var("PODID_BENCH_SAMPLES").ok().and_then(|v| v.parse().ok()).unwrap_or(7);
    podid_azure::install_crypto_provider();
    let cluster = TestCluster::shared().await.expect("cluster");
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("bench-federated").await.unwrap();
    let env_ms = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut config = EmulatorConfig {
        operation_duration_ms: env_ms("PODID_BENCH_ARM_OPERATION_MS"),
        imds_propagation_delay_ms: env_ms("PODID_BENCH_IMDS_PROPAGATION_MS"),
        ..EmulatorConfig::default()
    };
    let (arm_ms, imds_ms) = (config.operation_duration_ms, config.imds_propagation_delay_ms);
    for i in 0..samples {
        config.identities.push(IdentityConfig {
            name: format!("bench-{i}"),
            resource_group: IDENTITY_RESOURCE_GROUP.into(),
            client_id: None,
            principal_id: None,
            federated_credentials: vec![],
        });
    }
    let emu = Emulator::start(config).await.expect("emulator");
    emu.add_trusted_ca_pem(cluster.ca_pem().expect("cluster CA")).unwrap();
    let sub = emu.subscription_id();
    let node = format!("{ns}-n0");
    NodeBuilder::new(&node).vmss(&sub, NODE_RESOURCE_GROUP, SCALE_SET, 0).create(&client).await.unwrap();
    let info = emu.info();
    let app = &info.identities[APP_IDENTITY];
    let (app_key, issuer) = (app.id.to_ascii_lowercase(), cluster.issuer().to_string());
    emu.with_world(|w| {
        let uai = w.identities.get_mut(&app_key).unwrap();
        for i in 0..samples {
            uai.federated.insert(
                format!("sa-{i}"),
                podid_emulator::model::FederatedCredential {
                    name: format!("sa-{i}"),
                    issuer: issuer.clone(),
                    subject: format!("system:serviceaccount:{ns}:sa-{i}"),
                    audiences: vec![TOKEN_EXCHANGE_AUDIENCE.into()],
                },
            );
        }
    });
    create_identity(&client, &ns, "fed", &app.id, &app.client_id, true).await;
    for i in 0..samples {
        let b = &info.identities[&format!("bench-{i}")];
        create_identity(&client, &ns, &format!("std-{i}"), &b.id, &b.client_id, false).await;
    }

    let _mic = podid_mic::start(
        client.clone(),
        arm(&emu),
        podid_mic::Config {
            settings: Settings {
                match_options: MatchOptions::default(),
                batch_window: Duration::from_millis(50),
                drift_interval: None,
                base_backoff: Duration::from_millis(500),
                max_backoff: Duration::from_secs(10),
                ..Settings::default()
            },
            scope: Some(BTreeSet::from([ns.clone()])),
            election: Election {
                namespace: ns.clone(),
                name: "podid-mic".into(),
                identity: "bench".into(),
                lease_duration: Duration::from_secs(15),
            },
            immutable: BTreeSet::new(),
            max_identity_retries: 2,
            concurrency: 20,
        },
    );
    let (_, imds) = emu.imds_urls().into_iter().next().unwrap();
    let (port, admin) = (free_port(), free_port());
    let log = tempfile::NamedTempFile::new().unwrap();
    let _agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_podid-nmi"))
            .args(["--node", &node, "--nmi-listen-address", "127.0.0.1", "--nmi-port", &port.to_string()])
            .args(["--iptables=false", "--kubelet-config", "/nonexistent", "--cloud-config", "/nonexistent"])
            .args(["--imds-endpoint", &imds, "--metadata-ip", "127.0.0.1", "--metadata-port", "9"])
            // Asked through /host/token (off by default; this bench runs as root, as it requires).
            .arg("--host-token")
            .args(["--http-probe-port", &admin.to_string(), "--prometheus-port", &admin.to_string()])
            .args(["--aad-authority", &emu.login_url(), "--tenant-id", &emu.tenant_id()])
            .arg("--trusted-ca-file")
            .arg(emu.ca_pem_path())
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http.get(&ready).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "agent not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let agent = format!("http://127.0.0.1:{port}");
    let vmss_before = emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap();

    let mut federated = Vec::new();
    for i in 0..samples {
        let ip: IpAddr = format!("10.252.0.{}", i + 2).parse().unwrap();
        let sa = format!("sa-{i}");
        federated.push(
            first_token(&client, &http, &agent, (&ns, &node, &format!("fed-{i}"), "fed", &sa, ip)).await,
        );
    }
    let vmss_unchanged = emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap() == vmss_before;
    let mut standard = Vec::new();
    for i in 0..samples {
        let ip: IpAddr = format!("10.252.1.{}", i + 2).parse().unwrap();
        let (name, sel) = (format!("std-pod-{i}"), format!("std-{i}"));
        standard.push(first_token(&client, &http, &agent, (&ns, &node, &name, &sel, "default", ip)).await);
    }

    println!(
        "\nRunning → first token ({samples} pods each, one agent, same run; emulator ARM operation {arm_ms} ms, IMDS propagation {imds_ms} ms)"
    );
    println!("{:<10} {:>10} {:>10} {:>10}", "mode", "min ms", "p50 ms", "max ms");
    for (mode, v) in [("federated", federated), ("standard", standard)] {
        let (min, p50, max) = stats(v);
        println!("{mode:<10} {min:>10.1} {p50:>10.1} {max:>10.1}");
        let mut record = serde_json::json!({
            "suite": "federated", "name": format!("{mode}_first_token"), "samples": samples,
            "min_ms": min, "p50_ms": p50, "max_ms": max,
            "arm_operation_ms": arm_ms, "imds_propagation_ms": imds_ms,
        });
        if mode == "federated" {
            record["target_ms"] = TARGET_MS.into();
            record["met"] = (max < TARGET_MS).into();
            record["scale_set_unchanged"] = vmss_unchanged.into();
        }
        println!("BENCH-JSON {record}");
    }
    println!("federated pods left the scale set's identity list unchanged: {vmss_unchanged}");
}
