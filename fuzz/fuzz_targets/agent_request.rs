//! Fuzzes the agent's request parsing and routing: a request built from fuzz input (method, a path
//! assembled from confusable pieces, query, headers, caller address) is driven through
//! `podid_nmi::http::app` in process, against a fixed node index (standard or managed mode).
//!
//! Invariants (beyond "no panic"):
//! - nothing identity-related reaches IMDS: every request the fake IMDS records has a path whose
//!   canonical form (percent- and `%uXXXX`-decoded to a fixpoint, `\` as `/`, Unicode case-folded,
//!   `;` parameters and dot segments removed) has neither the segments `metadata/identity` nor
//!   `identity`…`oauth2/token`;
//! - only the allowlist reaches IMDS (issue #15): every forwarded request is `GET` (or `POST` to
//!   `/metadata/scheduledevents`) of a path spelled exactly as one of IMDS's endpoints (checked here
//!   with the harness' own pattern, not the agent's), over HTTP/1.1; CONNECT and `OPTIONS *` never;
//! - a forwarded request never fails with 500, whatever HTTP version the caller spoke (the fake
//!   IMDS always answers);
//! - a pod never gets a token for an identity not bound to it: pod A only ever receives tokens of
//!   its own identity, pod B (bound to nothing usable) and hostNetwork pods none at all.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use parking_lot::Mutex;
use percent_encoding::percent_decode_str;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, Pod};
use podid_core::PodView;
use podid_nmi::cache::TokenCache;
use podid_nmi::http::proxy::Proxy;
use podid_nmi::metrics::Metrics;
use podid_nmi::token::{ManualClock, Token, TokenFuture, TokenProvider, TokenSet, TokenSource};
use podid_nmi::{AgentState, Config, Mode, Shared, app};
use serde_json::json;
use tower::ServiceExt;

const NOW: u64 = 1_700_000_000;
const POD_A: &str = "10.244.0.10";
const POD_B: &str = "10.244.0.11";
const POD_EXCEPTED: &str = "10.244.0.12";
const HOST_NET: &str = "10.240.0.4";
const CLIENT_A: &str = "aaaaaaaa-0000-0000-0000-00000000000a";
const CLIENT_X: &str = "xxxxxxxx-0000-0000-0000-00000000000x";
const PEERS: [&str; 6] = [POD_A, POD_B, POD_EXCEPTED, HOST_NET, "127.0.0.1", "::ffff:10.244.0.10"];

#[rustfmt::skip]
const WORDS: &[&str] = &[
    "metadata", "identity", "oauth2", "token", "host", "instance", "Metadata", "Identity", "IDENTITY",
    "OAUTH2", "Token", "METADATA", "compute", "scheduledevents", "attested", "versions", "info",
    "%2F", "%2f", "%5C", "%5c", "%2e", "%2E", "%252F", "%255C", "%252e", "%00", "%20", "%3F", "%23",
    "%69dentity", "%6Detadata", "identit%79", "%25", "#", "?", ";", "%3B", "..;", ".;",
    // issue #15: IIS-style `%u` escapes and non-ASCII letters that case-fold to ASCII
    "%u0069dentity", "identit%u0079", "%u006detadata", "%U0069", "%u002f", "%u005c", "%u0025",
    "%c4%b1dentity", "\u{131}dentity", "%e2%84%aa", "\u{212a}", "\u{ff49}dentity", "%ef%bd%89",
    "loadbalancer", "attested/document", "document", "tagsList", "0", "%u",
];

/// One piece of a request path.
#[derive(Arbitrary, Debug)]
enum Piece {
    Word(u8),
    Slash,
    Backslash,
    Dot,
    DotDot,
    /// `%XX` of a byte, upper-case hex.
    Pct(u8),
    /// `%xx`, lower-case hex.
    PctLower(u8),
    /// `%25XX`: the byte percent-encoded twice.
    Double(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Text {
    Word(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    managed: bool,
    absolute: bool,
    /// `OPTIONS *`-style asterisk form instead of the path.
    asterisk: bool,
    http2: bool,
    peer: u8,
    path: Vec<Piece>,
    query: Vec<(u8, Text)>,
    headers: Vec<(u8, Text)>,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE"];
const QUERY_KEYS: &[&str] =
    &["resource", "client_id", "msi_res_id", "mi_res_id", "object_id", "api-version", "Resource", ""];
const QUERY_VALUES: &[&str] = &["https://vault.azure.net", CLIENT_A, CLIENT_X, "2018-02-01", "r", ""];
const HEADERS: &[&str] = &[
    "metadata",
    "Metadata",
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "podns",
    "podname",
    "host",
    "content-length",
    "transfer-encoding",
    "x-original-url",
    "x-rewrite-url",
];
const HEADER_VALUES: &[&str] = &["true", "True", POD_A, "for=10.244.0.10", "app", "a", "127.0.0.1", "0"];

fn pick<'a>(list: &[&'a str], i: u8) -> &'a str {
    list[usize::from(i) % list.len()]
}

fn text<'a>(t: &'a Text, vocab: &[&'a str]) -> &'a str {
    match t {
        Text::Word(i) => pick(vocab, *i),
        Text::Raw(s) => s,
    }
}

fn path_of(pieces: &[Piece]) -> String {
    let mut p = String::new();
    for piece in pieces {
        match piece {
            Piece::Word(i) => p.push_str(pick(WORDS, *i)),
            Piece::Slash => p.push('/'),
            Piece::Backslash => p.push('\\'),
            Piece::Dot => p.push('.'),
            Piece::DotDot => p.push_str(".."),
            Piece::Pct(b) => p.push_str(&format!("%{b:02X}")),
            Piece::PctLower(b) => p.push_str(&format!("%{b:02x}")),
            Piece::Double(b) => p.push_str(&format!("%25{b:02X}")),
            Piece::Raw(s) => p.push_str(s),
        }
    }
    if !p.starts_with('/') {
        p.insert(0, '/');
    }
    p
}

/// `%uXXXX` as IIS decodes it.
fn decode_u(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let hex = tail.get(2..6).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match (tail.as_bytes().get(1), hex) {
            (Some(b'u' | b'U'), Some(h)) => {
                out.push(u32::from_str_radix(h, 16).ok().and_then(char::from_u32).unwrap_or('\u{fffd}'));
                rest = &tail[6..];
            }
            _ => {
                out.push('%');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// How a liberal IMDS could read a forwarded path.
fn canonical(path_and_query: &str) -> String {
    let mut s = path_and_query.split('?').next().unwrap_or_default().to_string();
    for _ in 0..32 {
        let d = percent_decode_str(&decode_u(&s)).decode_utf8_lossy().into_owned();
        if d == s {
            break;
        }
        s = d;
    }
    let s = s.replace('\\', "/").to_uppercase().to_lowercase();
    let mut parts: Vec<&str> = Vec::new();
    for seg in s.split('/') {
        match seg.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            seg => parts.push(seg),
        }
    }
    format!("/{}", parts.join("/"))
}

/// IMDS's identity endpoints live under `/metadata/identity`: a canonical path is identity-related
/// when two consecutive segments are `metadata`, `identity`, or when a segment `identity` comes
/// before consecutive `oauth2`, `token`. Whole segments: the harness' first two versions matched
/// substrings and flagged `/Identity/OAUTH2` and `/x\u{b}metadata/identity`, which no server
/// reads as an identity endpoint — the only "findings" so far were these harness bugs.
fn identity_related(canonical: &str) -> bool {
    let segs: Vec<&str> = canonical.split('/').collect();
    let at = |i: usize, s: &str| segs.get(i).is_some_and(|x| *x == s);
    (0..segs.len()).any(|i| {
        (at(i, "metadata") && at(i + 1, "identity"))
            || (at(i, "identity") && (i + 1..segs.len()).any(|j| at(j, "oauth2") && at(j + 1, "token")))
    })
}

/// IMDS's endpoints exactly as documented (the harness' own copy of the allowlist).
fn allowlisted(method: &str, path: &str) -> bool {
    let leaf =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let p = path.strip_suffix('/').unwrap_or(path);
    let ok_path = match p.strip_prefix("/metadata/") {
        Some("attested/document" | "scheduledevents" | "loadbalancer" | "versions" | "instance") => true,
        Some(rest) => rest.strip_prefix("instance/").is_some_and(|r| r.split('/').all(leaf)),
        None => false,
    };
    ok_path && (method == "GET" || (method == "POST" && p == "/metadata/scheduledevents"))
}

/// Answers immediately with `token-for-<client id or "system">`; never calls out.
struct FakeProvider(Arc<ManualClock>);

impl TokenProvider for FakeProvider {
    fn fetch(&self, source: &TokenSource, resource: &str) -> TokenFuture {
        let who = match source {
            TokenSource::Imds { client_id } => client_id.clone().unwrap_or_else(|| "system".into()),
            TokenSource::ServicePrincipal { client_id, .. } => client_id.clone(),
            TokenSource::Federated { client_id, .. } => client_id.clone(),
        };
        let now = podid_nmi::token::Clock::now(self.0.as_ref());
        let token = Token {
            access_token: podid_azure::Secret::new(format!("token-for-{who}")),
            refresh_token: String::new(),
            expires_in: Some(3600),
            expires_on: Some(now + 3600),
            not_before: Some(now.to_string()),
            resource: resource.to_string(),
            token_type: "Bearer".into(),
            client_id: None,
            obtained_at: now,
        };
        Box::pin(async move { Ok(TokenSet::single(token)) })
    }
}

fn pod(ns: &str, name: &str, ip: &str, labels: serde_json::Value, host_network: bool) -> PodView {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": "node-0", "hostNetwork": host_network, "containers": []},
        "status": {"phase": "Running", "podIP": ip}
    }))
    .unwrap_or_default();
    PodView::from_pod(&pod)
}

fn identity(ns: &str, name: &str, client: &str) -> AzureIdentity {
    serde_json::from_value(json!({
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"type": 0, "clientID": client, "resourceID": format!(
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}")}
    }))
    .unwrap_or_else(|_| AzureIdentity::new(name, Default::default()))
}

fn binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
    serde_json::from_value(json!({
        "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentityBinding",
        "metadata": {"namespace": ns, "name": name},
        "spec": {"azureIdentity": identity, "selector": selector}
    }))
    .unwrap_or_else(|_| AzureIdentityBinding::new(name, Default::default()))
}

/// The fixed node: pod A (app, bound to id-a), pod B (app, selector bound only in namespace
/// `other`), an excepted pod, two hostNetwork pods; standard-mode assignment for A only.
fn state(mode: Mode, imds: &str) -> AgentState {
    let mut config = Config::new("node-0", mode);
    config.wait_created = Duration::ZERO;
    config.wait_assigned = Duration::ZERO;
    config.force_namespaced = mode == Mode::Managed;
    let clock = Arc::new(ManualClock::new(NOW));
    let mut registry = prometheus_client::registry::Registry::default();
    let shared = Arc::new(Shared::default());
    let ids = [identity("app", "id-a", CLIENT_A), identity("other", "id-x", CLIENT_X)];
    let bindings = [binding("app", "b-a", "id-a", "demo"), binding("other", "b-x", "id-x", "shared")];
    let pods = [
        pod("app", "a", POD_A, json!({"aadpodidbinding": "demo"}), false),
        pod("app", "b", POD_B, json!({"aadpodidbinding": "shared"}), false),
        pod("kube-system", "c", POD_EXCEPTED, json!({"managedby": "aks"}), false),
        pod("app", "hn", HOST_NET, json!({"aadpodidbinding": "demo"}), true),
        pod("app", "local", "127.0.0.1", json!({"aadpodidbinding": "demo"}), true),
    ];
    let exception: Option<AzurePodIdentityException> = serde_json::from_value(json!({
        "metadata": {"namespace": "kube-system", "name": "e"},
        "spec": {"podLabels": {"managedby": "aks"}}
    }))
    .ok();
    let desired = podid_core::matching::desired(
        &pods[..1],
        &bindings[..1],
        &ids[..1],
        podid_core::matching::MatchOptions::default(),
    );
    let assigned: Vec<AzureAssignedIdentity> = desired
        .assignments
        .values()
        .map(|a| {
            let mut o = a.to_object(false);
            if let Some(s) = o.status.as_mut() {
                s.status = "Assigned".into();
            }
            o
        })
        .collect();
    assert_eq!(assigned.len(), 1, "the fixture assigns id-a to pod A");
    shared.update(|idx| {
        for p in pods {
            idx.put_pod(p);
        }
        for i in ids {
            idx.apply_identity(i);
        }
        for b in bindings {
            idx.apply_binding(b);
        }
        if let Some(e) = exception {
            idx.apply_exception(e);
        }
        for a in assigned {
            idx.apply_assigned(a);
        }
    });
    AgentState {
        shared,
        cache: TokenCache::new(Arc::new(FakeProvider(clock.clone())), clock, 60),
        config: Arc::new(config),
        metrics: Arc::new(Metrics::register(&mut registry)),
        proxy: Proxy::new(imds).unwrap_or_else(|e| panic!("fake IMDS url: {e}")),
        drift: Default::default(),
    }
}

/// What the fake IMDS received: method, path and query, HTTP version.
type Forwarded = (String, String, http::Version);

struct World {
    rt: tokio::runtime::Runtime,
    proxied: Arc<Mutex<Vec<Forwarded>>>,
    standard: AgentState,
    managed: AgentState,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let proxied = Arc::new(Mutex::new(Vec::new()));
    let record = proxied.clone();
    let url = rt.block_on(async move {
        let router = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                let pq = req.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
                record.lock().push((req.method().to_string(), pq, req.version()));
                "from-imds"
            }
        });
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        tokio::spawn(async move { axum::serve(listener, router).await });
        url
    });
    World { standard: state(Mode::Standard, &url), managed: state(Mode::Managed, &url), rt, proxied }
});

fuzz_target!(|input: Input| {
    let world = &*WORLD;
    let path = path_of(&input.path);
    let query: Vec<String> = input
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", pick(QUERY_KEYS, *k), text(v, QUERY_VALUES)))
        .collect();
    let mut uri = path;
    if !query.is_empty() {
        uri = format!("{uri}?{}", query.join("&"));
    }
    if input.absolute {
        uri = format!("http://169.254.169.254{uri}");
    }
    if input.asterisk {
        uri = "*".to_string();
    }
    let method = pick(METHODS, input.method);
    let version = if input.http2 { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
    let mut builder = http::Request::builder().method(method).uri(uri.as_str()).version(version);
    for (k, v) in &input.headers {
        builder = builder.header(pick(HEADERS, *k), text(v, HEADER_VALUES));
    }
    let Ok(req) = builder.body(Body::empty()) else { return };
    let peer_s = pick(&PEERS, input.peer);
    let Ok(peer) = peer_s.parse::<IpAddr>() else { return };
    let state = if input.managed { &world.managed } else { &world.standard };
    world.proxied.lock().clear();
    let router = app(state.clone()).layer(MockConnectInfo(SocketAddr::new(peer, 40000)));
    let (status, body) = world.rt.block_on(async move {
        let resp = match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = resp.status();
        let body = resp.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
        (status, String::from_utf8_lossy(&body).into_owned())
    });

    let proxied = world.proxied.lock().clone();
    for (fwd_method, forwarded, fwd_version) in &proxied {
        let c = canonical(forwarded);
        assert!(
            !identity_related(&c),
            "identity path proxied to IMDS: {forwarded:?} (reads as {c:?}) for {uri:?}"
        );
        let path = forwarded.split('?').next().unwrap_or_default();
        assert!(
            allowlisted(fwd_method, path),
            "{fwd_method} {forwarded:?} is not on IMDS's allowlist (for {method} {uri:?})"
        );
        assert_eq!(*fwd_version, http::Version::HTTP_11, "IMDS is asked over HTTP/1.1");
        assert!(method != "CONNECT" && !input.asterisk, "{method} {uri:?} was forwarded");
    }
    if !proxied.is_empty() {
        assert!(
            !(status == http::StatusCode::INTERNAL_SERVER_ERROR && body.starts_with("failed to reach")),
            "a forwarded {version:?} request failed: {body} for {uri:?}"
        );
    }
    let tokens: Vec<&str> = body.match_indices("token-for-").map(|(i, _)| &body[i + 10..]).collect();
    match peer_s {
        POD_A | "::ffff:10.244.0.10" => {
            for t in &tokens {
                assert!(t.starts_with(CLIENT_A), "pod A got a token that is not its own: {body} for {uri:?}");
            }
        }
        POD_B | HOST_NET => {
            assert!(tokens.is_empty(), "{peer_s} must get no token: {status} {body} for {uri:?}");
        }
        _ => {}
    }
});
