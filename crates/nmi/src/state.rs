//! Shared agent state: the node index with its change signal, the token cache, settings.
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::watch;

use crate::cache::TokenCache;
use crate::index::NodeIndex;
use crate::metrics::Metrics;

/// How the agent finds identities: the workspace's one [`podid_core::Mode`].
pub use podid_core::Mode;

/// Settings the request path depends on.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub node: String,
    pub force_namespaced: bool,
    pub mic_namespace: String,
    pub metadata_header_required: bool,
    pub block_instance_metadata: bool,
    pub set_retry_after_header: bool,
    /// Standard mode: how long to wait for an assigned identity to appear.
    pub wait_created: Duration,
    /// Standard mode: how long to wait for an existing one to become `Assigned`.
    pub wait_assigned: Duration,
    /// Entra ID authority for service principals whose identity names none, and for federation.
    pub default_authority: String,
    /// Tenant of federated identities whose `tenantID` is empty.
    pub tenant_id: String,
    /// Serve `/host/token` to root processes of the node (off unless enabled).
    pub host_token: bool,
    /// Answer "no identity for this pod" as real IMDS answers an unknown identity (400 with
    /// IMDS's JSON error, which SDKs do not retry) instead of upstream's 404 (which SDKs retry for
    /// up to a minute or more).
    pub not_found_as_bad_request: bool,
    /// `--release-terminating-pods`: no tokens for a pod once it is deleted (by default it keeps
    /// its identities until its containers have stopped).
    pub release_terminating: bool,
    /// `--verified-callers`: the kernel confirms which pod each connection comes from (see
    /// [`crate::verify`]); `None`: the source address alone names the pod, as upstream.
    pub verified_callers: Option<std::sync::Arc<crate::verify::Verifier>>,
}

impl Config {
    /// The flags' defaults for a node: upstream's waits (16 + 4 checks, 5 s apart), "not found"
    /// answered as IMDS does (400).
    pub fn new(node: impl Into<String>, mode: Mode) -> Self {
        Self {
            mode,
            node: node.into(),
            force_namespaced: mode == Mode::Managed,
            mic_namespace: "default".into(),
            metadata_header_required: true,
            block_instance_metadata: false,
            set_retry_after_header: false,
            wait_created: Duration::from_secs(80),
            wait_assigned: Duration::from_secs(100),
            default_authority: "https://login.microsoftonline.com/".into(),
            tenant_id: String::new(),
            host_token: false,
            not_found_as_bad_request: true,
            release_terminating: false,
            verified_callers: None,
        }
    }

    /// What the decision needs of these settings.
    pub fn settings(&self) -> podid_core::decision::Settings<'_> {
        podid_core::decision::Settings {
            mode: self.mode,
            force_namespaced: self.force_namespaced,
            mic_namespace: &self.mic_namespace,
            release_terminating: self.release_terminating,
            verified_callers: self.verified_callers.is_some(),
        }
    }
}

/// The node index and a signal that fires on every change of it.
#[derive(Debug)]
pub struct Shared {
    index: RwLock<NodeIndex>,
    changes: watch::Sender<u64>,
}

impl Default for Shared {
    fn default() -> Self {
        Self { index: RwLock::new(NodeIndex::default()), changes: watch::channel(0).0 }
    }
}

impl Shared {
    /// Changes the index and wakes everyone waiting for a change.
    pub fn update<R>(&self, f: impl FnOnce(&mut NodeIndex) -> R) -> R {
        let (r, generation) = {
            let mut idx = self.index.write();
            let r = f(&mut idx);
            (r, idx.generation())
        };
        self.changes.send_replace(generation);
        r
    }

    pub fn read(&self) -> RwLockReadGuard<'_, NodeIndex> {
        self.index.read()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Looks at the index until `look` finds something, again after every change, for at most
    /// `wait` (the watch lag of a just-started pod); `None` when the time is up.
    pub async fn wait_for<T>(
        &self,
        wait: Duration,
        mut look: impl FnMut(&NodeIndex) -> Option<T>,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut changes = self.subscribe();
        loop {
            changes.borrow_and_update();
            if let Some(found) = look(&self.read()) {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
        }
    }
}

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AgentState {
    pub shared: Arc<Shared>,
    pub cache: TokenCache,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub proxy: crate::http::proxy::Proxy,
    /// Reports IMDS refusing an `Assigned` identity to the controller (disabled by default).
    pub drift: crate::drift::Reporter,
}
