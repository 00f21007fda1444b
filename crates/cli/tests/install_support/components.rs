//! The real controller (in process) and the real agent (the `podid-nmi` binary), each
//! authenticated as its installed ServiceAccount, against the emulator.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use podid_azure::arm::ArmOptions;
use podid_azure::config::ArmAuth;
use podid_azure::credential::token_source;
use podid_azure::http::{Backoff, HttpOptions, build_client};
use podid_azure::imds::ImdsOptions;
use podid_azure::{ArmClient, Cloud, Secret};
use podid_core::matching::MatchOptions;
use podid_emulator::RunningEmulator;
use podid_emulator::config::builtin::CLUSTER_APP;
use podid_mic::controller::Settings;
use podid_mic::leader::Election;
use podid_mic::{Config, Running};
use url::Url;

/// The Lease name `install` leaves at the controller's default.
pub const LEASE: &str = "aad-pod-identity-mic";

/// ARM as the cluster's identity, at the emulator.
pub fn arm(emu: &RunningEmulator) -> ArmClient {
    let info = emu.info();
    let app = &info.applications[CLUSTER_APP];
    let auth = ArmAuth::Secret {
        tenant_id: emu.tenant_id(),
        client_id: app.client_id.clone(),
        secret: Secret::new(app.secrets[0].clone()),
    };
    let cloud = Cloud::public()
        .with_resource_manager(Url::parse(&emu.arm_url()).unwrap())
        .with_authority_host(Url::parse(&emu.login_url()).unwrap());
    let http =
        HttpOptions { extra_ca_files: vec![emu.ca_pem_path().to_path_buf()], ..HttpOptions::default() };
    let credential = token_source(&auth, &cloud, &http, ImdsOptions::default()).unwrap();
    let options = ArmOptions {
        backoff: Backoff {
            max_retries: 2,
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            jitter: true,
        },
        poll_interval: Duration::from_millis(50),
        ..ArmOptions::default()
    };
    ArmClient::for_cloud(build_client(&http).unwrap(), &cloud, credential, options)
}

/// Starts the controller as `client` (all namespaces, as installed), electing in `ns`.
pub fn controller(client: kube::Client, emu: &RunningEmulator, ns: &str) -> Running {
    let config = Config {
        settings: Settings {
            match_options: MatchOptions::default(),
            batch_window: Duration::from_millis(50),
            drift_interval: None,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..Settings::default()
        },
        scope: None,
        election: Election {
            namespace: ns.into(),
            name: LEASE.into(),
            identity: "rbac-test-mic".into(),
            lease_duration: Duration::from_secs(2),
        },
        immutable: BTreeSet::new(),
        max_identity_retries: 2,
        concurrency: 20,
    };
    podid_mic::start(client, arm(emu), config)
}

/// `target/<profile>/<name>`, built first (a no-op when `cargo test --workspace` built it).
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let mut cmd = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    cmd.args(["build", "-q", "-p", package, "--bin", name]);
    if profile_dir.ends_with("release") {
        cmd.arg("--release");
    }
    let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().unwrap();
    assert!(status.success(), "cargo build -p {package} --bin {name} failed");
    let path = profile_dir.join(name);
    assert!(path.is_file(), "{} missing after the build", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The agent process; killed on drop.
pub struct Agent {
    child: Child,
    pub port: u16,
    pub admin_port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    /// Starts `podid-nmi` for `node` with `kubeconfig` (the ServiceAccount's), fetching tokens
    /// from the emulator's IMDS for the node's instance. No iptables: callers talk to it directly.
    pub async fn start(kubeconfig: &std::path::Path, node: &str, imds: &str, mic_namespace: &str) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let imds_port = imds.rsplit(':').next().unwrap().trim_end_matches('/').to_string();
        let child = Command::new(workspace_binary("podid-nmi", "podid-nmi"))
            .args(["--node", node, "--nmi-listen-address", "127.0.0.1", "--nmi-port", &port.to_string()])
            .args(["--iptables=false", "--kubelet-config", "/nonexistent", "--MICNamespace", mic_namespace])
            .args(["--imds-endpoint", imds, "--metadata-ip", "127.0.0.1", "--metadata-port", &imds_port])
            .args([
                "--http-probe-port",
                &admin_port.to_string(),
                "--prometheus-port",
                &admin_port.to_string(),
            ])
            .args(["--retry-attempts-for-created", "5", "--retry-attempts-for-assigned", "5"])
            .args(["--find-identity-retry-interval", "1"])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "podid_nmi=debug")
            .spawn()
            .unwrap();
        let agent = Self { child, port, admin_port };
        agent.wait_ready().await;
        agent
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        loop {
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "agent not ready within 30 s (its watches need its RBAC)");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A token request as the pod with IP `pod_ip` (a loopback address): status and body.
    pub async fn token(&self, pod_ip: &str, client_id: &str) -> (u16, String) {
        let http = reqwest::Client::builder()
            .no_proxy()
            .local_address(pod_ip.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        let url = format!(
            "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://vault.azure.net&client_id={client_id}",
            self.port
        );
        let r = http.get(url).header("Metadata", "true").send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

/// What the install/uninstall and RBAC tests start from: podid installed (default options) on
/// this binary's private cluster, the emulator with 50 ms ARM operations, the controller running
/// as its installed ServiceAccount, and one node of the emulator's scale set in a fresh `apps`
/// namespace.
pub struct InstalledWorld {
    pub cluster: &'static podid_testkit::TestCluster,
    pub admin: kube::Client,
    /// The namespace podid is installed in.
    pub system: String,
    pub emu: RunningEmulator,
    /// The controller's installed ServiceAccount.
    pub mic_client: kube::Client,
    pub mic: Running,
    pub apps: String,
    pub node: String,
}

impl InstalledWorld {
    pub async fn start() -> Self {
        use podid_cli::install::{InstallOptions, MIC_SERVICE_ACCOUNT};
        use podid_emulator::config::builtin::{NODE_RESOURCE_GROUP, SCALE_SET};
        use podid_emulator::{Emulator, EmulatorConfig, SettingsUpdate};

        podid_testkit::init_tracing();
        let cluster = super::private_cluster().await;
        let admin = cluster.client().unwrap();
        let system = cluster.namespace("podid-system").await.unwrap();
        super::install(&admin, &InstallOptions { namespace: system.clone(), ..InstallOptions::default() })
            .await;
        let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
        emu.update_settings(&SettingsUpdate { operation_duration_ms: Some(50), ..SettingsUpdate::default() });
        let mic_client = cluster.service_account_client(&system, MIC_SERVICE_ACCOUNT).await.unwrap();
        let mic = controller(mic_client.clone(), &emu, &system);
        let apps = cluster.namespace("apps").await.unwrap();
        let node = format!("{apps}-n0");
        podid_testkit::NodeBuilder::new(&node)
            .vmss(&emu.subscription_id(), NODE_RESOURCE_GROUP, SCALE_SET, 0)
            .create(&admin)
            .await
            .unwrap();
        Self { cluster, admin, system, emu, mic_client, mic, apps, node }
    }

    /// A pod on the node, labelled for `selector`, Running at `ip`.
    pub async fn pod(&self, name: &str, selector: &str, ip: &str) {
        podid_testkit::PodBuilder::new(&self.apps, name)
            .node(&self.node)
            .label("aadpodidbinding", selector)
            .ip(ip.parse().unwrap())
            .create(&self.admin)
            .await
            .unwrap();
    }

    /// The `podid identity add` arguments that add the emulator's app identity as `name`, bound
    /// to selector `name` (`identity add`'s default).
    pub fn app_identity_args(&self, name: &str) -> [String; 10] {
        let app = &self.emu.info().identities[podid_emulator::config::builtin::APP_IDENTITY];
        ["identity", "add", "-n", &self.apps, "--name", name, "--identity-resource-id", &app.id]
            .map(str::to_string)
            .into_iter()
            .chain([String::from("--client-id"), app.client_id.clone()])
            .collect::<Vec<_>>()
            .try_into()
            .unwrap()
    }
}
