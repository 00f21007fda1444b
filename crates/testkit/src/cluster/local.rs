//! Starting etcd and kube-apiserver on free loopback ports, in a throwaway folder.
//!
//! ```text
//!   <tmp>/podid-cluster-XXXX/
//!     ca.crt  apiserver.crt  apiserver.key  sa.key  sa.pub  tokens.csv  kubeconfig
//!     kubelet-client.crt  kubelet-client.key       (only for real nodes)
//!     etcd-<attempt>/  etcd.log  kube-apiserver.log
//! ```
//!
//! [`ApiConfig::default`] is the loopback-only API server most tests share: no nodes can reach it,
//! so there is no `kubernetes` endpoint, and without a controller-manager the ServiceAccount
//! admission plugin is off. [`ApiConfig::for_real_nodes`] is the API server of a cluster with real
//! kubelets: reachable at an advertised address, with the Node authorizer, NodeRestriction and
//! ServiceAccount admission, and a client certificate for the kubelets' API.
//!
//! Ports are found by binding port 0 and releasing it, so another process can take one in the
//! meantime; a start that fails with "address already in use" is retried on fresh ports.
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::config::Kubeconfig;

use crate::binaries::Binaries;
use crate::process::{Processes, Recipe};
use crate::{Error, Result, TOKEN_EXCHANGE_AUDIENCE, kubeconfig, pki};

use super::bootstrap;

const ATTEMPTS: u32 = 3;
/// Generous: a start takes 4-10 s on two cores, longer while other builds share them.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(90);
const ADMIN_USER: &str = "podid-admin";
/// The API server's name among the cluster's child processes.
pub(crate) const APISERVER: &str = "kube-apiserver";

/// How the API server is set up.
#[derive(Debug, Clone, Default)]
pub(crate) struct ApiConfig {
    /// Where nodes and pods reach the API server: the `kubernetes` Endpoints address, also in the
    /// serving certificate. `None`: loopback only, no endpoint reconciler.
    pub(crate) advertise: Option<Ipv4Addr>,
    /// More addresses for the serving certificate (the service VIP, the host's bridge address).
    pub(crate) extra_san_ips: Vec<IpAddr>,
    /// Real kubelets join: Node authorizer, NodeRestriction, ServiceAccount admission, and the
    /// API server authenticates to kubelets with a client certificate.
    pub(crate) real_nodes: bool,
}

impl ApiConfig {
    /// The API server of a cluster with real nodes, advertised at `advertise`.
    pub(crate) fn for_real_nodes(advertise: Ipv4Addr, extra_san_ips: Vec<IpAddr>) -> Self {
        Self { advertise: Some(advertise), extra_san_ips, real_nodes: true }
    }

    fn san_ips(&self) -> Vec<IpAddr> {
        self.advertise.map(IpAddr::V4).into_iter().chain(self.extra_san_ips.iter().copied()).collect()
    }
}

/// A running local API server.
#[derive(Debug)]
pub(crate) struct Started {
    pub(crate) processes: Processes,
    pub(crate) admin: Kubeconfig,
    pub(crate) server_url: String,
    pub(crate) ca_pem: String,
    /// etcd's client URL (for compaction in fault tests).
    pub(crate) etcd_url: String,
    /// The cluster's CA, to sign more certificates (kubelets, kube-proxy).
    pub(crate) ca: pki::Ca,
}

/// Files written once per cluster, reused across port retries.
struct Files {
    ca: pki::Ca,
    ca_pem: String,
    admin_token: String,
}

/// Who cleans up after the test process dies.
#[derive(Debug, Clone)]
pub(crate) struct Cleanup {
    /// Removed by the watchdog (the cluster's folder, or a folder that holds it).
    pub(crate) remove: PathBuf,
    /// A process the cluster must outlive the test process for (see `process`).
    pub(crate) outlive: Option<u32>,
}

/// Starts etcd and kube-apiserver under `dir` and waits for `/readyz`.
pub(crate) async fn start(
    binaries: &Binaries,
    dir: &Path,
    cleanup: &Cleanup,
    config: &ApiConfig,
) -> Result<Started> {
    let began = std::time::Instant::now();
    let files = write_files(dir, config)?;
    tracing::debug!(elapsed_ms = began.elapsed().as_millis() as u64, "Keys and certificates written");
    let mut attempt = 1;
    loop {
        match start_once(binaries, dir, cleanup, &files, config, attempt).await {
            Err(Error::Exited { log_tail, .. })
                if attempt < ATTEMPTS && log_tail.contains("address already in use") =>
            {
                tracing::info!(attempt, "A port was taken meanwhile; retrying on fresh ports");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn start_once(
    binaries: &Binaries,
    dir: &Path,
    cleanup: &Cleanup,
    files: &Files,
    config: &ApiConfig,
    attempt: u32,
) -> Result<Started> {
    let [etcd_port, peer_port, api_port] = free_ports()?;
    let server_url = format!("https://127.0.0.1:{api_port}");
    let mut processes = Processes::new(&cleanup.remove, cleanup.outlive)?;
    processes.spawn("etcd", etcd(binaries, dir, attempt, etcd_port, peer_port), dir.join("etcd.log"))?;
    let (recipe_binaries, recipe_dir, recipe_url) = (binaries.clone(), dir.to_owned(), server_url.clone());
    let recipe_config = config.clone();
    let recipe = Recipe(Box::new(move || {
        let mut command = apiserver(&recipe_binaries, &recipe_dir, etcd_port, api_port, &recipe_url);
        topology(&mut command, &recipe_config, &recipe_dir);
        command
    }));
    processes.spawn_recipe(APISERVER, recipe, dir.join("kube-apiserver.log"))?;
    let admin = kubeconfig::single(&server_url, &files.ca_pem, kubeconfig::token(&files.admin_token));
    let client = kubeconfig::client(admin.clone())?;
    bootstrap::wait_ready(&client, &mut processes, START_TIMEOUT).await?;
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    Ok(Started { processes, admin, server_url, ca_pem: files.ca_pem.clone(), etcd_url, ca: files.ca.clone() })
}

fn write_files(dir: &Path, config: &ApiConfig) -> Result<Files> {
    let ca = pki::Ca::new()?;
    let serving = ca.serving_cert(&config.san_ips())?;
    let sa = pki::service_account_key()?;
    let admin_token = random_token();
    write(&dir.join("ca.crt"), ca.cert_pem())?;
    write(&dir.join("apiserver.crt"), &serving.cert_pem)?;
    write(&dir.join("apiserver.key"), &serving.key_pem)?;
    write(&dir.join("sa.key"), &sa.private_pem)?;
    write(&dir.join("sa.pub"), &sa.public_pem)?;
    write(&dir.join("tokens.csv"), &format!("{admin_token},{ADMIN_USER},{ADMIN_USER},\"system:masters\"\n"))?;
    if config.real_nodes {
        let client = ca.client_cert("kube-apiserver-kubelet-client", Some("system:masters"))?;
        write(&dir.join("kubelet-client.crt"), &client.cert_pem)?;
        write(&dir.join("kubelet-client.key"), &client.key_pem)?;
    }
    Ok(Files { ca_pem: ca.cert_pem().to_owned(), ca, admin_token })
}

fn etcd(binaries: &Binaries, dir: &Path, attempt: u32, client_port: u16, peer_port: u16) -> Command {
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let mut command = Command::new(&binaries.etcd);
    command
        .arg("--name=podid")
        .arg(arg("--data-dir", dir.join(format!("etcd-{attempt}"))))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=podid={peer}"))
        .args(["--logger=zap", "--log-level=warn"]);
    command
}

fn apiserver(binaries: &Binaries, dir: &Path, etcd_port: u16, port: u16, server_url: &str) -> Command {
    let mut command = Command::new(&binaries.kube_apiserver);
    command
        .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--insecure-port=0"])
        .arg(format!("--secure-port={port}"))
        .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
        .arg(arg("--cert-dir", dir.join("certs")))
        .arg(arg("--tls-cert-file", dir.join("apiserver.crt")))
        .arg(arg("--tls-private-key-file", dir.join("apiserver.key")))
        .arg(arg("--client-ca-file", dir.join("ca.crt")))
        .arg(arg("--token-auth-file", dir.join("tokens.csv")))
        .arg(arg("--service-account-signing-key-file", dir.join("sa.key")))
        .arg(arg("--service-account-key-file", dir.join("sa.pub")))
        .arg(format!("--service-account-issuer={server_url}"))
        // Without it the discovery document's jwks_uri is built from the advertised address, which
        // real nodes' clusters set to a node-local one the host (and the emulator) cannot reach.
        .arg(format!("--service-account-jwks-uri={server_url}/openid/v1/jwks"))
        .arg(format!("--api-audiences={server_url},{TOKEN_EXCHANGE_AUDIENCE}"))
        .arg(format!("--service-cluster-ip-range={SERVICE_CIDR}"))
        .args(["--enable-priority-and-fairness=false", "--profiling=false"]);
    command
}

/// The service network; the `kubernetes` Service is its first address.
pub(crate) const SERVICE_CIDR: &str = "10.96.0.0/16";

/// The flags that differ between a loopback-only API server and one real nodes join.
fn topology(command: &mut Command, config: &ApiConfig, dir: &Path) {
    let Some(advertise) = config.advertise.filter(|_| config.real_nodes) else {
        command
            .arg("--authorization-mode=RBAC")
            // No controller-manager creates `default` service accounts, so the plugin would refuse pods.
            .arg("--disable-admission-plugins=ServiceAccount")
            // 127.0.0.1 is not a valid endpoint address; there is nothing to reconcile anyway.
            .arg("--endpoint-reconciler-type=none");
        return;
    };
    command
        .arg(format!("--advertise-address={advertise}"))
        .arg("--authorization-mode=Node,RBAC")
        .arg("--enable-admission-plugins=NodeRestriction")
        .arg("--allow-privileged=true")
        .arg(arg("--kubelet-client-certificate", dir.join("kubelet-client.crt")))
        .arg(arg("--kubelet-client-key", dir.join("kubelet-client.key")))
        // Dial kubelets at their node address: a Hostname would be resolved by the host's DNS.
        .arg("--kubelet-preferred-address-types=InternalIP");
}

fn arg(flag: &str, path: PathBuf) -> String {
    format!("{flag}={}", path.display())
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|source| Error::Io {
        action: "write",
        path: path.to_owned(),
        source,
    })
}

/// Three distinct free ports on 127.0.0.1 (held together while choosing, so they differ).
fn free_ports() -> Result<[u16; 3]> {
    let bind = || {
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| Ok((listener.local_addr()?.port(), listener)))
            .map_err(|source| Error::Io { action: "bind a free port on", path: "127.0.0.1".into(), source })
    };
    let (a, b, c) = (bind()?, bind()?, bind()?);
    Ok([a.0, b.0, c.0])
}

fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}
