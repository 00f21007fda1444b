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
use podid_testkit::{KUBECONFIG_ENV, TestCluster};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
