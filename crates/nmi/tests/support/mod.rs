//! Test harness: an agent with a scripted token provider, a hand-driven clock and a fake IMDS.
#![allow(dead_code)]

pub mod netns;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use parking_lot::Mutex;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AssignedState, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec,
    AzurePodIdentityException, AzurePodIdentityExceptionSpec,
};
use podid_core::matching::{MatchOptions, desired};
use podid_core::pod::Phase;
use podid_core::{PodKey, PodView};
use podid_nmi::cache::TokenCache;
use podid_nmi::http::limits::Limits;
use podid_nmi::http::proxy::Proxy;
use podid_nmi::http::serve::{ServeOptions, serve};
use podid_nmi::metrics::Metrics;
use podid_nmi::token::{ManualClock, Token, TokenError, TokenFuture, TokenProvider, TokenSet, TokenSource};
use podid_nmi::{AgentState, Config, Mode, Shared, app};
use tower::ServiceExt;

pub const POD_IP: &str = "10.244.0.10";
pub const NOW: u64 = 1_700_000_000;

pub fn client(name: &str) -> String {
    format!("{name}0000-0000-0000-0000-000000000000")
}

pub fn rid(name: &str) -> String {
    format!(
        "/subscriptions/s/resourcegroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )
}

/// Answers with `token-for-<client id or "system">-<resource>`, valid for an hour, after an
/// optional delay; or fails as told. Counts calls.
pub struct FakeProvider {
    clock: Arc<ManualClock>,
    calls: AtomicUsize,
    delay: Mutex<Duration>,
    failure: Mutex<Option<TokenError>>,
}

impl FakeProvider {
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    pub fn set_delay(&self, d: Duration) {
        *self.delay.lock() = d;
    }
    pub fn fail_with(&self, e: TokenError) {
        *self.failure.lock() = Some(e);
    }
}

impl TokenProvider for FakeProvider {
    fn fetch(&self, source: &TokenSource, resource: &str) -> TokenFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let who = match source {
            TokenSource::Imds { client_id } => client_id.clone().unwrap_or_else(|| "system".into()),
            TokenSource::ServicePrincipal { client_id, .. } => client_id.clone(),
            TokenSource::Federated { client_id, namespace, service_account, .. } => {
                format!("{client_id}-as-{namespace}:{service_account}")
            }
        };
        let now = podid_nmi::token::Clock::now(self.clock.as_ref());
        let delay = *self.delay.lock();
        let failure = self.failure.lock().clone();
        let resource = resource.to_string();
        Box::pin(async move {
            tokio::time::sleep(delay).await;
            if let Some(e) = failure {
                return Err(e);
            }
            Ok(TokenSet::single(Token {
                access_token: podid_azure::Secret::new(format!("token-for-{who}-{resource}")),
                refresh_token: String::new(),
                expires_in: Some(3600),
                expires_on: Some(now + 3600),
                not_before: Some(now.to_string()),
                resource,
                token_type: "Bearer".into(),
                client_id: None,
                obtained_at: now,
            }))
        })
    }
}

/// A stand-in IMDS for proxied calls: 404 `imds says no`, counting hits.
pub struct FakeImds {
    hits: Arc<AtomicUsize>,
    pub url: String,
}

impl FakeImds {
    fn start() -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let router = axum::Router::new().fallback(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (StatusCode::NOT_FOUND, "imds says no")
            }
        });
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", std_listener.local_addr().unwrap());
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { hits, url }
    }
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// One request over a real socket (`Connection: close`), as the current process: status, body.
pub async fn wire_get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    parse_response(&buf)
}

/// Status and body of a raw HTTP/1.1 response (`(0, "")` when there is none).
pub fn parse_response(raw: &[u8]) -> (StatusCode, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (StatusCode::from_u16(code).unwrap_or(StatusCode::from_u16(599).unwrap()), body)
}

pub struct Resp {
    pub status: StatusCode,
    pub body: String,
    pub content_type: String,
    pub nosniff: bool,
    pub retry_after: Option<String>,
}

#[derive(Clone)]
pub struct Agent {
    pub state: AgentState,
    pub provider: Arc<FakeProvider>,
    pub clock: Arc<ManualClock>,
    pub imds: Arc<FakeImds>,
    pub registry: Arc<Mutex<prometheus_client::registry::Registry>>,
}

impl Agent {
    pub fn standard() -> Self {
        Self::with(|_| {})
    }

    pub fn managed() -> Self {
        Self::with(|c| {
            c.mode = Mode::Managed;
            c.force_namespaced = true;
        })
    }

    pub fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::new("node-0", Mode::Standard);
        // The wire tests check upstream's plain-text 404; the tests of the 400 answer set it.
        config.not_found_as_bad_request = false;
        config.wait_created = Duration::from_secs(5);
        config.wait_assigned = Duration::from_secs(5);
        tweak(&mut config);
        let clock = Arc::new(ManualClock::new(NOW));
        let provider = Arc::new(FakeProvider {
            clock: clock.clone(),
            calls: AtomicUsize::new(0),
            delay: Mutex::new(Duration::ZERO),
            failure: Mutex::new(None),
        });
        let imds = Arc::new(FakeImds::start());
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = Arc::new(Metrics::register(&mut registry));
        let cache = TokenCache::bounded(
            provider.clone(),
            clock.clone(),
            60,
            podid_nmi::cache::CacheLimits::default(),
            Some(metrics.clone()),
        );
        let state = AgentState {
            shared: Arc::new(Shared::default()),
            cache,
            config: Arc::new(config),
            metrics,
            proxy: Proxy::new(&imds.url).unwrap(),
            drift: Default::default(),
        };
        Self { state, provider, clock, imds, registry: Arc::new(Mutex::new(registry)) }
    }

    pub async fn get(&self, ip: &str, uri: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(ip, req.body(Body::empty()).unwrap()).await
    }

    /// Hands `req` to the router in process, as if from `ip`.
    pub async fn send(&self, ip: &str, req: Request<Body>) -> Resp {
        let ip: IpAddr = ip.parse().unwrap();
        let router = app(self.state.clone()).layer(MockConnectInfo(SocketAddr::new(ip, 40000)));
        let resp = router.oneshot(req).await.unwrap();
        let h = resp.headers().clone();
        let get = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
        Resp {
            status: resp.status(),
            content_type: get("content-type").unwrap_or_default(),
            nosniff: get("x-content-type-options").as_deref() == Some("nosniff"),
            retry_after: get("retry-after"),
            body: String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap(),
        }
    }

    /// Serves this agent on a real socket at `addr` (port 0: any) with `limits`, until the test
    /// ends; returns the address.
    pub async fn serve_at(&self, addr: SocketAddr, limits: Limits) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let local = listener.local_addr().unwrap();
        let options = ServeOptions { limits, intercepted: None };
        let (app, metrics) = (app(self.state.clone()), self.state.metrics.clone());
        tokio::spawn(serve(vec![listener], app, options, metrics, std::future::pending()));
        local
    }

    /// Serves this agent on 127.0.0.1 with the default limits.
    pub async fn serve(&self) -> SocketAddr {
        self.serve_at("127.0.0.1:0".parse().unwrap(), Limits::default()).await
    }

    /// The agent's `/metrics` text.
    pub fn metrics_text(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry.lock()).unwrap();
        text
    }

    pub async fn token(&self, ip: &str, query: &str) -> Resp {
        self.get(ip, &format!("/metadata/identity/oauth2/token?{query}"), &[("Metadata", "true")]).await
    }

    fn pod_view(ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) -> PodView {
        PodView {
            key: PodKey::new(ns, name),
            node: Some("node-0".into()),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            phase: Phase::Running,
            ip: ip.parse().ok(),
            terminating: false,
            host_network: false,
            replica_set: None,
            service_account: "default".into(),
        }
    }

    pub fn add_pod(&self, ns: &str, name: &str, ip: &str, selector: &str) {
        self.add_pod_labelled(ns, name, ip, &[("aadpodidbinding", selector)]);
    }

    pub fn add_pod_labelled(&self, ns: &str, name: &str, ip: &str, labels: &[(&str, &str)]) {
        let view = Self::pod_view(ns, name, ip, labels);
        self.state.shared.update(|i| i.put_pod(view));
    }

    pub fn add_host_network_pod(&self, ns: &str, name: &str, ip: &str) {
        let mut view = Self::pod_view(ns, name, ip, &[("aadpodidbinding", "demo")]);
        view.host_network = true;
        self.state.shared.update(|i| i.put_pod(view));
    }

    pub fn identity(ns: &str, name: &str) -> AzureIdentity {
        AzureIdentity {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: AzureIdentitySpec { resource_id: rid(name), client_id: client(name), ..Default::default() },
            status: None,
        }
    }

    pub fn binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
        AzureIdentityBinding {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: AzureIdentityBindingSpec {
                azure_identity: identity.into(),
                selector: selector.into(),
                ..Default::default()
            },
            status: None,
        }
    }

    pub fn add_identity(&self, ns: &str, name: &str) {
        let i = Self::identity(ns, name);
        self.state.shared.update(|idx| idx.apply_identity(i));
    }

    pub fn add_binding(&self, ns: &str, name: &str, identity: &str, selector: &str) {
        let b = Self::binding(ns, name, identity, selector);
        self.state.shared.update(|idx| idx.apply_binding(b));
    }

    pub fn add_exception(&self, ns: &str, name: &str, labels: &[(&str, &str)]) {
        let e = AzurePodIdentityException {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                ..Default::default()
            },
            spec: AzurePodIdentityExceptionSpec {
                pod_labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
                ..Default::default()
            },
            status: None,
        };
        self.state.shared.update(|idx| idx.apply_exception(e));
    }

    /// A pod labelled `demo`, bound to identity `identity` (binding `ns/b`, which the agent
    /// watches too) and with its assignment in `state`.
    pub fn bind_pod(&self, ns: &str, name: &str, ip: &str, identity: &str, state: AssignedState) {
        self.add_pod(ns, name, ip, "demo");
        self.add_identity(ns, identity);
        self.add_binding(ns, "b", identity, "demo");
        self.set_state(ns, name, identity, state);
    }

    /// (Re)writes the assigned identity of `pod` for `identity` in `state`.
    pub fn set_state(&self, ns: &str, pod: &str, identity: &str, state: AssignedState) {
        let view = Self::pod_view(ns, pod, POD_IP, &[("aadpodidbinding", "demo")]);
        let d = desired(
            &[view],
            &[Self::binding(ns, "b", identity, "demo")],
            &[Self::identity(ns, identity)],
            MatchOptions::default(),
        );
        for a in d.assignments.values() {
            let mut o = a.to_object(false);
            o.status.as_mut().unwrap().status = state.as_str().into();
            self.state.shared.update(|idx| idx.apply_assigned(o));
        }
    }
}
