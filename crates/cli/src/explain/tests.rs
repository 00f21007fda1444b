//! `podid explain pod`'s verdict equals the agent's answer: for generated worlds and requests,
//! the real agent router (`podid_nmi::app`, its index fed the same objects) is asked for a token
//! and its answer compared with what `explain` says.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use http_body_util::BodyExt;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use podid_api::{
    AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec,
    AzurePodIdentityException, AzurePodIdentityExceptionSpec, FEDERATED_ANNOTATION, SecretReference,
};
use podid_core::decision::decide;
use podid_core::matching::{MatchOptions, desired};
use podid_core::pod::Phase;
use podid_core::{Mode, PodKey, PodView, Snapshot};
use podid_nmi::token::{ManualClock, Token, TokenFuture, TokenProvider, TokenSet, TokenSource};
use podid_nmi::{AgentState, Config, Shared};
use proptest::prelude::*;
use tower::ServiceExt;

use super::pod::{World, explain, request, settings};
use crate::args::ExplainPod;

const IP: &str = "10.244.0.9";

/// Answers every fetch with a token naming its source.
struct Echo;

impl TokenProvider for Echo {
    fn fetch(&self, source: &TokenSource, resource: &str) -> TokenFuture {
        let who = match source {
            TokenSource::Imds { client_id } => format!("imds:{}", client_id.clone().unwrap_or_default()),
            TokenSource::ServicePrincipal { client_id, .. } => format!("sp:{client_id}"),
            TokenSource::Federated { client_id, .. } => format!("federated:{client_id}"),
        };
        let token = Token {
            access_token: podid_azure::Secret::new(who),
            refresh_token: String::new(),
            expires_in: Some(3600),
            expires_on: Some(1_700_003_600),
            not_before: None,
            resource: resource.into(),
            token_type: "Bearer".into(),
            client_id: None,
            obtained_at: 1_700_000_000,
        };
        Box::pin(async move { Ok(TokenSet::single(token)) })
    }
}

fn meta(ns: &str, name: &str, created: i64) -> ObjectMeta {
    let at = podid_api::k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created).ok().map(Time);
    ObjectMeta {
        namespace: Some(ns.into()),
        name: Some(name.into()),
        creation_timestamp: at,
        ..Default::default()
    }
}

fn cid(i: usize) -> String {
    format!("0000000{i}-0000-4000-8000-00000000000{i}")
}

/// Identity `i{n}` in `ns`: user-assigned, a service principal, federated or invalid.
fn identity(ns: &str, n: usize, kind: usize) -> AzureIdentity {
    let mut i = AzureIdentity {
        metadata: meta(ns, &format!("i{n}"), 0),
        spec: AzureIdentitySpec {
            resource_id: format!(
                "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i{n}"
            ),
            client_id: cid(n),
            tenant_id: "t".into(),
            ..Default::default()
        },
        status: None,
    };
    match kind {
        1 => {
            i.spec.identity_type = 1;
            i.spec.client_password = SecretReference { name: "s".into(), namespace: ns.into() };
        }
        2 => i.metadata.annotations = Some([(FEDERATED_ANNOTATION.to_string(), "true".to_string())].into()),
        3 => i.spec.identity_type = 7,
        _ => {}
    }
    i
}

#[derive(Clone, Debug)]
struct Case {
    pod: PodView,
    objects: Snapshot,
    mode: Mode,
    force_namespaced: bool,
    release_terminating: bool,
    client_id: Option<String>,
    not_found_400: bool,
}

fn arb_case() -> impl Strategy<Value = Case> {
    let ids = prop::collection::vec((0..2usize, 0..4usize, 0..4usize), 0..5);
    let bindings = prop::collection::vec((0..2usize, 0..3usize, 0..4usize, 0..2usize, 0..100i64), 0..5);
    let pod = (0..2usize, 0..3usize, any::<bool>(), 0..4usize, any::<bool>());
    let flags =
        (0..3usize, any::<bool>(), any::<bool>(), prop::option::of(0..4usize), any::<bool>(), 0..3usize);
    (ids, bindings, pod, flags).prop_map(|(ids, bindings, pod, flags)| {
        let ns = ["a", "b"];
        let (pod_ns, sel, excepted, phase, terminating) = pod;
        let (mode, force, release, client, not_found_400, assigned) = flags;
        let mut p = PodView {
            key: PodKey::new(ns[pod_ns], "p"),
            node: Some("n".into()),
            labels: [("aadpodidbinding".to_string(), format!("s{sel}"))].into(),
            phase: [Phase::Running, Phase::Pending, Phase::Running, Phase::Succeeded][phase],
            ip: IP.parse().ok(),
            terminating,
            host_network: false,
            replica_set: None,
            service_account: "default".into(),
        };
        if excepted {
            p.labels.insert("skip".into(), "yes".into());
        }
        if sel == 2 {
            p.labels.clear();
        }
        let mut objects = Snapshot::default();
        for (n_ns, n, kind) in ids {
            let i = identity(ns[n_ns], n, kind);
            if !objects.identities.iter().any(|o| o.metadata == i.metadata) {
                objects.identities.push(i);
            }
        }
        for (n, (b_ns, name, id, s, created)) in bindings.into_iter().enumerate() {
            let b = AzureIdentityBinding {
                metadata: meta(ns[b_ns], &format!("b{name}-{n}"), created),
                spec: AzureIdentityBindingSpec {
                    azure_identity: format!("i{id}"),
                    selector: format!("s{s}"),
                    ..Default::default()
                },
                status: None,
            };
            objects.bindings.push(b);
        }
        objects.exceptions.push(AzurePodIdentityException {
            metadata: meta(ns[0], "e", 0),
            spec: AzurePodIdentityExceptionSpec {
                pod_labels: [("skip".to_string(), "yes".to_string())].into(),
                ..Default::default()
            },
            status: None,
        });
        let mode = Mode::ALL[mode];
        let force_namespaced = force || mode == Mode::Managed;
        if mode == Mode::Standard && assigned > 0 {
            let opts = MatchOptions { force_namespaced, release_terminating: release };
            let d = desired(std::slice::from_ref(&p), &objects.bindings, &objects.identities, opts);
            for a in d.assignments.values() {
                let mut o = a.to_object(false);
                if let Some(status) = o.status.as_mut() {
                    status.status = if assigned == 1 { "Assigned" } else { "Created" }.into();
                }
                objects.assigned.push(o);
            }
        }
        Case {
            pod: p,
            objects,
            mode,
            force_namespaced,
            release_terminating: release,
            client_id: client.map(cid),
            not_found_400,
        }
    })
}

fn args(c: &Case) -> ExplainPod {
    use clap::Parser;
    let mut argv = vec!["podid".to_string(), "explain".into(), "pod".into(), c.pod.key.to_string()];
    argv.extend(["--mode".into(), c.mode.to_string(), "--mic-namespace".into(), "kube-system".into()]);
    argv.extend(c.force_namespaced.then(|| "--force-namespaced".to_string()));
    argv.extend(c.release_terminating.then(|| "--release-terminating-pods".to_string()));
    argv.extend(c.client_id.iter().flat_map(|id| ["--client-id".to_string(), id.clone()]));
    argv.push(format!("--identity-not-found-status={}", if c.not_found_400 { 400 } else { 404 }));
    match crate::args::Cli::try_parse_from(argv).map(|cli| cli.command) {
        Ok(crate::args::Command::Explain(crate::args::ExplainCommand::Pod(p))) => *p,
        other => panic!("explain pod does not parse: {other:?}"),
    }
}

/// The agent's answer: status and body.
fn agent_answer(c: &Case) -> (u16, String) {
    let mut config = Config::new("n", c.mode);
    config.force_namespaced = c.force_namespaced;
    config.mic_namespace = "kube-system".into();
    config.release_terminating = c.release_terminating;
    config.not_found_as_bad_request = c.not_found_400;
    config.wait_created = Duration::ZERO;
    config.wait_assigned = Duration::ZERO;
    config.tenant_id = "t".into();
    let shared = Arc::new(Shared::default());
    shared.update(|idx| {
        idx.put_pod(c.pod.clone());
        c.objects.bindings.iter().cloned().for_each(|b| idx.apply_binding(b));
        c.objects.identities.iter().cloned().for_each(|i| idx.apply_identity(i));
        c.objects.assigned.iter().cloned().for_each(|a| idx.apply_assigned(a));
        c.objects.exceptions.iter().cloned().for_each(|e| idx.apply_exception(e));
    });
    let mut registry = prometheus_client::registry::Registry::default();
    let state = AgentState {
        shared,
        cache: podid_nmi::cache::TokenCache::new(
            Arc::new(Echo),
            Arc::new(ManualClock::new(1_700_000_000)),
            60,
        ),
        config: Arc::new(config),
        metrics: Arc::new(podid_nmi::metrics::Metrics::register(&mut registry)),
        proxy: podid_nmi::http::proxy::Proxy::new("http://127.0.0.1:9").expect("proxy"),
        drift: Default::default(),
    };
    let query = c.client_id.as_ref().map(|id| format!("&client_id={id}")).unwrap_or_default();
    let uri = format!("/metadata/identity/oauth2/token?resource=r{query}");
    let peer = SocketAddr::new(IP.parse().expect("ip"), 40000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let router = podid_nmi::app(state).layer(MockConnectInfo(peer));
        let req = http::Request::builder()
            .uri(uri)
            .header("Metadata", "true")
            .body(Body::empty())
            .expect("request");
        let resp = router.oneshot(req).await.expect("answer");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn explain_says_what_the_agent_answers(c in arb_case()) {
        let a = args(&c);
        let world = World { pod: c.pod.clone(), objects: c.objects.clone(), node: None };
        let d = decide(&world.pod, &request(&a), &world.objects, &settings(&a));
        let report = explain(&world, &a, &d, None);
        let (status, body) = agent_answer(&c);
        let v = &report.verdict;
        if let Some(key) = &report.identity {
            let served = world.objects.identities.iter().find(|i| &super::key(*i) == key).map(|i| i.spec.client_id.clone());
            prop_assert_eq!(status, 200, "explain: {} / agent: {}", v, body);
            prop_assert!(served.is_some_and(|cid| body.contains(&format!(":{cid}"))), "explain: {} / agent: {}", v, body);
        } else if v.starts_with("no pod identity") {
            prop_assert_eq!(status, 200, "explain: {} / agent: {}", v, body);
            prop_assert!(body.contains("imds:"), "explain: {} / agent: {}", v, body);
        } else if v.starts_with("no identity yet") {
            prop_assert!(body.contains("getting assigned identities for pod"), "explain: {} / agent: {}", v, body);
        } else {
            let words = v.split_once(": ").and_then(|(_, m)| m.strip_suffix(')')).unwrap_or_default();
            prop_assert!(v.starts_with(&format!("no identity (the agent answers {status} at once")), "explain: {} / agent: {} {}", v, status, body);
            let said = serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|j| j["error_description"].as_str().map(str::to_string)).unwrap_or_else(|| body.trim_end().to_string());
            prop_assert_eq!(words, said.as_str());
        }
    }
}

fn caller_step(host_network: bool, verified: bool) -> Vec<String> {
    use proptest::strategy::ValueTree;
    let mut c =
        arb_case().new_tree(&mut proptest::test_runner::TestRunner::deterministic()).unwrap().current();
    c.pod.host_network = host_network;
    let mut a = args(&c);
    a.verified_callers = verified;
    let world = World { pod: c.pod.clone(), objects: c.objects.clone(), node: None };
    let d = decide(&world.pod, &request(&a), &world.objects, &settings(&a));
    let report = explain(&world, &a, &d, None);
    report.steps.into_iter().find(|s| s.title == "caller").map(|s| s.lines).unwrap_or_default()
}

#[test]
fn explain_says_how_the_pods_calls_are_attributed() {
    assert!(
        caller_step(false, false)[0].starts_with("by source address 10."),
        "{:?}",
        caller_step(false, false)
    );
    assert!(caller_step(false, true)[0].contains("in the pod's own network namespace"));
    assert!(caller_step(true, false)[0].contains("refuses them"));
    assert!(caller_step(true, true)[0].contains("its cgroup, which names this pod's UID"));
}
