//! The command line: one clap-derive tree, `///` comments as help text, `env =` for deploy-time
//! settings.
//!
//! ```text
//!  podid [--kubeconfig F] identity  add | delete | list
//!                         exception add | update | delete | list
//!                         explain   pod NS/NAME | identity NS/NAME
//! ```
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Manage Azure AD pod identities and explain which identity a pod gets.
#[derive(Debug, Parser)]
#[command(name = "podid", version, about)]
pub struct Cli {
    /// Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Seconds to wait for a connection to the Kubernetes API server before giving up.
    #[arg(long, global = true, env = "PODID_CONNECT_TIMEOUT", default_value_t = 5, value_name = "SECONDS")]
    pub connect_timeout: u64,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Pod identities: an AzureIdentity and its AzureIdentityBinding.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// AzurePodIdentityExceptions: pods that reach IMDS directly.
    #[command(subcommand)]
    Exception(ExceptionCommand),
    /// Explain, step by step, which identity a pod gets (or who uses an identity).
    #[command(subcommand)]
    Explain(ExplainCommand),
    /// Print (or apply) the manifests that deploy podid: CRDs, RBAC, controller, agent, exceptions.
    Install(Box<InstallArgs>),
    /// Remove podid: bindings and identities first (the controller cleans the scale sets), then
    /// the components, exceptions, RBAC and CRDs.
    Uninstall(UninstallArgs),
}

/// Default `--image-registry`.
pub const DEFAULT_REGISTRY: &str = "ghcr.io/podid";
/// Default `--tag`: this build's version.
pub const DEFAULT_TAG: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// `podid install`.
#[derive(Debug, Clone, Args)]
pub struct InstallArgs {
    /// Operation mode: `standard` (controller + agent), `managed` or `federated` (agent only).
    #[arg(long, value_enum, default_value_t = Mode::Standard)]
    pub mode: Mode,
    /// The cluster uses kubenet: let the agent start and render the NET_RAW drop policy.
    #[arg(long)]
    pub allow_kubenet: bool,
    /// Namespace of the controller and the agent.
    #[arg(long, short = 'n', default_value = "kube-system")]
    pub namespace: String,
    /// Image registry and repository prefix (images `<registry>/podid-mic|podid-nmi:<tag>`).
    #[arg(long, default_value = DEFAULT_REGISTRY)]
    pub image_registry: String,
    /// Image tag.
    #[arg(long, default_value = DEFAULT_TAG)]
    pub tag: String,
    /// Entra tenant of federated identities without `tenantID` (default: the nodes' azure.json).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// Standard/managed mode: let the agent federate identities annotated `podid.io/federated: "true"`
    /// (grants it `create` on `serviceaccounts/token`; implied by `--mode federated`).
    #[arg(long)]
    pub federated_identities: bool,
    /// Azure Resource Manager endpoint, for sovereign or air-gapped clouds (default: public cloud).
    #[arg(long, env = "PODID_INSTALL_ARM_ENDPOINT")]
    pub arm_endpoint: Option<url::Url>,
    /// Entra ID authority host, for sovereign or air-gapped clouds (default: public cloud).
    #[arg(long, env = "PODID_INSTALL_AAD_AUTHORITY")]
    pub aad_authority: Option<url::Url>,
    /// Instance metadata endpoint the agent forwards to (default: http://169.254.169.254).
    #[arg(long, env = "PODID_INSTALL_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<url::Url>,
    /// PEM file of an extra CA that the controller and the agent trust (rendered as ConfigMap
    /// podid-trusted-ca), e.g. a private cloud's or a TLS-inspecting proxy's.
    #[arg(long, env = "PODID_INSTALL_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<std::path::PathBuf>,
    /// How the agent answers a request for an identity the pod does not have: `400` (as IMDS
    /// answers an unknown identity; SDKs fail at once and Python's and Node's show podid's reason)
    /// or `404` (upstream's; SDKs retry it for 20 s to over a minute).
    #[arg(long, default_value_t = 400, value_parser = not_found_status)]
    pub identity_not_found_status: u16,
    /// The agent confirms every caller through the kernel instead of trusting its source address,
    /// and serves hostNetwork pods their own identities (docs/security.md, "Verified callers").
    /// Gives the agent the host's PID namespace and CAP_SYS_PTRACE.
    #[arg(long)]
    pub verified_callers: bool,
    /// With --verified-callers: the cgroup v2 path of a node component that must reach IMDS
    /// itself, e.g. /system.slice/kubelet.service (repeatable).
    #[arg(long = "node-caller-exception-cgroup", requires = "verified_callers", value_parser = podid_core::cgroup::check_path)]
    pub node_caller_exception_cgroups: Vec<String>,
    /// Apply the manifests server-side instead of printing them.
    #[arg(long)]
    pub apply: bool,
}

/// `podid uninstall`.
#[derive(Debug, Clone, Args)]
pub struct UninstallArgs {
    /// Namespace podid was installed in.
    #[arg(long, short = 'n', default_value = "kube-system")]
    pub namespace: String,
    /// Wait until every object is gone (finalizers included).
    #[arg(long)]
    pub wait: bool,
    /// Seconds to wait for the controller to remove assigned identities (and, with --wait, for
    /// everything to be gone).
    #[arg(long, default_value_t = 300)]
    pub timeout_secs: u64,
}

/// `podid identity …`.
#[derive(Debug, Subcommand)]
pub enum IdentityCommand {
    /// Create an AzureIdentity (user-assigned) and its binding `<name>-binding`.
    Add(Box<IdentityAdd>),
    /// Delete an AzureIdentity and its binding `<name>-binding`.
    Delete(ObjectRef),
    /// List pod identities with their bindings.
    List(ListArgs),
}

/// `podid exception …`.
#[derive(Debug, Subcommand)]
pub enum ExceptionCommand {
    /// Create an AzurePodIdentityException.
    Add(ExceptionArgs),
    /// Replace the pod labels of an existing AzurePodIdentityException.
    Update(ExceptionArgs),
    /// Delete an AzurePodIdentityException.
    Delete(ObjectRef),
    /// List AzurePodIdentityExceptions.
    List(ListArgs),
}

/// `podid explain …`.
#[derive(Debug, Subcommand)]
pub enum ExplainCommand {
    /// Which identity pod NS/NAME gets, or exactly why it gets none.
    Pod(Box<ExplainPod>),
    /// Who uses identity NS/NAME: bindings, selected pods, assignments.
    Identity(ExplainIdentity),
}

/// A namespaced object.
#[derive(Debug, Clone, Args)]
pub struct ObjectRef {
    /// Namespace.
    #[arg(long, short = 'n')]
    pub namespace: String,
    /// Object name (an RFC 1123 DNS subdomain).
    #[arg(long)]
    pub name: String,
}

/// `podid identity add`.
#[derive(Debug, Clone, Args)]
pub struct IdentityAdd {
    #[command(flatten)]
    pub object: ObjectRef,
    /// ARM id of the user-assigned identity:
    /// /subscriptions/<sub>/resourcegroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>.
    #[arg(long)]
    pub identity_resource_id: String,
    /// Value of the pods' `aadpodidbinding` label (default: the identity's name).
    #[arg(long)]
    pub binding_selector: Option<String>,
    /// The identity's client id; when absent it is read from ARM.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Object id of the cluster's identity: grant it (or check it has) Managed Identity Operator
    /// on this identity, which the controller needs to assign it.
    #[arg(long)]
    pub cluster_identity_object_id: Option<String>,
    /// Most pod identities the cluster may hold (the AKS add-on allows 200).
    #[arg(long, env = "PODID_MAX_IDENTITIES", default_value_t = 200)]
    pub max_identities: usize,
    /// Federated identity (docs/federated.md): annotate it `podid.io/federated: "true"` and create
    /// the federated identity credential for --service-account through ARM; no role grant.
    #[arg(long)]
    pub federated: bool,
    /// With --federated: the service account (of the identity's namespace) the pods run as.
    #[arg(long, default_value = "default", requires = "federated")]
    pub service_account: String,
    /// With --federated: the cluster's service-account issuer (default: the API server's
    /// /.well-known/openid-configuration).
    #[arg(long, requires = "federated")]
    pub issuer: Option<String>,
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// How to reach ARM.
#[derive(Debug, Clone, Args)]
pub struct AzureArgs {
    /// ARM endpoint (default: the public cloud's).
    #[arg(long, env = "PODID_ARM_ENDPOINT")]
    pub arm_endpoint: Option<url::Url>,
    /// Entra ID authority host (default: https://login.microsoftonline.com/).
    #[arg(long, env = "PODID_AAD_AUTHORITY")]
    pub aad_authority: Option<url::Url>,
    /// Extra CA certificates (PEM) trusted for ARM and Entra ID.
    #[arg(long = "trusted-ca-file", env = "PODID_TRUSTED_CA_FILE")]
    pub trusted_ca_files: Vec<PathBuf>,
    /// Tenant of the service principal used for ARM.
    #[arg(long, env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Client id of the service principal used for ARM.
    #[arg(long = "azure-client-id", env = "AZURE_CLIENT_ID")]
    pub azure_client_id: Option<String>,
    /// Client secret of the service principal used for ARM.
    #[arg(long = "azure-client-secret", env = "AZURE_CLIENT_SECRET", hide_env_values = true)]
    pub azure_client_secret: Option<String>,
    /// Subscription of the role definitions (default: the identity's subscription).
    #[arg(long, env = "AZURE_SUBSCRIPTION_ID")]
    pub subscription_id: Option<String>,
}

/// `podid exception add|update`.
#[derive(Debug, Clone, Args)]
pub struct ExceptionArgs {
    #[command(flatten)]
    pub object: ObjectRef,
    /// Pod labels, `k=v,k2=v2`: a pod of the namespace with any one of them is excepted.
    #[arg(long)]
    pub pod_labels: String,
    /// Most exceptions the cluster may hold (the AKS add-on allows 200).
    #[arg(long, env = "PODID_MAX_EXCEPTIONS", default_value_t = 200)]
    pub max_exceptions: usize,
}

/// `… list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Namespace (default: `default`).
    #[arg(long, short = 'n', conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Every namespace.
    #[arg(long, short = 'A')]
    pub all_namespaces: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `podid explain pod`.
#[derive(Debug, Clone, Args)]
pub struct ExplainPod {
    /// The pod, `NAMESPACE/NAME`.
    pub pod: String,
    /// The agent's operation mode.
    #[arg(long, value_enum, default_value_t = Mode::Standard)]
    pub mode: Mode,
    /// Pod, binding and identity must share a namespace (`--forceNamespaced`).
    #[arg(long, env = "FORCENAMESPACED")]
    pub force_namespaced: bool,
    /// Namespace of the controller's own pods (`--MICNamespace`).
    #[arg(long, default_value = "default")]
    pub mic_namespace: String,
    /// Explain a request for this client id (default: a request naming no identity).
    #[arg(long, conflicts_with = "resource_id")]
    pub client_id: Option<String>,
    /// Explain a request for this identity resource id (`msi_res_id`).
    #[arg(long)]
    pub resource_id: Option<String>,
    /// The agent runs with `--release-terminating-pods`.
    #[arg(long)]
    pub release_terminating_pods: bool,
    /// The agent runs with `--verified-callers` (`podid install --verified-callers`): each
    /// caller is confirmed through the kernel, and hostNetwork pods get their own identities.
    #[arg(long)]
    pub verified_callers: bool,
    /// The agent's `--identity-not-found-status` (the status of "no identity" answers).
    #[arg(long, default_value_t = 400, value_parser = not_found_status)]
    pub identity_not_found_status: u16,
    /// Federated identities: the cluster's service-account issuer (default: the API server's
    /// /.well-known/openid-configuration).
    #[arg(long)]
    pub issuer: Option<String>,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TextFormat::Text)]
    pub output: TextFormat,
    /// ARM, to check a federated identity's credentials (skipped without credentials).
    #[command(flatten)]
    pub azure: AzureArgs,
}

/// `podid explain identity`.
#[derive(Debug, Clone, Args)]
pub struct ExplainIdentity {
    /// The identity, `NAMESPACE/NAME`.
    pub identity: String,
    /// Pod, binding and identity must share a namespace (`--forceNamespaced`).
    #[arg(long, env = "FORCENAMESPACED")]
    pub force_namespaced: bool,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = TextFormat::Text)]
    pub output: TextFormat,
}

/// Output of `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Output of `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TextFormat {
    Text,
    Json,
}

/// `404` or `400` (the agent's `--identity-not-found-status`).
pub(crate) fn not_found_status(s: &str) -> std::result::Result<u16, String> {
    match s {
        "404" => Ok(404),
        "400" => Ok(400),
        other => Err(format!("{other:?} is not 404 or 400")),
    }
}

/// The node agent's operation mode: the workspace's one [`podid_core::Mode`].
pub use podid_core::Mode;

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn list_namespace_and_all_namespaces_conflict() {
        assert!(Cli::try_parse_from(["podid", "identity", "list", "-n", "a", "-A"]).is_err());
        let cli = Cli::try_parse_from(["podid", "exception", "list", "-A", "-o", "yaml"]).unwrap();
        let Command::Exception(ExceptionCommand::List(l)) = cli.command else { panic!("{cli:?}") };
        assert!(l.all_namespaces && l.output == Format::Yaml);
    }
}
