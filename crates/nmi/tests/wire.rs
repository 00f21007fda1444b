//! The real `podid-nmi` binary, driven over loopback by real clients (`curl`, and raw sockets for
//! what no client sends), with the emulator's IMDS as its upstream — whose request log proves what
//! was forwarded. Its Kubernetes API is unreachable on purpose: none of this depends on it.
//!
//! - where IMDS is has one source of truth (issue #14): `--imds-endpoint`, for forwarded calls as
//!   for tokens, never `--metadata-ip` behind its back;
//! - the proxy's allowlist (issue #15, item 3): every spelling in the issue, CONNECT, `OPTIONS *`,
//!   wrong methods, HTTP/2;
//! - the listener's bounds (item 2): header and idle timeouts, the per-source connection cap and
//!   request rate, each answered as documented, and counted in `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator, Surface};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Agent {
    child: Child,
    addr: SocketAddr,
    admin: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Counts connections to a port nothing should ever reach (the `--metadata-ip` of these tests).
async fn tripwire() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            h.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    (port, hits)
}

/// Starts the agent with IMDS at `imds`, `--metadata-ip` at the tripwire, and `extra` flags.
/// Ports are picked free and may be taken by a parallel test before the agent binds them: then
/// the agent exits, and it is started again on other ports.
async fn agent(imds: &str, tripwire_port: u16, extra: &[&str]) -> Agent {
    for _ in 0..5 {
        if let Some(agent) = try_agent(imds, tripwire_port, extra).await {
            return agent;
        }
    }
    panic!("the agent did not start on free ports five times");
}

async fn try_agent(imds: &str, tripwire_port: u16, extra: &[&str]) -> Option<Agent> {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
        users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_podid-nmi"))
        .args(["--node", "n1", "--iptables=false", "--kubelet-config", "/nonexistent"])
        .args(["--nmi-listen-address", "127.0.0.1", "--nmi-port", &port.to_string()])
        .args(["--http-probe-port", &admin.to_string(), "--prometheus-port", &admin.to_string()])
        .args([
            "--imds-endpoint",
            imds,
            "--metadata-ip",
            "127.0.0.1",
            "--metadata-port",
            &tripwire_port.to_string(),
        ])
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        // The unreachable API server's errors are expected; the agent's own warnings are not.
        .env("RUST_LOG", "podid_nmi=warn,kube_client=off,podid_runtime=off")
        .spawn()
        .unwrap();
    let mut agent = Agent { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), admin, _dir: dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if agent.child.try_wait().unwrap().is_some() {
            return None;
        }
        let healthz = format!("http://127.0.0.1:{admin}/healthz");
        let healthy = tokio::task::spawn_blocking(move || curl(&[], &healthz)).await.unwrap();
        if healthy == (200, "Active".to_string()) && TcpStream::connect(agent.addr).await.is_ok() {
            // Both ports answer as the agent does and it is still running: they are its own.
            tokio::time::sleep(Duration::from_millis(100)).await;
            if agent.child.try_wait().unwrap().is_none() {
                return Some(agent);
            }
            return None;
        }
        assert!(Instant::now() < deadline, "agent not listening within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn emulator() -> (RunningEmulator, String) {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();
    (emulator, imds)
}

fn imds_paths(emulator: &RunningEmulator) -> Vec<String> {
    emulator.requests().into_iter().filter(|r| r.surface == Surface::Imds).map(|r| r.path).collect()
}

/// `curl` with `args`, `Metadata: true` and the path as given; returns (status, body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--path-as-is", "-H", "Metadata: true", "-w", "\n%{http_code}", "--max-time", "20"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or_default();
    (code.parse().unwrap_or(0), body.to_string())
}

/// Sends `raw` and reads the answer until the agent closes; (status, body), status 0 if none.
async fn raw(addr: SocketAddr, raw: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

async fn metrics(agent: &Agent) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", agent.admin);
    tokio::task::spawn_blocking(move || curl(&[], &url).1).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_calls_go_to_the_imds_endpoint_never_to_the_metadata_ip() {
    let (emulator, imds) = emulator().await;
    let (trip, hits) = tripwire().await;
    let agent = agent(&imds, trip, &[]).await;
    let url = format!("http://{}/metadata/instance?api-version=2021-02-01", agent.addr);
    let (status, body) = tokio::task::spawn_blocking(move || curl(&[], &url)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(imds_paths(&emulator), ["/metadata/instance"], "forwarded to --imds-endpoint");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing went to --metadata-ip:--metadata-port");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_spelling_in_issue_15_and_every_unlisted_method_is_refused_and_never_forwarded() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent = agent(&imds, trip, &[]).await;
    let base = format!("http://{}", agent.addr);
    let refused_400 = [
        "/metadata/%u0069dentity/oauth2/token?resource=r",
        "/metadata/identit%u0079/oauth2/token?resource=r",
        "/%u006detadata/%u0069dentity/oauth2/token?resource=r",
        "/metadata/%c4%b1dentity/oauth2/token?resource=r",
        "/metadata/%U0069dentity/info",
        "/metadata/%69nstance?api-version=2021-02-01",
        "/metadata/instance/../identity/oauth2/token?resource=r",
    ];
    let not_forwarded_404 = ["/", "/doesnotexist", "/Metadata/instance", "/latest/meta-data/", "/metadata"];
    let cases: Vec<(Vec<String>, String, u16)> = refused_400
        .iter()
        .map(|p| (vec![], format!("{base}{p}"), 400))
        .chain(not_forwarded_404.iter().map(|p| (vec![], format!("{base}{p}"), 404)))
        .chain([
            (
                vec!["-X".into(), "POST".into()],
                format!("{base}/metadata/instance?api-version=2021-02-01"),
                405,
            ),
            (vec!["-X".into(), "DELETE".into()], format!("{base}/metadata/scheduledevents"), 405),
            (vec!["-X".into(), "OPTIONS".into()], format!("{base}/metadata/instance"), 405),
            (vec!["-X".into(), "OPTIONS".into(), "--request-target".into(), "*".into()], base.clone(), 404),
            (
                vec!["--http2-prior-knowledge".into()],
                format!("{base}/metadata/%u0069dentity/oauth2/token"),
                400,
            ),
        ])
        .collect();
    for (args, url, want) in cases {
        let shown = format!("{args:?} {url}");
        let (status, body) = tokio::task::spawn_blocking(move || {
            curl(&args.iter().map(String::as_str).collect::<Vec<_>>(), &url)
        })
        .await
        .unwrap();
        assert_eq!(status, want, "{shown}: {body}");
    }
    // What curl will not send: CONNECT in authority form, and raw non-ASCII bytes.
    let connect = raw(
        agent.addr,
        b"CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\nMetadata: true\r\n\r\n",
    )
    .await;
    assert!(matches!(connect.0, 400 | 404 | 405), "CONNECT: {connect:?}");
    let dotless = raw(
        agent.addr,
        "GET /metadata/\u{131}dentity/oauth2/token?resource=r HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n".as_bytes(),
    )
    .await;
    assert_eq!(dotless.0, 400, "raw non-ASCII: {dotless:?}");
    assert_eq!(imds_paths(&emulator), Vec::<String>::new(), "nothing reached IMDS");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http2_on_a_proxied_path_is_forwarded_as_http11_not_a_500() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent = agent(&imds, trip, &[]).await;
    let url = format!("http://{}/metadata/instance?api-version=2021-02-01", agent.addr);
    let (status, body) =
        tokio::task::spawn_blocking(move || curl(&["--http2-prior-knowledge"], &url)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("compute"), "{body}");
    let url = format!("http://{}/metadata/scheduledevents?api-version=2020-07-01", agent.addr);
    let post = [
        "--http2-prior-knowledge",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "-d",
        "{\"StartRequests\":[]}",
    ];
    let (status, _) = tokio::task::spawn_blocking(move || curl(&post, &url)).await.unwrap();
    assert_ne!(status, 500, "POST to scheduled events is forwarded");
    assert_eq!(imds_paths(&emulator), ["/metadata/instance", "/metadata/scheduledevents"]);
    emulator.shutdown().await;
}

/// Opens a connection and sends the first bytes of a request head, never the rest.
async fn slowloris(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metadata/identity/oauth2/token?resource=r HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    s
}

/// Waits until the agent closes `s` (EOF or reset); returns how long that took.
async fn closed_after(mut s: TcpStream, started: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at((started + limit).into(), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn slowloris_and_silent_connections_are_closed_after_the_header_timeout() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent =
        agent(&imds, trip, &["--header-timeout-sec", "2", "--max-connections-per-source", "200"]).await;
    let started = Instant::now();
    let mut attackers = Vec::new();
    for i in 0..40 {
        attackers.push(if i % 2 == 0 {
            slowloris(agent.addr).await
        } else {
            TcpStream::connect(agent.addr).await.unwrap()
        });
    }
    // Meanwhile an honest caller is served.
    let url = format!("http://{}/metadata/versions", agent.addr);
    let (status, _) = tokio::task::spawn_blocking(move || curl(&[], &url)).await.unwrap();
    assert_ne!(status, 0, "served during the attack");
    let closes = futures::future::join_all(
        attackers.into_iter().map(|s| closed_after(s, started, Duration::from_secs(30))),
    )
    .await;
    for (i, c) in closes.iter().enumerate() {
        let took = c.unwrap_or_else(|| panic!("attacker {i} still open after 30 s"));
        assert!(took >= Duration::from_millis(1900), "attacker {i} closed before the timeout: {took:?}");
    }
    let m = metrics(&agent).await;
    assert!(m.contains("podid_nmi_connections_closed_total{reason=\"header_timeout\"} 40"), "{m}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent = agent(&imds, trip, &["--idle-timeout-sec", "2", "--header-timeout-sec", "30"]).await;
    let mut s = TcpStream::connect(agent.addr).await.unwrap();
    s.write_all(b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 "), "answered, kept alive");
    let answered = Instant::now();
    let took = closed_after(s, answered, Duration::from_secs(30)).await.expect("closed within 30 s");
    assert!(took >= Duration::from_millis(1900), "not before the idle timeout: {took:?}");
    let m = metrics(&agent).await;
    assert!(m.contains("podid_nmi_connections_closed_total{reason=\"idle_timeout\"} 1"), "{m}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_per_source_cap_are_answered_429_and_closed() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent =
        agent(&imds, trip, &["--max-connections-per-source", "3", "--header-timeout-sec", "30"]).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(agent.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) =
        raw(agent.addr, b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n").await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body.contains("too many connections from 127.0.0.1") && body.contains("--max-connections-per-source"),
        "{body}"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = raw(
        agent.addr,
        b"GET /metadata/versions HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_ne!(status, 429, "served again once the connections closed: {body}");
    let m = metrics(&agent).await;
    assert!(m.contains("podid_nmi_connections_refused_total{reason=\"per_source\"} 1"), "{m}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_over_the_per_source_rate_are_answered_429_with_retry_after() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent =
        agent(&imds, trip, &["--max-requests-per-second-per-source", "1", "--request-burst-per-source", "5"])
            .await;
    let mut s = TcpStream::connect(agent.addr).await.unwrap();
    let mut statuses = Vec::new();
    let mut last = String::new();
    for _ in 0..8 {
        s.write_all(b"GET /doesnotexist HTTP/1.1\r\nHost: x\r\nMetadata: true\r\n\r\n").await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
        statuses.push(last.split_whitespace().nth(1).unwrap().to_string());
    }
    assert_eq!(statuses[..5], ["404"; 5], "the burst is served");
    // One request per second refills: on a slow machine one of the last three may pass.
    let throttled = statuses.iter().filter(|s| *s == "429").count();
    assert!(throttled >= 2 && statuses.iter().all(|s| s == "404" || s == "429"), "{statuses:?}");
    assert!(last.to_ascii_lowercase().contains("retry-after: 1"), "{last}");
    assert!(last.contains("too many requests from 127.0.0.1"), "{last}");
    let m = metrics(&agent).await;
    assert!(m.contains(&format!("podid_nmi_requests_throttled_total {throttled}")), "{m}");
    emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_head_over_16_kib_is_refused_with_431() {
    let (emulator, imds) = emulator().await;
    let (trip, _) = tripwire().await;
    let agent = agent(&imds, trip, &[]).await;
    let resource = "r".repeat(20 * 1024);
    let head = format!(
        "GET /metadata/identity/oauth2/token?resource={resource} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n"
    );
    let (status, _) = raw(agent.addr, head.as_bytes()).await;
    assert_eq!(status, 431);
    let fits = format!(
        "GET /metadata/versions?x={} HTTP/1.1\r\nHost: x\r\nMetadata: true\r\nConnection: close\r\n\r\n",
        "r".repeat(8 * 1024)
    );
    let (status, _) = raw(agent.addr, fits.as_bytes()).await;
    assert_ne!(status, 431, "8 KB still fits");
    emulator.shutdown().await;
}
