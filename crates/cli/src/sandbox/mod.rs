//! `podid sandbox`: the seed's AKS walkthrough on this machine, end to end, in one command.
//!
//! ```text
//!  1 kube-apiserver + etcd (test kit)     6 controller + one agent per node (real binaries)
//!  2 Azure emulator, nodes registered     7 the demo as a pod: three success lines
//!  3 podid install (the mode's objects)   8 second identity behind the same selector
//!  4 identity + Virtual Machine Contributor 9 the demo with each client id
//!  5 podid identity add                  10 clean-up: identities leave the scale set
//!                                        11 podid uninstall
//! ```
//!
//! Every step is verified before the next starts; the exit status is 0 only if all were. With
//! `--keep` the walkthrough stops before its clean-up and everything keeps running until Ctrl-C.
mod components;
mod keep;
mod net;
mod procs;
mod report;
mod state;
mod walk;
mod world;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use tokio::signal::unix::{SignalKind, signal};

pub use net::forward_main;

/// `podid sandbox`.
#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Operation mode of the walkthrough.
    #[arg(long, value_enum, default_value_t = crate::install::Mode::Standard)]
    pub mode: crate::install::Mode,
    /// Stop before the clean-up and keep everything running (with instructions) until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Also write the time of each step to this file, as JSON.
    #[arg(long)]
    pub timings_json: Option<PathBuf>,
    /// How pods reach their node's agent: network namespaces with the agent's own iptables
    /// interception (needs root), or loopback addresses; `auto` picks namespaces when root.
    #[arg(long, value_enum, default_value_t = Network::Auto)]
    pub network: Network,
}

/// How the demo pod reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    /// Namespaces when running as root, loopback otherwise.
    Auto,
    /// A network namespace per node and for the pod, with the agent's iptables interception.
    Netns,
    /// Agents on loopback addresses; the demo binds the pod's own loopback address.
    Loopback,
}

/// A step that could not be done or verified; one message saying what and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SandboxError(pub String);

impl SandboxError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

/// Runs the walkthrough; the exit status says whether every step was verified.
pub async fn run(args: &SandboxArgs, out: &mut impl Write) -> crate::Result<ExitCode> {
    let signals = |kind| signal(kind).map_err(|e| SandboxError::new(format!("cannot handle signals: {e}")));
    let (mut int, mut term) = (signals(SignalKind::interrupt())?, signals(SignalKind::terminate())?);
    let network = match args.network {
        Network::Auto if net::is_root() => Network::Netns,
        Network::Auto => Network::Loopback,
        chosen => chosen,
    };
    let mode = args.mode.as_str();
    let mut report = report::Report::new(walk::step_count(args));
    let mut world = state::World::new(args.mode, network)?;
    writeln!(out, "podid sandbox: the walkthrough in {mode} mode ({})", walk::network_text(network))?;
    let outcome = tokio::select! {
        r = walk::walk(&mut world, args, &mut report, out) => r,
        _ = int.recv() => Err(SandboxError::new("interrupted".into())),
        _ = term.recv() => Err(SandboxError::new("terminated".into())),
    };
    if outcome.is_err() {
        report.failed();
    }
    report.summary(out, mode)?;
    for line in report.bench_lines(mode) {
        writeln!(out, "{line}")?;
    }
    if let Some(path) = &args.timings_json {
        report.write_json(path, mode)?;
    }
    if let Err(e) = outcome {
        writeln!(out, "\nsandbox FAILED: {e}")?;
        writeln!(out, "logs of the controller, agents and demo: {}", world.dir().display())?;
        world.keep_logs();
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "\nsandbox: every step verified")?;
    if args.keep {
        keep::print(&world, out)?;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
            r = world.watch() => {
                if let Err(e) = r {
                    writeln!(out, "stopping: {e}")?;
                }
            }
        }
        writeln!(out, "stopping everything")?;
    }
    drop(world);
    Ok(ExitCode::SUCCESS)
}
