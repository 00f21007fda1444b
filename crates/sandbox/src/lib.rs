//! `podid-sandbox` (`make sandbox`): the seed's AKS walkthrough on this machine, end to end, on
//! real Kubernetes nodes — and the world the end-to-end suite (`tests/`) runs in.
//!
//! ```text
//!  1 real nodes (test kit: kubelet, containerd, runc, CNI)    6 demo.yaml: kubectl apply, kubectl logs demo
//!  2 the Azure emulator behind them                            7 two identities, --binding-selector foo, the demo with the second
//!  3 podid install --apply (DaemonSet, Deployment, RBAC)       8 clean-up (demo, pod identities)
//!  4 identity and role (az, against the emulator)              9 podid uninstall --wait
//!  5 podid identity add                                       10 teardown: nothing left on the machine
//! ```
//!
//! Every step is what a user does, printed so it can be repeated by hand, and is verified before
//! the next starts; the exit status is 0 only if all were. With `--keep` the walkthrough stops
//! before its clean-up and everything keeps running until Ctrl-C. Not shipped: it links the
//! emulator and the test kit, which podid's own binaries never do.
#![forbid(unsafe_code)]

pub mod azure;
pub mod demo;
pub mod report;
pub mod shell;
pub mod walk;
pub mod world;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

/// Run the AKS pod-managed identity walkthrough on real Kubernetes nodes built on this machine.
#[derive(Debug, Clone, Parser)]
#[command(name = "podid-sandbox", version)]
pub struct Args {
    /// Operation mode of the walkthrough.
    #[arg(long, value_enum, default_value_t = Mode::Standard)]
    pub mode: Mode,
    /// Stop before the clean-up and keep everything running (with instructions) until Ctrl-C.
    #[arg(long)]
    pub keep: bool,
    /// Also write the time of each step to this file, as JSON.
    #[arg(long)]
    pub timings_json: Option<PathBuf>,
}

/// How podid runs on the cluster (`podid install --mode`): the workspace's one mode type.
pub use podid_core::Mode;

/// Runs the walkthrough; the exit status says whether every step was verified.
pub async fn run(args: &Args, out: &mut impl Write) -> Result<ExitCode> {
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let mode = args.mode.as_str();
    writeln!(
        out,
        "podid sandbox: the AKS walkthrough in {mode} mode, on real Kubernetes nodes built on this machine"
    )?;
    if let Err(e) = podid_testkit::real::check_prerequisites()
        .and_then(|()| podid_testkit::images::Catalog::load().map(drop))
    {
        writeln!(out, "\nsandbox cannot start: {e}")?;
        return Ok(ExitCode::FAILURE);
    }
    let mut report = report::Report::new(walk::step_count(args));
    let outcome = tokio::select! {
        r = walk::walk(args, &mut report, out) => r,
        _ = int.recv() => Err(anyhow::anyhow!("interrupted")),
        _ = term.recv() => Err(anyhow::anyhow!("terminated")),
    };
    let world = match outcome {
        Ok(world) => world,
        Err(e) => {
            report.failed();
            finish(&report, args, out)?;
            writeln!(out, "\nsandbox FAILED: {e:#}")?;
            return Ok(ExitCode::FAILURE);
        }
    };
    if args.keep {
        keep(&world, out)?;
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        writeln!(out, "stopping everything")?;
    }
    if !args.keep {
        report.begin(out, "teardown: nothing left on the machine")?;
    }
    let tag = world.cluster.tag().to_owned();
    drop(world);
    let left = podid_testkit::RealCluster::leftovers(&tag);
    if !args.keep {
        if left.is_empty() {
            report.note(out, "no process, mount, cgroup, network namespace or link of this run is left")?;
            report.done(out)?;
        } else {
            report.failed();
        }
    }
    finish(&report, args, out)?;
    if !left.is_empty() {
        writeln!(out, "\nsandbox FAILED: left behind: {left:#?}")?;
        return Ok(ExitCode::FAILURE);
    }
    writeln!(out, "\nsandbox: every step verified")?;
    Ok(ExitCode::SUCCESS)
}

fn finish(report: &report::Report, args: &Args, out: &mut impl Write) -> Result<()> {
    let mode = args.mode.as_str();
    report.summary(out, mode)?;
    for line in report.bench_lines(mode) {
        writeln!(out, "{line}")?;
    }
    if let Some(path) = &args.timings_json {
        report.write_json(path, mode)?;
    }
    Ok(())
}

/// What to type while `--keep` holds everything up.
fn keep(world: &world::World, out: &mut impl Write) -> Result<()> {
    writeln!(out, "\neverything keeps running until Ctrl-C. In another shell:")?;
    for (key, value) in world.user_env()? {
        writeln!(out, "  export {key}={value}")?;
    }
    let ns = walk::NAMESPACE;
    for line in [
        "kubectl get pods -A -o wide".to_owned(),
        format!("kubectl logs demo --namespace {ns}"),
        "podid identity list -A".to_owned(),
        format!("podid explain pod demo --namespace {ns}"),
        "kubectl --namespace kube-system logs ds/nmi".to_owned(),
    ] {
        writeln!(out, "  {line}")?;
    }
    for node in world.cluster.nodes() {
        writeln!(
            out,
            "  ip netns exec {} iptables -t nat -S    # node {}'s interception",
            node.netns,
            node.name()
        )?;
    }
    Ok(())
}
