//! What can go wrong while building images.
use std::path::PathBuf;

/// A failed build step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A layer cannot be written as asked.
    #[error("layer: {0}")]
    Layer(String),
    /// A program the build needs is not installed.
    #[error("{program} is not installed: {hint}")]
    Missing { program: String, hint: String },
    /// A program exited unsuccessfully.
    #[error("{command} failed ({status}); its output:\n{output}")]
    Command { command: String, status: String, output: String },
    /// The build needs root (mmdebstrap --mode=root, chroot).
    #[error("building root file systems needs root (mmdebstrap --mode=root and chroot); run as root")]
    NotRoot,
    /// A file the spec names is not there.
    #[error("{path}: {message}")]
    Input { path: PathBuf, message: String },
    /// A name on the command line is not in the catalog.
    #[error("no image called {0:?} (see `podid-images list`)")]
    UnknownImage(String),
    /// The Dockerfile cannot be read as expected.
    #[error("docker/Dockerfile line {line}: {message}")]
    Dockerfile { line: usize, message: String },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
