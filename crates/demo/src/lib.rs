//! `podid-demo`: the demo application of upstream's walkthrough (≤ v1.7 `cmd/demo`, spec §5.3).
//!
//! ```text
//!  every --period:  IMDS token (client id) ──▶ ARM: list VMs of --resourcegroup ──▶ GET /metadata/instance
//!                   "successfully acquired a token using the MSI, msiEndpoint(…)"
//!                   "successfully doARMOperations vm count N"
//!                   "successfully made GET on instance metadata, …"
//! ```
//!
//! A failed step prints one `failed …` line naming the step and the cause, and the round stops
//! there. Endpoints are flags, so the demo runs against the emulator (or an agent) as well as Azure.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use podid_azure::credential::StaticToken;
use podid_azure::{ArmClient, ArmOptions, HttpOptions, ImdsClient, ImdsOptions, ManagedIdentity};
use url::Url;

/// The instance metadata api-version upstream's demo used.
pub const INSTANCE_API_VERSION: &str = "2017-08-01";

/// podid's demo: gets a token as a managed identity, lists VMs through ARM, reads instance metadata.
#[derive(Debug, Clone, Parser)]
#[command(name = "podid-demo", version)]
pub struct Args {
    /// Subscription of the resource group.
    #[arg(long)]
    pub subscriptionid: String,
    /// Client id of the user-assigned identity to get tokens for.
    #[arg(long)]
    pub clientid: String,
    /// Resource group whose VMs are listed.
    #[arg(long)]
    pub resourcegroup: String,
    /// Resource the token is for.
    #[arg(long = "aad-resourcename", default_value = "https://management.azure.com/")]
    pub resource: String,
    /// Instance metadata service (the node agent intercepts it in a pod).
    #[arg(long, default_value = "http://169.254.169.254")]
    pub imds_endpoint: Url,
    /// Azure Resource Manager.
    #[arg(long, default_value = "https://management.azure.com")]
    pub arm_endpoint: Url,
    /// Extra CA certificate (PEM) trusted for ARM, e.g. the emulator's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Local address to connect to IMDS from (a pod standing in on its own loopback address).
    #[arg(long)]
    pub bind_address: Option<std::net::IpAddr>,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 20)]
    pub period: u64,
    /// Stop after this many rounds (default: run forever).
    #[arg(long)]
    pub count: Option<u64>,
    /// One round only (`--count 1`); the exit status says whether it succeeded.
    #[arg(long, conflicts_with = "count")]
    pub once: bool,
}

impl Args {
    /// How many rounds to run (`None`: forever).
    pub fn rounds(&self) -> Option<u64> {
        if self.once { Some(1) } else { self.count }
    }
}

/// A step of a round that failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("failed to build an HTTP client: {0}")]
    Setup(String),
    #[error(
        "failed to acquire a token using the MSI, msiEndpoint({endpoint}), clientID({client_id}): {cause}"
    )]
    Token { endpoint: String, client_id: String, cause: String },
    #[error("failed doARMOperations: {0}")]
    Arm(String),
    #[error("failed to make GET on instance metadata: {0}")]
    Metadata(String),
}

/// The three clients of a round.
#[derive(Debug, Clone)]
pub struct Demo {
    args: Args,
    imds: ImdsClient,
    http: reqwest::Client,
    plain: reqwest::Client,
}

impl Demo {
    /// Builds the clients; IMDS is tried once per round (no retries: the next round is the retry).
    pub fn new(args: Args) -> Result<Self, DemoError> {
        let setup = |e: &dyn std::fmt::Display| DemoError::Setup(e.to_string());
        let imds = ImdsClient::new(ImdsOptions {
            retry_delays: Vec::new(),
            timeout: Some(Duration::from_secs(80)),
            local_address: args.bind_address,
            ..ImdsOptions::at(args.imds_endpoint.clone())
        })
        .map_err(|e| setup(&e))?;
        // ARM through HTTPS_PROXY when set (podid_azure::proxy: never for loopback or IMDS).
        let http = podid_azure::build_client(&HttpOptions {
            extra_ca_files: args.ca_file.iter().cloned().collect(),
            ..HttpOptions::default()
        })
        .map_err(|e| setup(&e))?;
        let plain = reqwest::Client::builder()
            .no_proxy()
            .local_address(args.bind_address)
            .timeout(Duration::from_secs(80))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Self { args, imds, http, plain })
    }

    /// The same demo listing another resource group.
    pub fn with_resource_group(mut self, resource_group: &str) -> Self {
        self.args.resourcegroup = resource_group.to_owned();
        self
    }

    /// The token endpoint as upstream printed it.
    pub fn msi_endpoint(&self) -> String {
        let mut url = self.args.imds_endpoint.clone();
        url.set_path("/metadata/identity/oauth2/token");
        url.set_query(None);
        url.to_string()
    }

    /// One round: the three success lines, or the first failure.
    pub async fn round(&self) -> Result<Vec<String>, DemoError> {
        let a = &self.args;
        let identity = ManagedIdentity::ClientId(a.clientid.clone());
        let token = self.imds.token(&a.resource, &identity).await.map_err(|e| DemoError::Token {
            endpoint: self.msi_endpoint(),
            client_id: a.clientid.clone(),
            cause: e.to_string(),
        })?;
        let mut lines = vec![format!(
            "successfully acquired a token using the MSI, msiEndpoint({}), clientID({})",
            self.msi_endpoint(),
            a.clientid
        )];
        let arm = ArmClient::new(
            self.http.clone(),
            a.arm_endpoint.clone(),
            a.resource.clone(),
            Arc::new(StaticToken(token)),
            ArmOptions { backoff: podid_azure::http::Backoff::none(), ..ArmOptions::default() },
        );
        let vms = arm
            .list_vms(&a.subscriptionid, &a.resourcegroup)
            .await
            .map_err(|e| DemoError::Arm(e.to_string()))?;
        lines.push(format!("successfully doARMOperations vm count {}", vms.len()));
        let metadata = self.instance_metadata().await?;
        lines.push(format!("successfully made GET on instance metadata, {metadata}"));
        Ok(lines)
    }

    /// `GET /metadata/instance` with `Metadata: true`; a short summary of the answer.
    async fn instance_metadata(&self) -> Result<String, DemoError> {
        let mut url = self.args.imds_endpoint.clone();
        url.set_path("/metadata/instance");
        url.set_query(Some(&format!("api-version={INSTANCE_API_VERSION}")));
        let fail = |e: &dyn std::fmt::Display| DemoError::Metadata(e.to_string());
        let response = self.plain.get(url).header("Metadata", "true").send().await.map_err(|e| fail(&e))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| fail(&e))?;
        if !status.is_success() {
            return Err(DemoError::Metadata(format!("{status}: {}", shorten(&body, 200))));
        }
        Ok(shorten(&body, 160))
    }
}

/// `text` on one line, cut to `max` characters.
fn shorten(text: &str, max: usize) -> String {
    let one_line: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut cut: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Args {
        let base = ["podid-demo", "--subscriptionid", "s", "--clientid", "c", "--resourcegroup", "rg"];
        Args::try_parse_from(base.iter().chain(extra)).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn defaults_point_at_azure_and_run_forever() {
        let a = parse(&[]);
        assert_eq!(a.imds_endpoint.as_str(), "http://169.254.169.254/");
        assert_eq!(a.arm_endpoint.as_str(), "https://management.azure.com/");
        assert_eq!(a.rounds(), None);
    }

    #[test]
    fn once_means_one_round_and_excludes_count() {
        assert_eq!(parse(&["--once"]).rounds(), Some(1));
        assert_eq!(parse(&["--count", "3"]).rounds(), Some(3));
        let both = [
            "podid-demo",
            "--subscriptionid",
            "s",
            "--clientid",
            "c",
            "--resourcegroup",
            "r",
            "--once",
            "--count",
            "2",
        ];
        assert!(Args::try_parse_from(both).is_err());
    }

    #[test]
    fn msi_endpoint_is_the_token_path_of_the_imds_endpoint() {
        let demo = Demo::new(parse(&["--imds-endpoint", "http://127.0.0.1:9/x?y=1"]))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(demo.msi_endpoint(), "http://127.0.0.1:9/metadata/identity/oauth2/token");
    }

    #[test]
    fn long_bodies_are_cut_to_one_line() {
        assert_eq!(shorten("a\nb", 10), "a b");
        assert_eq!(shorten("abcdef", 3), "abc…");
    }
}
