//! Everything a command can fail with. Each message is one line saying what is wrong and what to
//! do about it; `main` prints it and exits non-zero.
use podid_api::names::InvalidName;
use podid_api::resource_id::InvalidResourceId;

/// A failed command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An object name that Kubernetes would refuse.
    #[error("invalid {what}: {source}")]
    InvalidName { what: &'static str, source: InvalidName },
    /// A malformed identity resource id.
    #[error("{0}")]
    InvalidResourceId(#[from] InvalidResourceId),
    /// A malformed argument.
    #[error("{0}")]
    Usage(String),
    /// The namespace does not exist.
    #[error("namespace {0:?} does not exist: create it first (kubectl create namespace {0})")]
    NoNamespace(String),
    /// The object to change does not exist.
    #[error("{kind} {namespace}/{name} does not exist{hint}")]
    NotFound { kind: &'static str, namespace: String, name: String, hint: &'static str },
    /// An object of that name exists and differs.
    #[error("{0}")]
    Conflict(String),
    /// The cluster-wide limit is reached.
    #[error(
        "the cluster already has {count} {what} (limit {limit}, as the AKS add-on allows): delete unused ones or \
         raise the limit with {flag}"
    )]
    Limit { count: usize, limit: usize, what: &'static str, flag: &'static str },
    /// ARM settings or calls.
    #[error("{0}")]
    Azure(String),
    /// The Kubernetes API refused or failed.
    #[error("{action}: {source}")]
    Kube { action: String, source: kube::Error },
    /// Writing output.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising output.
    #[error("serialising output: {0}")]
    Serialize(String),
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a kube error.
pub(crate) trait KubeContext<T> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KubeContext<T> for Result<T, kube::Error> {
    fn doing(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Kube { action: action(), source })
    }
}

/// Whether `e` is the API server's 404.
pub(crate) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether `e` is the API server's 403.
pub(crate) fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}
