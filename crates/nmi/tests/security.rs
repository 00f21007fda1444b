//! Security properties of the agent's HTTP surface (issue #9, item 3), driven in process against
//! the node index, with the emulator's IMDS as the agent's upstream where "never proxied" has to
//! be proved: who may get which token (default and namespaced modes, same-named identities),
//! `/host/token` from pod addresses, path confusion, the `Metadata` header, forwarding headers and
//! hostNetwork callers. Secrets in logs and error bodies: `security_secrets.rs`. Properties already
//! shown elsewhere are cited in docs/security.md rather than repeated here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use http::StatusCode;
use podid_api::AzureIdentity;
use podid_core::PodView;
use podid_core::matching::{MatchOptions, desired};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator, Surface};
use podid_nmi::http::proxy::Proxy;
use support::*;

const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";
const OTHER_IP: &str = "10.244.0.20";

fn view(ns: &str, name: &str, ip: &str, selector: &str) -> PodView {
    let pod: podid_api::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "labels": {"aadpodidbinding": selector}},
        "spec": {"nodeName": "node-0", "containers": []},
        "status": {"phase": "Running", "podIP": ip}
    }))
    .unwrap();
    PodView::from_pod(&pod)
}

fn namespaced(mut identity: AzureIdentity) -> AzureIdentity {
    identity.metadata.annotations = Some(
        [(podid_api::BEHAVIOR_ANNOTATION.to_string(), podid_api::BEHAVIOR_NAMESPACED.to_string())].into(),
    );
    identity
}

/// Writes, as `Assigned`, the assigned identities the controller computes for `pods` in *default*
/// mode — including ones a namespaced agent must refuse (a forged or stale object looks the same).
fn assign_as_default_controller(
    agent: &Agent,
    pods: &[PodView],
    bindings: &[podid_api::AzureIdentityBinding],
    identities: &[AzureIdentity],
) -> usize {
    for p in pods {
        agent.state.shared.update(|i| i.put_pod(p.clone()));
    }
    let d = desired(pods, bindings, identities, MatchOptions::default());
    for a in d.assignments.values() {
        let mut o = a.to_object(false);
        o.status.as_mut().unwrap().status = "Assigned".into();
        agent.state.shared.update(|i| i.apply_assigned(o));
    }
    d.assignments.len()
}

fn short_waits(c: &mut podid_nmi::Config) {
    c.wait_created = std::time::Duration::from_millis(50);
    c.wait_assigned = std::time::Duration::from_millis(50);
}

#[tokio::test]
async fn default_mode_serves_an_identity_bound_from_another_namespace_as_upstream_does() {
    let agent = Agent::with(short_waits);
    let made = assign_as_default_controller(
        &agent,
        &[view("app", "web", POD_IP, "shared")],
        &[Agent::binding("other", "b", "id-x", "shared")],
        &[Agent::identity("other", "id-x")],
    );
    assert_eq!(made, 1, "upstream's default mode matches bindings in any namespace");
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.body.contains(&format!("token-for-{}", client("id-x"))), "{}", resp.body);
}

#[tokio::test]
async fn force_namespaced_agent_refuses_a_cross_namespace_assignment_even_if_one_exists() {
    let agent = Agent::with(|c| {
        short_waits(c);
        c.force_namespaced = true;
    });
    assign_as_default_controller(
        &agent,
        &[view("app", "web", POD_IP, "shared")],
        &[Agent::binding("other", "b", "id-x", "shared")],
        &[Agent::identity("other", "id-x")],
    );
    for query in ["resource=r".to_string(), format!("resource=r&client_id={}", client("id-x"))] {
        let resp = agent.token(POD_IP, &query).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{query}: {}", resp.body);
    }
    assert_eq!(agent.provider.calls(), 0, "no token was even fetched");
}

#[tokio::test]
async fn namespaced_identity_is_refused_across_namespaces_in_default_mode() {
    let agent = Agent::with(short_waits);
    let id = namespaced(Agent::identity("other", "id-x"));
    // The default controller would not assign it; write the object as a forged/stale one would be.
    let pod = view("app", "web", POD_IP, "shared");
    agent.state.shared.update(|i| i.put_pod(pod.clone()));
    let mut d = desired(
        &[pod],
        &[Agent::binding("other", "b", "id-x", "shared")],
        &[Agent::identity("other", "id-x")],
        MatchOptions::default(),
    );
    let mut o = d.assignments.pop_first().unwrap().1.to_object(false);
    o.spec.azure_identity_ref = Some(Box::new(id));
    o.status.as_mut().unwrap().status = "Assigned".into();
    agent.state.shared.update(|i| i.apply_assigned(o));
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
    assert_eq!(agent.provider.calls(), 0);
}

#[tokio::test]
async fn label_impersonation_across_namespaces_gets_nothing_in_managed_mode() {
    let agent = Agent::managed();
    agent.add_pod("attacker", "evil", POD_IP, "victim-selector");
    agent.add_binding("victim", "b", "id-v", "victim-selector");
    agent.add_identity("victim", "id-v");
    agent.add_pod("victim", "web", OTHER_IP, "victim-selector");
    for query in ["resource=r".to_string(), format!("resource=r&client_id={}", client("id-v"))] {
        let resp = agent.token(POD_IP, &query).await;
        assert_eq!(resp.status, StatusCode::NOT_FOUND, "{query}: {}", resp.body);
    }
    assert_eq!(agent.provider.calls(), 0);
    let resp = agent.token(OTHER_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::OK, "the victim itself is served: {}", resp.body);
}

#[tokio::test]
async fn same_named_identities_in_two_namespaces_resolve_to_their_own_client_ids() {
    let agent = Agent::managed();
    for (ns, ip, client_id) in [("team-a", POD_IP, "aaaaaaaa-1111"), ("team-b", OTHER_IP, "bbbbbbbb-2222")] {
        agent.add_pod(ns, "web", ip, "demo");
        agent.add_binding(ns, "b", "id", "demo");
        let mut identity = Agent::identity(ns, "id");
        identity.spec.client_id = client_id.into();
        agent.state.shared.update(|i| i.apply_identity(identity));
    }
    let a = agent.token(POD_IP, "resource=r").await;
    let b = agent.token(OTHER_IP, "resource=r").await;
    assert!(a.body.contains("token-for-aaaaaaaa-1111") && !a.body.contains("bbbbbbbb"), "{}", a.body);
    assert!(b.body.contains("token-for-bbbbbbbb-2222") && !b.body.contains("aaaaaaaa"), "{}", b.body);
    let cross = agent.token(POD_IP, "resource=r&client_id=bbbbbbbb-2222").await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND, "{}", cross.body);
}

#[tokio::test]
async fn host_token_is_refused_from_every_non_loopback_address_whatever_the_headers_say() {
    let agent = Agent::with(|c| c.host_token = true);
    agent.bind_pod("app", "web", POD_IP, "id1", podid_api::AssignedState::Assigned);
    let url = "/host/token/?resource=r";
    for caller in [POD_IP, OTHER_IP, "10.240.0.4", "127.0.0.2", "::ffff:10.244.0.10", "::1"] {
        let resp = agent
            .get(
                caller,
                url,
                &[
                    ("podns", "app"),
                    ("podname", "web"),
                    ("Metadata", "true"),
                    ("X-Forwarded-For", "127.0.0.1"),
                    ("X-Real-IP", "127.0.0.1"),
                    ("Forwarded", "for=127.0.0.1"),
                ],
            )
            .await;
        assert_eq!(
            (resp.status, resp.body.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "request remote address is not from a host\n"),
            "{caller}"
        );
    }
    assert_eq!(agent.provider.calls(), 0);
    // IPv4-mapped loopback is loopback: it goes on to the socket-owner check, which an in-process
    // request cannot pass (served to root over a real socket: tests/host_token.rs).
    let resp = agent.get("::ffff:127.0.0.1", url, &[("podns", "app"), ("podname", "web")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("only for root processes"), "{}", resp.body);
}

#[tokio::test]
async fn forwarding_headers_never_change_who_the_caller_is() {
    let agent = Agent::with(short_waits);
    agent.bind_pod("app", "owner", OTHER_IP, "id1", podid_api::AssignedState::Assigned);
    agent.add_pod("app", "thief", POD_IP, "nothing");
    let spoof: &[(&str, &str)] = &[
        ("Metadata", "true"),
        ("X-Forwarded-For", OTHER_IP),
        ("X-Forwarded-For", "127.0.0.1"),
        ("Forwarded", "for=10.244.0.20;proto=http"),
        ("X-Real-IP", OTHER_IP),
        ("X-Client-IP", OTHER_IP),
        ("True-Client-IP", OTHER_IP),
        ("X-Original-Forwarded-For", OTHER_IP),
    ];
    let uri = format!("{TOKEN_PATH}?resource=r&client_id={}", client("id1"));
    let resp = agent.get(POD_IP, &uri, spoof).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND, "{}", resp.body);
    assert!(resp.body.contains("app/thief"), "decided for the socket peer: {}", resp.body);
    assert_eq!(agent.provider.calls(), 0);
    // The owner is still identified by its own address when it claims to be someone else.
    let owner: Vec<(&str, &str)> =
        vec![("Metadata", "true"), ("X-Forwarded-For", POD_IP), ("X-Real-IP", POD_IP)];
    let resp = agent.get(OTHER_IP, &uri, &owner).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
}

#[tokio::test]
async fn host_network_pods_are_refused_even_when_bound_in_both_modes() {
    for managed in [false, true] {
        let agent = if managed { Agent::managed() } else { Agent::standard() };
        let mut hn = view("app", "hn", "10.240.0.4", "demo");
        hn.host_network = true;
        agent.add_binding("app", "b", "id1", "demo");
        agent.add_identity("app", "id1");
        assign_as_default_controller(
            &agent,
            &[hn],
            &[Agent::binding("app", "b", "id1", "demo")],
            &[Agent::identity("app", "id1")],
        );
        let resp = agent.token("10.240.0.4", "resource=r").await;
        assert_eq!(resp.status, StatusCode::FORBIDDEN, "managed={managed}: {}", resp.body);
        assert_eq!(agent.provider.calls(), 0);
    }
}

/// An agent whose transparent proxy forwards to the emulator's IMDS; the emulator logs every
/// request it receives, so an empty log proves nothing was forwarded.
async fn agent_in_front_of_the_emulator() -> (Agent, RunningEmulator) {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();
    let mut agent = Agent::standard();
    agent.state.proxy = Proxy::new(imds.trim_end_matches('/')).unwrap();
    agent.bind_pod("app", "web", POD_IP, "id1", podid_api::AssignedState::Assigned);
    // The wiring works: an ordinary metadata call does reach the emulator.
    let resp = agent.get(POD_IP, "/metadata/instance?api-version=2021-02-01", &[("Metadata", "true")]).await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(imds_paths(&emulator), ["/metadata/instance"]);
    emulator.clear_requests();
    (agent, emulator)
}

fn imds_paths(emulator: &RunningEmulator) -> Vec<String> {
    emulator.requests().into_iter().filter(|r| r.surface == Surface::Imds).map(|r| r.path).collect()
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Handled as the token path (the bound pod gets its token).
    Token,
    /// 400 `Invalid request`.
    Refused,
    /// Not even a request: the HTTP server answers 400 (no body) before routing.
    Rejected,
    /// 404: a well-formed path that is no IMDS endpoint podid forwards.
    NotForwarded,
}

/// Sends `GET <target>` over a real socket to the agent (for targets `http::Uri` cannot carry:
/// fragments, a leading backslash) and returns status and body.
async fn over_the_wire(agent: &Agent, target: &str) -> (StatusCode, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = podid_nmi::app(agent.state.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>()).await
    });
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    server.abort();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (StatusCode::from_u16(code).unwrap(), body)
}

#[tokio::test]
async fn every_path_confusion_variant_is_handled_or_refused_and_never_reaches_imds() {
    use Expect::*;
    let (agent, emulator) = agent_in_front_of_the_emulator().await;
    let table: &[(&str, Expect)] = &[
        ("/metadata/identity/oauth2/token", Token),
        ("/metadata/identity/oauth2/token/", Token),
        ("/METADATA/identity/oauth2/token", Token),
        ("/MetaData/identity/oauth2/token/", Token),
        // fragments are not part of the request: the server routes what precedes `#`
        ("/metadata/identity/oauth2/token#fragment", Token),
        ("/metadata/identity/oauth2/token#/../../instance", Token),
        // backslashes, raw and encoded
        (r"/metadata/identity\oauth2\token", Refused),
        (r"/metadata\identity\oauth2\token/", Refused),
        (r"\metadata\identity\oauth2\token", Rejected),
        ("/metadata/identity%5Coauth2%5Ctoken", Refused),
        ("/metadata/identity%5coauth2%5ctoken", Refused),
        // percent-encoded slashes and letters, upper and lower hex
        ("/metadata/identity%2Foauth2%2Ftoken", Refused),
        ("/metadata/identity%2foauth2%2ftoken", Refused),
        ("/metadata%2Fidentity%2Foauth2%2Ftoken", Refused),
        ("/%6Detadata/identity/oauth2/token", Refused),
        ("/metadata/%69dentity/oauth2/token", Refused),
        ("/metadata/identity/oauth2/%74oken", Refused),
        // encoded dots
        ("/metadata/%2e/identity/oauth2/token", Refused),
        ("/x/%2e%2e/metadata/identity/oauth2/token", Refused),
        ("/x/%2E%2E/metadata/identity/oauth2/token", Refused),
        // case
        ("/metadata/Identity/oauth2/token", Refused),
        ("/metadata/IDENTITY/OAUTH2/TOKEN", Refused),
        ("/metadata/identity/OAuth2/Token", Refused),
        // dot segments and double slashes
        ("//metadata/identity/oauth2/token", Refused),
        ("/metadata//identity/oauth2/token", Refused),
        ("/metadata/identity/oauth2//token", Refused),
        ("/./metadata/identity/oauth2/token", Refused),
        ("/metadata/./identity/oauth2/token", Refused),
        ("/x/../metadata/identity/oauth2/token", Refused),
        ("/metadata/identity/oauth2/token/..", Refused),
        ("/metadata/identity/oauth2/token/.", Refused),
        ("/metadata/instance/../identity/oauth2/token", Refused),
        // trailing junk, `;` parameters, NUL
        ("/metadata/identity/oauth2/token//", Refused),
        ("/metadata/identity/oauth2/tokenx", Refused),
        ("/metadata/identity/oauth2/token/extra", Refused),
        ("/metadata/identity/oauth2/token;x=y", Refused),
        ("/metadata/identity;x=y/oauth2/token", Refused),
        ("/metadata;x=y/identity/info", Refused),
        ("/metadata/identity/oauth2/token%00", Refused),
        ("/metadata/identity/oauth2/token%20", Refused),
        // double encoding
        ("/metadata/identity%252Foauth2%252Ftoken", Refused),
        ("/metadata%252Fidentity%252Finfo", Refused),
        ("/metadata/%2569dentity/info", Refused),
        ("/metadata/identit%2579/info", Refused),
        ("/metadata%25252Fidentity%25252Finfo", Refused),
        // IIS-style `%u` escapes and non-ASCII that folds to ASCII (issue #15: these reached IMDS
        // verbatim before the allowlist)
        ("/metadata/%u0069dentity/oauth2/token", Refused),
        ("/metadata/identit%u0079/oauth2/token", Refused),
        ("/%u006detadata/%u0069dentity/oauth2/token", Refused),
        ("/metadata/%c4%b1dentity/oauth2/token", Refused),
        ("/metadata/%u0049dentity/oauth2/token", Refused),
        ("/metadata/%U0069DENTITY/info", Refused),
        ("/metadata/%u0025%u0036%u0039dentity/info", Refused),
        ("/metadata/identity%u002foauth2%u002ftoken", Refused),
        ("/metadata/%e2%84%aaey/../identity/info", Refused),
        ("/metadata/%ef%bd%89dentity/oauth2/token", Refused),
        // anything escaped, even outside identity, is not an IMDS spelling
        ("/metadata/%69nstance", Refused),
        ("/metadata/instance%3Bx", Refused),
        // well-formed, but no endpoint podid forwards
        ("/", NotForwarded),
        ("/doesnotexist", NotForwarded),
        ("/metadata", NotForwarded),
        ("/Metadata/instance", NotForwarded),
        ("/metadata/INSTANCE", NotForwarded),
        ("/metadata/attested", NotForwarded),
        ("/latest/meta-data/iam/security-credentials/", NotForwarded),
        // other identity endpoints
        ("/metadata/identity", Refused),
        ("/metadata/identity/", Refused),
        ("/metadata/identity/info", Refused),
        ("/metadata/identity/oauth2", Refused),
        ("/metadata/identity#/../../instance", Refused),
    ];
    // The socket peer of `over_the_wire` is 127.0.0.1: a pod there, bound like the other.
    assign_as_default_controller(
        &agent,
        &[view("app", "local", "127.0.0.1", "demo")],
        &[Agent::binding("app", "b", "id1", "demo")],
        &[Agent::identity("app", "id1")],
    );
    for (path, expect) in table {
        let (status, body) = if path.contains('#') || path.starts_with('\\') {
            let target = match path.split_once('#') {
                Some((p, fragment)) => format!("{p}?resource=r#{fragment}"),
                None => format!("{path}?resource=r"),
            };
            over_the_wire(&agent, &target).await
        } else {
            let resp = agent.get(POD_IP, &format!("{path}?resource=r"), &[("Metadata", "true")]).await;
            (resp.status, resp.body)
        };
        let got = match (status, body.as_str()) {
            (StatusCode::OK, body) if body.contains(&format!("token-for-{}", client("id1"))) => Token,
            (StatusCode::BAD_REQUEST, "Invalid request\n") => Refused,
            (StatusCode::BAD_REQUEST, "") => Rejected,
            (StatusCode::NOT_FOUND, body) if body.starts_with("not forwarded to IMDS") => NotForwarded,
            (status, body) => panic!("{path}: neither handled nor refused: {status} {body}"),
        };
        assert_eq!(got, *expect, "{path}");
    }
    assert_eq!(imds_paths(&emulator), Vec::<String>::new(), "nothing may reach IMDS");
    emulator.shutdown().await;
}

#[tokio::test]
async fn only_allowlisted_endpoints_and_methods_reach_imds() {
    let (agent, emulator) = agent_in_front_of_the_emulator().await;
    let cases: &[(&str, &str, u16)] = &[
        ("GET", "/metadata/instance/compute/vmId?api-version=2021-02-01&format=text", 0),
        ("GET", "/metadata/versions", 0),
        ("GET", "/metadata/attested/document?api-version=2020-09-01", 0),
        ("POST", "/metadata/scheduledevents?api-version=2020-07-01", 0),
        ("POST", "/metadata/instance?api-version=2021-02-01", 405),
        ("PUT", "/metadata/scheduledevents", 405),
        ("DELETE", "/metadata/instance", 405),
        ("PATCH", "/metadata/versions", 405),
        ("OPTIONS", "/metadata/instance", 405),
        ("TRACE", "/metadata/instance", 405),
        ("OPTIONS", "*", 404),
        ("GET", "/metadata/loadbalancer?api-version=2020-10-01", 0),
    ];
    let mut forwarded = Vec::new();
    for (method, target, want) in cases {
        let req = http::Request::builder()
            .method(*method)
            .uri(*target)
            .header("Metadata", "true")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = agent.send(POD_IP, req).await;
        if *want == 0 {
            assert!(
                resp.status != StatusCode::METHOD_NOT_ALLOWED && resp.status.as_u16() < 500,
                "{method} {target}: {}",
                resp.status
            );
            forwarded.push(target.split('?').next().unwrap().to_string());
        } else {
            assert_eq!(resp.status.as_u16(), *want, "{method} {target}: {}", resp.body);
        }
    }
    assert_eq!(imds_paths(&emulator), forwarded, "exactly the allowlisted calls reached IMDS");
    emulator.shutdown().await;
}

#[tokio::test]
async fn on_the_node_address_only_this_nodes_pods_are_forwarded() {
    let (agent, emulator) = agent_in_front_of_the_emulator().await;
    let conn = |peer: &str| podid_nmi::http::serve::Connection {
        peer: std::net::SocketAddr::new(peer.parse().unwrap(), 40000),
        local: "10.240.0.4:2579".parse().unwrap(),
        intercepted: true,
    };
    let request = |peer: &str| {
        let mut req = http::Request::get("/metadata/instance?api-version=2021-02-01")
            .header("Metadata", "true")
            .body(axum::body::Body::empty())
            .unwrap();
        req.extensions_mut().insert(conn(peer));
        req
    };
    let stranger = agent.send("10.9.9.9", request("10.9.9.9")).await;
    assert_eq!(stranger.status, StatusCode::FORBIDDEN, "{}", stranger.body);
    assert!(stranger.body.contains("not a pod on node node-0"), "{}", stranger.body);
    assert_eq!(imds_paths(&emulator), Vec::<String>::new());
    let pod = agent.send(POD_IP, request(POD_IP)).await;
    assert_eq!(pod.status, StatusCode::OK, "{}", pod.body);
    assert_eq!(imds_paths(&emulator), ["/metadata/instance"]);
    emulator.shutdown().await;
}

#[tokio::test]
async fn wrong_metadata_headers_are_refused_on_every_path_and_never_forwarded() {
    let (agent, emulator) = agent_in_front_of_the_emulator().await;
    let wrong: &[&[(&str, &str)]] = &[
        &[],
        &[("Metadata", "True")],
        &[("Metadata", "TRUE")],
        &[("Metadata", "1")],
        &[("Metadata", "yes")],
        &[("Metadata", "")],
        &[("Metadata", " true")],
        &[("Metadata", "true ")],
        &[("Metadata", "true,true")],
        &[("Metadata", "false"), ("Metadata", "true")],
        &[("Metadata-Flavor", "Google")],
        &[("X-Metadata", "true")],
    ];
    for headers in wrong {
        for path in [format!("{TOKEN_PATH}?resource=r"), "/metadata/instance?api-version=2021-02-01".into()] {
            let resp = agent.get(POD_IP, &path, headers).await;
            assert_eq!(resp.status, StatusCode::BAD_REQUEST, "{path} {headers:?}: {}", resp.body);
            assert!(resp.body.contains("Required metadata header not specified"), "{}", resp.body);
        }
    }
    assert_eq!(agent.provider.calls(), 0);
    assert_eq!(imds_paths(&emulator), Vec::<String>::new(), "nothing may reach IMDS");
    emulator.shutdown().await;
}
