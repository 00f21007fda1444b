//! `podid-demo`: prints upstream's demo lines every `--period` seconds (see the library docs).
//! Exits 1 when the last round (`--once`/`--count`) failed.
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
    let mut done = 0;
    loop {
        let ok = match demo.round().await {
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
        tokio::time::sleep(period).await;
    }
}
