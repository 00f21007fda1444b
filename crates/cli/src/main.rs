//! `podid`: parses the command line, builds the Kubernetes client, runs the command, and prints a
//! failure as one line on stderr with exit code 1.
use std::process::ExitCode;

use clap::Parser;
use podid_cli::{Cli, kube_client, needs_client, run, run_offline};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match go(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn go(cli: Cli) -> anyhow::Result<ExitCode> {
    podid_azure::install_crypto_provider();
    if !needs_client(&cli) {
        let mut stdout = std::io::stdout().lock();
        return Ok(run_offline(cli, &mut stdout).await?);
    }
    let (client, server) = kube_client(&cli).await?;
    let mut stdout = std::io::stdout().lock();
    Ok(run(cli, client, &mut stdout).await.map_err(|e| e.at_server(&server))?)
}
