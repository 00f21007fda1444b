//! The suite: which benchmark commands `make bench` runs, with which sizes, and running them
//! while echoing their output and collecting their `BENCH-JSON` records.
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::machine::load_average;
use crate::record::{Record, parse_line};
use crate::report::Step;

/// One command of the suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub env: Vec<(String, String)>,
    pub program: String,
    pub args: Vec<String>,
}

impl Planned {
    fn cargo(env: &[(&str, String)], args: &[&str]) -> Self {
        Self {
            env: env.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect(),
            program: "cargo".into(),
            args: args.iter().map(|a| (*a).to_string()).collect(),
        }
    }

    /// The command as a shell line, environment first.
    pub fn display(&self) -> String {
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut parts = env;
        parts.push(self.program.clone());
        parts.extend(self.args.iter().cloned());
        parts.join(" ")
    }
}

/// Sizes of the suite.
#[derive(Debug, Clone, PartialEq)]
pub struct Sizes {
    pub imds_secs: &'static str,
    pub secs_per_row: &'static str,
    pub conns: &'static str,
    pub cluster_pods: usize,
    /// Pod counts of the convergence curve; the last run also measures assignment latency.
    pub convergence_pods: Vec<usize>,
    pub nodes: usize,
    pub scale_sets: usize,
    pub latencies_ms: &'static str,
    pub samples: usize,
    pub idle_secs: usize,
}

impl Sizes {
    pub fn full() -> Self {
        Self {
            imds_secs: "3",
            secs_per_row: "3",
            conns: "1,4,16,64",
            cluster_pods: 10_000,
            convergence_pods: vec![250, 500, 1000, 2000],
            nodes: 50,
            scale_sets: 5,
            latencies_ms: "0,250,1000",
            samples: 3,
            idle_secs: 5,
        }
    }

    pub fn quick() -> Self {
        Self {
            imds_secs: "1",
            secs_per_row: "0.5",
            conns: "1,8",
            cluster_pods: 300,
            convergence_pods: vec![60, 120],
            nodes: 6,
            scale_sets: 2,
            latencies_ms: "0",
            samples: 2,
            idle_secs: 1,
        }
    }
}

/// The suite's commands for `sizes`, given the workspace root (optional benches are included
/// only when their files exist).
pub fn plan(sizes: &Sizes, root: &Path) -> Vec<Planned> {
    let mut steps = vec![
        Planned::cargo(&[], &["bench", "-p", "podid-emulator", "--bench", "imds", "--", sizes.imds_secs]),
        Planned::cargo(
            &[("PODID_BENCH_SECS", sizes.secs_per_row.into()), ("PODID_BENCH_CONNS", sizes.conns.into())],
            &["bench", "-p", "podid-nmi", "--bench", "token_path"],
        ),
        Planned::cargo(
            &[("PODID_BENCH_CLUSTER_PODS", sizes.cluster_pods.to_string())],
            &["bench", "-p", "podid-nmi", "--bench", "agent_scale"],
        ),
    ];
    let last = sizes.convergence_pods.len().saturating_sub(1);
    for (i, &pods) in sizes.convergence_pods.iter().enumerate() {
        let latencies = if i == last { sizes.latencies_ms } else { "" };
        steps.push(Planned::cargo(
            &[
                ("PODID_BENCH_PODS", pods.to_string()),
                ("PODID_BENCH_IDENTITIES", (pods / 10).max(1).to_string()),
                ("PODID_BENCH_NODES", sizes.nodes.to_string()),
                ("PODID_BENCH_SCALE_SETS", sizes.scale_sets.to_string()),
                ("PODID_BENCH_LATENCIES_MS", latencies.into()),
                ("PODID_BENCH_SAMPLES", sizes.samples.to_string()),
                ("PODID_BENCH_IDLE_SECS", sizes.idle_secs.to_string()),
            ],
            &["bench", "-p", "podid-mic", "--bench", "convergence"],
        ));
    }
    steps.push(Planned::cargo(&[], &["bench", "-p", "podid-nmi", "--bench", "federated"]));
    // The sandbox runs `podid`, the test kit's forwarders and node init, and the images: build
    // them all, then time the walkthrough on real nodes (it prints one BENCH-JSON line per step).
    steps.push(Planned::cargo(&[], &["build", "-q", "--workspace", "--bins"]));
    let timings = root.join("target/bench/sandbox.json").display().to_string();
    steps.push(Planned::cargo(&[], &["run", "-q", "-p", "podid-sandbox", "--", "--timings-json", &timings]));
    steps
}

/// Runs `planned` in `root`, echoing its output to stderr and appending it to `log`; returns the
/// step and the records it printed.
pub fn execute(planned: &Planned, root: &Path, log: &mut impl std::io::Write) -> (Step, Vec<Record>) {
    let command = planned.display();
    tracing::info!(%command, "Running");
    let load_before = load_average();
    let started = Instant::now();
    let _ = writeln!(log, "$ {command}");
    let mut records = Vec::new();
    let child = Command::new(&planned.program)
        .args(&planned.args)
        .envs(planned.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn();
    let ok = match child {
        Err(error) => {
            tracing::error!(%command, %error, "Cannot start");
            false
        }
        Ok(mut child) => {
            if let Some(out) = child.stdout.take() {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    eprintln!("{line}");
                    let _ = writeln!(log, "{line}");
                    match parse_line(&line) {
                        Some(Ok(record)) => records.push(record),
                        Some(Err(error)) => tracing::warn!(%error, "Bad result line"),
                        None => {}
                    }
                }
            }
            child.wait().is_ok_and(|s| s.success())
        }
    };
    let step = Step {
        command,
        ok,
        seconds: started.elapsed().as_secs_f64(),
        load_before,
        load_after: load_average(),
    };
    (step, records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_measures_latency_only_on_its_largest_run() {
        let steps = plan(&Sizes::full(), Path::new("/nonexistent"));
        let conv: Vec<&Planned> =
            steps.iter().filter(|s| s.args.contains(&"convergence".to_string())).collect();
        assert_eq!(conv.len(), 4);
        let latencies =
            |p: &Planned| p.env.iter().find(|(k, _)| k == "PODID_BENCH_LATENCIES_MS").map(|(_, v)| v.clone());
        assert_eq!(latencies(conv[0]).as_deref(), Some(""));
        assert_eq!(latencies(conv[3]).as_deref(), Some("0,250,1000"));
        assert!(conv[3].display().starts_with("PODID_BENCH_PODS=2000 PODID_BENCH_IDENTITIES=200 "));
    }

    #[test]
    fn the_sandbox_is_timed_after_its_binaries_are_built_and_writes_its_timings_under_target() {
        let steps = plan(&Sizes::quick(), Path::new("/repo"));
        let at = |word: &str| steps.iter().position(|s| s.args.iter().any(|a| a == word));
        let (build, sandbox) = (at("build").unwrap(), at("podid-sandbox").unwrap());
        assert!(build < sandbox);
        assert!(steps[build].args.contains(&"--workspace".to_string()));
        assert!(steps[sandbox].args.contains(&"/repo/target/bench/sandbox.json".to_string()));
        assert!(at("federated").is_some());
    }
}
