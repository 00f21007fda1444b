//! Keeps the cache in step with the index: when an identity becomes servable on this node its
//! tokens are fetched ahead of the first request (for the resources it was asked for before), and
//! when no pod on this node may use it any more its tokens are dropped at once. A federated
//! source is a service account's use of an identity: dropped as soon as no pod of that service
//! account on this node is bound to the identity.
use std::collections::BTreeSet;

use podid_core::decision::servable;

use crate::http::source_for;
use crate::index::NodeIndex;
use crate::state::{AgentState, Config};
use crate::token::TokenSource;

/// Token sources some pod on this node may currently use: for every pod, every identity the
/// decision would serve it now ([`servable`]: the token path's own rules — exceptions, live pods,
/// validation, bindings, assignments — for every identity at once).
pub fn usable_sources(idx: &NodeIndex, config: &Config) -> BTreeSet<TokenSource> {
    let settings = config.settings();
    let mut out = BTreeSet::new();
    for pod in idx.pods().filter(|p| p.binding_selector().is_some()) {
        for served in servable(pod, idx, &settings) {
            out.extend(source_for(&served, config, pod, idx.pod_uid(&pod.key)).ok());
        }
    }
    out
}

/// Follows index changes until the process ends: prefetch new sources, evict gone ones.
pub async fn run(state: AgentState) {
    let mut changes = state.shared.subscribe();
    let mut previous: BTreeSet<TokenSource> = BTreeSet::new();
    loop {
        changes.borrow_and_update();
        let now = usable_sources(&state.shared.read(), &state.config);
        for gone in previous.difference(&now) {
            let n = state.cache.evict(gone);
            tracing::debug!(source = ?gone, evicted = n, "Identity no longer usable on this node");
        }
        for new in now.difference(&previous) {
            let n = state.cache.prefetch(new);
            tracing::debug!(source = ?new, prefetching = n, "Identity usable on this node");
        }
        state.metrics.cache_entries.set(state.cache.len() as i64);
        previous = now;
        if changes.changed().await.is_err() {
            return;
        }
    }
}
