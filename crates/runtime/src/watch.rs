//! A kube-runtime watch turned into plain changes for a synchronous index: `Init…InitDone`
//! becomes one [`Change::Reset`] (the kind's contents replaced atomically), `Apply`/`Delete` edit
//! one object. The watcher re-lists and resumes by itself after API-server restarts and
//! compactions, with kube-runtime's back-off ([`drive`]: 0.8 s doubling to 30 s, for the
//! controller) or a prompt one ([`drive_with`] + [`prompt_backoff`]: at most 1 s, for the node
//! agent, which must see a new pod within seconds of an API-server restart). Objects that fail to decode are logged and skipped; they never stop
//! the stream.
//!
//! Each object is slimmed (`slim: K -> V`) as soon as it is decoded, before it is buffered: a full
//! listing holds only what the index keeps (a pod's few matching fields, a node's scale set, an
//! object without its managed fields), not thousands of whole objects.
use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::core::{DeserializeGuard, ResourceExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Resource};
use podid_core::PodKey;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};

/// One change to apply to an index.
#[derive(Debug)]
pub enum Change<K> {
    Apply(K),
    Delete(PodKey),
    Reset(Vec<K>),
}

/// Runs one watch until its stream ends (it does not, short of shutdown). `synced` turns true
/// after the first complete listing; `on_error` is called for every watch error (for metrics).
pub async fn drive<K, V>(
    api: Api<DeserializeGuard<K>>,
    config: watcher::Config,
    kind: &'static str,
    slim: fn(K) -> V,
    sink: impl FnMut(Change<V>) + Send,
    synced: Arc<AtomicBool>,
    on_error: impl Fn() + Send,
) where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
    V: Send,
{
    let watch = Watch { api, config, kind, slim };
    drive_with(watch, watcher::DefaultBackoff::default(), sink, synced, on_error).await;
}

/// What to watch and how to slim each object.
pub struct Watch<K: Resource, V> {
    pub api: Api<DeserializeGuard<K>>,
    pub config: watcher::Config,
    pub kind: &'static str,
    pub slim: fn(K) -> V,
}

/// Re-watch back-off for the node agent: 250 ms doubling to at most 1 s, with jitter, reset by
/// every event. After an API-server restart the agent is watching again within about a second
/// of the server being back (kube-runtime's default has grown to tens of seconds by then).
pub fn prompt_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::new()
        .with_min_delay(std::time::Duration::from_millis(250))
        .with_max_delay(std::time::Duration::from_secs(1))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// [`drive`] with a chosen back-off.
pub async fn drive_with<K, V>(
    watch: Watch<K, V>,
    backoff: impl kube::runtime::utils::Backoff + 'static,
    mut sink: impl FnMut(Change<V>) + Send,
    synced: Arc<AtomicBool>,
    on_error: impl Fn() + Send,
) where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
    V: Send,
{
    let Watch { api, config, kind, slim } = watch;
    let mut buffer: Vec<V> = Vec::new();
    let mut events = watcher::watcher(api, config).backoff(backoff).boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => buffer.clear(),
            Ok(Event::InitApply(obj)) => buffer.extend(decoded(obj, kind).map(slim)),
            Ok(Event::InitDone) => {
                let all = std::mem::take(&mut buffer);
                debug!(kind, count = all.len(), "Listed");
                sink(Change::Reset(all));
                synced.store(true, Ordering::SeqCst);
            }
            Ok(Event::Apply(obj)) => {
                if let Some(obj) = decoded(obj, kind) {
                    sink(Change::Apply(slim(obj)));
                }
            }
            Ok(Event::Delete(obj)) => {
                let meta = match &obj.0 {
                    Ok(o) => o.meta().clone(),
                    Err(invalid) => invalid.metadata.clone(),
                };
                sink(Change::Delete(PodKey::new(
                    meta.namespace.unwrap_or_default(),
                    meta.name.unwrap_or_default(),
                )));
            }
            Err(error) => {
                on_error();
                warn!(kind, %error, "Watch failed; retrying with backoff");
            }
        }
    }
}

/// Drops server-side bookkeeping nobody here reads (managed fields are most of a small object's
/// size). An update sent without them keeps the server's.
pub fn lean<K: Resource>(mut o: K) -> K {
    o.meta_mut().managed_fields = None;
    o
}

fn decoded<K: ResourceExt>(obj: DeserializeGuard<K>, kind: &str) -> Option<K> {
    match obj.0 {
        Ok(o) => Some(o),
        Err(invalid) => {
            let name = invalid.metadata.name.clone().unwrap_or_default();
            let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
            warn!(kind, %namespace, %name, error = %invalid.error, "Skipping object that cannot be decoded");
            None
        }
    }
}
