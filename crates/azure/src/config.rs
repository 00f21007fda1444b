//! The cloud config: `/etc/kubernetes/azure.json` (YAML or JSON) or, without a file, the
//! environment variables upstream's admin secret provides.
//!
//! ```text
//!   azure.json key                 env var (no file)              used for
//!   cloud                          CLOUD                          Cloud::from_name
//!   tenantId                       TENANT_ID                      service principal tenant
//!   aadClientId / aadClientSecret  CLIENT_ID / CLIENT_SECRET      service principal
//!   aadClientCertPath/-Password    —                              service principal (PKCS#12)
//!   subscriptionId, resourceGroup  SUBSCRIPTION_ID, RESOURCE_GROUP defaults for ARM calls
//!   useManagedIdentityExtension    USE_MSI ("true", any case)     IMDS instead of a principal
//!   userAssignedIdentityID         USER_ASSIGNED_MSI_CLIENT_ID    which managed identity
//!   vmType                         VM_TYPE                        informational
//! ```
//!
//! Unknown keys are ignored. Secrets are [`Secret`]s, so neither `Debug` nor `Display` prints them.
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::cloud::{Cloud, CloudError};
use crate::env::Env;
use crate::secret::Secret;

/// The default location of the cloud config on AKS and aks-engine nodes.
pub const DEFAULT_PATH: &str = "/etc/kubernetes/azure.json";

/// Where a [`CloudConfig`] was read from; error messages name the keys of that source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// A file (azure.json).
    File(PathBuf),
    /// Environment variables.
    Env,
    /// Parsed from text handed in directly.
    #[default]
    Text,
}

/// The fields of azure.json podid reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CloudConfig {
    /// Cloud name, e.g. `AzurePublicCloud`.
    #[serde(default)]
    pub cloud: String,
    /// Entra tenant of the service principal.
    #[serde(default)]
    pub tenant_id: String,
    /// Service principal application (client) id.
    #[serde(default, rename = "aadClientId")]
    pub client_id: String,
    /// Service principal secret.
    #[serde(default, rename = "aadClientSecret")]
    pub client_secret: Secret,
    /// PKCS#12 file with the service principal's certificate and key (instead of a secret).
    #[serde(default, rename = "aadClientCertPath")]
    pub client_cert_path: String,
    /// Password of the PKCS#12 file.
    #[serde(default, rename = "aadClientCertPassword")]
    pub client_cert_password: Secret,
    /// Default subscription for ARM calls.
    #[serde(default)]
    pub subscription_id: String,
    /// Default (node) resource group for ARM calls.
    #[serde(default)]
    pub resource_group: String,
    /// Authenticate to ARM with the node's managed identity (IMDS).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub use_managed_identity_extension: bool,
    /// Client id of the user-assigned identity to use with IMDS; empty means system-assigned.
    #[serde(default, rename = "userAssignedIdentityID")]
    pub user_assigned_identity_id: String,
    /// `vmss` or `standard`; informational.
    #[serde(default)]
    pub vm_type: String,
    /// Where this config came from.
    #[serde(skip)]
    pub origin: Origin,
}

/// How the controller authenticates to ARM, as the config asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArmAuth {
    /// Service principal with a client secret.
    Secret { tenant_id: String, client_id: String, secret: Secret },
    /// Service principal with a PKCS#12 certificate file.
    Certificate { tenant_id: String, client_id: String, path: PathBuf, password: Secret },
    /// The node's managed identity: system-assigned (`None`) or user-assigned by client id.
    ManagedIdentity { client_id: Option<String> },
}

/// A cloud config that cannot be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading cloud config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is neither YAML nor JSON of the expected shape.
    #[error("parsing cloud config {origin}: {message}")]
    Parse { origin: String, message: String },
    /// The cloud name or environment file is unusable.
    #[error("cloud config {origin}: {source}")]
    Cloud { origin: String, source: CloudError },
    /// Required values are missing; each entry says what to set.
    #[error("cloud config {origin} is incomplete: {}", problems.join("; "))]
    Invalid { origin: String, problems: Vec<String> },
}

impl CloudConfig {
    /// Reads and parses a file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse_with_origin(&text, Origin::File(path.to_path_buf()))
    }

    /// Parses azure.json text. JSON is tried first for text starting with `{`, YAML otherwise.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        Self::parse_with_origin(text, Origin::Text)
    }

    fn parse_with_origin(text: &str, origin: Origin) -> Result<Self, ConfigError> {
        let parsed = if text.trim_start().starts_with('{') {
            serde_json::from_str::<Self>(text).map_err(|e| e.to_string())
        } else if text.trim().is_empty() {
            Ok(Self::default())
        } else {
            serde_saphyr::from_str::<Self>(text).map_err(|e| e.to_string())
        };
        match parsed {
            Ok(config) => Ok(Self { origin, ..config }),
            Err(message) => Err(ConfigError::Parse { origin: origin.to_string(), message }),
        }
    }

    /// Reads the environment-variable form (upstream's `--cloudconfig`-less mode).
    pub fn from_env(env: &dyn Env) -> Self {
        let var = |k: &str| env.var(k).unwrap_or_default();
        Self {
            cloud: var("CLOUD"),
            tenant_id: var("TENANT_ID"),
            client_id: var("CLIENT_ID"),
            client_secret: Secret::new(var("CLIENT_SECRET")),
            client_cert_path: String::new(),
            client_cert_password: Secret::default(),
            subscription_id: var("SUBSCRIPTION_ID"),
            resource_group: var("RESOURCE_GROUP"),
            use_managed_identity_extension: var("USE_MSI").eq_ignore_ascii_case("true"),
            user_assigned_identity_id: var("USER_ASSIGNED_MSI_CLIENT_ID"),
            vm_type: var("VM_TYPE"),
            origin: Origin::Env,
        }
    }

    /// The file at `path` when given, else the environment.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Self, ConfigError> {
        match path {
            Some(p) => Self::from_file(p),
            None => Ok(Self::from_env(env)),
        }
    }

    /// The cloud this config names (the Azure Stack file comes from `env`).
    pub fn cloud(&self, env: &dyn Env) -> Result<Cloud, ConfigError> {
        Cloud::from_name(&self.cloud, env)
            .map_err(|source| ConfigError::Cloud { origin: self.origin.to_string(), source })
    }

    /// Checks that the config can authenticate to ARM and returns how.
    pub fn arm_auth(&self) -> Result<ArmAuth, ConfigError> {
        if self.use_managed_identity_extension {
            let id = self.user_assigned_identity_id.trim();
            return Ok(ArmAuth::ManagedIdentity { client_id: (!id.is_empty()).then(|| id.to_string()) });
        }
        let mut problems = Vec::new();
        let key = |file: &'static str, env: &'static str| if self.origin == Origin::Env { env } else { file };
        if self.tenant_id.trim().is_empty() {
            problems.push(format!(
                "{} is empty: set it to the Entra tenant id of the service principal, or set {} to true to use the node's managed identity",
                key("tenantId", "TENANT_ID"),
                key("useManagedIdentityExtension", "USE_MSI"),
            ));
        }
        if self.client_id.trim().is_empty() {
            problems.push(format!(
                "{} is empty: set it to the service principal's application (client) id",
                key("aadClientId", "CLIENT_ID")
            ));
        }
        if self.client_secret.is_empty() && self.client_cert_path.is_empty() {
            problems.push(format!(
                "{} is empty: set it to the service principal's client secret{}",
                key("aadClientSecret", "CLIENT_SECRET"),
                if self.origin == Origin::Env { "" } else { ", or set aadClientCertPath to a PKCS#12 file" },
            ));
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { origin: self.origin.to_string(), problems });
        }
        let (tenant_id, client_id) = (self.tenant_id.trim().to_string(), self.client_id.trim().to_string());
        Ok(if self.client_secret.is_empty() {
            ArmAuth::Certificate {
                tenant_id,
                client_id,
                path: PathBuf::from(&self.client_cert_path),
                password: self.client_cert_password.clone(),
            }
        } else {
            ArmAuth::Secret { tenant_id, client_id, secret: self.client_secret.clone() }
        })
    }

    /// Checks the cloud name and the credentials together.
    pub fn validate(&self, env: &dyn Env) -> Result<(Cloud, ArmAuth), ConfigError> {
        Ok((self.cloud(env)?, self.arm_auth()?))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::Env => f.write_str("from environment variables"),
            Origin::Text => f.write_str("(inline)"),
        }
    }
}

impl fmt::Display for CloudConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cloud {:?}, subscription {:?}, resource group {:?}, ",
            self.cloud, self.subscription_id, self.resource_group
        )?;
        if self.use_managed_identity_extension {
            match self.user_assigned_identity_id.as_str() {
                "" => f.write_str("system-assigned managed identity"),
                id => write!(f, "user-assigned managed identity {}", podid_core::redact::client_id(id)),
            }
        } else {
            let how = if self.client_secret.is_empty() { "certificate" } else { "secret" };
            write!(
                f,
                "service principal {} in tenant {:?} ({how})",
                podid_core::redact::client_id(&self.client_id),
                self.tenant_id
            )
        }
    }
}

impl fmt::Display for ArmAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArmAuth::Secret { client_id, .. } => {
                write!(f, "service principal {} (secret)", podid_core::redact::client_id(client_id))
            }
            ArmAuth::Certificate { client_id, .. } => {
                write!(f, "service principal {} (certificate)", podid_core::redact::client_id(client_id))
            }
            ArmAuth::ManagedIdentity { client_id: None } => f.write_str("system-assigned managed identity"),
            ArmAuth::ManagedIdentity { client_id: Some(id) } => {
                write!(f, "user-assigned managed identity {}", podid_core::redact::client_id(id))
            }
        }
    }
}

/// `true`/`false`, or the strings `"true"`/`"false"` in any case (hand-edited files use both).
fn lenient_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flexible {
        Bool(bool),
        Text(String),
    }
    match Option::<Flexible>::deserialize(d)? {
        None => Ok(false),
        Some(Flexible::Bool(b)) => Ok(b),
        Some(Flexible::Text(s)) if s.eq_ignore_ascii_case("true") => Ok(true),
        Some(Flexible::Text(s)) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        Some(Flexible::Text(s)) => {
            Err(serde::de::Error::custom(format!("expected true or false, found {s:?}")))
        }
    }
}

#[cfg(test)]
#[path = "tests/config.rs"]
mod tests;
