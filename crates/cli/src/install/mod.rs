//! `podid install`: the manifests that deploy podid on a cluster, built as typed objects
//! (k8s-openapi and podid-api types, so a misspelt field does not compile) and kept in apply order
//! as JSON values.
//!
//! ```text
//!  InstallOptions ─▶ render ─▶ [CRDs, ServiceAccounts, RBAC, trusted CA, controller, agent, exceptions, policy]
//!                                 │
//!                     print as YAML (podid install) │ apply server-side (podid install --apply)
//! ```
//!
//! The same objects are committed as a kustomize tree under `deploy/` (`make deploy`); a test checks
//! that `kubectl kustomize deploy/overlays/<mode>` renders exactly what `render` returns.
pub(crate) mod apply;
mod crds;
pub mod kustomize;
mod policy;
mod rbac;
mod trust;
mod workloads;

use std::io::Write;
use std::process::ExitCode;

use serde_json::Value;

use crate::error::{Error, Result};

pub use apply::apply;
pub use crds::CRD_YAML;
pub use policy::{AKS_ADDON_EXCEPTION, MIC_EXCEPTION, NET_RAW_CONSTRAINT};
pub use trust::TRUSTED_CA_CONFIGMAP;
pub use workloads::{MIC_DEPLOYMENT, NMI_DAEMONSET};

/// Name of the controller's ServiceAccount.
pub const MIC_SERVICE_ACCOUNT: &str = "podid-mic";
/// Name of the agent's ServiceAccount.
pub const NMI_SERVICE_ACCOUNT: &str = "podid-nmi";
/// Field manager of `podid install --apply`.
pub const FIELD_MANAGER: &str = "podid-install";
/// Label on every object `install` renders (what `uninstall` looks for).
pub const PART_OF_LABEL: (&str, &str) = ("app.kubernetes.io/part-of", "podid");

/// How podid runs on the cluster: the workspace's one [`podid_core::Mode`].
pub use podid_core::Mode;

/// What to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallOptions {
    /// Operation mode.
    pub mode: Mode,
    /// The cluster uses kubenet: start the agent anyway and render the NET_RAW drop policy.
    pub allow_kubenet: bool,
    /// Namespace of the controller and the agent.
    pub namespace: String,
    /// Registry and repository prefix of the images (`<registry>/podid-mic:<tag>`).
    pub image_registry: String,
    /// Image tag.
    pub tag: String,
    /// Entra tenant of federated identities without `tenantID` (agent `--tenant-id`); when absent
    /// in federated mode the agent reads it from the node's `/etc/kubernetes/azure.json`.
    pub tenant_id: Option<String>,
    /// Standard/managed mode: some identities are federated per identity (annotation
    /// `podid.io/federated`), so the agent may create service-account tokens. Implied by
    /// [`Mode::Federated`].
    pub federated_identities: bool,
    /// Azure Resource Manager, when not the public cloud's (controller `--arm-endpoint`).
    pub arm_endpoint: Option<String>,
    /// Entra ID's authority host, when not the public cloud's (`--aad-authority`).
    pub aad_authority: Option<String>,
    /// The instance metadata service, when not at 169.254.169.254 (agent `--imds-endpoint`).
    pub imds_endpoint: Option<String>,
    /// An extra CA (PEM) both components trust, rendered as ConfigMap `podid-trusted-ca`.
    pub trusted_ca_pem: Option<String>,
    /// The agent's `--identity-not-found-status` (400, the agent's default, is not rendered).
    pub identity_not_found_status: u16,
    /// The agent confirms callers through the kernel (`--verified-callers`): renders the host's
    /// PID namespace and `SYS_PTRACE` for the agent, nothing of it otherwise.
    pub verified_callers: bool,
    /// cgroup v2 paths of node components whose own calls reach IMDS directly (with
    /// `verified_callers`; the agent's `--node-caller-exception-cgroup`).
    pub node_caller_exception_cgroups: Vec<String>,
}

impl Default for InstallOptions {
    fn default() -> Self {
        Self {
            mode: Mode::Standard,
            allow_kubenet: false,
            namespace: "kube-system".into(),
            image_registry: DEFAULT_REGISTRY.into(),
            tag: DEFAULT_TAG.into(),
            tenant_id: None,
            federated_identities: false,
            arm_endpoint: None,
            aad_authority: None,
            imds_endpoint: None,
            trusted_ca_pem: None,
            identity_not_found_status: 400,
            verified_callers: false,
            node_caller_exception_cgroups: Vec::new(),
        }
    }
}

pub use crate::args::{DEFAULT_REGISTRY, DEFAULT_TAG};

impl InstallOptions {
    pub(crate) fn image(&self, component: &str) -> String {
        format!("{}/podid-{component}:{}", self.image_registry.trim_end_matches('/'), self.tag)
    }
}

/// Every object of the installation, in apply order: CRDs first, then RBAC, workloads, exceptions.
pub fn render(opts: &InstallOptions) -> Result<Vec<Value>> {
    crate::kube_util::valid_name("namespace", &opts.namespace)?;
    if opts.image_registry.trim().is_empty() || opts.tag.trim().is_empty() {
        return Err(Error::Usage("--image-registry and --tag must not be empty".into()));
    }
    let mut out = Rendered(crds::crds()?);
    rbac::objects(opts, &mut out)?;
    if let Some(config_map) = trust::config_map(opts) {
        out.push(&config_map)?;
    }
    workloads::objects(opts, &mut out)?;
    policy::objects(opts, &mut out)?;
    Ok(out.0)
}

/// Rendered objects, in apply order.
pub(crate) struct Rendered(Vec<Value>);

impl Rendered {
    /// Appends a typed object (its `apiVersion` and `kind` are part of its serialised form).
    pub(crate) fn push<T: serde::Serialize>(&mut self, object: &T) -> Result<()> {
        self.0.push(serde_json::to_value(object).map_err(|e| Error::Serialize(e.to_string()))?);
        Ok(())
    }
}

/// The metadata of a rendered object: its name, namespace and podid's labels.
pub(crate) fn meta(
    name: &str,
    namespace: Option<&str>,
    component: Option<&str>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: Some(labels(component)),
        ..Default::default()
    }
}

/// The objects as multi-document YAML.
pub fn to_yaml(objects: &[Value]) -> Result<String> {
    let mut text = String::new();
    for o in objects {
        text.push_str("---\n");
        text.push_str(&serde_saphyr::to_string(o).map_err(|e| Error::Serialize(e.to_string()))?);
    }
    Ok(text)
}

/// `metadata.labels` every rendered object carries, plus `component`'s.
pub(crate) fn labels(component: Option<&str>) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::from([(PART_OF_LABEL.0.to_owned(), PART_OF_LABEL.1.to_owned())]);
    if let Some(c) = component {
        m.insert("app.kubernetes.io/component".into(), c.into());
    }
    m
}

/// Reads a PEM CA certificate for `--trusted-ca-file`.
fn read_ca(path: &std::path::Path) -> Result<String> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| Error::Usage(format!("--trusted-ca-file {}: {e}", path.display())))?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(Error::Usage(format!("--trusted-ca-file {}: no PEM certificate in it", path.display())));
    }
    Ok(pem)
}

/// Runs `podid install`: prints the manifests, or applies them when a client is given.
pub async fn run(
    args: &crate::args::InstallArgs,
    client: Option<&kube::Client>,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let opts = InstallOptions {
        mode: args.mode,
        allow_kubenet: args.allow_kubenet,
        namespace: args.namespace.clone(),
        image_registry: args.image_registry.clone(),
        tag: args.tag.clone(),
        tenant_id: args.tenant_id.clone(),
        federated_identities: args.federated_identities,
        arm_endpoint: args.arm_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()),
        aad_authority: args.aad_authority.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()),
        imds_endpoint: args.imds_endpoint.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()),
        trusted_ca_pem: match &args.trusted_ca_file {
            Some(path) => Some(read_ca(path)?),
            None => None,
        },
        identity_not_found_status: args.identity_not_found_status,
        verified_callers: args.verified_callers,
        node_caller_exception_cgroups: args.node_caller_exception_cgroups.clone(),
    };
    let objects = render(&opts)?;
    match client {
        Some(client) if args.apply => {
            apply(client, &objects).await?;
            writeln!(out, "applied {} objects (mode {})", objects.len(), opts.mode.as_str())?;
        }
        _ => out.write_all(to_yaml(&objects)?.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
