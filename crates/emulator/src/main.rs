//! `podid-emulator`: runs the Azure emulator until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use podid_emulator::{Emulator, EmulatorConfig};

/// An Azure emulator (Entra ID, ARM, per-node IMDS) on 127.0.0.1 for podid's local runs and tests.
#[derive(Debug, Parser)]
#[command(name = "podid-emulator", version)]
struct Args {
    /// World description (YAML or JSON). Without it, the built-in default world is used.
    #[arg(long, env = "PODID_EMULATOR_CONFIG")]
    config: Option<PathBuf>,
    /// Where the CA, signing key and generated client certificates are kept (a temporary directory,
    /// removed at exit, when absent).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Once every listener is up, write the endpoints, ids and credentials there as JSON.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Print the built-in default configuration as YAML and exit.
    #[arg(long)]
    print_default_config: bool,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "PODID_LOG", default_value = "podid_emulator=info,warn")]
    log: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args { config, state_dir, ready_file, print_default_config, log } = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&log).context("invalid --log filter")?)
        .with_writer(std::io::stderr)
        .init();
    if print_default_config {
        print!("{}", serde_saphyr::to_string(&EmulatorConfig::default()).context("serialising the default")?);
        return Ok(());
    }
    let config = match &config {
        Some(path) => EmulatorConfig::from_file(path)?,
        None => EmulatorConfig::default(),
    };
    let emulator = match &state_dir {
        Some(dir) => Emulator::start_in(config, dir).await?,
        None => Emulator::start(config).await?,
    };
    if let Some(path) = &ready_file {
        let json = serde_json::to_string_pretty(&emulator.info())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
    emulator.shutdown().await;
    if let Some(path) = &ready_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
