//! What the sandbox has started, and small helpers around it.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podid_emulator::RunningEmulator;
use podid_testkit::TestCluster;
use tokio::task::JoinHandle;

use super::net::{self, Netns, NodeNet};
use super::procs::{Children, Programs};
use super::walk::SYSTEM_NAMESPACE;
use super::{Network, SandboxError};
use crate::install::{MIC_SERVICE_ACCOUNT, Mode, NMI_SERVICE_ACCOUNT};

/// Aborts a task on drop.
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A node of the sandbox: its name, its emulator IMDS and where its agent serves.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub name: String,
    pub imds: String,
    /// Netns mode: the namespace; loopback: empty.
    pub netns: String,
    /// Where the agent answers pods (`127.0.0.1:2579` inside the namespace, or a loopback address).
    pub agent: String,
    /// Where the agent's `/readyz` is reachable from here.
    pub probe: String,
}

/// Everything the sandbox started. Field order is drop order: processes first, then
/// forwarders, namespaces, the emulator, the cluster, and the folder.
pub struct World {
    pub(super) children: Children,
    pub(super) forwarders: Vec<Task>,
    pub(super) pods: Vec<Netns>,
    pub(super) node_nets: Vec<NodeNet>,
    pub emulator: Option<RunningEmulator>,
    pub cluster: Option<TestCluster>,
    pub(super) dir: Option<tempfile::TempDir>,
    pub(super) kept_dir: PathBuf,
    pub mode: Mode,
    pub network: Network,
    pub nodes: Vec<NodeInfo>,
    pub pod_ip: Option<IpAddr>,
    pub pod_netns: Option<String>,
    pub programs: Option<Programs>,
    pub(super) subnet: u8,
    pub(super) tag: String,
}

impl World {
    /// An empty world with its folder.
    pub fn new(mode: Mode, network: Network) -> Result<Self, SandboxError> {
        let dir = tempfile::Builder::new()
            .prefix("podid-sandbox-")
            .tempdir()
            .map_err(|e| SandboxError::new(format!("cannot create a temporary folder: {e}")))?;
        let kept_dir = dir.path().to_owned();
        Ok(Self {
            children: Children::new(dir.path()),
            forwarders: Vec::new(),
            pods: Vec::new(),
            node_nets: Vec::new(),
            emulator: None,
            cluster: None,
            dir: Some(dir),
            kept_dir,
            mode,
            network,
            nodes: Vec::new(),
            pod_ip: None,
            pod_netns: None,
            programs: None,
            subnet: net::subnet_byte(),
            tag: format!("{:x}", std::process::id() % 0xffff),
        })
    }

    /// The sandbox folder (logs, azure.json).
    pub fn dir(&self) -> &Path {
        &self.kept_dir
    }

    /// Keeps the folder after exit (for the logs of a failed run).
    pub fn keep_logs(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.keep();
        }
    }

    /// The running processes (name, pid).
    pub fn processes(&self) -> Vec<(String, u32)> {
        self.children.list()
    }

    /// Resolves when a child process exits.
    pub async fn watch(&mut self) -> Result<(), SandboxError> {
        loop {
            self.children.check_alive()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub(super) fn emu(&self) -> Result<&RunningEmulator, SandboxError> {
        self.emulator.as_ref().ok_or_else(|| SandboxError::new("the emulator is not running".into()))
    }

    pub(super) fn kube(&self) -> Result<kube::Client, SandboxError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| SandboxError::new("no cluster".into()))?;
        cluster.client().map_err(|e| SandboxError::new(e.to_string()))
    }

    pub(super) fn cluster(&self) -> Result<&TestCluster, SandboxError> {
        self.cluster.as_ref().ok_or_else(|| SandboxError::new("no cluster".into()))
    }
}

/// Pieces of the world for [`super::components`].
impl World {
    pub(super) fn parts(&mut self) -> Parts<'_> {
        Parts {
            children: &mut self.children,
            forwarders: &mut self.forwarders,
            pods: &mut self.pods,
            node_nets: &mut self.node_nets,
            subnet: self.subnet,
            tag: &self.tag,
        }
    }
    pub(super) fn emulator(&self) -> Result<&RunningEmulator, SandboxError> {
        self.emu()
    }
    pub(super) fn test_cluster(&self) -> Result<&TestCluster, SandboxError> {
        self.cluster()
    }
}

/// Mutable pieces of the world, borrowed together.
pub(super) struct Parts<'a> {
    pub children: &'a mut Children,
    forwarders: &'a mut Vec<Task>,
    pub pods: &'a mut Vec<Netns>,
    pub node_nets: &'a mut Vec<NodeNet>,
    pub subnet: u8,
    pub tag: &'a str,
}

impl Parts<'_> {
    /// Starts an in-process forwarder on the host.
    pub async fn host_forward(
        &mut self,
        listen: std::net::SocketAddr,
        target: std::net::SocketAddr,
    ) -> Result<(), SandboxError> {
        let task = net::forward(listen, target)
            .await
            .map_err(|e| SandboxError::new(format!("cannot listen on {listen}: {e}")))?;
        self.forwarders.push(Task(task));
        Ok(())
    }
}

/// `127.0.0.1:port` of a URL like `http://127.0.0.1:1234`.
pub fn port_of(url: &str) -> Result<u16, SandboxError> {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.port())
        .ok_or_else(|| SandboxError::new(format!("no port in {url}")))
}

/// A free port on 127.0.0.1.
pub fn free_port() -> Result<u16, SandboxError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| SandboxError::new(format!("no free port: {e}")))
}

/// The `kube-system` service-account kubeconfigs of the controller and the agents.
pub async fn component_kubeconfigs(cluster: &TestCluster) -> Result<(PathBuf, PathBuf), SandboxError> {
    let sa = |name: &'static str| async move {
        cluster
            .service_account_kubeconfig(SYSTEM_NAMESPACE, name)
            .await
            .map_err(|e| SandboxError::new(format!("cannot get a token for {SYSTEM_NAMESPACE}/{name}: {e}")))
    };
    Ok((sa(MIC_SERVICE_ACCOUNT).await?, sa(NMI_SERVICE_ACCOUNT).await?))
}
