//! One real node: namespaces, containerd, images, kubelet, and kube-proxy or its one DNAT.
//!
//! ```text
//!  <cluster>/nodes/<name>/
//!    containerd.toml  containerd.sock  containerd/{root,state,opt}   containerd, own everything
//!    cni/10-podid.conflist  cni-ipam/                                 the pod network
//!    kubelet.yaml  kubelet.kubeconfig  kubelet/  volume-plugins/      the kubelet's root
//!    kube-proxy.kubeconfig  resolv.conf (empty: pods have no DNS)
//!    etc-upper/ varlib-upper/ run/ log/                               the node's view of /etc, /var/lib, /run, /var/log
//!    *.log                                                            one per process
//! ```
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::host::{self, NodeHost};
use super::{config, net};
use crate::binaries::{kube_bin, workspace_bin};
use crate::pki::Ca;
use crate::process::{Processes, Recipe};
use crate::{Error, Result, kubeconfig};

/// What a node is, before it starts.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The node's name (for a scale-set node, the instance's computer name).
    pub name: String,
    /// `spec.providerID`, e.g. the scale-set instance's ARM id with the `azure://` prefix.
    pub provider_id: Option<String>,
    /// Run kube-proxy (iptables mode). Without it, the node gets the one DNAT that clusters without
    /// kube-proxy have for the `kubernetes` Service, and nothing sets `route_localnet`.
    pub kube_proxy: bool,
}

impl NodeSpec {
    /// A node named `name`, with kube-proxy.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), provider_id: None, kube_proxy: true }
    }

    /// Sets `spec.providerID`.
    pub fn provider_id(mut self, id: impl Into<String>) -> Self {
        self.provider_id = Some(id.into());
        self
    }

    /// Runs kube-proxy or not.
    pub fn kube_proxy(mut self, on: bool) -> Self {
        self.kube_proxy = on;
        self
    }
}

/// A started node.
#[derive(Debug)]
pub struct RealNode {
    /// What it was started as.
    pub spec: NodeSpec,
    /// Position in the cluster (its pod network is 10.244.<index>.0/24).
    pub index: u8,
    /// Its network namespace (`ip netns exec <netns> …` reaches it, without its mounts).
    pub netns: String,
    /// Its address on the cluster's bridge: the kubelet's node IP.
    pub ip: Ipv4Addr,
    /// Its folder.
    pub dir: PathBuf,
    /// Its cgroup root under every hierarchy.
    pub(crate) cgroup_root: String,
    pub(crate) host: NodeHost,
}

/// What every node of one cluster shares.
pub(crate) struct Shared<'a> {
    pub(crate) tag: &'a str,
    pub(crate) bridge: &'a net::HostBridge,
    pub(crate) cluster_dir: &'a Path,
    pub(crate) ca: &'a Ca,
    pub(crate) api_port: u16,
    /// The pause image's reference (one of the images every node imports).
    pub(crate) pause: &'a str,
}

/// How long containerd may take to answer on its socket.
const CONTAINERD_TIMEOUT: Duration = Duration::from_secs(30);

impl RealNode {
    /// Creates node `index` and starts its init, forwarder and containerd; then come
    /// [`Self::import_all`] and [`Self::start_kubelet_and_proxy`], after which the node registers
    /// with the API server by itself (see `RealCluster` for the wait until Ready).
    pub(crate) async fn start(
        processes: &mut Processes,
        shared: &Shared<'_>,
        spec: NodeSpec,
        index: u8,
    ) -> Result<Self> {
        let netns = format!("pk{}-n{index}", shared.tag);
        let host_if = format!("pk{}n{index}", shared.tag);
        let dir = shared.cluster_dir.join("nodes").join(&spec.name);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        net::create_node(shared.bridge, index, &netns, &host_if)?;
        let cgroup_root = format!("/podid-{}-n{index}", shared.tag);
        create_cgroup_root(&cgroup_root)?;
        let init = workspace_bin("podid-node-init")?;
        let host = host::start(processes, &format!("n{index}-init"), &netns, &dir, &init).await?;
        let ip = shared.bridge.node_ip(index);
        let node = Self { spec, index, netns, ip, dir, cgroup_root, host };
        node.forward(
            processes,
            "api",
            &[(net::SERVICES_IP, shared.api_port, shared.bridge.host_ip(), shared.api_port)],
        )
        .await?;
        node.write_configs(shared)?;
        node.start_containerd(processes).await?;
        Ok(node)
    }

    /// Imports `images` into the node's containerd (before [`Self::start_kubelet_and_proxy`]:
    /// the kubelet must find the pause image).
    pub(crate) fn import_all(&self, images: &[PathBuf]) -> Result<()> {
        images.iter().try_for_each(|image| self.import(image))
    }

    /// Starts the kubelet, and kube-proxy or the one DNAT that stands for it.
    pub(crate) fn start_kubelet_and_proxy(
        &self,
        processes: &mut Processes,
        shared: &Shared<'_>,
    ) -> Result<()> {
        self.start_kubelet(processes, shared.pause)?;
        if self.spec.kube_proxy {
            self.start_kube_proxy(processes)
        } else {
            net::kubernetes_service_dnat(&self.netns, shared.api_port)
        }
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// containerd's socket (for `ctr --address`).
    pub fn containerd_socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// `ctr` against this node's containerd, in the `k8s.io` namespace the kubelet uses.
    pub fn ctr(&self) -> Command {
        let mut command = Command::new("ctr");
        command.arg("--address").arg(self.containerd_socket()).args(["--namespace", "k8s.io"]);
        command
    }

    /// Imports an image tarball (`docker save` format or OCI layout archive) into containerd.
    pub fn import(&self, tarball: &Path) -> Result<()> {
        let socket = self.containerd_socket();
        let (socket, tarball) = (socket.to_string_lossy(), tarball.to_string_lossy());
        net::run(&["ctr", "--address", &socket, "--namespace", "k8s.io", "images", "import", &tarball])?;
        Ok(())
    }

    /// Runs `args` inside the node (its namespaces: network, mounts, processes).
    pub fn run(&self, args: &[&str]) -> Result<String> {
        self.host.run(args)
    }

    /// A command to run inside the node.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        self.host.command(program)
    }

    /// Writes a file as the node sees it (e.g. `/etc/kubernetes/azure.json`); the host's own file
    /// system outside the node's folder is untouched.
    pub fn write_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        self.host.write_file(path, contents)
    }

    /// Process 1 of the node (killing it kills the node).
    pub fn init_pid(&self) -> u32 {
        self.host.init_pid
    }

    /// Starts a forwarder in the node for each `(listen ip, listen port, target ip, target port)`.
    pub(crate) async fn forward(
        &self,
        processes: &mut Processes,
        what: &str,
        pairs: &[(Ipv4Addr, u16, Ipv4Addr, u16)],
    ) -> Result<()> {
        let mut command = self.host.command(workspace_bin("podid-forward")?);
        command.args(pairs.iter().map(|(l, lp, t, tp)| format!("{l}:{lp}={t}:{tp}")));
        let name = format!("n{}-forward-{what}", self.index);
        super::spawn_ready(processes, &name, command, &self.dir.join(format!("forward-{what}.log"))).await
    }

    fn write_configs(&self, shared: &Shared<'_>) -> Result<()> {
        let write = |name: &str, contents: &str| {
            let path = self.dir.join(name);
            std::fs::write(&path, contents).map_err(|source| Error::Io { action: "write", path, source })
        };
        std::fs::create_dir_all(self.dir.join("cni")).map_err(|source| Error::Io {
            action: "create",
            path: self.dir.join("cni"),
            source,
        })?;
        write("containerd.toml", &config::containerd(&self.dir, shared.pause))?;
        write("cni/10-podid.conflist", &config::cni(&self.dir, self.index))?;
        write("resolv.conf", "")?;
        write("ca.crt", shared.ca.cert_pem())?;
        let ca_file = self.dir.join("ca.crt");
        let ports = super::free_ports::<2>()?;
        let kubelet = config::Kubelet {
            dir: &self.dir,
            node_ip: self.ip,
            port: ports[0],
            healthz_port: ports[1],
            cgroup_root: &self.cgroup_root,
            ca_file: &ca_file,
            provider_id: self.spec.provider_id.as_deref(),
        };
        write("kubelet.yaml", &config::kubelet(&kubelet))?;
        let server = format!("https://{}:{}", net::SERVICES_IP, shared.api_port);
        let node_cert =
            shared.ca.client_cert(&format!("system:node:{}", self.spec.name), Some("system:nodes"))?;
        kubeconfig::write(
            &kubeconfig::single(&server, shared.ca.cert_pem(), kubeconfig::client_cert(&node_cert)),
            &self.dir.join("kubelet.kubeconfig"),
        )?;
        let proxy_cert = shared.ca.client_cert("system:kube-proxy", None)?;
        kubeconfig::write(
            &kubeconfig::single(&server, shared.ca.cert_pem(), kubeconfig::client_cert(&proxy_cert)),
            &self.dir.join("kube-proxy.kubeconfig"),
        )
    }

    async fn start_containerd(&self, processes: &mut Processes) -> Result<()> {
        let mut command = self.host.command("containerd");
        command.arg("--config").arg(self.dir.join("containerd.toml"));
        processes.spawn(format!("n{}-containerd", self.index), command, self.dir.join("containerd.log"))?;
        let socket = self.containerd_socket().to_string_lossy().into_owned();
        let deadline = tokio::time::Instant::now() + CONTAINERD_TIMEOUT;
        loop {
            processes.check_alive()?;
            if net::run(&["ctr", "--address", &socket, "version"]).is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("containerd of {}", self.spec.name),
                    seconds: CONTAINERD_TIMEOUT.as_secs(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn start_kubelet(&self, processes: &mut Processes, pause: &str) -> Result<()> {
        let kubelet = kube_bin("kubelet")?;
        let pause = pause.to_owned();
        let (host, dir, spec) = (self.host.clone(), self.dir.clone(), self.spec.clone());
        let ip = self.ip;
        let recipe = Recipe(Box::new(move || {
            let mut command = host.command(&kubelet);
            command
                // kubelet 1.20's AWS credential provider would otherwise call 169.254.169.254 at start.
                .env("AWS_EC2_METADATA_DISABLED", "true")
                .arg(format!("--config={}", dir.join("kubelet.yaml").display()))
                .arg(format!("--kubeconfig={}", dir.join("kubelet.kubeconfig").display()))
                .arg(format!("--root-dir={}", dir.join("kubelet").display()))
                .arg(format!("--cert-dir={}", dir.join("kubelet-pki").display()))
                .args(["--container-runtime=remote"])
                .arg(format!("--container-runtime-endpoint=unix://{}", dir.join("containerd.sock").display()))
                .arg(format!("--hostname-override={}", spec.name))
                .arg(format!("--node-ip={ip}"))
                .arg(format!("--pod-infra-container-image={pause}"))
                .arg("--v=1");
            command
        }));
        processes.spawn_recipe(self.kubelet_name(), recipe, self.dir.join("kubelet.log"))
    }

    fn start_kube_proxy(&self, processes: &mut Processes) -> Result<()> {
        let mut command = self.host.command(kube_bin("kube-proxy")?);
        command
            .arg(format!("--kubeconfig={}", self.dir.join("kube-proxy.kubeconfig").display()))
            .arg(format!("--hostname-override={}", self.spec.name))
            .args(["--proxy-mode=iptables", "--cluster-cidr=10.244.0.0/16"])
            // conntrack's table size and timeouts are the host's business: leave them alone.
            .args(["--conntrack-max-per-core=0", "--conntrack-min=0"])
            .args(["--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0"])
            .args(["--metrics-bind-address=127.0.0.1:10249", "--healthz-bind-address=127.0.0.1:10256"]);
        processes.spawn(format!("n{}-kube-proxy", self.index), command, self.dir.join("kube-proxy.log"))
    }

    pub(crate) fn kubelet_name(&self) -> String {
        format!("n{}-kubelet", self.index)
    }
}

/// Creates `root` under every cgroup v1 hierarchy (the kubelet requires its `cgroupRoot` to exist);
/// a new cpuset cgroup gets its parent's CPUs and memory nodes, without which no task may join.
fn create_cgroup_root(root: &str) -> Result<()> {
    for hierarchy in super::cgroup_hierarchies() {
        let dir = hierarchy.join(root.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
            action: "create cgroup",
            path: dir.clone(),
            source,
        })?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let parent = std::fs::read_to_string(hierarchy.join(file)).unwrap_or_default();
                std::fs::write(dir.join(file), parent.trim()).map_err(|source| Error::Io {
                    action: "write",
                    path: dir.join(file),
                    source,
                })?;
            }
        }
    }
    Ok(())
}
