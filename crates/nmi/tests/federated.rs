//! Federated mode end to end: the real `podid-nmi` binary watching a real kube-apiserver, pods as
//! network namespaces, and the emulator's Entra ID validating the exchanged service-account tokens
//! against the API server's own OIDC discovery document and JWKS. No controller runs, and no
//! scale set changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use podid_api::k8s_openapi;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_emulator::config::builtin;
use podid_emulator::{Emulator, EmulatorConfig, Surface};
use podid_testkit::{NodeBuilder, PodBuilder, TOKEN_EXCHANGE_AUDIENCE, TestCluster};
use support::netns::{Bridge, Netns, fetch};

const APP_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";
const TOKEN_URL: &str = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn wait_ready(admin_port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{admin_port}/readyz");
    let http =
        podid_azure::build_client(&podid_azure::HttpOptions { proxy_from_env: false, ..Default::default() })
            .unwrap();
    while !http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
        assert!(Instant::now() < deadline, "agent not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The app identity (`podid-app` in the emulator), annotated federated when asked.
fn identity(ns: &str, sub: &str, annotated: bool) -> AzureIdentity {
    let mut metadata =
        ObjectMeta { name: Some("app-id".into()), namespace: Some(ns.into()), ..Default::default() };
    if annotated {
        metadata.annotations =
            Some([(podid_api::FEDERATED_ANNOTATION.to_string(), "true".to_string())].into());
    }
    AzureIdentity {
        metadata,
        spec: AzureIdentitySpec {
            resource_id: format!(
                "/subscriptions/{sub}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                builtin::IDENTITY_RESOURCE_GROUP,
                builtin::APP_IDENTITY
            ),
            client_id: APP_CLIENT.into(),
            ..Default::default()
        },
        status: None,
    }
}

/// The binding selector: unique per test namespace, since bindings of non-namespaced identities
/// select pods of every namespace (and the tests share one cluster).
fn selector(ns: &str) -> String {
    format!("app-{ns}")
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
            selector: selector(ns),
            ..Default::default()
        },
        status: None,
    }
}

/// How the agent authenticates to the API server.
enum Credentials {
    Admin,
    /// Service account `podid-nmi` of the test namespace with only the agent's reads and
    /// `create serviceaccounts/token`.
    MinimalRole,
    /// The same reads but no `create serviceaccounts/token` (an install without
    /// `--federated-identities`).
    ReadOnlyRole,
}

struct World {
    client: kube::Client,
    ns: String,
    node: String,
    emulator: podid_emulator::RunningEmulator,
    bridge: Bridge,
    agent_port: u16,
    agent: Option<Agent>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start(agent_args: &[&str], annotated: bool, credentials: Credentials) -> World {
        let cluster = TestCluster::shared().await.unwrap();
        let client = cluster.client().unwrap();
        let ns = cluster.namespace("nmi-federated").await.unwrap();
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        emulator.add_trusted_ca_pem(cluster.ca_pem().expect("the test cluster has a CA")).unwrap();
        let sub = emulator.subscription_id();
        let node = format!("{ns}-node");
        NodeBuilder::new(&node)
            .vmss(&sub, builtin::NODE_RESOURCE_GROUP, builtin::SCALE_SET, 0)
            .create(&client)
            .await
            .unwrap();
        // Entra ID trusts service account app-sa of this namespace, issued by the API server.
        let info = emulator.info();
        let uai = info.identities.get(builtin::APP_IDENTITY).unwrap().id.to_ascii_lowercase();
        let issuer = cluster.issuer().to_string();
        let subject = format!("system:serviceaccount:{ns}:app-sa");
        emulator.with_world(|w| {
            let fic = podid_emulator::model::FederatedCredential {
                name: "kube".into(),
                issuer,
                subject,
                audiences: vec![TOKEN_EXCHANGE_AUDIENCE.into()],
            };
            w.identities.get_mut(&uai).unwrap().federated.insert("kube".into(), fic);
        });
        Api::<AzureIdentity>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &identity(&ns, &sub, annotated))
            .await
            .unwrap();
        Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &binding(&ns))
            .await
            .unwrap();
        let kubeconfig = match credentials {
            Credentials::Admin => cluster.kubeconfig_path().to_path_buf(),
            Credentials::MinimalRole | Credentials::ReadOnlyRole => {
                grant_minimal_role(&client, &ns, matches!(credentials, Credentials::MinimalRole)).await;
                cluster.service_account_kubeconfig(&ns, "podid-nmi").await.unwrap()
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("agent.log");
        let agent_port = free_port();
        let bridge = Bridge::create();
        let admin_port = free_port();
        let (_, imds) = emulator.imds_urls().into_iter().next().unwrap();
        let out = std::fs::File::create(&log).unwrap();
        let agent = Agent(
            Command::new(env!("CARGO_BIN_EXE_podid-nmi"))
                .args(["--node", &node])
                .args(agent_args)
                .args(["--nmi-listen-address", &bridge.agent_ip(), "--nmi-port", &agent_port.to_string()])
                .args([
                    "--iptables=false",
                    "--kubelet-config",
                    "/nonexistent",
                    "--identity-not-found-status=400",
                ])
                .args(["--imds-endpoint", &imds, "--metadata-ip", "127.0.0.1", "--metadata-port", "9"])
                .args([
                    "--http-probe-port",
                    &admin_port.to_string(),
                    "--prometheus-port",
                    &admin_port.to_string(),
                ])
                .args(["--aad-authority", &emulator.login_url(), "--tenant-id", &emulator.tenant_id()])
                .arg("--trusted-ca-file")
                .arg(emulator.ca_pem_path())
                .args(["--cloud-config", "/nonexistent"])
                .env("KUBECONFIG", kubeconfig)
                .env("RUST_LOG", "debug,hyper=info,h2=info,rustls=info,tower=info")
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_ready(admin_port).await;
        World { client, ns, node, emulator, bridge, agent_port, agent: Some(agent), log, _dir: dir }
    }

    /// A Running pod labelled `app` with service account `sa`, as a network namespace.
    async fn pod(&self, name: &str, sa: &str) -> Netns {
        let (netns, ip) = self.bridge.attach(self.agent_port);
        PodBuilder::new(&self.ns, name)
            .node(&self.node)
            .label("aadpodidbinding", selector(&self.ns))
            .service_account(sa)
            .ip(ip.parse().unwrap())
            .create(&self.client)
            .await
            .unwrap();
        netns
    }

    fn scale_set_identities(&self) -> Vec<String> {
        self.emulator.assigned_identities(builtin::NODE_RESOURCE_GROUP, builtin::SCALE_SET).unwrap()
    }

    fn requests_to(&self, surface: Surface) -> usize {
        self.emulator.requests().iter().filter(|r| r.surface == surface).count()
    }

    fn logs(&mut self) -> String {
        drop(self.agent.take());
        std::fs::read_to_string(&self.log).unwrap()
    }
}

async fn grant_minimal_role(client: &kube::Client, ns: &str, tokens: bool) {
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| s.to_string()).collect()),
        resources: Some(resources.iter().map(|s| s.to_string()).collect()),
        verbs: verbs.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let name = format!("{ns}-podid-nmi");
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        rules: Some(
            [
                rule(&[""], &["pods"], &["get", "list", "watch"]),
                rule(
                    &["aadpodidentity.k8s.io"],
                    &["azureidentities", "azureidentitybindings", "azurepodidentityexceptions"],
                    &["get", "list", "watch"],
                ),
            ]
            .into_iter()
            .chain(tokens.then(|| rule(&[""], &["serviceaccounts/token"], &["create"])))
            .collect(),
        ),
        ..Default::default()
    };
    Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role).await.unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(name.clone()), ..Default::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: "podid-nmi".into(),
            namespace: Some(ns.into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &binding).await.unwrap();
}

fn access_token(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["access_token"].as_str().unwrap_or_else(|| panic!("no access_token in {body}")).to_string()
}

/// JWT claims of a token (no signature check: the emulator's Entra ID issued it).
fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

fn python_sdk_token(pod: &Netns, client_id: &str) -> (bool, String) {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(python.exists(), "{} is missing: run scripts/python-venv.sh", python.display());
    let code = "import sys\nfrom azure.identity import ManagedIdentityCredential\n\
                c = ManagedIdentityCredential(client_id=sys.argv[1], retry_total=0)\n\
                try:\n    t = c.get_token('https://vault.azure.net/.default')\n    print('token', len(t.token))\n\
                except Exception as e:\n    print('error', e); sys.exit(1)\n";
    let out = pod.exec(&[&python.display().to_string(), "-c", code, client_id]);
    (
        out.status.success(),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn annotated_identity_is_served_through_federation_without_touching_the_scale_set() {
    // Standard mode; an unbound pod waits 1 s for an assignment before the refusal.
    let quick = [
        "--retry-attempts-for-created=1",
        "--retry-attempts-for-assigned=0",
        "--find-identity-retry-interval=1",
    ];
    let mut w = World::start(&quick, true, Credentials::Admin).await;
    let before = w.scale_set_identities();
    let fed = w.pod("fed", "app-sa").await;
    w.emulator.clear_requests();

    let body = fetch(&fed, TOKEN_URL).unwrap_or_else(|e| panic!("federated pod refused: {e}"));
    let token = claims(&access_token(&body));
    assert_eq!(token["appid"].as_str().or(token["azp"].as_str()), Some(APP_CLIENT), "{token}");
    let (ok, out) = python_sdk_token(&fed, APP_CLIENT);
    assert!(ok && out.starts_with("token "), "python azure-identity, federated identity: {out}");

    assert_eq!(w.requests_to(Surface::Arm), 0, "federation made ARM calls: {:?}", w.emulator.requests());
    assert_eq!(w.requests_to(Surface::Imds), 0, "federation used the node's IMDS");
    assert_eq!(w.scale_set_identities(), before, "the scale set's identity list changed");
    let aais = Api::<podid_api::AzureAssignedIdentity>::all(w.client.clone())
        .list(&Default::default())
        .await
        .unwrap();
    assert!(!aais.items.iter().any(|a| a.spec.pod_namespace == w.ns), "an assigned identity was written");

    // Unbinding stops serving at once (the next request after the watch event is refused).
    Api::<AzureIdentityBinding>::namespaced(w.client.clone(), &w.ns)
        .delete("app-binding", &DeleteParams::default())
        .await
        .unwrap();
    let deleted = Instant::now();
    let refused = loop {
        match fetch(&fed, TOKEN_URL) {
            Err(e) => break e,
            Ok(_) if deleted.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Ok(_) => panic!("still served 5 s after the binding was deleted:\n{}", w.logs()),
        }
    };
    assert!(refused.starts_with("400"), "after unbinding: {refused}");
    eprintln!("unbind → refused after {:?}", deleted.elapsed());

    let logs = w.logs();
    assert!(logs.contains("Federated") || logs.contains("federated"), "agent logs are empty?\n{logs}");
    assert!(
        !logs.contains("eyJhbGciOi"),
        "a JWT (service-account or access token) is in the agent's logs:\n{logs}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn service_account_without_a_credential_gets_entra_s_refusal_not_another_account_s_token() {
    let w = World::start(&[], true, Credentials::Admin).await;
    let fed = w.pod("fed", "app-sa").await;
    let stranger = w.pod("stranger", "other-sa").await;
    fetch(&fed, TOKEN_URL).unwrap_or_else(|e| panic!("federated pod refused: {e}"));
    // app-sa's token is cached now; other-sa is bound to the same identity but has no credential.
    let refused = fetch(&stranger, TOKEN_URL).unwrap_err();
    assert!(refused.starts_with("403"), "{refused}");
    assert!(refused.contains("AADSTS70021"), "{refused}");
    assert!(refused.contains(&format!("system:serviceaccount:{}:other-sa", w.ns)), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cluster_federated_mode_runs_with_only_create_serviceaccounts_token_and_caches_per_service_account() {
    let w = World::start(&["--operation-mode=federated"], false, Credentials::MinimalRole).await;
    let before = w.scale_set_identities();
    let first = w.pod("first", "app-sa").await;
    let second = w.pod("second", "app-sa").await;
    w.emulator.clear_requests();
    let a = access_token(&fetch(&first, TOKEN_URL).unwrap_or_else(|e| panic!("first pod refused: {e}")));
    let logins = w.requests_to(Surface::Login);
    assert_eq!(logins, 1, "{:?}", w.emulator.requests());
    // Same service account, same identity: one Azure token shared, no second exchange.
    let b = access_token(&fetch(&second, TOKEN_URL).unwrap_or_else(|e| panic!("second pod refused: {e}")));
    assert_eq!(a, b);
    assert_eq!(w.requests_to(Surface::Login), logins);
    assert_eq!(w.requests_to(Surface::Arm), 0);
    assert_eq!(w.scale_set_identities(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_without_the_token_grant_refuses_with_what_to_install() {
    let w = World::start(&["--operation-mode=federated"], false, Credentials::ReadOnlyRole).await;
    let pod = w.pod("fed", "app-sa").await;
    let refused = fetch(&pod, TOKEN_URL).unwrap_err();
    assert!(refused.starts_with("403"), "{refused}");
    assert!(refused.contains("--federated-identities"), "{refused}");
    assert_eq!(w.requests_to(Surface::Login), 0, "no exchange without a service-account token");
}
