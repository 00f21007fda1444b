//! The one error type of the test kit.
//!
//! Tests mostly `?` or `unwrap()` these; the variants exist so that a failed start explains itself
//! (which binary is missing, what the process printed before it died) instead of timing out.
use std::path::PathBuf;

/// Why the test kit could not start, reach or drive a cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `kube-apiserver` is not where it is looked for.
    #[error(
        "no kube-apiserver binary at {}; build it once with `scripts/kubernetes.sh` \
         (or point PODID_KUBE_APISERVER at one)",
        path.display()
    )]
    ApiServerMissing {
        /// Where it was expected.
        path: PathBuf,
    },
    /// A binary of this workspace was not built.
    #[error(
        "no {name} binary in {searched:?}; build the workspace's binaries first (`cargo build --workspace --bins`) or set PODID_BIN_DIR"
    )]
    BinaryMissing {
        /// The binary.
        name: String,
        /// Where it was looked for.
        searched: Vec<PathBuf>,
    },
    /// `etcd` is not on `PATH`.
    #[error(
        "no etcd on PATH; install it with `scripts/kubernetes.sh` (as root) or `apt-get install etcd-server`"
    )]
    EtcdMissing,
    /// A child process could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program that failed.
        program: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A child process exited while the cluster was starting.
    #[error("{program} exited during start-up ({status}); last lines of its log:\n{log_tail}")]
    Exited {
        /// The program that exited.
        program: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// The end of its log, to see why.
        log_tail: String,
    },
    /// Something did not happen in time.
    #[error("timed out after {seconds}s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        seconds: u64,
    },
    /// Generating a key or certificate failed.
    #[error("cannot generate {what}: {message}")]
    Pki {
        /// The key or certificate.
        what: &'static str,
        /// The underlying error, rendered.
        message: String,
    },
    /// Reading or writing a file of the cluster's folder failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `PODID_TEST_KUBECONFIG` or a generated kubeconfig cannot be used.
    #[error("kubeconfig {}: {message}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A call to the API server failed.
    #[error("{action}: {source}")]
    Kube {
        /// What was being done.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },
    /// A command the test kit runs (ip, iptables, ctr, ...) failed.
    #[error("`{command}` failed: {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Something a real node needs is missing from this machine.
    #[error("cannot run real Kubernetes nodes here: {what}. {how}")]
    Prerequisite {
        /// What is missing.
        what: String,
        /// How to get it.
        how: String,
    },
    /// The API server answered something the test kit cannot use.
    #[error("unexpected answer from the API server: {0}")]
    Unexpected(String),
}

/// Shorthand used throughout the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches "what was being done" to a kube error.
pub(crate) trait KubeContext<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube { action: action(), source })
    }
}
