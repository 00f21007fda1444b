//! The emulator's configuration: which tenant, subscription, resource groups, scale sets and nodes,
//! user-assigned identities, service principals and role assignments exist at start, plus timing knobs.
//!
//! Read from YAML or JSON (`EmulatorConfig::from_file`). Every list defaults to empty and every knob to
//! its documented value, so a file only states what it needs. With no file at all the binary uses
//! [`EmulatorConfig::default`], the built-in AKS-like world described in the crate README.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A configuration error: the file could not be read, parsed, or describes an impossible world.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EmulatorConfig {
    #[serde(default = "defaults::tenant_id")]
    pub tenant_id: String,
    #[serde(default = "defaults::subscription_id")]
    pub subscription_id: String,
    #[serde(default = "defaults::location")]
    pub location: String,
    /// Lifetime of Entra ID tokens (`expires_in`), seconds.
    #[serde(default = "defaults::token_lifetime_secs")]
    pub token_lifetime_secs: u64,
    /// Lifetime of IMDS tokens, seconds (real IMDS hands out tokens valid for about a day).
    #[serde(default = "defaults::imds_token_lifetime_secs")]
    pub imds_token_lifetime_secs: u64,
    /// How long a VMSS/VM PATCH or PUT stays `Updating` before its operation succeeds, milliseconds.
    #[serde(default)]
    pub operation_duration_ms: u64,
    /// How long after an assignment completes IMDS still answers "Identity not found", milliseconds.
    #[serde(default)]
    pub imds_propagation_delay_ms: u64,
    /// Items per page in ARM list responses (longer lists get a `nextLink`).
    #[serde(default = "defaults::arm_page_size")]
    pub arm_page_size: usize,
    /// PEM files of CAs trusted when fetching a federated issuer's discovery document and JWKS.
    #[serde(default)]
    pub trusted_ca_files: Vec<PathBuf>,
    /// Extra IP addresses in the HTTPS server certificate besides `127.0.0.1` and `::1`: where
    /// clients outside the host's loopback reach the emulator (e.g. a node-local address that the
    /// test kit forwards to it from a node's network namespace).
    #[serde(default)]
    pub tls_san_ips: Vec<std::net::IpAddr>,
    #[serde(default)]
    pub resource_groups: Vec<GroupConfig>,
    #[serde(default)]
    pub applications: Vec<AppConfig>,
    #[serde(default)]
    pub identities: Vec<IdentityConfig>,
    #[serde(default)]
    pub scale_sets: Vec<ScaleSetConfig>,
    #[serde(default)]
    pub virtual_machines: Vec<VmConfig>,
    #[serde(default)]
    pub role_assignments: Vec<RoleAssignmentConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    pub name: String,
    #[serde(default)]
    pub location: Option<String>,
}

/// An app registration with its service principal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    /// The application (client) id; generated when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The service principal's object id; generated when absent.
    #[serde(default)]
    pub object_id: Option<String>,
    #[serde(default)]
    pub secrets: Vec<String>,
    /// PEM files holding certificates registered on the app (the private key may be in the same file).
    #[serde(default)]
    pub certificate_files: Vec<PathBuf>,
    /// Generate an RSA key and certificate, register it, and write key+cert to `{state_dir}/{name}.pem`.
    #[serde(default)]
    pub generate_certificate: bool,
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredentialConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FederatedCredentialConfig {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    #[serde(default = "defaults::audiences")]
    pub audiences: Vec<String>,
}

/// A user-assigned managed identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    pub name: String,
    pub resource_group: String,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub principal_id: Option<String>,
    #[serde(default)]
    pub federated_credentials: Vec<FederatedCredentialConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScaleSetConfig {
    pub name: String,
    pub resource_group: String,
    /// Number of instances (ids 0..n); node names are the scale set name plus the id in 6 base-36 digits.
    #[serde(default = "defaults::instances")]
    pub instances: u32,
    #[serde(default)]
    pub system_assigned: bool,
    /// User-assigned identities assigned at start: names of configured identities, or resource ids.
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// VM name, which is also the node name.
    pub name: String,
    pub resource_group: String,
    #[serde(default)]
    pub system_assigned: bool,
    #[serde(default)]
    pub identities: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RoleAssignmentConfig {
    /// An application name, an identity name, or an object id.
    pub principal: String,
    /// A role name (`Reader`, `Virtual Machine Contributor`, ...) or its GUID.
    pub role: String,
    /// A full scope (`/subscriptions/...`), or one relative to the subscription (`resourceGroups/rg`),
    /// or empty for the subscription itself.
    #[serde(default)]
    pub scope: String,
}

mod defaults {
    pub fn tenant_id() -> String {
        "6b1f3c2e-8d4a-4f7e-9a1b-2c3d4e5f6a7b".into()
    }
    pub fn subscription_id() -> String {
        "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f".into()
    }
    pub fn location() -> String {
        "eastus".into()
    }
    pub fn token_lifetime_secs() -> u64 {
        3599
    }
    pub fn imds_token_lifetime_secs() -> u64 {
        86399
    }
    pub fn arm_page_size() -> usize {
        100
    }
    pub fn instances() -> u32 {
        2
    }
    pub fn audiences() -> Vec<String> {
        vec!["api://AzureADTokenExchange".into()]
    }
}

/// Names used by the built-in default world.
pub mod builtin {
    pub const NODE_RESOURCE_GROUP: &str = "MC_podid_podid_eastus";
    pub const IDENTITY_RESOURCE_GROUP: &str = "podid-identities";
    pub const RESTRICTED_RESOURCE_GROUP: &str = "podid-restricted";
    pub const SCALE_SET: &str = "aks-nodepool1-12345678-vmss";
    pub const ADMIN_APP: &str = "podid-admin";
    pub const CLUSTER_APP: &str = "podid-cluster";
    pub const AGENTPOOL_IDENTITY: &str = "podid-agentpool";
    pub const APP_IDENTITY: &str = "podid-app";
    pub const RESTRICTED_IDENTITY: &str = "podid-restricted-app";
}

impl Default for EmulatorConfig {
    /// One tenant and subscription; an AKS node resource group with a 2-instance scale set carrying the
    /// agent-pool identity; an identity group the cluster may assign from and a restricted one it may not;
    /// an admin service principal (Owner) and the cluster service principal (Virtual Machine Contributor on
    /// the node group, Managed Identity Operator on the identity group).
    fn default() -> Self {
        use builtin::*;
        let group = |name: &str| GroupConfig { name: name.into(), location: None };
        let identity = |name: &str, rg: &str, client: &str, principal: &str| IdentityConfig {
            name: name.into(),
            resource_group: rg.into(),
            client_id: Some(client.into()),
            principal_id: Some(principal.into()),
            federated_credentials: vec![],
        };
        let assign = |principal: &str, role: &str, scope: &str| RoleAssignmentConfig {
            principal: principal.into(),
            role: role.into(),
            scope: scope.into(),
        };
        Self {
            tenant_id: defaults::tenant_id(),
            subscription_id: defaults::subscription_id(),
            location: defaults::location(),
            token_lifetime_secs: defaults::token_lifetime_secs(),
            imds_token_lifetime_secs: defaults::imds_token_lifetime_secs(),
            operation_duration_ms: 0,
            imds_propagation_delay_ms: 0,
            arm_page_size: defaults::arm_page_size(),
            trusted_ca_files: vec![],
            tls_san_ips: vec![],
            resource_groups: vec![
                group("podid"),
                group(NODE_RESOURCE_GROUP),
                group(IDENTITY_RESOURCE_GROUP),
                group(RESTRICTED_RESOURCE_GROUP),
            ],
            applications: vec![
                AppConfig {
                    name: ADMIN_APP.into(),
                    client_id: Some("0a0d7b1e-0000-4000-8000-00000000ad01".into()),
                    object_id: Some("0a0d7b1e-0000-4000-8000-00000000ad02".into()),
                    secrets: vec!["podid-admin-secret".into()],
                    ..AppConfig::default()
                },
                AppConfig {
                    name: CLUSTER_APP.into(),
                    client_id: Some("c1057e00-0000-4000-8000-0000000c1001".into()),
                    object_id: Some("c1057e00-0000-4000-8000-0000000c1002".into()),
                    secrets: vec!["podid-cluster-secret".into()],
                    generate_certificate: true,
                    ..AppConfig::default()
                },
            ],
            identities: vec![
                identity(
                    AGENTPOOL_IDENTITY,
                    NODE_RESOURCE_GROUP,
                    "a9e7c0de-0000-4000-8000-0000000a9001",
                    "a9e7c0de-0000-4000-8000-0000000a9002",
                ),
                identity(
                    APP_IDENTITY,
                    IDENTITY_RESOURCE_GROUP,
                    "a99c11e0-0000-4000-8000-000000a99001",
                    "a99c11e0-0000-4000-8000-000000a99002",
                ),
                identity(
                    RESTRICTED_IDENTITY,
                    RESTRICTED_RESOURCE_GROUP,
                    "4e57a1c7-0000-4000-8000-0000004e5001",
                    "4e57a1c7-0000-4000-8000-0000004e5002",
                ),
            ],
            scale_sets: vec![ScaleSetConfig {
                name: SCALE_SET.into(),
                resource_group: NODE_RESOURCE_GROUP.into(),
                instances: 2,
                system_assigned: false,
                identities: vec![AGENTPOOL_IDENTITY.into()],
            }],
            virtual_machines: vec![],
            role_assignments: vec![
                assign(ADMIN_APP, "Owner", ""),
                assign(
                    CLUSTER_APP,
                    "Virtual Machine Contributor",
                    &format!("resourceGroups/{NODE_RESOURCE_GROUP}"),
                ),
                assign(
                    CLUSTER_APP,
                    "Managed Identity Operator",
                    &format!("resourceGroups/{IDENTITY_RESOURCE_GROUP}"),
                ),
                assign(CLUSTER_APP, "Reader", &format!("resourceGroups/{RESTRICTED_RESOURCE_GROUP}")),
            ],
        }
    }
}

impl EmulatorConfig {
    /// Reads a YAML or JSON file (JSON when the name ends in `.json` or the text starts with `{`).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path.extension().is_some_and(|e| e.eq_ignore_ascii_case("json")))
            .map_err(|message| ConfigError::Parse { path: path.to_path_buf(), message })
    }

    /// Parses YAML, or JSON when `json` is set or the text starts with `{`.
    pub fn parse(text: &str, json: bool) -> Result<Self, String> {
        if json || text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| e.to_string())
        } else {
            serde_saphyr::from_str(text).map_err(|e| e.to_string())
        }
    }

    /// Resolves a configured scope to a full one.
    pub fn full_scope(&self, scope: &str) -> String {
        let sub = format!("/subscriptions/{}", self.subscription_id);
        let s = scope.trim().trim_end_matches('/');
        if s.is_empty() {
            sub
        } else if s.starts_with('/') {
            s.to_string()
        } else {
            format!("{sub}/{s}")
        }
    }
}

/// AKS node name of a scale set instance: the scale set name plus the instance id in 6 base-36 digits.
pub fn vmss_node_name(scale_set: &str, instance: u32) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = instance;
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    format!("{scale_set}{}", String::from_utf8_lossy(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_follow_aks() {
        assert_eq!(vmss_node_name("aks-nodepool1-12345678-vmss", 0), "aks-nodepool1-12345678-vmss000000");
        assert_eq!(vmss_node_name("x", 37), "x000011");
    }

    #[test]
    fn yaml_and_json_parse_with_defaults() {
        let yaml = "tenant_id: t\nresource_groups:\n  - name: rg\nscale_sets:\n  - name: s\n    resource_group: rg\n";
        let c = EmulatorConfig::parse(yaml, false).unwrap();
        assert_eq!(c.tenant_id, "t");
        assert_eq!(c.scale_sets[0].instances, 2);
        assert_eq!(c.token_lifetime_secs, 3599);
        assert!(c.applications.is_empty());
        let json = serde_json::to_string(&EmulatorConfig::default()).unwrap();
        assert_eq!(EmulatorConfig::parse(&json, true).unwrap(), EmulatorConfig::default());
        assert!(EmulatorConfig::parse("bogus_key: 1", false).is_err());
    }

    #[test]
    fn scopes_resolve_against_the_subscription() {
        let c = EmulatorConfig { subscription_id: "s".into(), ..EmulatorConfig::default() };
        assert_eq!(c.full_scope(""), "/subscriptions/s");
        assert_eq!(c.full_scope("resourceGroups/rg"), "/subscriptions/s/resourceGroups/rg");
        assert_eq!(c.full_scope("/subscriptions/x/"), "/subscriptions/x");
    }
}
