//! The calling pod under `--verified-callers`: [`crate::verify`] asked once per connection, its
//! answer turned into a pod of the index or a refusal.
//!
//! ```text
//!  connection already verified ─▶ its pod
//!  socket on the node's network ─▶ process ─▶ cgroup ─▶ a hostNetwork pod of this node, or refused
//!  otherwise (a pod's network)  ─▶ live pods with the source address ─▶ the one whose network
//!                                   namespace holds the socket, or refused
//! ```
use std::sync::Arc;

use podid_core::PodKey;
use podid_core::agent::{Reason, Refusal, RefusalKind};

use super::serve::{Connection, VerifiedPod};
use crate::state::AgentState;
use crate::verify::{NodeCaller, Unverified, Verifier};

/// The pod behind `conn`, verified through the kernel; `candidates` names the pods the index
/// holds for the source address (waiting briefly for a just-started pod, as without verification).
pub(super) async fn verified_pod<F, Fut>(
    state: &AgentState,
    verifier: &Arc<Verifier>,
    conn: Option<Connection>,
    slot: Option<VerifiedPod>,
    candidates: F,
) -> Result<PodKey, Refusal>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Vec<PodKey>, Refusal>>,
{
    if let Some(pod) = slot.as_ref().and_then(|s| s.0.get()) {
        return Ok(pod.clone());
    }
    let Some(conn) = conn else {
        return Err(unverified("this request came on no socket the kernel could be asked about".into()));
    };
    let (peer, local) = (conn.peer, conn.local);
    let v = verifier.clone();
    let node = blocking(move || v.node_caller(peer, local)).await;
    let pod = match node {
        Err(e) => Err(refusal_for(state, &e)),
        Ok(Some(caller)) => node_network_pod(state, caller).await,
        Ok(None) => pod_network_pod(state, verifier, conn, candidates().await?).await,
    }?;
    if let Some(slot) = slot {
        let _ = slot.0.set(pod.clone());
    }
    Ok(pod)
}

/// A node-network caller: the hostNetwork pod its process belongs to, or a refusal.
async fn node_network_pod(state: &AgentState, caller: NodeCaller) -> Result<PodKey, Refusal> {
    let NodeCaller { pid, pod_uid, cgroup } = caller;
    let Some(uid) = pod_uid else {
        state.metrics.verification("node_process");
        return Err(Refusal::new(
            RefusalKind::Forbidden,
            Reason::NodeProcess,
            format!(
                "process {pid} (cgroup {cgroup}) on node {}'s network belongs to no pod and is not excepted: \
                 pod identity serves it no token. A node component that must reach IMDS is excepted with \
                 --node-caller-exception-cgroup={cgroup}",
                state.config.node
            ),
        ));
    };
    match wait_for_uid(state, &uid).await {
        Some(key) => {
            state.metrics.verification("node_network_pod");
            Ok(key)
        }
        None => {
            state.metrics.verification("no_process");
            Err(unverified(format!(
                "process {pid} on node {}'s network belongs to pod UID {uid}, which is no pod of this node",
                state.config.node
            )))
        }
    }
}

/// The pod with `uid` on this node, waiting briefly for the index to learn of it.
async fn wait_for_uid(state: &AgentState, uid: &str) -> Option<PodKey> {
    let with_uid = |idx: &crate::index::NodeIndex| {
        idx.pods().find(|p| idx.pod_uid(&p.key) == Some(uid)).map(|p| p.key.clone())
    };
    state.shared.wait_for(super::POD_WAIT, with_uid).await
}

/// A pod-network caller: the one candidate whose network namespace holds the calling socket.
async fn pod_network_pod(
    state: &AgentState,
    verifier: &Arc<Verifier>,
    conn: Connection,
    candidates: Vec<PodKey>,
) -> Result<PodKey, Refusal> {
    let mut first_error = None;
    for key in candidates {
        let Some(uid) = state.shared.read().pod_uid(&key).map(str::to_owned) else { continue };
        let v = verifier.clone();
        let (peer, local) = (conn.peer, conn.local);
        match blocking(move || v.pod_caller(&uid, peer, local)).await {
            Ok(_) => {
                state.metrics.verification("pod_network");
                return Ok(key);
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    let e = first_error.unwrap_or(Unverified::NoUid { ip: conn.peer.ip() });
    Err(refusal_for(state, &e))
}

fn refusal_for(state: &AgentState, e: &Unverified) -> Refusal {
    state.metrics.verification(match e {
        Unverified::NotInPod { .. } | Unverified::SharedSocket { .. } => "not_in_pod",
        Unverified::NoProcess { .. } | Unverified::NoHolder { .. } | Unverified::NoUid { .. } => "no_process",
        Unverified::Proc { .. } => "error",
    });
    unverified(format!("{e} (--verified-callers: the kernel must confirm the caller)"))
}

fn unverified(message: String) -> Refusal {
    Refusal::new(RefusalKind::Forbidden, Reason::UnverifiedCaller, message)
}

/// Runs a kernel lookup on a blocking thread.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Unverified> + Send + 'static,
) -> Result<T, Unverified> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(Unverified::Proc { root: "/proc".into(), message: e.to_string() }))
}

/// Whether `conn` comes from the node's own network (`--verified-callers` redirects it there):
/// such callers may use the forwarded metadata endpoints as they could before.
pub(super) async fn on_node_network(state: &AgentState, conn: Option<Connection>) -> bool {
    let (Some(verifier), Some(conn)) = (state.config.verified_callers.clone(), conn) else {
        return false;
    };
    blocking(move || verifier.node_socket(conn.peer, conn.local)).await.is_ok_and(|row| row.is_some())
}
