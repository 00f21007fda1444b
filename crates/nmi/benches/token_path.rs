//! Token-path benchmark: the agent (warm and cold cache) side by side with the emulator's own IMDS,
//! in one run on this machine, over loopback.
//!
//!   cargo bench -p podid-nmi --bench token_path            # full run (a few seconds per row)
//!   PODID_BENCH_SECS=1 cargo bench -p podid-nmi --bench token_path
//!
//! Each load-generator connection binds its own 127.0.0.x source address, so the agent identifies
//! it as a distinct pod; every pod is bound to the emulator's `podid-app` identity. The agent is
//! served through its bounded listener (`podid_nmi::http::serve`: header and idle timeouts,
//! per-source connection accounting, the per-source request bucket) and its bounded cache, as the
//! binary runs; only the rate is set beyond reach (4 billion per second) so every request pays for
//! the bucket check but none is refused — this measures the bounds' cost, not the rate policy. Results are
//! printed as a Markdown table, as `BENCH-JSON {…}` lines (one per row, suite `token_path`, read
//! by `podid-bench`) and written to `target/bench/token_path.json`. `PODID_BENCH_CONNS` (default
//! `1,8,64`) sets the concurrency levels.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_core::matching::{MatchOptions, desired};
use podid_core::pod::Phase;
use podid_core::{PodKey, PodView};
use podid_emulator::{Emulator, EmulatorConfig};
use podid_nmi::cache::{CacheLimits, TokenCache};
use podid_nmi::http::limits::Limits;
use podid_nmi::http::proxy::Proxy;
use podid_nmi::http::serve::{ServeOptions, serve};
use podid_nmi::metrics::Metrics;
use podid_nmi::provider::AzureProvider;
use podid_nmi::token::SystemClock;
use podid_nmi::{AgentState, Config, Mode, Shared, app};

const PODS: u8 = 100;
const NODE: &str = "aks-nodepool1-12345678-vmss000000";

fn pod_ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1))
}

struct Row {
    target: &'static str,
    concurrency: usize,
    requests: usize,
    errors: usize,
    rps: f64,
    p50_us: u64,
    p99_us: u64,
}

/// Drives `concurrency` keep-alive connections at `url` for `secs`, each from its own pod address.
async fn load(target: &'static str, url: &str, concurrency: usize, secs: f64) -> Row {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut http = HttpConnector::new();
            http.set_local_address(Some(pod_ip((c % PODS as usize) as u8)));
            let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(http);
            let (mut lat, mut errors) = (Vec::new(), 0usize);
            while Instant::now() < deadline {
                let req = http::Request::get(&url).header("Metadata", "true").body(Body::empty()).unwrap();
                let t = Instant::now();
                match client.request(req).await {
                    Ok(resp) => {
                        let ok = resp.status().is_success();
                        let _ = resp.into_body().collect().await;
                        if ok { lat.push(t.elapsed().as_micros() as u64) } else { errors += 1 }
                    }
                    Err(_) => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    Row {
        target,
        concurrency,
        requests: all.len(),
        errors,
        rps: all.len() as f64 / secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn identity() -> AzureIdentity {
    AzureIdentity {
        metadata: ObjectMeta { namespace: Some("app".into()), name: Some("podid-app".into()), uid: Some("u".into()), ..Default::default() },
        spec: AzureIdentitySpec {
            resource_id: "/subscriptions/00000000-0000-4000-8000-000000000001/resourcegroups/podid-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/podid-app".into(),
            client_id: "a99c11e0-0000-4000-8000-000000a99001".into(),
            ..Default::default()
        },
        status: None,
    }
}

fn agent_state(imds_url: &str, cache_min_remaining: u64) -> AgentState {
    let imds = podid_azure::ImdsClient::new(podid_azure::ImdsOptions::at(imds_url.parse().unwrap())).unwrap();
    let http = podid_azure::build_client(&podid_azure::HttpOptions::default()).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let provider = Arc::new(AzureProvider { imds, http, kube: None, metrics: metrics.clone() });
    let mut config = Config::new(NODE, Mode::Standard);
    config.mic_namespace = "kube-system".into();
    AgentState {
        shared: Arc::new(Shared::default()),
        cache: TokenCache::bounded(
            provider,
            Arc::new(SystemClock),
            cache_min_remaining,
            CacheLimits::default(),
            Some(metrics.clone()),
        ),
        config: Arc::new(config),
        metrics,
        proxy: Proxy::new(imds_url).unwrap(),
        drift: Default::default(),
    }
}

fn bind_pods(state: &AgentState) {
    let binding = AzureIdentityBinding {
        metadata: ObjectMeta {
            namespace: Some("app".into()),
            name: Some("b".into()),
            uid: Some("b".into()),
            ..Default::default()
        },
        spec: AzureIdentityBindingSpec {
            azure_identity: "podid-app".into(),
            selector: "demo".into(),
            ..Default::default()
        },
        status: None,
    };
    let pods: Vec<PodView> = (0..PODS)
        .map(|i| PodView {
            key: PodKey::new("app", format!("pod-{i}")),
            node: Some(NODE.into()),
            labels: [("aadpodidbinding".to_string(), "demo".to_string())].into(),
            phase: Phase::Running,
            ip: Some(pod_ip(i)),
            terminating: false,
            host_network: false,
            replica_set: None,
            service_account: "default".into(),
        })
        .collect();
    let d = desired(&pods, std::slice::from_ref(&binding), &[identity()], MatchOptions::default());
    state.shared.update(|idx| {
        // As in a real agent, which watches bindings and identities in every mode.
        idx.apply_binding(binding);
        idx.apply_identity(identity());
        for p in pods {
            idx.put_pod(p);
        }
        for a in d.assignments.values() {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = "Assigned".into();
            idx.apply_assigned(o);
        }
    });
}

async fn serve_agent(state: AgentState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let limits = Limits { requests_per_second: u32::MAX, request_burst: u32::MAX, ..Limits::default() };
    let options = ServeOptions { limits, intercepted: None };
    let metrics = state.metrics.clone();
    tokio::spawn(serve(vec![listener], app(state), options, metrics, std::future::pending()));
    format!("http://{addr}")
}

#[tokio::main]
async fn main() {
    let secs: f64 = std::env::var("PODID_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].identities.push("podid-app".into());
    let emulator = Emulator::start(config).await.unwrap();
    let imds = emulator.imds_url(NODE).expect("emulator serves the node's IMDS");
    let query = "api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net&client_id=a99c11e0-0000-4000-8000-000000a99001";
    let imds_token = format!("{imds}/metadata/identity/oauth2/token?{query}");

    let warm = agent_state(&imds, 300);
    bind_pods(&warm);
    let agent = serve_agent(warm).await;
    let agent_token = format!("{agent}/metadata/identity/oauth2/token?{query}");
    let _ = load("warm-up", &agent_token, 1, 0.2).await;

    let levels: Vec<usize> = std::env::var("PODID_BENCH_CONNS")
        .unwrap_or_else(|_| "1,8,64".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let mut rows = Vec::new();
    for &c in &levels {
        rows.push(load("emulator IMDS", &imds_token, c, secs).await);
        rows.push(load("agent, warm cache", &agent_token, c, secs).await);
    }
    // Cold cache: min_remaining above the token lifetime makes every request a miss, so each one
    // pays the agent's work plus a full upstream IMDS call.
    let cold = agent_state(&imds, u64::MAX / 4);
    bind_pods(&cold);
    let cold_url = format!("{}/metadata/identity/oauth2/token?{query}", serve_agent(cold).await);
    for &c in &levels {
        rows.push(load("agent, cold cache", &cold_url, c, secs).await);
    }

    println!("| target | conns | requests | errors | req/s | p50 µs | p99 µs |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {} | {} |",
            r.target, r.concurrency, r.requests, r.errors, r.rps, r.p50_us, r.p99_us
        );
    }
    println!();
    for &c in &levels {
        let find = |t: &str| rows.iter().find(|r| r.target == t && r.concurrency == c);
        if let (Some(i), Some(a)) = (find("emulator IMDS"), find("agent, warm cache")) {
            println!(
                "conns {c}: agent/IMDS throughput ratio {:.2}, p99 ratio {:.2}",
                a.rps / i.rps,
                a.p99_us as f64 / i.p99_us.max(1) as f64
            );
        }
    }
    let json: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::json!({"target": r.target, "concurrency": r.concurrency, "requests": r.requests, "errors": r.errors, "rps": r.rps, "p50_us": r.p50_us, "p99_us": r.p99_us}))
        .collect();
    for (r, j) in rows.iter().zip(&json) {
        let mut line = j.clone();
        line["suite"] = "token_path".into();
        line["name"] = r.target.into();
        println!("BENCH-JSON {line}");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token_path.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    emulator.shutdown().await;
}
