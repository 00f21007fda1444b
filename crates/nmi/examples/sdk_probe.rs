//! `sdk_probe`: asks the instance metadata service for a token through the real Rust Azure
//! SDK (`azure_identity::ManagedIdentityCredential`, whose IMDS address is hard-coded to
//! 169.254.169.254), as an application would. Tests run it inside a network namespace whose
//! iptables rules send that address to the podid agent. Never run it in the host's namespace.
//!
//! Prints `token <length> expires_on <epoch>` and exits 0, or prints the SDK's error and exits 1.
use std::process::ExitCode;

use azure_core::credentials::TokenCredential;
use azure_identity::{ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId};
use clap::Parser;

/// Get a managed-identity token with the Rust Azure SDK.
#[derive(Parser)]
struct Args {
    /// Select the identity by client id (default: the system-assigned / only identity).
    #[arg(long)]
    client_id: Option<String>,
    /// Select the identity by ARM resource id.
    #[arg(long)]
    resource_id: Option<String>,
    /// Scope to ask for.
    #[arg(long, default_value = "https://management.azure.com/.default")]
    scope: String,
    /// Fail on the first error instead of retrying like the SDK does by default (it retries
    /// 404/5xx for over a minute).
    #[arg(long)]
    no_retry: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The workspace builds reqwest without a default TLS provider; use ring, as podid's binaries do.
    podid_azure::install_crypto_provider();
    let user_assigned_id = match (args.client_id, args.resource_id) {
        (Some(c), _) => Some(UserAssignedId::ClientId(c)),
        (None, Some(r)) => Some(UserAssignedId::ResourceId(r)),
        (None, None) => None,
    };
    let mut options = ManagedIdentityCredentialOptions { user_assigned_id, ..Default::default() };
    if args.no_retry {
        options.client_options.retry = azure_core::http::RetryOptions::none();
    }
    let credential = match ManagedIdentityCredential::new(Some(options)) {
        Ok(c) => c,
        Err(e) => {
            println!("error {e}");
            return ExitCode::FAILURE;
        }
    };
    match credential.get_token(&[args.scope.as_str()], None).await {
        Ok(token) => {
            println!("token {} expires_on {}", token.token.secret().len(), token.expires_on.unix_timestamp());
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("error {e}");
            ExitCode::FAILURE
        }
    }
}
