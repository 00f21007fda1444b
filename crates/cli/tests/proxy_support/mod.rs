//! The world of the proxy tests: the shared API server, an emulator, a counting proxy on the host
//! side of a veth link, and a network namespace whose programs reach the API server and Azure only
//! by name, through that proxy.
//!
//! ```text
//!  netns (no route, no DNS)            host
//!  podid / podid-mic / podid-nmi ──▶ proxy 10.251.N.1:P ─┬─ kubernetes.default.svc:<api> ─▶ 127.0.0.1:<api> (TLS end to end)
//!  podid-demo                                            ├─ login.podid.test:<login> ─▶ emulator (TLS re-opened)
//!      │                                                 └─ arm.podid.test:<arm>     ─▶ emulator (TLS re-opened)
//!      └──── IMDS http://10.251.N.1:Q (direct) ──▶ forwarder ─▶ emulator IMDS of node 0
//! ```
#![allow(dead_code)]

pub mod netns;
pub mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use podid_emulator::config::RoleAssignmentConfig;
use podid_emulator::config::builtin::{AGENTPOOL_IDENTITY, NODE_RESOURCE_GROUP};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use podid_testkit::TestCluster;

use netns::Netns;
use proxy::{Forwarder, Mitm, Proxy, Route};

/// The names the programs in the namespace use for Entra ID and ARM.
pub const LOGIN_NAME: &str = "login.podid.test";
pub const ARM_NAME: &str = "arm.podid.test";
/// The API server's in-cluster name (in its certificate, so TLS is checked end to end).
pub const API_NAME: &str = "kubernetes.default.svc";

/// The port of `url` (`scheme://host:port…`).
pub fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port_or_known_default().unwrap()
}

/// A program built next to `podid` (`cargo build --workspace --bins` builds them all).
pub fn program(name: &str) -> PathBuf {
    let podid = Path::new(env!("CARGO_BIN_EXE_podid"));
    let path = podid.with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build every program first (`cargo build --workspace --bins`; `make test-rust` does)",
        path.display()
    );
    path
}

pub struct World {
    pub cluster: &'static TestCluster,
    pub client: kube::Client,
    /// A fresh Kubernetes namespace for this test.
    pub namespace: String,
    pub emu: RunningEmulator,
    pub netns: Netns,
    pub proxy: Proxy,
    /// Node 0's IMDS, reachable from the namespace at `imds.addr`.
    pub imds: Forwarder,
    pub dir: tempfile::TempDir,
    /// Admin kubeconfig naming the server `kubernetes.default.svc`.
    pub kubeconfig: PathBuf,
    /// The proxy's CA (PEM file), which clients must trust for the Azure names.
    pub proxy_ca: PathBuf,
    pub api_port: u16,
}

impl World {
    /// Everything above; the emulator's agent-pool identity may read the node resource group (for
    /// the demo's VM listing).
    pub async fn start(prefix: &str) -> Self {
        podid_azure::install_crypto_provider();
        let cluster = TestCluster::shared().await.expect("test cluster starts");
        let client = cluster.client().expect("client");
        let namespace = cluster.namespace(prefix).await.expect("namespace");
        let mut config = EmulatorConfig::default();
        config.role_assignments.push(RoleAssignmentConfig {
            principal: AGENTPOOL_IDENTITY.into(),
            role: "Reader".into(),
            scope: format!("resourceGroups/{NODE_RESOURCE_GROUP}"),
        });
        let emu = Emulator::start(config).await.expect("emulator starts");
        let netns = Netns::create();
        let api_port = port_of(cluster.server_url());
        let local = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let routes = HashMap::from([
            ((API_NAME.to_string(), api_port), Route::Tunnel(local(api_port))),
            ((ARM_NAME.to_string(), port_of(&emu.arm_url())), Route::Tls(local(port_of(&emu.arm_url())))),
            (
                (LOGIN_NAME.to_string(), port_of(&emu.login_url())),
                Route::Tls(local(port_of(&emu.login_url()))),
            ),
        ]);
        let mitm = Mitm::new(&[ARM_NAME, LOGIN_NAME], emu.ca_pem());
        let dir = tempfile::tempdir().unwrap();
        let proxy_ca = dir.path().join("proxy-ca.pem");
        std::fs::write(&proxy_ca, &mitm.ca_pem).unwrap();
        let host: SocketAddr = format!("{}:0", netns.host_ip).parse().unwrap();
        let proxy = Proxy::start(host, routes, Some(mitm)).await;
        let node0 = emu.info().imds.keys().next().cloned().expect("a node");
        let imds = Forwarder::start(host, local(port_of(&emu.imds_url(&node0).unwrap()))).await;
        let admin = std::fs::read_to_string(cluster.kubeconfig_path()).unwrap();
        let by_name = admin.replace(cluster.server_url(), &format!("https://{API_NAME}:{api_port}"));
        assert_ne!(admin, by_name, "the kubeconfig names the server as {}", cluster.server_url());
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, by_name).unwrap();
        Self { cluster, client, namespace, emu, netns, proxy, imds, dir, kubeconfig, proxy_ca, api_port }
    }

    /// `HTTPS_PROXY`, `HTTP_PROXY` (both the proxy), a `NO_PROXY` that matches nothing used here,
    /// and `KUBECONFIG`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("HTTPS_PROXY", self.proxy.url()),
            ("HTTP_PROXY", self.proxy.url()),
            ("NO_PROXY", "example.invalid,.corp.invalid".into()),
            ("KUBECONFIG", self.kubeconfig.display().to_string()),
            ("RUST_LOG", "info".into()),
        ]
    }

    /// `program` inside the namespace with [`World::env`].
    pub fn command(&self, program: &Path) -> Command {
        let mut c = self.netns.command(program);
        c.envs(self.env());
        c
    }

    /// `https://arm.podid.test:<port>`.
    pub fn arm_url(&self) -> String {
        format!("https://{ARM_NAME}:{}", port_of(&self.emu.arm_url()))
    }

    /// `https://login.podid.test:<port>`.
    pub fn login_url(&self) -> String {
        format!("https://{LOGIN_NAME}:{}", port_of(&self.emu.login_url()))
    }

    /// `--arm-endpoint … --azure-client-secret …` through the proxy's names, as application `app`.
    pub fn azure_flags(&self, app: &str) -> Vec<String> {
        let info = self.emu.info();
        let app = &info.applications[app];
        vec![
            "--arm-endpoint".into(),
            self.arm_url(),
            "--aad-authority".into(),
            self.login_url(),
            "--trusted-ca-file".into(),
            self.proxy_ca.display().to_string(),
            "--tenant-id".into(),
            self.emu.tenant_id(),
            "--azure-client-id".into(),
            app.client_id.clone(),
            "--azure-client-secret".into(),
            app.secrets[0].clone(),
        ]
    }

    /// What the proxy saw, for failure messages.
    pub fn seen(&self) -> String {
        format!("{:?}", self.proxy.seen())
    }
}
