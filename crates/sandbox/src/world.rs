//! The world podid runs in here: real nodes from the test kit, the Azure emulator behind them,
//! and the commands a user types against both. The walkthrough and the end-to-end suite share it.
//!
//! ```text
//!  host (127.0.0.1)                                  each node (its own namespaces)
//!  kube-apiserver ◀──────────── forwarder ────────── 10.250.250.1:<api>   (kubernetes Service)
//!  emulator ARM, Entra ID ◀──── forwarder ────────── 10.250.250.1:<arm>, :<login>  (podid install
//!                                                       --arm-endpoint/--aad-authority point here)
//!  emulator IMDS of node i ◀─── forwarder ────────── 169.254.169.254:80    (as on an Azure VM)
//!                                                    /etc/kubernetes/azure.json (cluster identity)
//!  the user: podid (PODID_ARM_ENDPOINT=https://127.0.0.1:<arm>, ...), kubectl (KUBECONFIG)
//! ```
//!
//! The emulator serves TLS with a certificate issued by the cluster's CA, so pods trust it as
//! they trust the API server (`/var/run/secrets/kubernetes.io/serviceaccount/ca.crt`) and
//! `podid install --trusted-ca-file` hands the controller and the agents the same CA.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result};
use podid_emulator::config::{builtin, vmss_node_name};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use podid_testkit::images::Catalog;
use podid_testkit::kubelet::vmss_provider_id;
use podid_testkit::{NodeSpec, RealCluster};

use crate::Mode;

/// Where pods find a CA that trusts the emulator (the cluster's, see the module header).
pub const POD_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// What to start.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The emulator's Azure (its first scale set's instances become the nodes).
    pub emulator: EmulatorConfig,
    /// Images every node imports besides pause (catalog names).
    pub images: Vec<&'static str>,
}

/// Real nodes, the emulator, and the settings that tie them together.
pub struct World {
    /// The nodes and the control plane.
    pub cluster: RealCluster,
    /// Azure.
    pub emulator: RunningEmulator,
    /// The images the nodes have.
    pub catalog: Catalog,
    /// The emulator's ARM as nodes and pods reach it.
    pub node_arm: String,
    /// The emulator's Entra ID as nodes and pods reach it.
    pub node_login: String,
    ca_file: PathBuf,
    // Last: the emulator's state and the CA file live here.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World").field("cluster", &self.cluster.tag()).finish_non_exhaustive()
    }
}

/// The nodes, before the emulator is connected.
pub struct Nodes {
    /// The nodes and the control plane.
    pub cluster: RealCluster,
    catalog: Catalog,
    emulator: EmulatorConfig,
}

impl Nodes {
    /// Starts the nodes of the emulator's first scale set (the first with kube-proxy, the others
    /// without: podid must work on both).
    pub async fn start(opts: WorldOptions) -> Result<Self> {
        let catalog = Catalog::load()?;
        let mut builder = RealCluster::builder().catalog(&catalog, &opts.images)?;
        for (i, spec) in nodes(&opts.emulator)?.into_iter().enumerate() {
            builder = builder.node(spec.kube_proxy(i == 0));
        }
        let cluster = builder.start().await.context("cannot start the real nodes")?;
        Ok(Self { cluster, catalog, emulator: opts.emulator })
    }

    /// Starts the emulator with the cluster's CA and connects it to the nodes.
    pub async fn connect_azure(self) -> Result<World> {
        let Self { cluster, catalog, emulator: config } = self;
        World::connect(cluster, catalog, config).await
    }
}

impl World {
    /// Starts the nodes, then the emulator, and connects them.
    pub async fn start(opts: WorldOptions) -> Result<Self> {
        Nodes::start(opts).await?.connect_azure().await
    }

    async fn connect(cluster: RealCluster, catalog: Catalog, config: EmulatorConfig) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("podid-world-").tempdir()?;
        let (ca_pem, ca_key) = cluster.ca()?;
        let state = dir.path().join("emulator");
        std::fs::create_dir_all(&state)?;
        std::fs::write(state.join("ca.pem"), &ca_pem)?;
        std::fs::write(state.join("ca-key.pem"), &ca_key)?;
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca_pem)?;
        let mut config = config;
        config.tls_san_ips.push(podid_testkit::real::SERVICES_IP.into());
        let emulator = Emulator::start_in(config, &state).await.context("cannot start the Azure emulator")?;
        // Entra ID fetches the cluster's OIDC discovery document (federated mode) over HTTPS.
        emulator.add_trusted_ca_pem(&ca_pem)?;
        let (node_arm, node_login) = connect(&cluster, &emulator).await?;
        Ok(Self { cluster, emulator, catalog, node_arm, node_login, ca_file, dir })
    }

    /// The CA file trusted for the emulator and the API server (host path).
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// A scratch folder that lives as long as the world.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The environment a user sets to run `podid` and `kubectl` against this world.
    pub fn user_env(&self) -> Result<Vec<(&'static str, String)>> {
        let info = self.emulator.info();
        let admin =
            info.applications.get(builtin::ADMIN_APP).context("the emulator has no admin application")?;
        Ok(vec![
            ("KUBECONFIG", self.cluster.api().kubeconfig_path().display().to_string()),
            ("PODID_ARM_ENDPOINT", self.emulator.arm_url()),
            ("PODID_AAD_AUTHORITY", self.emulator.login_url()),
            ("PODID_TRUSTED_CA_FILE", self.ca_file.display().to_string()),
            ("AZURE_TENANT_ID", self.emulator.tenant_id()),
            ("AZURE_SUBSCRIPTION_ID", self.emulator.subscription_id()),
            ("AZURE_CLIENT_ID", admin.client_id.clone()),
            ("AZURE_CLIENT_SECRET", admin.secrets.first().cloned().unwrap_or_default()),
        ])
    }

    /// `podid` (the built binary) with the user's environment.
    pub fn podid(&self) -> Result<Command> {
        let mut command = Command::new(podid_testkit::workspace_bin("podid")?);
        command.envs(self.user_env()?);
        Ok(command)
    }

    /// `kubectl` with the user's environment.
    pub fn kubectl(&self) -> Result<Command> {
        let mut command = Command::new("kubectl");
        command.envs(self.user_env()?);
        Ok(command)
    }

    /// The arguments of `podid install` for this world (apart from `--apply`).
    pub fn install_args(&self, mode: Mode) -> Vec<String> {
        vec![
            format!("--mode={}", mode.as_str()),
            format!("--arm-endpoint={}", self.node_arm),
            format!("--aad-authority={}", self.node_login),
            format!("--trusted-ca-file={}", self.ca_file.display()),
        ]
    }
}

/// The nodes of the emulator's first scale set, with their provider ids.
fn nodes(config: &EmulatorConfig) -> Result<Vec<NodeSpec>> {
    let set = config.scale_sets.first().context("the emulator's world has no scale set")?;
    Ok((0..set.instances)
        .map(|i| {
            NodeSpec::new(vmss_node_name(&set.name, i)).provider_id(vmss_provider_id(
                &config.subscription_id,
                &set.resource_group,
                &set.name,
                i,
            ))
        })
        .collect())
}

/// Forwards the emulator's endpoints into the nodes and writes every node's azure.json; returns
/// ARM's and Entra ID's URLs as nodes see them.
async fn connect(cluster: &RealCluster, emulator: &RunningEmulator) -> Result<(String, String)> {
    let port = |url: &str| url.rsplit(':').next().and_then(|p| p.trim_end_matches('/').parse::<u16>().ok());
    let (arm, login) = (emulator.arm_url(), emulator.login_url());
    let arm_port = port(&arm).context("no port in the emulator's ARM URL")?;
    let login_port = port(&login).context("no port in the emulator's Entra ID URL")?;
    let node_arm = format!("https://{}", cluster.expose(arm_port).await?);
    let node_login = format!("https://{}", cluster.expose(login_port).await?);
    let azure_json = cloud_config(emulator)?;
    for node in cluster.nodes() {
        let imds = emulator
            .imds_url(node.name())
            .with_context(|| format!("the emulator has no IMDS for {}", node.name()))?;
        cluster.expose_imds(node.name(), port(&imds).context("no port in an IMDS URL")?).await?;
        node.write_file("/etc/kubernetes/azure.json", azure_json.as_bytes())?;
    }
    Ok((node_arm, node_login))
}

/// `/etc/kubernetes/azure.json` as AKS writes it on every node: the cluster identity (here the
/// emulator's `podid-cluster` service principal) and where the nodes are.
fn cloud_config(emulator: &RunningEmulator) -> Result<String> {
    let info = emulator.info();
    let app =
        info.applications.get(builtin::CLUSTER_APP).context("the emulator has no cluster application")?;
    Ok(serde_json::json!({
        "cloud": "AzurePublicCloud",
        "tenantId": emulator.tenant_id(),
        "subscriptionId": emulator.subscription_id(),
        "resourceGroup": builtin::NODE_RESOURCE_GROUP,
        "vmType": "vmss",
        "aadClientId": app.client_id,
        "aadClientSecret": app.secrets.first().cloned().unwrap_or_default(),
    })
    .to_string())
}
