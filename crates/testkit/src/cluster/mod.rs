//! [`TestCluster`]: a real Kubernetes API for tests.
//!
//! ```text
//!   TestCluster::start()   etcd + kube-apiserver on loopback, CRDs installed (5-8 s on 2 cores)
//!   TestCluster::shared()  one per test binary, or per nextest run; PODID_TEST_KUBECONFIG wins
//!   TestCluster::connect() an existing cluster: only namespaces are ever created
//!
//!   cluster.namespace("nmi-lookup")   a fresh namespace per test keeps tests independent
//!   cluster.client() / client_as(user, groups) / service_account_client(ns, sa)
//!   cluster.restart_apiserver() / compact_etcd()   fault tests, on a cluster of their own
//! ```
//!
//! Other identities are made by impersonation (the admin sends `Impersonate-User` and
//! `Impersonate-Group`), so any user with any groups can be made at any time, on a local or an
//! external cluster alike, and RBAC decides for that identity exactly as for a real one.
//! Service accounts get real tokens from the TokenRequest API instead.
mod bootstrap;
pub(crate) mod local;
mod restart;
mod shared;

use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::config::Kubeconfig;
use kube::{Api, Client};
use tempfile::TempDir;

use crate::error::KubeContext;
use crate::process::Processes;
use crate::{Binaries, Error, Result, kubeconfig};

pub use shared::KUBECONFIG_ENV;

/// A Kubernetes API server for tests: started here, or an existing one.
///
/// Dropping a started cluster kills its processes and removes its folder; if the test process
/// dies first (or the cluster is [`shared`](Self::shared) and thus never dropped), a watchdog
/// process does the same.
#[derive(Debug)]
pub struct TestCluster {
    // Field order is drop order: processes stop before their folder is removed.
    /// The children (if any) and the watchdog; killed on drop. Locked only briefly (never
    /// across an await), to stop and start the API server.
    processes: std::sync::Mutex<Processes>,
    /// Scratch folder; for a cluster started by this process, also the cluster's folder.
    dir: TempDir,
    local: bool,
    kubeconfig_path: PathBuf,
    admin: Kubeconfig,
    server_url: String,
    ca_pem: Option<String>,
    issuer: String,
    /// etcd's client URL, for a cluster the test kit started.
    etcd_url: Option<String>,
    /// The CA of a cluster the test kit started (real nodes get certificates from it).
    ca: Option<crate::pki::Ca>,
}

impl TestCluster {
    /// Starts etcd and kube-apiserver on free loopback ports, installs podid's CRDs and waits
    /// until they are Established. Always starts a new cluster (see [`shared`](Self::shared)).
    pub async fn start() -> Result<Self> {
        let dir = scratch_dir("podid-cluster-", &std::env::temp_dir())?;
        let cleanup = local::Cleanup { remove: dir.path().to_owned(), outlive: None };
        Self::launch(dir, &cleanup, &local::ApiConfig::default()).await
    }

    /// Uses the cluster of an existing kubeconfig (its current context, which should be an
    /// admin). Nothing is installed: the CRDs must be there already. Only namespaces are created.
    pub async fn connect(kubeconfig_path: impl AsRef<Path>) -> Result<Self> {
        let scratch = scratch_dir("podid-external-", &std::env::temp_dir())?;
        Self::attach(kubeconfig_path.as_ref(), scratch, false).await
    }

    pub(crate) async fn launch(
        dir: TempDir,
        cleanup: &local::Cleanup,
        config: &local::ApiConfig,
    ) -> Result<Self> {
        let began = std::time::Instant::now();
        let binaries = Binaries::locate()?;
        let started = local::start(&binaries, dir.path(), cleanup, config).await?;
        tracing::debug!(elapsed_ms = began.elapsed().as_millis() as u64, "API server ready");
        let kubeconfig_path = dir.path().join("kubeconfig");
        kubeconfig::write(&started.admin, &kubeconfig_path)?;
        let client = kubeconfig::client(started.admin.clone())?;
        bootstrap::allow_issuer_discovery(&client).await?;
        if !config.real_nodes {
            // A cluster of real nodes is set up as users do: `podid install` brings the CRDs.
            bootstrap::install_crds(&client, local::START_TIMEOUT).await?;
        }
        tracing::info!(
            server = %started.server_url,
            kubeconfig = %kubeconfig_path.display(),
            elapsed_ms = began.elapsed().as_millis() as u64,
            "Test cluster ready"
        );
        Ok(Self {
            issuer: started.server_url.clone(),
            processes: std::sync::Mutex::new(started.processes),
            etcd_url: Some(started.etcd_url),
            ca: Some(started.ca),
            dir,
            local: true,
            kubeconfig_path,
            admin: started.admin,
            server_url: started.server_url,
            ca_pem: Some(started.ca_pem),
        })
    }

    /// Uses the cluster `kubeconfig_path` names; `local` if the test kit started it.
    async fn attach(kubeconfig_path: &Path, scratch: TempDir, local: bool) -> Result<Self> {
        let admin = kubeconfig::read(kubeconfig_path)?;
        let server_url =
            kubeconfig::current_cluster(&admin).and_then(|c| c.server.clone()).unwrap_or_default();
        let issuer = bootstrap::discover_issuer(&kubeconfig::client(admin.clone())?).await?;
        tracing::info!(server = %server_url, kubeconfig = %kubeconfig_path.display(), "Using an existing cluster");
        Ok(Self {
            // No children: the watchdog only removes the scratch folder if this process dies.
            processes: std::sync::Mutex::new(Processes::new(scratch.path(), None)?),
            etcd_url: None,
            ca: None,
            dir: scratch,
            local,
            ca_pem: kubeconfig::ca_pem(&admin),
            kubeconfig_path: kubeconfig_path.to_owned(),
            admin,
            server_url,
            issuer,
        })
    }

    /// A cluster-admin client (group `system:masters`).
    ///
    /// Call it inside the Tokio runtime that will use the client (each `#[tokio::test]` has its
    /// own); it is cheap.
    pub fn client(&self) -> Result<Client> {
        kubeconfig::client(self.admin.clone())
    }

    /// A client for user `user` in `groups` (plus `system:authenticated`), limited by RBAC.
    pub fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client> {
        kubeconfig::client(self.user_kubeconfig(user, groups))
    }

    /// Writes a kubeconfig for `user` in `groups` (e.g. for a MIC or NMI process) and returns
    /// its path, inside this cluster's scratch folder.
    pub fn kubeconfig_as(&self, user: &str, groups: &[&str]) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("kubeconfig-user-{}", file_safe(user)));
        kubeconfig::write(&self.user_kubeconfig(user, groups), &path)?;
        Ok(path)
    }

    /// A client without credentials (user `system:anonymous`).
    pub fn anonymous_client(&self) -> Result<Client> {
        kubeconfig::client(kubeconfig::derive(&self.admin, |auth| *auth = Default::default()))
    }

    /// A client authenticated as service account `namespace/name` by a real token from the
    /// TokenRequest API (valid one hour). Creates the service account if it is missing.
    pub async fn service_account_client(&self, namespace: &str, name: &str) -> Result<Client> {
        kubeconfig::client(self.service_account_config(namespace, name).await?)
    }

    /// Like [`service_account_client`](Self::service_account_client), written as a kubeconfig file.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let path =
            self.dir.path().join(format!("kubeconfig-sa-{}-{}", file_safe(namespace), file_safe(name)));
        kubeconfig::write(&self.service_account_config(namespace, name).await?, &path)?;
        Ok(path)
    }

    /// Creates a fresh namespace named `<prefix>-<random>` and returns its name.
    ///
    /// The prefix is made a valid name (lower case, `-` for anything else, at most 40 characters),
    /// so a test can pass its own function name. Namespaces are not deleted (deletion needs a
    /// controller-manager); the cluster's end removes them.
    pub async fn namespace(&self, prefix: &str) -> Result<String> {
        let namespace = Namespace {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}-", dns_label(prefix))),
                ..Default::default()
            },
            ..Default::default()
        };
        let created = Api::<Namespace>::all(self.client()?)
            .create(&PostParams::default(), &namespace)
            .await
            .context(|| format!("create a namespace for {prefix}"))?;
        created.metadata.name.ok_or_else(|| Error::Unexpected("created namespace has no name".into()))
    }

    /// The admin kubeconfig file (for `kubectl --kubeconfig`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// The API server's URL, e.g. `https://127.0.0.1:41234`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// The CA that signed the API server's certificate, PEM (if the kubeconfig has one).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The service-account token issuer; for a started cluster, [`server_url`](Self::server_url),
    /// which serves `/.well-known/openid-configuration` and `/openid/v1/jwks` anonymously.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Whether the test kit started this cluster (false for [`connect`](Self::connect) and
    /// `PODID_TEST_KUBECONFIG`).
    pub fn is_local(&self) -> bool {
        self.local
    }

    /// A scratch folder that lives as long as the cluster (logs of a started cluster are here).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA of a cluster the test kit started.
    pub(crate) fn ca(&self) -> Option<&crate::pki::Ca> {
        self.ca.as_ref()
    }

    fn user_kubeconfig(&self, user: &str, groups: &[&str]) -> Kubeconfig {
        kubeconfig::derive(&self.admin, |auth| {
            auth.impersonate = Some(user.to_owned());
            auth.impersonate_groups = Some(groups.iter().map(|g| (*g).to_owned()).collect());
        })
    }

    async fn service_account_config(&self, namespace: &str, name: &str) -> Result<Kubeconfig> {
        let api = Api::<ServiceAccount>::namespaced(self.client()?, namespace);
        ensure_service_account(&api, name).await?;
        let request = TokenRequest {
            spec: Some(TokenRequestSpec { expiration_seconds: Some(3600), ..Default::default() }),
            ..Default::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .context(|| format!("request a token for service account {namespace}/{name}"))?;
        let token = answer.status.and_then(|s| s.token).ok_or_else(|| {
            Error::Unexpected(format!("TokenRequest for {namespace}/{name} returned no token"))
        })?;
        Ok(kubeconfig::derive(&self.admin, |auth| *auth = kubeconfig::token(&token)))
    }
}

/// Creates service account `name` in the API's namespace unless it exists.
pub(crate) async fn ensure_service_account(api: &Api<ServiceAccount>, name: &str) -> Result<()> {
    let account = ServiceAccount {
        metadata: ObjectMeta { name: Some(name.to_owned()), ..Default::default() },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(e) => Err(e).context(|| format!("create service account {name}")),
    }
}

fn scratch_dir(prefix: &str, parent: &Path) -> Result<TempDir> {
    tempfile::Builder::new().prefix(prefix).tempdir_in(parent).map_err(|source| Error::Io {
        action: "create a folder in",
        path: parent.to_owned(),
        source,
    })
}

/// `prefix` as the start of an RFC 1123 label.
fn dns_label(prefix: &str) -> String {
    let label: String = prefix
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .take(40)
        .collect();
    let label = label.trim_matches('-');
    if label.is_empty() { "test".into() } else { label.to_owned() }
}

pub(crate) fn file_safe(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_become_valid_labels() {
        assert_eq!(dns_label("pods::field_selector"), "pods--field-selector");
        assert_eq!(dns_label("_Lease_"), "lease");
        assert_eq!(dns_label("::"), "test");
        assert_eq!(dns_label(&"x".repeat(99)).len(), 40);
    }
}
