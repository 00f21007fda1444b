//! `podid-forward`: the test kit's TCP forwarder (see `podid_testkit::forward`).
use std::process::ExitCode;

use clap::Parser;
use podid_testkit::forward::{self, Pair};

/// Forward TCP connections: each LISTEN=TARGET pair accepts on LISTEN and connects to TARGET.
/// Prints `ready` once every pair listens, then serves until killed.
#[derive(Debug, Parser)]
#[command(name = "podid-forward", version)]
struct Args {
    /// Pairs to serve from the start, as LISTEN=TARGET socket addresses.
    pairs: Vec<Pair>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match forward::main(args.pairs).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podid-forward: {e}");
            ExitCode::FAILURE
        }
    }
}
