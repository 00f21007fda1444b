//! Real Azure SDKs as pods: each pod is a network namespace whose traffic to 169.254.169.254 is
//! redirected to the agent (the real `podid-nmi` binary), which watches a real kube-apiserver and
//! fetches tokens from the emulator's IMDS for the node. Python `azure-identity` and Rust
//! `azure_identity` run with no configuration at all, exactly as in a cluster. The agent answers
//! refusals as IMDS does (`--identity-not-found-status=400`), which the SDKs do not retry; the
//! default 404 is covered by the router tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kube::Api;
use kube::api::PostParams;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_emulator::{Emulator, EmulatorConfig};
use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};
use support::netns::{Bridge, Netns, fetch, root_or_explicit_skip};

const APP_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";
const TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";
const RESTRICTED_CLIENT: &str = "4e57a1c7-0000-4000-8000-0000004e5001";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> String {
    let p = repo().join(".venv/bin/python");
    assert!(p.exists(), "{} is missing: run scripts/python-venv.sh (make test-deps does)", p.display());
    p.display().to_string()
}

/// `target/<profile>/examples/sdk_probe`, built by `cargo test` next to this test binary.
fn rust_probe() -> String {
    let exe = std::env::current_exe().unwrap();
    let p = exe.parent().unwrap().parent().unwrap().join("examples/sdk_probe");
    assert!(p.exists(), "{} is missing: run the tests with `cargo test` (it builds examples)", p.display());
    p.display().to_string()
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

fn identity(ns: &str, name: &str, emulator_sub: &str) -> AzureIdentity {
    AzureIdentity {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: AzureIdentitySpec {
            resource_id: format!(
                "/subscriptions/{emulator_sub}/resourcegroups/podid-identities/providers/Microsoft.ManagedIdentity/userAssignedIdentities/podid-app"
            ),
            client_id: APP_CLIENT.into(),
            ..Default::default()
        },
        status: None,
    }
}

fn binding(ns: &str) -> AzureIdentityBinding {
    AzureIdentityBinding {
        metadata: ObjectMeta {
            name: Some("app-binding".into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        spec: AzureIdentityBindingSpec {
            azure_identity: "app-id".into(),
            // The namespace's own name: tests share the API server, and in standard mode bindings of
            // every namespace apply, so a shared selector would let one test's binding serve another's pod.
            selector: ns.into(),
            ..Default::default()
        },
        status: None,
    }
}

fn python_token(pod: &Netns, client_id: &str) -> (bool, String) {
    let code = "import sys\nfrom azure.identity import ManagedIdentityCredential\n\
                c = ManagedIdentityCredential(client_id=sys.argv[1], retry_total=0)\n\
                try:\n    t = c.get_token('https://vault.azure.net/.default')\n    print('token', len(t.token), t.expires_on)\n\
                except Exception as e:\n    print('error', e); sys.exit(1)\n";
    let out = pod.exec(&[&python(), "-c", code, client_id]);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

fn rust_token(pod: &Netns, client_id: &str) -> (bool, String) {
    let out = pod.exec(&[
        &rust_probe(),
        "--client-id",
        client_id,
        "--scope",
        "https://vault.azure.net/.default",
        "--no-retry",
    ]);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

async fn wait_ready(admin_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let http =
        podid_azure::build_client(&podid_azure::HttpOptions { proxy_from_env: false, ..Default::default() })
            .unwrap();
    loop {
        let ok = http.get(&url).send().await.is_ok_and(|r| r.status().is_success());
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "agent not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A cluster namespace, the emulator (with `podid-app` on the scale set), two pods on one node
/// (`bound` labelled `app`, `other` labelled `none`) and the agent serving them.
struct Setup {
    client: kube::Client,
    ns: String,
    node: String,
    bound: Netns,
    other: Netns,
    emulator: podid_emulator::RunningEmulator,
    _bridge: Bridge,
    agent: Option<Agent>,
}

async fn setup(mode_args: &[&str]) -> Setup {
    let cluster = TestCluster::shared().await.unwrap();
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("nmi-sdks").await.unwrap();
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].identities.push("podid-app".into());
    let emulator = Emulator::start(config).await.unwrap();
    let sub = emulator.subscription_id();
    let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();

    let node = format!("{ns}-node");
    NodeBuilder::new(&node)
        .vmss(&sub, "MC_podid_podid_eastus", "aks-nodepool1-12345678-vmss", 0)
        .create(&client)
        .await
        .unwrap();
    let agent_port = free_port();
    let bridge = Bridge::create();
    let (bound, bound_ip) = bridge.attach(agent_port);
    let (other, other_ip) = bridge.attach(agent_port);
    for (name, ip, selector) in [("bound", &bound_ip, ns.as_str()), ("other", &other_ip, "none")] {
        PodBuilder::new(&ns, name)
            .node(&node)
            .label("aadpodidbinding", selector)
            .ip(ip.parse().unwrap())
            .create(&client)
            .await
            .unwrap();
    }
    Api::<AzureIdentity>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &identity(&ns, "app-id", &sub))
        .await
        .unwrap();
    Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding(&ns))
        .await
        .unwrap();

    let admin_port = free_port();
    let imds_port = imds.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
    let agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_podid-nmi"))
            .args(["--node", &node])
            .args(mode_args)
            .args(["--nmi-listen-address", &bridge.agent_ip(), "--nmi-port", &agent_port.to_string()])
            .args(["--iptables=false", "--kubelet-config", "/nonexistent", "--identity-not-found-status=400"])
            .args(["--imds-endpoint", &imds, "--metadata-ip", "127.0.0.1", "--metadata-port", &imds_port])
            .args([
                "--http-probe-port",
                &admin_port.to_string(),
                "--prometheus-port",
                &admin_port.to_string(),
            ])
            // 2 s for an assignment to appear (under `fetch`'s 3 s timeout), then a generous 8 s
            // more for it to become Assigned on a loaded machine; an unbound request is refused at
            // once either way.
            .args([
                "--retry-attempts-for-created",
                "2",
                "--retry-attempts-for-assigned",
                "8",
                "--find-identity-retry-interval",
                "1",
            ])
            .env("KUBECONFIG", cluster.kubeconfig_path())
            .env("RUST_LOG", "podid=debug,podid_nmi=debug")
            .spawn()
            .unwrap(),
    );
    wait_ready(admin_port).await;
    Setup { client, ns, node, bound, other, emulator, _bridge: bridge, agent: Some(agent) }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_sdks_in_pods_get_tokens_only_for_their_bound_identity() {
    if !root_or_explicit_skip("real_sdks_in_pods_get_tokens_only_for_their_bound_identity") {
        return;
    }
    let mut s = setup(&["--operation-mode", "managed", "--forceNamespaced"]).await;
    let (bound, other) = (&s.bound, &s.other);

    let (ok, out) = python_token(bound, APP_CLIENT);
    assert!(ok && out.starts_with("token "), "python, bound identity: {out}");
    let (ok, out) = rust_token(bound, APP_CLIENT);
    assert!(ok && out.starts_with("token "), "rust, bound identity: {out}");

    let (ok, out) = python_token(bound, RESTRICTED_CLIENT);
    assert!(!ok && out.contains("authentication unavailable"), "python, identity not bound: {out}");
    let raw = fetch(bound, &format!("{TOKEN_URL}&client_id={RESTRICTED_CLIENT}"));
    assert!(
        raw.as_ref().is_err_and(|e| e.starts_with("400") && e.contains("no azure identity found")),
        "{raw:?}"
    );
    let (ok, out) = rust_token(bound, RESTRICTED_CLIENT);
    assert!(!ok && out.contains("error"), "rust, identity not bound: {out}");
    let (ok, out) = python_token(other, APP_CLIENT);
    assert!(!ok && out.contains("authentication unavailable"), "python, pod without binding: {out}");
    let raw = fetch(other, &format!("{TOKEN_URL}&client_id={APP_CLIENT}"));
    assert!(
        raw.as_ref().is_err_and(|e| e.starts_with("400") && e.contains("no azure identity found")),
        "{raw:?}"
    );
    let (ok, out) = rust_token(other, APP_CLIENT);
    assert!(!ok, "rust, pod without binding: {out}");
    s.agent.take();
    s.emulator.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_mode_serves_the_assignment_the_controller_wrote_once_assigned() {
    if !root_or_explicit_skip("standard_mode_serves_the_assignment_the_controller_wrote_once_assigned") {
        return;
    }
    let mut s = setup(&[]).await;
    let raw = fetch(&s.bound, &format!("{TOKEN_URL}&client_id={APP_CLIENT}"));
    assert!(
        raw.as_ref().is_err_and(|e| e.starts_with("400") && e.contains("in CREATED state failed")),
        "no assignment yet: {raw:?}"
    );

    // Write the assigned identity as the controller does (state Created), then mark it Assigned.
    let pod = podid_core::PodView::from_pod(
        &Api::<podid_api::Pod>::namespaced(s.client.clone(), &s.ns).get("bound").await.unwrap(),
    );
    let identity = Api::<AzureIdentity>::namespaced(s.client.clone(), &s.ns).get("app-id").await.unwrap();
    let binding =
        Api::<AzureIdentityBinding>::namespaced(s.client.clone(), &s.ns).get("app-binding").await.unwrap();
    let desired = podid_core::matching::desired(&[pod], &[binding], &[identity], Default::default());
    let mut aai = desired.assignments.values().next().unwrap().to_object(false);
    assert_eq!(aai.spec.node_name, s.node);
    let aais = Api::<podid_api::AzureAssignedIdentity>::namespaced(
        s.client.clone(),
        aai.metadata.namespace.as_deref().unwrap(),
    );
    let created = aais.create(&PostParams::default(), &aai).await.unwrap();
    let bound = s.bound.name.clone();
    let waiter = std::thread::spawn(move || {
        let ns = Netns::existing(&bound);
        python_token(&ns, APP_CLIENT)
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    aai.metadata = created.metadata;
    aai.status.as_mut().unwrap().status = "Assigned".into();
    aais.replace(aai.metadata.name.as_deref().unwrap(), &PostParams::default(), &aai).await.unwrap();
    let (ok, out) = waiter.join().unwrap();
    assert!(ok && out.starts_with("token "), "python, waiting request served once Assigned: {out}");
    let (ok, out) = rust_token(&s.bound, APP_CLIENT);
    assert!(ok && out.starts_with("token "), "rust: {out}");
    let raw = fetch(&s.other, &format!("{TOKEN_URL}&client_id={APP_CLIENT}"));
    assert!(raw.is_err(), "the other pod has no assignment: {raw:?}");
    s.agent.take();
    s.emulator.shutdown().await;
}
