//! [`RealCluster`]: Kubernetes as users run it — real kubelets, containerd, runc and CNI — on
//! this one machine, each node in namespaces of its own.
//!
//! ```text
//!  host netns, loopback                        node netns pk<tag>-n<i> (one per node)
//!  etcd, kube-apiserver (127.0.0.1:P)          kubelet, containerd, kube-proxy (or one DNAT),
//!  kube-controller-manager, kube-scheduler      podid-forward, hostNetwork pods, the pods' bridge
//!  podid-forward 10.200.N.1:P → 127.0.0.1:P ◀── 10.250.250.1:P (SERVICES_IP) ─ pods, kubelet
//!  the emulator (tests start it)            ◀── 169.254.169.254:80 → that node's emulated IMDS
//! ```
//!
//! - **Control plane** on the host's loopback, as [`TestCluster`] runs it, plus the
//!   controller-manager (service-account tokens, namespace deletion, DaemonSet / Deployment /
//!   ReplicaSet controllers, node lifecycle) and the scheduler. The API server is advertised at
//!   [`SERVICES_IP`], where every node has a forwarder to it, so the `kubernetes` Service
//!   (10.96.0.1) leads there from pods and from the nodes alike.
//! - **Nodes** (see `host` and `node`): a network namespace without a default route, holding the
//!   node's processes in a pid and mount namespace of their own. Containers are real (runc),
//!   images are imported into each node's containerd (nothing is pulled), pods get addresses
//!   from the CNI bridge plugin.
//! - **Reachability**: a node reaches the host only through its forwarders, i.e. only the services
//!   a test [`expose`](RealCluster::expose)s (and the API server); nothing else on or beyond the
//!   host can be reached from a node or a pod.
//! - **Teardown**: dropping the cluster kills every node's process 1 (which ends every process
//!   of that node), removes its cgroups, namespaces and links, then stops the control plane. If
//!   the test process dies instead, a watchdog does the same (`process`).
//!
//! Requires root, cgroup v1 hierarchies that can be written, overlayfs, containerd, runc and the
//! CNI plugins ([`check_prerequisites`] says what is missing and how to get it).
mod config;
mod host;
mod net;
mod node;
mod prereq;
mod teardown;

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;
use kube::api::ListParams;

pub use net::{IMDS_IP, KUBERNETES_SERVICE_IP, SERVICES_IP};
pub use node::{NodeSpec, RealNode};
pub use prereq::check as check_prerequisites;

use crate::binaries::{kube_bin, workspace_bin};
use crate::cluster::local::{ApiConfig, Cleanup};
use crate::images::Catalog;
use crate::process::Processes;
use crate::wait::eventually;
use crate::{Error, Result, TestCluster};

/// How long nodes may take to become Ready after their kubelets start (9–16 s measured idle).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// A cluster of real nodes; see the module documentation.
#[derive(Debug)]
pub struct RealCluster {
    tag: String,
    nodes: Vec<RealNode>,
    bridge: Option<net::HostBridge>,
    /// The node-side processes (namespace holders, forwarders); their watchdog runs `teardown`.
    processes: tokio::sync::Mutex<Processes>,
    teardown: teardown::Teardown,
    /// The API server and the rest of the control plane; dropped last.
    api: TestCluster,
}

/// What to start: nodes and the images every node imports.
#[derive(Debug, Default)]
pub struct RealClusterBuilder {
    nodes: Vec<NodeSpec>,
    images: Vec<PathBuf>,
    pause: Option<String>,
}

impl RealClusterBuilder {
    /// Adds a node.
    pub fn node(mut self, spec: NodeSpec) -> Self {
        self.nodes.push(spec);
        self
    }

    /// Imports images `names` of `catalog` into every node, with the catalog's `pause` image as
    /// every pod's sandbox.
    pub fn catalog(mut self, catalog: &Catalog, names: &[&str]) -> Result<Self> {
        self.pause = Some(catalog.reference("pause")?);
        self.images.push(catalog.tarball("pause")?);
        self.images.extend(catalog.tarballs(names)?);
        Ok(self)
    }

    /// Starts the control plane and every node, and waits until every node is Ready.
    pub async fn start(self) -> Result<RealCluster> {
        prereq::check()?;
        let pause = self
            .pause
            .clone()
            .ok_or_else(|| Error::Unexpected("no pause image: call `catalog` first".into()))?;
        let began = std::time::Instant::now();
        let mut cluster = RealCluster::control_plane().await?;
        tracing::info!(elapsed_ms = began.elapsed().as_millis() as u64, "Control plane ready");
        cluster.start_nodes(self.nodes, &self.images, &pause).await?;
        cluster.wait_ready().await?;
        tracing::info!(
            nodes = cluster.nodes.len(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "Real cluster ready"
        );
        Ok(cluster)
    }
}

impl RealCluster {
    /// What to start.
    pub fn builder() -> RealClusterBuilder {
        RealClusterBuilder::default()
    }

    async fn control_plane() -> Result<Self> {
        let tag = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
        let dir =
            tempfile::Builder::new().prefix(&format!("podid-real-{tag}-")).tempdir().map_err(|source| {
                Error::Io { action: "create a folder in", path: std::env::temp_dir(), source }
            })?;
        let cleanup = Cleanup { remove: dir.path().to_owned(), outlive: None };
        let config = ApiConfig::for_real_nodes(SERVICES_IP, vec![KUBERNETES_SERVICE_IP.into()]);
        let api = TestCluster::launch(dir, &cleanup, &config).await?;
        let teardown = teardown::Teardown::new(&tag);
        let mut processes = Processes::new(&api.dir().join("nodes"), None)?;
        processes.teardown_on_death(teardown.path());
        let mut cluster = Self {
            tag,
            nodes: Vec::new(),
            bridge: None,
            processes: tokio::sync::Mutex::new(processes),
            teardown,
            api,
        };
        cluster.start_controllers()?;
        let bridge = net::HostBridge::create(&cluster.tag, &crate::cache_dir().join("subnets.lock"))?;
        cluster.teardown.bridge(&bridge.name)?;
        cluster.bridge = Some(bridge);
        cluster.expose(cluster.api_port()?).await?;
        Ok(cluster)
    }

    fn start_controllers(&mut self) -> Result<()> {
        let dir = self.api.dir().to_owned();
        let kubeconfig = self.api.kubeconfig_path().to_owned();
        let kcm = control::controller_manager(&kube_bin("kube-controller-manager")?, &kubeconfig, &dir);
        let scheduler = control::scheduler(&kube_bin("kube-scheduler")?, &kubeconfig);
        let processes = self.processes.get_mut();
        processes.spawn("kube-controller-manager", kcm, dir.join("kube-controller-manager.log"))?;
        processes.spawn("kube-scheduler", scheduler, dir.join("kube-scheduler.log"))
    }

    async fn start_nodes(&mut self, specs: Vec<NodeSpec>, images: &[PathBuf], pause: &str) -> Result<()> {
        let ca =
            self.api.ca().cloned().ok_or_else(|| Error::Unexpected("a started cluster has a CA".into()))?;
        let api_port = self.api_port()?;
        let bridge = self.bridge.as_ref().ok_or_else(|| Error::Unexpected("no bridge".into()))?;
        let dir = self.api.dir().to_owned();
        let processes = self.processes.get_mut();
        let shared = node::Shared { tag: &self.tag, bridge, cluster_dir: &dir, ca: &ca, api_port, pause };
        for (index, spec) in specs.into_iter().enumerate() {
            let index = u8::try_from(index).map_err(|_| Error::Unexpected("at most 200 nodes".into()))?;
            self.teardown.node(
                &format!("pk{}-n{index}", self.tag),
                &format!("pk{}n{index}", self.tag),
                &format!("/podid-{}-n{index}", self.tag),
            )?;
            let node = node::RealNode::start(processes, &shared, spec, index).await?;
            self.teardown.init(node.init_pid())?;
            self.nodes.push(node);
        }
        // The images are most of a node's start: every node imports its own at the same time.
        std::thread::scope(|scope| {
            let imports: Vec<_> = self.nodes.iter().map(|n| scope.spawn(|| n.import_all(images))).collect();
            imports.into_iter().try_for_each(|import| {
                import.join().map_err(|_| Error::Unexpected("an image import panicked".into()))?
            })
        })?;
        for node in &self.nodes {
            node.start_kubelet_and_proxy(processes, &shared)?;
        }
        Ok(())
    }

    async fn wait_ready(&self) -> Result<()> {
        let nodes = Api::<Node>::all(self.api.client()?);
        let want = self.nodes.len();
        eventually("every node to be Ready", READY_TIMEOUT, Duration::from_millis(250), || {
            let nodes = nodes.clone();
            async move {
                self.processes.lock().await.check_alive()?;
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|source| Error::Kube { action: "list nodes".into(), source })?;
                let ready = list.items.iter().filter(|n| is_ready(n)).count();
                Ok((ready >= want).then_some(()))
            }
        })
        .await
    }

    /// The control plane: clients, namespaces, kubeconfig, faults.
    pub fn api(&self) -> &TestCluster {
        &self.api
    }

    /// The nodes, in start order.
    pub fn nodes(&self) -> &[RealNode] {
        &self.nodes
    }

    /// Node `name`.
    pub fn node(&self, name: &str) -> Option<&RealNode> {
        self.nodes.iter().find(|n| n.name() == name)
    }

    /// The cluster's CA certificate and private key, PEM: what kubelets and pods trust (every pod
    /// has the certificate as `/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`). A service
    /// for pods (e.g. the emulator) can serve with a certificate it issues.
    pub fn ca(&self) -> Result<(String, String)> {
        let ca = self.api.ca().ok_or_else(|| Error::Unexpected("a started cluster has a CA".into()))?;
        Ok((ca.cert_pem().to_owned(), ca.key_pem().to_owned()))
    }

    /// The tag every name this cluster made carries (links, namespaces, cgroups).
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Makes the host's `127.0.0.1:port` reachable from every node and pod at
    /// `SERVICES_IP:port` (e.g. the emulator's ARM and Entra ID endpoints).
    pub async fn expose(&self, port: u16) -> Result<SocketAddrV4> {
        let bridge = self.bridge.as_ref().ok_or_else(|| Error::Unexpected("no bridge".into()))?;
        let host_ip = bridge.host_ip();
        let mut processes = self.processes.lock().await;
        let mut command = Command::new(workspace_bin("podid-forward")?);
        command.arg(format!("{host_ip}:{port}=127.0.0.1:{port}"));
        let log = self.api.dir().join(format!("forward-{port}.log"));
        spawn_ready(&mut processes, &format!("forward-{port}"), command, &log).await?;
        for node in &self.nodes {
            node.forward(&mut processes, &port.to_string(), &[(SERVICES_IP, port, host_ip, port)]).await?;
        }
        Ok(SocketAddrV4::new(SERVICES_IP, port))
    }

    /// Makes node `name`'s `169.254.169.254:80` lead to the host's `127.0.0.1:port` (that node's
    /// emulated IMDS), as IMDS answers on an Azure VM.
    pub async fn expose_imds(&self, name: &str, port: u16) -> Result<()> {
        let bridge = self.bridge.as_ref().ok_or_else(|| Error::Unexpected("no bridge".into()))?;
        let node = self.node(name).ok_or_else(|| Error::Unexpected(format!("no node {name}")))?;
        let host_ip = bridge.host_ip();
        let mut processes = self.processes.lock().await;
        let mut command = Command::new(workspace_bin("podid-forward")?);
        command.arg(format!("{host_ip}:{port}=127.0.0.1:{port}"));
        let log = self.api.dir().join(format!("forward-{port}.log"));
        spawn_ready(&mut processes, &format!("forward-{port}"), command, &log).await?;
        node.forward(&mut processes, "imds", &[(IMDS_IP, 80, host_ip, port)]).await
    }

    /// `kubectl` with the admin kubeconfig.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new("kubectl");
        command.arg("--kubeconfig").arg(self.api.kubeconfig_path());
        command
    }

    /// Creates a namespace `<prefix>-<random>` and waits until its `default` service account
    /// exists (pods are refused before).
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let ns = self.api.namespace(prefix).await?;
        self.wait_service_account(&ns).await?;
        Ok(ns)
    }

    /// Waits until namespace `ns` has its `default` service account with its token (the
    /// controller-manager makes both; pods are refused before).
    pub async fn wait_service_account(&self, ns: &str) -> Result<()> {
        let accounts = Api::<ServiceAccount>::namespaced(self.api.client()?, ns);
        eventually(
            &format!("service account {ns}/default"),
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                let accounts = accounts.clone();
                async move {
                    let found = accounts
                        .get_opt("default")
                        .await
                        .map_err(|source| Error::Kube { action: "get service account".into(), source })?;
                    Ok(found.filter(|a| a.secrets.as_ref().is_some_and(|s| !s.is_empty())).map(|_| ()))
                }
            },
        )
        .await
    }

    /// Stops node `name` as a deleted VM stops: every process of the node (kubelet, containerd,
    /// containers) is killed at once. Its namespaces, cgroups and link are removed with the
    /// cluster; its Node object stays until someone deletes it.
    pub async fn stop_node(&self, name: &str) -> Result<()> {
        let node = self.node(name).ok_or_else(|| Error::Unexpected(format!("no node {name}")))?;
        kill(node.init_pid());
        let dead = || host::comm(node.init_pid()).as_deref() != Some("podid-node-init");
        eventually(
            &format!("node {name} to stop"),
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let done = dead();
                async move { Ok(done.then_some(())) }
            },
        )
        .await?;
        // The node's supervised children (all dead now) are stopped, not failures.
        self.processes.lock().await.stop_all(&format!("n{}-", node.index));
        Ok(())
    }

    /// Kills node `name`'s kubelet (SIGKILL) and starts it again with the same flags.
    pub async fn restart_kubelet(&self, name: &str) -> Result<()> {
        let node = self.node(name).ok_or_else(|| Error::Unexpected(format!("no node {name}")))?;
        let mut processes = self.processes.lock().await;
        let nsenter = processes
            .pid_of(&node.kubelet_name())
            .ok_or_else(|| Error::Unexpected("kubelet not running".into()))?;
        if let Some(pid) = host::inner_pid(nsenter) {
            kill(pid);
        }
        processes.stop(&node.kubelet_name())?;
        processes.start_again(&node.kubelet_name())
    }

    /// The API server's port (the nodes reach it on the same port through their forwarder).
    pub fn api_port(&self) -> Result<u16> {
        self.api
            .server_url()
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .ok_or_else(|| Error::Unexpected(format!("no port in {}", self.api.server_url())))
    }

    /// What of cluster `tag` still exists on this machine: links, network namespaces, cgroups
    /// and processes (empty after a drop).
    pub fn leftovers(tag: &str) -> Vec<String> {
        teardown::leftovers(tag)
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        let began = std::time::Instant::now();
        self.teardown.run();
        tracing::debug!(tag = %self.tag, elapsed_ms = began.elapsed().as_millis() as u64, "Nodes torn down");
    }
}

/// Whether the node's Ready condition is True.
fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Spawns child `name` and waits until its log says `ready`.
pub(crate) async fn spawn_ready(
    processes: &mut Processes,
    name: &str,
    command: Command,
    log: &Path,
) -> Result<()> {
    processes.spawn(name, command, log.to_owned())?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        processes.check_alive()?;
        if std::fs::read_to_string(log).is_ok_and(|text| text.lines().any(|l| l == "ready")) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout { what: format!("{name} to be ready"), seconds: 20 });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `N` distinct free ports on 127.0.0.1 (in a node's empty namespace they are free as well).
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|source| Error::Io {
            action: "bind a free port on",
            path: "127.0.0.1".into(),
            source,
        })?;
        *port = listener
            .local_addr()
            .map_err(|source| Error::Io { action: "read the port of", path: "127.0.0.1".into(), source })?
            .port();
        held.push(listener);
    }
    Ok(ports)
}

/// The cgroup v1 hierarchies mounted under /sys/fs/cgroup (and the unified one, if any).
pub(crate) fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("cgroup.procs").is_file() && !p.ends_with("unified"))
        .collect();
    dirs.sort();
    dirs
}

/// SIGKILL to `pid`.
pub(crate) fn kill(pid: u32) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

mod control {
    //! The controller-manager and the scheduler, on the host, as the admin.
    use std::path::Path;
    use std::process::Command;

    pub(super) fn controller_manager(binary: &Path, kubeconfig: &Path, dir: &Path) -> Command {
        let mut command = Command::new(binary);
        command
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--service-account-private-key-file={}", dir.join("sa.key").display()))
            .arg(format!("--root-ca-file={}", dir.join("ca.crt").display()))
            // Its default, /usr/libexec/kubernetes/..., would be created on the host.
            .arg(format!("--flex-volume-plugin-dir={}", dir.join("flex-volume").display()))
            .args(["--use-service-account-credentials=false", "--leader-elect=false"])
            .args(["--port=0", "--secure-port=0"])
            // No cloud: no node IPAM, service load balancers or routes.
            .arg("--controllers=*,-nodeipam,-service,-route,-cloud-node-lifecycle");
        command
    }

    pub(super) fn scheduler(binary: &Path, kubeconfig: &Path) -> Command {
        let mut command = Command::new(binary);
        command.arg(format!("--kubeconfig={}", kubeconfig.display())).args([
            "--leader-elect=false",
            "--port=0",
            "--secure-port=0",
        ]);
        command
    }
}
