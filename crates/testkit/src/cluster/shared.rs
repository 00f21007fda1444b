//! The cluster tests share: one per test process, or one per `cargo nextest` run.
//!
//! `cargo test` runs all tests of a binary as threads of one process, so a `static` is enough.
//! `cargo nextest run` runs every test as its own process; starting a cluster in each would cost
//! seconds per test. There, the first test process of the run (`NEXTEST_RUN_ID`) starts the
//! cluster under a lock, leaves its kubeconfig path in a marker file, and the others attach:
//!
//! ```text
//!   $TMPDIR/podid-testkit-run-<run id>/
//!     lock              flock: one starter, the others wait for it
//!     kubeconfig-path   written once the cluster is ready
//!     podid-cluster-*/  the cluster (watchdog: until the runner process exits)
//!     podid-attached-*/ scratch folders of the attached processes
//! ```
use std::path::{Path, PathBuf};

use tokio::sync::OnceCell;

use super::{TestCluster, file_safe, local, scratch_dir};
use crate::{Error, Result};

/// Names an existing cluster's kubeconfig; when set, [`TestCluster::shared`] uses that cluster.
pub const KUBECONFIG_ENV: &str = "PODID_TEST_KUBECONFIG";
/// Set by `cargo nextest` in every test process, the same for all processes of one run.
const NEXTEST_RUN_ENV: &str = "NEXTEST_RUN_ID";

static SHARED: OnceCell<TestCluster> = OnceCell::const_new();

impl TestCluster {
    /// The cluster tests share, started on first use: one per test binary under `cargo test`,
    /// one per run under `cargo nextest run`, or the one `PODID_TEST_KUBECONFIG` names.
    ///
    /// It is never dropped: a watchdog stops it when the test process (under nextest: the
    /// nextest runner) ends. Give each test its own [`namespace`](Self::namespace).
    pub async fn shared() -> Result<&'static TestCluster> {
        SHARED
            .get_or_try_init(|| async {
                if let Some(path) = std::env::var_os(KUBECONFIG_ENV) {
                    return TestCluster::connect(path).await;
                }
                match std::env::var(NEXTEST_RUN_ENV) {
                    Ok(run) => run_wide(&run).await,
                    Err(_) => TestCluster::start().await,
                }
            })
            .await
    }
}

async fn run_wide(run: &str) -> Result<TestCluster> {
    let run_dir = std::env::temp_dir().join(format!("podid-testkit-run-{}", file_safe(run)));
    std::fs::create_dir_all(&run_dir).map_err(io("create", &run_dir))?;
    let lock_path = run_dir.join("lock");
    let lock = std::fs::File::create(&lock_path).map_err(io("create", &lock_path))?;
    // Blocks this thread while another test process starts the cluster; it has nothing else to do.
    lock.lock().map_err(io("lock", &lock_path))?;
    let marker = run_dir.join("kubeconfig-path");
    if let Ok(kubeconfig) = std::fs::read_to_string(&marker) {
        let scratch = scratch_dir("podid-attached-", &run_dir)?;
        return TestCluster::attach(Path::new(kubeconfig.trim()), scratch, true).await;
    }
    let runner = std::os::unix::process::parent_id();
    tracing::info!(run, runner, "Starting the cluster for this nextest run");
    let cleanup = local::Cleanup { remove: run_dir.clone(), outlive: Some(runner) };
    let config = local::ApiConfig::default();
    let cluster = TestCluster::launch(scratch_dir("podid-cluster-", &run_dir)?, &cleanup, &config).await?;
    let path = cluster.kubeconfig_path().display().to_string();
    std::fs::write(&marker, path).map_err(io("write", &marker))?;
    Ok(cluster)
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path: PathBuf = path.to_owned();
    move |source| Error::Io { action, path, source }
}
