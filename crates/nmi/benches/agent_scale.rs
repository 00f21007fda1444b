//! Agent at scale, against the real kube-apiserver and the emulator:
//! 1. RSS of the `podid-nmi` process with 10,000 pods in the cluster, 100 of them on its node;
//! 2. managed mode, first request for a newly bound identity (cold cache) against a request
//!    straight to the emulator's IMDS for an equally unseen resource.
//!
//!   cargo bench -p podid-nmi --bench agent_scale
//!   PODID_BENCH_CLUSTER_PODS=2000 cargo bench -p podid-nmi --bench agent_scale   # smaller
//!
//! Pods on the agent's node have 127.0.2.x addresses so the load generator can speak as them.
//! Results are also printed as `BENCH-JSON {…}` lines (suite `agent_scale`) for `podid-bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use axum::body::Body;
use futures::StreamExt;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::Api;
use kube::api::PostParams;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_emulator::{Emulator, EmulatorConfig};
use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};

const CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";

fn pod_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 2, u8::try_from(i + 1).unwrap()))
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One GET from `from`; returns (status, latency); a connection error counts as status 0.
async fn get(from: IpAddr, url: &str) -> (u16, Duration) {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(from));
    let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(http);
    let req = http::Request::get(url).header("Metadata", "true").body(Body::empty()).unwrap();
    let t = Instant::now();
    let Ok(resp) = client.request(req).await else { return (0, t.elapsed()) };
    let status = resp.status().as_u16();
    let _ = resp.into_body().collect().await;
    (status, t.elapsed())
}

async fn create<K>(api: &Api<K>, obj: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), obj).await.unwrap();
}

fn identity(ns: &str, name: &str, sub: &str) -> AzureIdentity {
    AzureIdentity {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: AzureIdentitySpec {
            resource_id: format!(
                "/subscriptions/{sub}/resourcegroups/podid-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/podid-app"
            ),
            client_id: CLIENT.into(),
            ..Default::default()
        },
        status: None,
    }
}

fn binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
    AzureIdentityBinding {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: AzureIdentityBindingSpec {
            azure_identity: identity.into(),
            selector: selector.into(),
            ..Default::default()
        },
        status: None,
    }
}

#[tokio::main]
async fn main() {
    let total: usize =
        std::env::var("PODID_BENCH_CLUSTER_PODS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let on_node = 100usize.min(total);
    let cluster = TestCluster::shared().await.unwrap();
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("nmi-scale").await.unwrap();
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].identities.push("podid-app".into());
    let emulator = Emulator::start(config).await.unwrap();
    let sub = emulator.subscription_id();
    let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();

    let (node, other) = (format!("{ns}-n0"), format!("{ns}-n1"));
    for (n, i) in [(&node, 0), (&other, 1)] {
        NodeBuilder::new(n.as_str())
            .vmss(&sub, "MC_podid_podid_eastus", "aks-nodepool1-12345678-vmss", i)
            .create(&client)
            .await
            .unwrap();
    }
    let started = Instant::now();
    futures::stream::iter(0..total)
        .map(|i| {
            let (client, ns, node, other) = (client.clone(), ns.clone(), node.clone(), other.clone());
            async move {
                let b = PodBuilder::new(&ns, format!("p{i}"))
                    .label("aadpodidbinding", if i == 0 { "fresh" } else { "app" });
                let b = if i < on_node { b.node(&node).ip(pod_ip(i)) } else { b.node(&other) };
                b.create(&client).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    println!(
        "created {total} pods ({on_node} on the agent's node) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    create(&Api::namespaced(client.clone(), &ns), &identity(&ns, "app-id", &sub)).await;
    create(&Api::namespaced(client.clone(), &ns), &binding(&ns, "app-binding", "app-id", "app")).await;

    let (port, admin) = (free_port(), free_port());
    let imds_port = imds.rsplit(':').next().unwrap().to_string();
    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_podid-nmi"))
            .args(["--node", &node, "--operation-mode", "managed", "--forceNamespaced", "--iptables=false"])
            .args([
                "--nmi-port",
                &port.to_string(),
                "--kubelet-config",
                "/nonexistent",
                "--imds-endpoint",
                &imds,
            ])
            .args(["--metadata-ip", "127.0.0.1", "--metadata-port", &imds_port])
            .args(["--http-probe-port", &admin.to_string(), "--prometheus-port", &admin.to_string()])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .spawn()
            .unwrap(),
    );
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(IpAddr::V4(Ipv4Addr::LOCALHOST), &ready).await.0 != 200 {
        assert!(Instant::now() < deadline, "agent not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let token = |resource: &str| {
        format!(
            "http://127.0.0.1:{port}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}&client_id={CLIENT}"
        )
    };
    // Every pod on the node asks once (a realistic warm state), then RSS is read.
    for i in 1..on_node {
        let (status, _) = get(pod_ip(i), &token("https://vault.azure.net")).await;
        assert_eq!(status, 200);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = rss_kb(agent.0.id());
    println!(
        "agent RSS with {total} pods in the cluster, {on_node} on its node: {:.1} MiB",
        rss as f64 / 1024.0
    );
    let line = serde_json::json!({"suite": "agent_scale", "name": "rss", "cluster_pods": total, "node_pods": on_node, "rss_kib": rss});
    println!("BENCH-JSON {line}");

    // A newly bound identity (pod p0, label "fresh"), first request vs IMDS for an unseen resource.
    let mut imds_lat = Vec::new();
    let mut agent_lat = Vec::new();
    for round in 0..5 {
        let imds_url = format!(
            "{imds}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://imds-{round}.example&client_id={CLIENT}"
        );
        imds_lat.push(get(IpAddr::V4(Ipv4Addr::LOCALHOST), &imds_url).await.1);
        let b = format!("fresh-binding-{round}");
        create(&Api::namespaced(client.clone(), &ns), &binding(&ns, &b, "app-id", "fresh")).await;
        tokio::time::sleep(Duration::from_secs(1)).await; // the agent's watch sees the binding
        let (status, lat) = get(pod_ip(0), &token(&format!("https://agent-{round}.example"))).await;
        assert_eq!(status, 200);
        agent_lat.push(lat);
        Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
            .delete(&b, &Default::default())
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (i, a) = (median(&mut imds_lat), median(&mut agent_lat));
    println!(
        "newly bound identity, first request (median of 5): agent {:.2} ms, IMDS {:.2} ms, agent - IMDS {:.2} ms",
        a.as_secs_f64() * 1e3,
        i.as_secs_f64() * 1e3,
        (a.as_secs_f64() - i.as_secs_f64()) * 1e3
    );
    let line = serde_json::json!({"suite": "agent_scale", "name": "first token, newly bound identity (median of 5)", "agent_ms": a.as_secs_f64() * 1e3, "imds_ms": i.as_secs_f64() * 1e3, "agent_minus_imds_ms": (a.as_secs_f64() - i.as_secs_f64()) * 1e3});
    println!("BENCH-JSON {line}");
    drop(agent);
    emulator.shutdown().await;
}
