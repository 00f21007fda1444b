//! `podid-sandbox`: see the library documentation.
use std::process::ExitCode;

use clap::Parser;
use podid_sandbox::{Args, run};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("PODID_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let mut out = std::io::stdout();
    match run(&args, &mut out).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("podid-sandbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}
