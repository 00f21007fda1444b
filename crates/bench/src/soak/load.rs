//! The agent process under soak, and the load workers that speak as the slots' pods.
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Body;
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use podid_testkit::TestCluster;
use tokio::sync::Mutex;

use super::{Kind, Outcome, SLOTS, World, kind, slot_ip};
use crate::machine::rss_kib;

/// The `podid-nmi` process; killed on drop.
pub(crate) struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    pub(crate) async fn start(
        bin: &Path,
        cluster: &TestCluster,
        node: &str,
        imds: &str,
    ) -> anyhow::Result<Self> {
        let (port, admin) = (free_port()?, free_port()?);
        let imds_port = imds.rsplit(':').next().unwrap_or_default().to_string();
        let child = Command::new(bin)
            .args(["--node", node, "--operation-mode", "managed", "--forceNamespaced", "--iptables=false"])
            .args([
                "--nmi-port",
                &port.to_string(),
                "--kubelet-config",
                "/nonexistent",
                "--imds-endpoint",
                imds,
            ])
            .args(["--metadata-ip", "127.0.0.1", "--metadata-port", &imds_port])
            .args(["--http-probe-port", &admin.to_string(), "--prometheus-port", &admin.to_string()])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("RUST_LOG", "warn")
            .spawn()
            .with_context(|| format!("start {}", bin.display()))?;
        let agent = Self { child, port };
        let client: Client<_, Body> = Client::builder(TokioExecutor::new()).build(HttpConnector::new());
        let ready: http::Uri = format!("http://127.0.0.1:{admin}/readyz").parse()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if client.get(ready.clone()).await.is_ok_and(|r| r.status() == 200) {
                return Ok(agent);
            }
            anyhow::ensure!(Instant::now() < deadline, "agent not ready within 120 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub(crate) fn token_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fvault.azure.net",
            self.port
        )
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id()).unwrap_or(0)
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Worker `w` of `of`: cycles over its slots until `deadline`, classifying every answer.
pub(crate) async fn worker(
    w: usize,
    of: usize,
    url: String,
    world: Arc<World>,
    outcome: Arc<Mutex<Outcome>>,
    deadline: Instant,
) {
    let slots: Vec<usize> = (0..SLOTS).filter(|s| s % of.max(1) == w % SLOTS).collect();
    let slots = if slots.is_empty() { vec![w % SLOTS] } else { slots };
    let clients: Vec<(usize, Client<HttpConnector, Body>)> = slots
        .iter()
        .map(|&s| {
            let mut http = HttpConnector::new();
            http.set_local_address(Some(slot_ip(s)));
            (s, Client::builder(TokioExecutor::new()).build(http))
        })
        .collect();
    let mut local = Outcome::new(0.0);
    let mut i = 0;
    while Instant::now() < deadline {
        let (slot, client) = &clients[i % clients.len()];
        i += 1;
        let before = world.state(*slot);
        let (status, client_id) = request(client, &url).await;
        let after = world.state(*slot);
        classify(&mut local, &world, *slot, before, after, status, client_id.as_deref());
        if local.requests.is_multiple_of(2000) {
            outcome.lock().await.merge(std::mem::replace(&mut local, Outcome::new(0.0)));
        }
    }
    outcome.lock().await.merge(local);
}

/// One token request: (status, the client ID the token was issued to: its `appid` claim, if
/// any); status 0 when the connection failed.
async fn request(client: &Client<HttpConnector, Body>, url: &str) -> (u16, Option<String>) {
    let Ok(req) = http::Request::get(url).header("Metadata", "true").body(Body::empty()) else {
        return (0, None);
    };
    let Ok(resp) = client.request(req).await else { return (0, None) };
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let client_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("access_token")?.as_str().and_then(appid));
    (status, client_id)
}

/// The `appid` claim of a JWT (not verified: the emulator signed it; only who it names matters).
fn appid(jwt: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("appid").or_else(|| claims.get("azp"))?.as_str().map(str::to_string)
}

/// Counts one answer as ok, expected error or unexpected. `before`/`after` are the slot's
/// (on, settled) state around the request: only a state that held throughout is held against it.
pub(crate) fn classify(
    o: &mut Outcome,
    world: &World,
    slot: usize,
    before: (bool, bool),
    after: (bool, bool),
    status: u16,
    client_id: Option<&str>,
) {
    o.requests += 1;
    let settled_on = before.0 && after.0 && before.1;
    let settled_off = !before.0 && !after.0 && before.1;
    let (right, wrong) = match kind(slot) {
        Kind::Stable | Kind::Churn => (&world.client_a, &world.client_b),
        Kind::Toggle => (&world.client_b, &world.client_a),
    };
    if status == 200 {
        match client_id {
            Some(c) if c == right => {
                if kind(slot) == Kind::Toggle && settled_off {
                    o.unexpected(format!("slot {slot}: token served more than 5 s after unbind"));
                } else {
                    o.ok += 1;
                }
            }
            Some(c) if c == wrong => o.unexpected(format!("slot {slot}: WRONG IDENTITY token {c}")),
            other => o.unexpected(format!("slot {slot}: 200 without the expected client_id ({other:?})")),
        }
        return;
    }
    let excused = match kind(slot) {
        Kind::Stable => false,
        Kind::Churn | Kind::Toggle => !settled_on,
    };
    if excused && (400..500).contains(&status) {
        *o.expected.entry(status).or_default() += 1;
    } else {
        o.unexpected(format!("slot {slot} ({:?}): status {status}", kind(slot)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64};

    fn world() -> World {
        World {
            start: Instant::now(),
            present: (0..SLOTS).map(|_| AtomicBool::new(true)).collect(),
            since_ms: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            client_a: "a".into(),
            client_b: "b".into(),
        }
    }

    const SETTLED_ON: (bool, bool) = (true, true);
    const FRESH_OFF: (bool, bool) = (false, false);
    const SETTLED_OFF: (bool, bool) = (false, true);

    fn one(slot: usize, state: (bool, bool), status: u16, client: Option<&str>) -> Outcome {
        let mut o = Outcome::new(1.0);
        classify(&mut o, &world(), slot, state, state, status, client);
        o
    }

    #[test]
    fn another_identitys_token_is_always_unexpected() {
        assert_eq!(one(0, SETTLED_ON, 200, Some("b")).unexpected_count, 1);
        assert_eq!(one(9, SETTLED_ON, 200, Some("a")).unexpected_count, 1);
        assert_eq!(one(5, FRESH_OFF, 200, Some("b")).unexpected_count, 1);
    }

    #[test]
    fn errors_are_expected_only_while_a_change_is_fresh_or_the_pod_is_off() {
        assert_eq!(one(0, SETTLED_ON, 403, None).unexpected_count, 1, "stable pods never fail");
        assert_eq!(one(5, FRESH_OFF, 404, None).expected.get(&404), Some(&1));
        assert_eq!(one(9, SETTLED_OFF, 403, None).expected.get(&403), Some(&1));
        assert_eq!(one(9, SETTLED_ON, 403, None).unexpected_count, 1, "bound for long: must be served");
        assert_eq!(one(9, FRESH_OFF, 500, None).unexpected_count, 1, "5xx is never expected");
    }

    #[test]
    fn a_grant_long_after_unbind_is_unexpected_but_not_just_after() {
        assert_eq!(one(9, SETTLED_OFF, 200, Some("b")).unexpected_count, 1);
        assert_eq!(one(9, FRESH_OFF, 200, Some("b")).ok, 1);
    }
}
