//! A hostile pod against the agent (issue #15), side by side in one run: the real `podid-nmi`
//! binary (managed mode) against the real kube-apiserver and the emulator's IMDS, every pod a
//! 127.0.3.x source address of this process.
//!
//! 1. victims' token p99 (8 pods, 50 paced warm requests per second each) idle, during a
//!    500-connection slowloris (50 connections from each of 10 attacker pods, each sending half a
//!    request head) and during 5,000 connections from one pod (reopened as the agent closes
//!    them); how long the slowloris sockets stay open against the header timeout; the agent's
//!    open file descriptors during the flood;
//! 2. RSS and `/metrics` size after one pod asks for 100,000 distinct `resource` values (and for
//!    4,000 values of 8 KB, the measurement), on an agent whose rate limit is off so every
//!    request reaches the token cache (with the default limit most would be answered 429).
//!
//!   cargo bench -p podid-nmi --bench hostile
//!   PODID_BENCH_RESOURCES=20000 PODID_BENCH_PHASE_SECS=5 cargo bench -p podid-nmi --bench hostile
//!   PODID_BENCH_NMI=/path/to/podid-nmi PODID_BENCH_SPRAY_FLAGS= ...   # another build of the agent
//!
//! Prints a Markdown table and `BENCH-JSON {…}` lines (suite `hostile`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";
const VICTIMS: u8 = 8;
const SLOW_SOURCES: u8 = 10;
const SLOW_PER_SOURCE: usize = 50;
const FLOOD: usize = 5000;
const HEADER_TIMEOUT_SECS: u64 = 10;

fn victim(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 3, 1 + i))
}
fn slow_source(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 3, 100 + i))
}
const FLOODER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 200));
const SPRAYER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 3, 201));

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// CPU seconds (user + system) a process has used (`/proc/<pid>/stat`, 100 ticks a second).
fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let f: Vec<u64> = after.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    // Fields 14 and 15 of the line; `after` starts at field 3 (state, not a number, skipped).
    (f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)) as f64 / 100.0
}

/// Runs `fut` on a runtime of its own on one thread, as a pod limited to one CPU would.
async fn on_one_thread<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(fut)
    })
    .await
    .unwrap()
}

struct Agent {
    child: Child,
    port: u16,
    admin: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
    fn token_url(&self, resource: &str) -> String {
        format!(
            "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}&client_id={CLIENT}",
            self.port
        )
    }
}

async fn start_agent(cluster: &TestCluster, node: &str, imds: &str, extra: &[&str]) -> Agent {
    let bin =
        std::env::var("PODID_BENCH_NMI").unwrap_or_else(|_| env!("CARGO_BIN_EXE_podid-nmi").to_string());
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(bin)
        .args(["--node", node, "--operation-mode", "managed", "--forceNamespaced", "--iptables=false"])
        .args(["--nmi-port", &port.to_string(), "--kubelet-config", "/nonexistent", "--imds-endpoint", imds])
        .args(["--http-probe-port", &admin.to_string(), "--prometheus-port", &admin.to_string()])
        .args(extra)
        .env("KUBECONFIG", cluster.kubeconfig_path())
        .env("RUST_LOG", "error")
        .spawn()
        .unwrap();
    let agent = Agent { child, port, admin };
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    while get(IpAddr::V4(Ipv4Addr::LOCALHOST), &ready).await.0 != 200 {
        assert!(Instant::now() < deadline, "agent not ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent
}

fn client_from(ip: IpAddr) -> Client<HttpConnector, Body> {
    let mut http = HttpConnector::new();
    http.set_local_address(Some(ip));
    Client::builder(TokioExecutor::new()).build(http)
}

/// One GET from `from`; (status, body length, latency); a connection error is status 0.
async fn get(from: IpAddr, url: &str) -> (u16, usize, Duration) {
    let client = client_from(from);
    timed(&client, url).await
}

async fn timed(client: &Client<HttpConnector, Body>, url: &str) -> (u16, usize, Duration) {
    let req = http::Request::get(url).header("Metadata", "true").body(Body::empty()).unwrap();
    let t = Instant::now();
    let Ok(resp) = client.request(req).await else { return (0, 0, t.elapsed()) };
    let status = resp.status().as_u16();
    let len = resp.into_body().collect().await.map(|b| b.to_bytes().len()).unwrap_or(0);
    (status, len, t.elapsed())
}

/// Latencies of the victims' paced warm token requests for `secs` (errors counted apart), on a
/// runtime of their own so the attackers' tasks do not delay them inside this process.
async fn victims(agent: &Agent, secs: f64) -> (Vec<u64>, usize) {
    let url = agent.token_url("https://vault.azure.net");
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(victims_on(url, secs))
    })
    .await
    .unwrap()
}

async fn victims_on(url: String, secs: f64) -> (Vec<u64>, usize) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let tasks: Vec<_> = (0..VICTIMS)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let client = client_from(victim(i));
                let mut tick = tokio::time::interval(Duration::from_millis(20));
                let (mut lat, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    tick.tick().await;
                    let (status, _, took) = timed(&client, &url).await;
                    if status == 200 { lat.push(took.as_micros() as u64) } else { errors += 1 }
                }
                (lat, errors)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_unstable();
    (all, errors)
}

fn pct(sorted: &[u64], p: f64) -> u64 {
    sorted.get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

async fn connect_from(ip: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(to).await
}

/// Opens a slowloris connection from `ip` and returns how long until the agent closed it.
async fn slowloris(ip: IpAddr, to: SocketAddr, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut s = connect_from(ip, to).await.ok()?;
    s.write_all(
        b"GET /metadata/identity/oauth2/token?resource=https://vault.azure.net HTTP/1.1\r\nHost: x\r\n",
    )
    .await
    .ok()?;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

struct Phase {
    name: &'static str,
    p50: u64,
    p99: u64,
    requests: usize,
    errors: usize,
    /// The agent's CPU use during the phase, in % of one core.
    agent_cpu: f64,
    /// This process's (victims and attackers), in % of one core.
    bench_cpu: f64,
}

/// Measures the victims for `secs` while whatever else runs; with CPU use of agent and bench.
async fn phase(name: &'static str, agent: &Agent, secs: f64) -> Phase {
    let pid = agent.child.id().to_string();
    let (a0, b0, t0) = (cpu_secs(&pid), cpu_secs("self"), Instant::now());
    let (lat, errors) = victims(agent, secs).await;
    let wall = t0.elapsed().as_secs_f64();
    let (a1, b1) = (cpu_secs(&pid), cpu_secs("self"));
    Phase {
        name,
        p50: pct(&lat, 0.5),
        p99: pct(&lat, 0.99),
        requests: lat.len(),
        errors,
        agent_cpu: (a1 - a0) / wall * 100.0,
        bench_cpu: (b1 - b0) / wall * 100.0,
    }
}

/// 5,000 connections from one pod, each reopened (after a second) whenever the agent closes it,
/// until `stop`; returns (connections, connections reset at once, refusals answered 429).
async fn flood(to: SocketAddr, stop: Arc<AtomicBool>) -> (usize, usize, usize) {
    let (connects, failures, refused) =
        (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (stop, connects, failures, refused) =
                (stop.clone(), connects.clone(), failures.clone(), refused.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match connect_from(FLOODER, to).await {
                        Ok(mut s) => {
                            connects.fetch_add(1, Ordering::Relaxed);
                            let _ = s
                                .write_all(
                                    b"GET /metadata/instance HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n",
                                )
                                .await;
                            let mut buf = [0u8; 64];
                            // Held until the agent answers or closes it (or the flood ends).
                            let read = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
                            if let Ok(Ok(n)) = read
                                && buf[..n].starts_with(b"HTTP/1.1 429")
                            {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            while !stop.load(Ordering::Relaxed) {
                                let read =
                                    tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await;
                                if let Ok(Ok(0) | Err(_)) = read {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            // Mostly ECONNRESET: the agent reset it at once (over the cap).
                            if e.kind() != std::io::ErrorKind::ConnectionReset {
                                eprintln!("flood: connect error: {e}");
                            }
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    (connects.load(Ordering::Relaxed), failures.load(Ordering::Relaxed), refused.load(Ordering::Relaxed))
}

/// `count` distinct resources of about `bytes` bytes from one pod, `conns` at a time; returns
/// (answers by status class, seconds).
async fn spray(agent: &Agent, count: usize, bytes: usize, conns: usize) -> (Vec<(u16, usize)>, f64) {
    let started = Instant::now();
    let client = client_from(SPRAYER);
    let pad = "p".repeat(bytes.saturating_sub(40));
    let statuses: Vec<u16> = futures::stream::iter(0..count)
        .map(|i| {
            let url = agent.token_url(&format!("https://spray-{i}.example/{pad}"));
            let client = client.clone();
            async move { timed(&client, &url).await.0 }
        })
        .buffer_unordered(conns)
        .collect()
        .await;
    let mut by: std::collections::BTreeMap<u16, usize> = Default::default();
    for s in statuses {
        *by.entry(s).or_default() += 1;
    }
    (by.into_iter().collect(), started.elapsed().as_secs_f64())
}

async fn metrics_text(agent: &Agent) -> String {
    let client = client_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let req =
        http::Request::get(format!("http://127.0.0.1:{}/metrics", agent.admin)).body(Body::empty()).unwrap();
    let resp = client.request(req).await.unwrap();
    String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned()
}

fn gauge(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().last())
        .unwrap_or("-")
        .to_string()
}

struct World {
    cluster: &'static TestCluster,
    node: String,
    imds: String,
    _emulator: podid_emulator::RunningEmulator,
}

async fn world() -> World {
    let cluster = TestCluster::shared().await.unwrap();
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("nmi-hostile").await.unwrap();
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].identities.push("podid-app".into());
    let emulator = Emulator::start(config).await.unwrap();
    let sub = emulator.subscription_id();
    let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();
    let node = format!("{ns}-n0");
    NodeBuilder::new(node.as_str())
        .vmss(&sub, "MC_podid_podid_eastus", "aks-nodepool1-12345678-vmss", 0)
        .create(&client)
        .await
        .unwrap();
    let ips: Vec<IpAddr> = (0..VICTIMS)
        .map(victim)
        .chain((0..SLOW_SOURCES).map(slow_source))
        .chain([FLOODER, SPRAYER])
        .collect();
    for (i, ip) in ips.iter().enumerate() {
        PodBuilder::new(&ns, format!("p{i}"))
            .label("aadpodidbinding", "app")
            .node(&node)
            .ip(*ip)
            .create(&client)
            .await
            .unwrap();
    }
    let identity = AzureIdentity {
        metadata: ObjectMeta {
            name: Some("app-id".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        spec: AzureIdentitySpec {
            resource_id: format!(
                "/subscriptions/{sub}/resourcegroups/podid-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/podid-app"
            ),
            client_id: CLIENT.into(),
            ..Default::default()
        },
        status: None,
    };
    Api::<AzureIdentity>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &identity)
        .await
        .unwrap();
    let binding = AzureIdentityBinding {
        metadata: ObjectMeta {
            name: Some("app-binding".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        spec: AzureIdentityBindingSpec {
            azure_identity: "app-id".into(),
            selector: "app".into(),
            ..Default::default()
        },
        status: None,
    };
    Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    World { cluster, node, imds, _emulator: emulator }
}

#[tokio::main]
async fn main() {
    let secs = env_num("PODID_BENCH_PHASE_SECS", 8) as f64;
    let resources = env_num("PODID_BENCH_RESOURCES", 100_000) as usize;
    let w = world().await;

    // 1. Victims idle, during a slowloris, during a flood: the agent with its default bounds.
    let agent = start_agent(w.cluster, &w.node, &w.imds, &[]).await;
    for i in 0..VICTIMS {
        assert_eq!(
            get(victim(i), &agent.token_url("https://vault.azure.net")).await.0,
            200,
            "victim {i} warm-up"
        );
    }
    let idle = phase("idle", &agent, secs).await;

    let limit = Duration::from_secs(HEADER_TIMEOUT_SECS * 4);
    let to = agent.addr();
    let slow = tokio::spawn(on_one_thread(async move {
        let sockets = (0..SLOW_SOURCES).flat_map(|s| (0..SLOW_PER_SOURCE).map(move |_| slow_source(s)));
        futures::future::join_all(sockets.map(|ip| slowloris(ip, to, limit))).await
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fds_slow = open_fds(agent.child.id());
    let during_slow =
        phase("500-connection slowloris", &agent, secs.min(HEADER_TIMEOUT_SECS as f64 - 1.5)).await;
    let mut closed: Vec<f64> = Vec::new();
    let mut still_open = 0;
    for c in slow.await.unwrap() {
        match c {
            Some(d) => closed.push(d.as_secs_f64()),
            None => still_open += 1,
        }
    }
    closed.sort_by(f64::total_cmp);

    let stop = Arc::new(AtomicBool::new(false));
    let flooding = tokio::spawn(on_one_thread(flood(agent.addr(), stop.clone())));
    let pid = agent.child.id();
    let sampling = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut max_fds = 0;
            while !stop.load(Ordering::Relaxed) {
                max_fds = max_fds.max(open_fds(pid));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            max_fds
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during_flood = phase("5,000 connections from one pod", &agent, secs).await;
    stop.store(true, Ordering::Relaxed);
    let (connects, connect_errors, answered_429) = flooding.await.unwrap();
    let flood_fds = sampling.await.unwrap();
    let idle_after = phase("idle again", &agent, secs.min(3.0)).await;
    let rss_bounded_default = rss_kib(agent.child.id());
    drop(agent);

    // 2. One pod, many resources: rate limit off so every request reaches the cache
    //    (`PODID_BENCH_SPRAY_FLAGS=` for a build of the agent that has no such flag).
    let spray_flags = std::env::var("PODID_BENCH_SPRAY_FLAGS")
        .unwrap_or_else(|_| "--max-requests-per-second-per-source 0".into());
    let spray_flags: Vec<&str> = spray_flags.split_whitespace().collect();
    let agent = start_agent(w.cluster, &w.node, &w.imds, &spray_flags).await;
    let pid = agent.child.id();
    assert_eq!(get(victim(0), &agent.token_url("https://vault.azure.net")).await.0, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);
    let metrics_before = metrics_text(&agent).await.len();
    let (short, short_secs) = spray(&agent, resources, 60, 16).await;
    let rss_short = rss_kib(pid);
    let m = metrics_text(&agent).await;
    let metrics_short = m.len();
    let (entries, bytes) =
        (gauge(&m, "podid_nmi_token_cache_entries"), gauge(&m, "podid_nmi_token_cache_bytes"));
    let (long, long_secs) = spray(&agent, 4000, 8 * 1024, 16).await;
    let rss_long = rss_kib(pid);
    let metrics_long = metrics_text(&agent).await.len();
    let victim_after = get(victim(0), &agent.token_url("https://vault.azure.net")).await.0;
    drop(agent);

    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "| victims' warm token requests | requests | errors | p50 µs | p99 µs | p99 ÷ idle p99 | agent CPU | bench CPU |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for p in [&idle, &during_slow, &during_flood, &idle_after] {
        let ratio = p.p99 as f64 / idle.p99.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {} | {ratio:.2} | {:.0} % | {:.0} % |",
            p.name, p.requests, p.errors, p.p50, p.p99, p.agent_cpu, p.bench_cpu
        );
    }
    println!();
    println!(
        "slowloris: {} sockets, agent fds with them open {fds_slow}; closed by the agent after {:.1}–{:.1} s (median {:.1} s; header timeout {HEADER_TIMEOUT_SECS} s); still open after {} s: {still_open}",
        closed.len() + still_open,
        closed.first().copied().unwrap_or(0.0),
        closed.last().copied().unwrap_or(0.0),
        closed.get(closed.len() / 2).copied().unwrap_or(0.0),
        limit.as_secs()
    );
    println!(
        "flood: {} connections from one pod, {connect_errors} of them reset at once, {answered_429} answered 429; agent's open fds at most {flood_fds}; agent RSS after {:.1} MiB",
        connects + connect_errors,
        mib(rss_bounded_default)
    );
    println!();
    println!(
        "| one pod asks for | answers | seconds | agent RSS before → after | /metrics bytes before → after | cache entries / bytes |"
    );
    println!("|---|---|---:|---:|---:|---|");
    println!(
        "| {resources} distinct resources (~60 B) | {short:?} | {short_secs:.0} | {:.1} → {:.1} MiB | {metrics_before} → {metrics_short} | {entries} / {bytes} |",
        mib(rss_before),
        mib(rss_short)
    );
    println!(
        "| then 4,000 distinct resources of 8 KB | {long:?} | {long_secs:.0} | {:.1} → {:.1} MiB | {metrics_short} → {metrics_long} | |",
        mib(rss_short),
        mib(rss_long)
    );
    println!("a victim's request afterwards: {victim_after}");
    for p in [&idle, &during_slow, &during_flood, &idle_after] {
        let line = serde_json::json!({"suite": "hostile", "name": format!("victims p99: {}", p.name), "requests": p.requests, "errors": p.errors, "p50_us": p.p50, "p99_us": p.p99, "p99_vs_idle": p.p99 as f64 / idle.p99.max(1) as f64, "agent_cpu_pct": p.agent_cpu, "bench_cpu_pct": p.bench_cpu});
        println!("BENCH-JSON {line}");
    }
    let lines = [
        serde_json::json!({"suite": "hostile", "name": "slowloris sockets closed", "sockets": closed.len() + still_open, "still_open": still_open, "closed_min_s": closed.first(), "closed_max_s": closed.last(), "header_timeout_s": HEADER_TIMEOUT_SECS, "agent_fds": fds_slow}),
        serde_json::json!({"suite": "hostile", "name": "flood from one pod", "connections": connects + connect_errors, "reset_at_once": connect_errors, "answered_429": answered_429, "agent_max_fds": flood_fds}),
        serde_json::json!({"suite": "hostile", "name": "distinct resources from one pod", "resources": resources, "rss_before_kib": rss_before, "rss_after_kib": rss_short, "metrics_before_bytes": metrics_before, "metrics_after_bytes": metrics_short, "cache_entries": entries, "cache_bytes": bytes, "seconds": short_secs}),
        serde_json::json!({"suite": "hostile", "name": "8 KB resources from one pod", "resources": 4000, "rss_after_kib": rss_long, "metrics_after_bytes": metrics_long, "seconds": long_secs}),
    ];
    for l in lines {
        println!("BENCH-JSON {l}");
    }
}
