//! A real Kubernetes for podid's tests: etcd and kube-apiserver v1.20 on loopback, and helpers
//! that play the parts of the kubelet and scheduler, which the test cluster does not run.
//!
//! ```no_run
//! # use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};
//! # async fn example() -> podid_testkit::Result<()> {
//! let cluster = TestCluster::shared().await?; // one per test binary (per run under nextest)
//! let ns = cluster.namespace("nmi_pod_lookup").await?; // a fresh namespace per test
//! let client = cluster.client()?; // admin; client_as(user, groups) for RBAC-limited users
//! let node = format!("{ns}-n1"); // nodes are cluster-wide: name them after the namespace
//! NodeBuilder::new(&node).vmss("sub", "rg", "vmss0", 0).create(&client).await?;
//! PodBuilder::new(&ns, "app").node(&node).ip("10.244.0.7".parse().unwrap()).create(&client).await?;
//! # Ok(())
//! # }
//! ```
//!
//! Binaries: `kube-apiserver` from `$PODID_KUBE_APISERVER` or `$PODID_CACHE/bin/` (built once by
//! `scripts/kubernetes.sh`), `etcd` from `PATH`. With `PODID_TEST_KUBECONFIG` set, shared
//! tests use that cluster and start nothing.
//!
//! Every address the test kit contacts or binds is on 127.0.0.1.
#![forbid(unsafe_code)]

mod binaries;
mod cluster;
mod error;
pub mod forward;
pub mod images;
mod kubeconfig;
pub mod kubelet;
mod logging;
mod pki;
mod process;
pub mod real;
mod wait;

pub use binaries::{APISERVER_ENV, BIN_DIR_ENV, Binaries, CACHE_ENV, cache_dir, workspace_bin};
pub use cluster::{KUBECONFIG_ENV, TestCluster};
pub use error::{Error, Result};
pub use kubelet::{NodeBuilder, PodBuilder};
pub use logging::init_tracing;
pub use real::{NodeSpec, RealCluster, RealNode};

/// Audience of the service-account tokens exchanged at Entra ID in federated mode.
pub const TOKEN_EXCHANGE_AUDIENCE: &str = "api://AzureADTokenExchange";
