//! Everything a command can fail with. Each message is one line saying what is wrong and what to
//! do about it; `main` prints it and exits non-zero.
use podid_api::guid::InvalidGuid;
use podid_api::labels::InvalidLabel;
use podid_api::names::InvalidName;
use podid_api::resource_id::{InexactResourceId, InvalidResourceId};

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
    /// An identity resource id that ARM could not have issued (query, lengths, subscription).
    #[error("{0}")]
    InexactResourceId(#[from] InexactResourceId),
    /// A label key or value no pod can carry.
    #[error("invalid {flag}: {source}{hint}")]
    InvalidLabel { flag: &'static str, source: InvalidLabel, hint: &'static str },
    /// An id that must be a GUID.
    #[error("invalid {0}")]
    InvalidGuid(#[from] InvalidGuid),
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
    /// The API server never answered: refused, timed out, TLS or proxy failure.
    #[error(
        "{action}: cannot reach the Kubernetes API server at {server}{via}: {cause} (connect timeout {timeout_secs} s, \
         --connect-timeout; check the server and --kubeconfig)"
    )]
    Unreachable { action: String, server: String, via: String, cause: String, timeout_secs: u64 },
    /// Writing output.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising output.
    #[error("serialising output: {0}")]
    Serialize(String),
}

/// The API server a client talks to, named in errors when it cannot be reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServer {
    /// The server URL from the kubeconfig (or in-cluster).
    pub url: String,
    /// How long a connection attempt may take (`--connect-timeout`).
    pub connect_timeout: std::time::Duration,
    /// The proxy the client goes through, if any (without credentials).
    pub proxy: Option<String>,
}

impl Error {
    /// Names the API server, the proxy and the connect timeout in an error that got no answer
    /// from the server (a plain `ServiceError: client error (Connect)` says neither).
    pub fn at_server(self, server: &ApiServer) -> Self {
        match self {
            Error::Kube { action, source } if is_unanswered(&source) => Error::Unreachable {
                action,
                server: server.url.clone(),
                via: server.proxy.as_ref().map(|p| format!(" through proxy {p}")).unwrap_or_default(),
                cause: root_cause(&source),
                timeout_secs: server.connect_timeout.as_secs(),
            },
            other => other,
        }
    }
}

/// Whether the request never got an HTTP answer from the server.
fn is_unanswered(e: &kube::Error) -> bool {
    matches!(e, kube::Error::HyperError(_) | kube::Error::Service(_))
}

/// The innermost cause of `e` (`Connection refused (os error 111)`, `deadline has elapsed`, …),
/// with "timed out" said plainly.
fn root_cause(e: &kube::Error) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.contains("deadline has elapsed") || text.to_ascii_lowercase().contains("timed out") {
        format!("no connection within the timeout ({text})")
    } else {
        text
    }
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
