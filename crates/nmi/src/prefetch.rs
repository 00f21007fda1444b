//! Keeps the cache in step with the index: when an identity becomes usable on this node its
//! tokens are fetched ahead of the first request (for the resources it was asked for before), and
//! when no pod on this node may use it any more its tokens are dropped at once. A federated
//! source is a service account's use of an identity: dropped as soon as no pod of that service
//! account on this node is bound to the identity.
use std::collections::BTreeSet;

use podid_core::{agent, federation};

use crate::http::source_for;
use crate::index::NodeIndex;
use crate::state::{AgentState, Config, Mode};
use crate::token::TokenSource;

/// Token sources some pod on this node may currently use.
pub fn usable_sources(idx: &NodeIndex, config: &Config) -> BTreeSet<TokenSource> {
    let opts =
        agent::Options { force_namespaced: config.force_namespaced, mic_namespace: &config.mic_namespace };
    let mut out = BTreeSet::new();
    match config.mode {
        Mode::Standard => {
            for aai in idx.all_assigned().filter(|a| a.state().is_usable()) {
                let Some(pod) =
                    idx.pod(&podid_core::PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone()))
                else {
                    continue;
                };
                if let agent::Outcome::Serve(identity) =
                    agent::decide_standard(pod, &agent::Request::default(), [aai], [], opts)
                {
                    out.extend(source_for(identity, config, pod, idx.pod_uid(&pod.key)).ok());
                }
            }
        }
        Mode::Managed => {
            let namespaces: BTreeSet<&str> = idx.pods().map(|p| p.key.namespace.as_str()).collect();
            for ns in namespaces {
                for pod in idx.pods().filter(|p| p.key.namespace == ns && p.binding_selector().is_some()) {
                    for binding in idx
                        .bindings_in(ns)
                        .filter(|b| Some(b.spec.selector.as_str()) == pod.binding_selector())
                    {
                        let identity = idx
                            .identities_in(ns)
                            .find(|i| i.metadata.name.as_deref() == Some(&binding.spec.azure_identity));
                        out.extend(
                            identity.and_then(|i| source_for(i, config, pod, idx.pod_uid(&pod.key)).ok()),
                        );
                    }
                }
            }
        }
        Mode::Federated => {}
    }
    if config.mode != Mode::Managed {
        // Federated identities (all bound ones in federated mode) come from bindings directly.
        let federation = config.mode.federation();
        for pod in idx.pods().filter(|p| p.binding_selector().is_some() && p.phase.is_live()) {
            let bound =
                federation::bound_identities(pod, idx.all_bindings(), |ns, n| idx.identity(ns, n), opts);
            for (identity, _) in bound {
                if config.mode == Mode::Federated || federation.covers(identity) {
                    out.extend(source_for(identity, config, pod, idx.pod_uid(&pod.key)).ok());
                }
            }
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
