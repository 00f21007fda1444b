//! `podid-cluster`: starts a test cluster (etcd + kube-apiserver with podid's CRDs) and keeps it
//! until Ctrl-C or SIGTERM.
//!
//! ```text
//! $ podid-cluster
//! export PODID_TEST_KUBECONFIG=/tmp/podid-cluster-Ab12Cd/kubeconfig
//! # server https://127.0.0.1:41234; kubectl --kubeconfig /tmp/podid-cluster-Ab12Cd/kubeconfig get crd
//! ```
//!
//! The first line on stdout is a shell `export` for other test runs to share this cluster.
use anyhow::Context as _;
use clap::Parser;
use podid_testkit::{KUBECONFIG_ENV, TestCluster};
use tokio::signal::unix::{SignalKind, signal};

/// Start a local test cluster (etcd and kube-apiserver on free loopback ports, podid's CRDs
/// installed) and keep it until Ctrl-C or SIGTERM.
///
/// The first line printed is `export PODID_TEST_KUBECONFIG=<file>`: evaluate it in another shell
/// and test runs there share this cluster instead of starting their own. The second line names the
/// server and a kubectl command to try.
///
/// kube-apiserver comes from $PODID_KUBE_APISERVER, else $PODID_CACHE/bin/kube-apiserver (default
/// cache ~/.cache/podid; built once by scripts/kube-apiserver.sh); etcd from PATH. Logs go to
/// stderr (RUST_LOG, default podid=info,warn).
#[derive(Debug, Parser)]
#[command(name = "podid-cluster", version)]
struct Args {}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Args {} = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("podid=info,warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    // Handlers first: a signal during start-up must stop the start, not be lost.
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut stop = Box::pin(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    });

    let cluster = tokio::select! {
        cluster = TestCluster::start() => cluster.context("starting the test cluster")?,
        () = &mut stop => {
            tracing::info!("Interrupted while starting");
            return Ok(());
        }
    };
    let kubeconfig = cluster.kubeconfig_path().display();
    println!("export {KUBECONFIG_ENV}={kubeconfig}");
    println!("# server {}; kubectl --kubeconfig {kubeconfig} get crd", cluster.server_url());

    stop.await;
    tracing::info!("Stopping the test cluster");
    drop(cluster);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    use super::*;

    #[test]
    fn help_and_version_are_answered_without_starting_anything() {
        Args::command().debug_assert();
        let err = Args::try_parse_from(["podid-cluster", "-h"]).expect_err("help is not a run");
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        assert!(err.to_string().starts_with("Start a local test cluster"), "{err}");
        let err = Args::try_parse_from(["podid-cluster", "--help"]).expect_err("help is not a run");
        assert!(err.to_string().contains("export PODID_TEST_KUBECONFIG=<file>"), "{err}");
        let err = Args::try_parse_from(["podid-cluster", "--version"]).expect_err("version is not a run");
        assert_eq!(err.kind(), ErrorKind::DisplayVersion);
    }

    #[test]
    fn unknown_arguments_are_refused() {
        let err = Args::try_parse_from(["podid-cluster", "--nodes", "2"]).expect_err("no such flag");
        assert_eq!(err.kind(), ErrorKind::UnknownArgument);
    }
}
