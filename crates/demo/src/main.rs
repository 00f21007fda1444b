//! `podid-demo`: prints upstream's demo lines every `--period` seconds (see the library docs).
//! Exits 1 when the last round (`--once`/`--count`) failed. Ends at once on SIGTERM or Ctrl-C: as a
//! container's PID 1 it would otherwise be killed only after the pod's grace period (30 s).
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use podid_demo::{Args, Demo};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    let (rounds, period) = (args.rounds(), Duration::from_secs(args.period));
    let demo = match Demo::new(args) {
        Ok(demo) => demo,
        Err(e) => {
            println!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = stopped();
    tokio::pin!(stop);
    let mut done = 0;
    loop {
        let round = tokio::select! {
            r = demo.round() => r,
            () = &mut stop => return ExitCode::SUCCESS,
        };
        let ok = match round {
            Ok(lines) => {
                lines.iter().for_each(|line| println!("{line}"));
                true
            }
            Err(e) => {
                // One line per failure, whatever the cause's text holds.
                println!("{}", e.to_string().replace(['\n', '\r'], " "));
                false
            }
        };
        done += 1;
        if rounds.is_some_and(|n| done >= n) {
            return if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE };
        }
        tokio::select! {
            () = tokio::time::sleep(period) => {}
            () = &mut stop => return ExitCode::SUCCESS,
        }
    }
}

/// Resolves on SIGTERM (the kubelet stopping the container) or Ctrl-C.
async fn stopped() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        () = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
