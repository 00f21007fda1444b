//! Azure clouds (go-autorest "environments"): where ARM and Entra ID live, and which resource an
//! ARM token is requested for.
//!
//! ```text
//!   "AzurePublicCloud" ─┐
//!   "AzureChinaCloud"  ─┤ (any case)        ┌─ resource_manager  https://management.azure.com/
//!   "AzureUSGovernmentCloud" ─┼─▶ Cloud ────┼─ authority_host    https://login.microsoftonline.com/
//!   "AzureGermanCloud" ─┤                   └─ arm_resource      https://management.azure.com/
//!   "AzureStackCloud" ──┘ ← JSON file named by AZURE_ENVIRONMENT_FILEPATH
//! ```
//!
//! Every endpoint can be replaced afterwards (`with_*`), which is how tests point the clients at
//! the emulator on 127.0.0.1.
use std::path::PathBuf;

use serde::Deserialize;
use url::Url;

use crate::env::Env;

/// The environment variable naming the Azure Stack environment file (as go-autorest reads it).
pub const ENVIRONMENT_FILEPATH: &str = "AZURE_ENVIRONMENT_FILEPATH";

/// The endpoints of one Azure cloud.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cloud {
    /// Canonical name, e.g. `AzurePublicCloud`.
    pub name: String,
    /// ARM base URL (`https://management.azure.com/`).
    pub resource_manager: Url,
    /// Entra ID authority host (`https://login.microsoftonline.com/`); tenants are paths below it.
    pub authority_host: Url,
    /// The v1 resource an ARM token is requested for.
    pub arm_resource: String,
}

/// A cloud name or environment file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// The name matches no known cloud.
    #[error(
        "There is no cloud environment matching the name {0:?}; set `cloud` in azure.json (or CLOUD) to one of \
         AzurePublicCloud, AzureChinaCloud, AzureUSGovernmentCloud, AzureGermanCloud or AzureStackCloud"
    )]
    Unknown(String),
    /// `AzureStackCloud` without `AZURE_ENVIRONMENT_FILEPATH`.
    #[error(
        "cloud AzureStackCloud needs the environment variable {ENVIRONMENT_FILEPATH} set to the path of the \
         Azure Stack environment JSON file"
    )]
    StackFileNotSet,
    /// The environment file could not be read.
    #[error("reading Azure environment file {path}: {source}")]
    StackFileRead { path: PathBuf, source: std::io::Error },
    /// The environment file is not go-autorest environment JSON.
    #[error("parsing Azure environment file {path}: {message}")]
    StackFileParse { path: PathBuf, message: String },
    /// Environment JSON that is not go-autorest's shape.
    #[error("Azure environment JSON is invalid: {0}")]
    EnvironmentJson(String),
    /// An endpoint is not an absolute http(s) URL.
    #[error("{field} {value:?} is not an absolute http(s) URL")]
    InvalidEndpoint { field: &'static str, value: String },
}

/// The parts of a go-autorest environment file podid reads (other keys are ignored).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvironmentFile {
    #[serde(default)]
    name: String,
    resource_manager_endpoint: String,
    active_directory_endpoint: String,
    #[serde(default)]
    token_audience: String,
}

impl Cloud {
    /// Azure public cloud.
    pub fn public() -> Self {
        Self::known("AzurePublicCloud", "https://management.azure.com/", "https://login.microsoftonline.com/")
    }

    /// Azure China (21Vianet).
    pub fn china() -> Self {
        Self::known(
            "AzureChinaCloud",
            "https://management.chinacloudapi.cn/",
            "https://login.chinacloudapi.cn/",
        )
    }

    /// Azure US Government.
    pub fn us_government() -> Self {
        Self::known(
            "AzureUSGovernmentCloud",
            "https://management.usgovcloudapi.net/",
            "https://login.microsoftonline.us/",
        )
    }

    /// Azure Germany (retired by Microsoft, kept for configuration compatibility).
    pub fn german() -> Self {
        Self::known(
            "AzureGermanCloud",
            "https://management.microsoftazure.de/",
            "https://login.microsoftonline.de/",
        )
    }

    fn known(name: &str, arm: &'static str, login: &'static str) -> Self {
        Self {
            name: name.to_string(),
            resource_manager: fixed_url(arm),
            authority_host: fixed_url(login),
            arm_resource: arm.to_string(),
        }
    }

    /// Looks a cloud up by name, case-insensitively, with go-autorest's aliases (`AzureCloud`,
    /// `AzureUSGovernment`). `AzureStackCloud` is read from the file named by
    /// `AZURE_ENVIRONMENT_FILEPATH` in `env`.
    pub fn from_name(name: &str, env: &dyn Env) -> Result<Self, CloudError> {
        match name.trim().to_ascii_uppercase().as_str() {
            "AZUREPUBLICCLOUD" | "AZURECLOUD" => Ok(Self::public()),
            "AZURECHINACLOUD" => Ok(Self::china()),
            "AZUREUSGOVERNMENTCLOUD" | "AZUREUSGOVERNMENT" => Ok(Self::us_government()),
            "AZUREGERMANCLOUD" => Ok(Self::german()),
            "AZURESTACKCLOUD" => {
                let path = env.var(ENVIRONMENT_FILEPATH).filter(|p| !p.is_empty());
                Self::from_environment_file(PathBuf::from(path.ok_or(CloudError::StackFileNotSet)?))
            }
            _ => Err(CloudError::Unknown(name.to_string())),
        }
    }

    /// Reads a go-autorest environment file (`resourceManagerEndpoint`, `activeDirectoryEndpoint`,
    /// optional `tokenAudience` and `name`).
    pub fn from_environment_file(path: PathBuf) -> Result<Self, CloudError> {
        let text = std::fs::read_to_string(&path)
            .map_err(|source| CloudError::StackFileRead { path: path.clone(), source })?;
        Self::from_environment_json(&text).map_err(|e| match e {
            CloudError::EnvironmentJson(message) => CloudError::StackFileParse { path, message },
            CloudError::InvalidEndpoint { field, value } => CloudError::StackFileParse {
                path,
                message: format!("{field} {value:?} is not an absolute http(s) URL"),
            },
            other => other,
        })
    }

    /// Parses go-autorest environment JSON. The ARM token resource is `tokenAudience` when set,
    /// else the ARM endpoint.
    pub fn from_environment_json(text: &str) -> Result<Self, CloudError> {
        let file: EnvironmentFile =
            serde_json::from_str(text).map_err(|e| CloudError::EnvironmentJson(e.to_string()))?;
        let resource_manager = parse_endpoint("resourceManagerEndpoint", &file.resource_manager_endpoint)?;
        let authority_host = parse_endpoint("activeDirectoryEndpoint", &file.active_directory_endpoint)?;
        let arm_resource = if file.token_audience.is_empty() {
            file.resource_manager_endpoint.clone()
        } else {
            file.token_audience
        };
        let name = if file.name.is_empty() { "AzureStackCloud".to_string() } else { file.name };
        Ok(Self { name, resource_manager, authority_host, arm_resource })
    }

    /// Replaces the ARM endpoint.
    pub fn with_resource_manager(mut self, url: Url) -> Self {
        self.resource_manager = url;
        self
    }

    /// Replaces the Entra ID authority host.
    pub fn with_authority_host(mut self, url: Url) -> Self {
        self.authority_host = url;
        self
    }

    /// Replaces the resource ARM tokens are requested for.
    pub fn with_arm_resource(mut self, resource: impl Into<String>) -> Self {
        self.arm_resource = resource.into();
        self
    }
}

/// Parses an endpoint that must be an absolute http(s) URL.
pub fn parse_endpoint(field: &'static str, value: &str) -> Result<Url, CloudError> {
    Url::parse(value)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
        .ok_or_else(|| CloudError::InvalidEndpoint { field, value: value.to_string() })
}

/// Parses one of the built-in endpoint literals above.
#[allow(clippy::expect_used)] // literals only; the unit tests parse every one of them
fn fixed_url(s: &'static str) -> Url {
    Url::parse(s).expect("built-in cloud endpoints are valid URLs")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn no_env() -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    #[test]
    fn names_are_case_insensitive_with_aliases() {
        for (name, canonical) in [
            ("AzurePublicCloud", "AzurePublicCloud"),
            ("azurepubliccloud", "AzurePublicCloud"),
            ("AZURECLOUD", "AzurePublicCloud"),
            ("AzureChinaCloud", "AzureChinaCloud"),
            ("azureusgovernmentcloud", "AzureUSGovernmentCloud"),
            ("AzureUSGovernment", "AzureUSGovernmentCloud"),
            ("AzureGermanCloud", "AzureGermanCloud"),
        ] {
            assert_eq!(Cloud::from_name(name, &no_env()).unwrap().name, canonical, "{name}");
        }
    }

    #[test]
    fn public_cloud_endpoints() {
        let c = Cloud::public();
        assert_eq!(c.resource_manager.as_str(), "https://management.azure.com/");
        assert_eq!(c.authority_host.as_str(), "https://login.microsoftonline.com/");
        assert_eq!(c.arm_resource, "https://management.azure.com/");
        assert_eq!(Cloud::china().authority_host.as_str(), "https://login.chinacloudapi.cn/");
        assert_eq!(Cloud::us_government().resource_manager.as_str(), "https://management.usgovcloudapi.net/");
        assert_eq!(Cloud::german().arm_resource, "https://management.microsoftazure.de/");
    }

    #[test]
    fn unknown_and_empty_names_are_errors_with_upstream_text() {
        for name in ["", "AzureMoonCloud"] {
            let err = Cloud::from_name(name, &no_env()).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("There is no cloud environment matching the name \"{name}\"")),
                "{err}"
            );
        }
    }

    #[test]
    fn stack_cloud_reads_environment_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.json");
        std::fs::write(
            &path,
            r#"{"name":"AzureStackCloud","resourceManagerEndpoint":"https://management.local.azurestack.external/",
                "activeDirectoryEndpoint":"https://login.microsoftonline.com/","tokenAudience":"https://management.contoso.onmicrosoft.com/abc",
                "graphEndpoint":"https://graph.windows.net/"}"#,
        )
        .unwrap();
        let env = BTreeMap::from([(ENVIRONMENT_FILEPATH.to_string(), path.display().to_string())]);
        let c = Cloud::from_name("azurestackcloud", &env).unwrap();
        assert_eq!(c.resource_manager.as_str(), "https://management.local.azurestack.external/");
        assert_eq!(c.arm_resource, "https://management.contoso.onmicrosoft.com/abc");
    }

    #[test]
    fn stack_cloud_without_file_explains_the_fix() {
        let err = Cloud::from_name("AzureStackCloud", &no_env()).unwrap_err().to_string();
        assert!(err.contains("AZURE_ENVIRONMENT_FILEPATH"), "{err}");
        let env = BTreeMap::from([(ENVIRONMENT_FILEPATH.to_string(), "/nonexistent/env.json".to_string())]);
        let err = Cloud::from_name("AzureStackCloud", &env).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/env.json"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("env.json");
        std::fs::write(&path, "{").unwrap();
        let err = Cloud::from_environment_file(path.clone()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("parsing Azure environment file {}: EOF", path.display())), "{err}");
    }

    #[test]
    fn stack_file_needs_absolute_endpoints_and_defaults_the_audience() {
        let err = Cloud::from_environment_json(
            r#"{"resourceManagerEndpoint":"management","activeDirectoryEndpoint":"https://l/"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("resourceManagerEndpoint"), "{err}");
        let c = Cloud::from_environment_json(
            r#"{"resourceManagerEndpoint":"https://arm.local/","activeDirectoryEndpoint":"https://login.local/adfs/"}"#,
        )
        .unwrap();
        assert_eq!((c.name.as_str(), c.arm_resource.as_str()), ("AzureStackCloud", "https://arm.local/"));
    }

    #[test]
    fn endpoints_can_be_overridden() {
        let c = Cloud::public()
            .with_resource_manager(Url::parse("https://127.0.0.1:8443/").unwrap())
            .with_authority_host(Url::parse("https://127.0.0.1:8444/").unwrap());
        assert_eq!(c.resource_manager.port(), Some(8443));
        assert_eq!(c.authority_host.port(), Some(8444));
        assert_eq!(c.arm_resource, "https://management.azure.com/");
    }
}
