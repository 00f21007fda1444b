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
//!
//! Verified callers (`--verified-callers`, issue #18) are measured side by side: the same warm
//! agent with a [`podid_nmi::verify::Verifier`] on the real `/proc`. The load generator runs in
//! this process, on the node's network, so every connection is attributed the way a hostNetwork
//! pod's is (its socket → this process → its cgroup): the bench moves itself into a cgroup v2
//! directory named like a kubelet pod's (`/podid-bench-<pid>/pod<uid>`, removed at the end) and
//! binds that UID to pod-0. Root only; without root the verified rows are left out, and said so.
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
/// The UID of pod-0, which the bench's cgroup names for verified callers.
const BENCH_UID: &str = "0be4c400-0000-4000-8000-00000000be4c";
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
/// Latency of `n` requests, each on a new connection (p50, p99 in µs): what a connection's first
/// request costs.
async fn first_requests(url: &str, n: usize) -> (u64, u64) {
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n {
        let mut http = HttpConnector::new();
        http.set_local_address(Some(pod_ip(0)));
        let client: Client<_, Body> =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(http);
        let req = http::Request::get(url).header("Metadata", "true").body(Body::empty()).unwrap();
        let t = Instant::now();
        if let Ok(resp) = client.request(req).await {
            let ok = resp.status().is_success();
            let _ = resp.into_body().collect().await;
            if ok {
                lat.push(t.elapsed().as_micros() as u64);
            }
        }
    }
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0)
    };
    (pct(0.5), pct(0.99))
}

/// This process in a cgroup v2 directory named like pod `BENCH_UID`'s; `None` without root or
/// a unified hierarchy. Dropping it moves the process back and removes the directory.
struct PodCgroup {
    dir: std::path::PathBuf,
    back: std::path::PathBuf,
}

impl PodCgroup {
    fn enter() -> Option<Self> {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("cgroup.procs").is_file() && p.join("cgroup.controllers").is_file())?;
        let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
        let own = own.lines().find_map(|l| l.strip_prefix("0::"))?.trim_start_matches('/').to_owned();
        let top = root.join(format!("podid-bench-{}", std::process::id()));
        let dir = top.join(format!("pod{BENCH_UID}"));
        std::fs::create_dir_all(&dir).ok()?;
        let pid = std::process::id().to_string();
        // Every thread of the process moves with cgroup.procs.
        std::fs::write(dir.join("cgroup.procs"), &pid).ok()?;
        Some(Self { dir, back: root.join(own) })
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.back.join("cgroup.procs"), std::process::id().to_string());
        let _ = std::fs::remove_dir(&self.dir);
        if let Some(top) = self.dir.parent() {
            let _ = std::fs::remove_dir(top);
        }
    }
}

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
    agent_state_with(imds_url, cache_min_remaining, false)
}

fn agent_state_with(imds_url: &str, cache_min_remaining: u64, verified: bool) -> AgentState {
    let imds = podid_azure::ImdsClient::new(podid_azure::ImdsOptions::at(imds_url.parse().unwrap())).unwrap();
    let http = podid_azure::build_client(&podid_azure::HttpOptions::default()).unwrap();
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let provider = Arc::new(AzureProvider { imds, http, kube: None, metrics: metrics.clone() });
    let mut config = Config::new(NODE, Mode::Standard);
    config.mic_namespace = "kube-system".into();
    if verified {
        let metadata: SocketAddr = "169.254.169.254:80".parse().unwrap();
        config.verified_callers = Some(Arc::new(podid_nmi::verify::Verifier::new("/proc", metadata)));
    }
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
        // pod-0 with a UID, as the API gives it: what verified callers attribute connections to.
        let pod0: podid_api::Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "app", "name": "pod-0", "uid": BENCH_UID, "labels": {"aadpodidbinding": "demo"}},
            "spec": {"nodeName": NODE, "containers": []},
            "status": {"phase": "Running", "podIP": pod_ip(0).to_string()}
        }))
        .unwrap();
        idx.apply_pod(&pod0);
        for a in d.assignments.values() {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = "Assigned".into();
            idx.apply_assigned(o);
        }
    });
}

/// The agent's router on axum's own listener, without the bounded one (no timeouts, no
/// per-source accounting): what the bounds cost, measured against it in the same run.
async fn serve_agent_unbounded(state: AgentState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = app(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await });
    format!("http://{addr}")
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
    let unbounded = agent_state(&imds, 300);
    bind_pods(&unbounded);
    let unbounded_url =
        format!("{}/metadata/identity/oauth2/token?{query}", serve_agent_unbounded(unbounded).await);
    let _ = load("warm-up", &unbounded_url, 1, 0.2).await;
    let mut rows = Vec::new();
    for &c in &levels {
        rows.push(load("emulator IMDS", &imds_token, c, secs).await);
        rows.push(load("agent, warm cache", &agent_token, c, secs).await);
        rows.push(load("agent, warm cache, unbounded listener", &unbounded_url, c, secs).await);
    }
    // Cold cache: min_remaining above the token lifetime makes every request a miss, so each one
    // pays the agent's work plus a full upstream IMDS call.
    let cold = agent_state(&imds, u64::MAX / 4);
    bind_pods(&cold);
    let cold_url = format!("{}/metadata/identity/oauth2/token?{query}", serve_agent(cold).await);
    for &c in &levels {
        rows.push(load("agent, cold cache", &cold_url, c, secs).await);
    }

    // Verified callers: the same warm agent, each connection checked against the kernel once.
    let mut first = Vec::new();
    match PodCgroup::enter() {
        Some(cgroup) => {
            let verified = agent_state_with(&imds, 300, true);
            bind_pods(&verified);
            let verified_url =
                format!("{}/metadata/identity/oauth2/token?{query}", serve_agent(verified).await);
            let _ = load("warm-up", &verified_url, 1, 0.2).await;
            for &c in &levels {
                rows.push(load("agent, warm cache, verified callers", &verified_url, c, secs).await);
                rows.push(load("agent, warm cache", &agent_token, c, secs).await);
            }
            first.push(("off", first_requests(&agent_token, 300).await));
            first.push(("on", first_requests(&verified_url, 300).await));
            drop(cgroup);
        }
        None => println!("verified callers: not measured (needs root and a cgroup v2 hierarchy)\n"),
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
    for &c in &levels {
        let find = |t: &str| rows.iter().find(|r| r.target == t && r.concurrency == c);
        if let (Some(b), Some(u)) = (find("agent, warm cache"), find("agent, warm cache, unbounded listener"))
        {
            println!(
                "conns {c}: bounded/unbounded listener throughput ratio {:.2}, p99 ratio {:.2}",
                b.rps / u.rps,
                b.p99_us as f64 / u.p99_us.max(1) as f64
            );
        }
    }
    for &c in &levels {
        let all = |t: &'static str| rows.iter().filter(move |r| r.target == t && r.concurrency == c);
        if let (Some(v), Some(a)) =
            (all("agent, warm cache, verified callers").next(), all("agent, warm cache").next_back())
        {
            println!(
                "conns {c}: verified/unverified throughput ratio {:.2}, p99 ratio {:.2}",
                v.rps / a.rps,
                v.p99_us as f64 / a.p99_us.max(1) as f64
            );
        }
    }
    for (verified, (p50, p99)) in &first {
        println!("a new connection's first request, verified callers {verified}: p50 {p50} µs, p99 {p99} µs");
        println!(
            "BENCH-JSON {}",
            serde_json::json!({"suite": "token_path", "name": format!("first request on a new connection, verified callers {verified}"), "p50_us": p50, "p99_us": p99})
        );
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
