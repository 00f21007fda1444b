//! A kube-runtime watch turned into plain changes for a synchronous index: `Init…InitDone`
//! becomes one [`Change::Reset`] (the kind's contents replaced atomically), `Apply`/`Delete` edit
//! one object. The watcher re-lists and resumes by itself after API-server restarts and
//! compactions (with backoff). Objects that fail to decode are logged and skipped; they never stop
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
    mut sink: impl FnMut(Change<V>) + Send,
    synced: Arc<AtomicBool>,
    on_error: impl Fn() + Send,
) where
    K: Resource<DynamicType = ()> + DeserializeOwned + Clone + Debug + Send + Sync + 'static,
    V: Send,
{
    let mut buffer: Vec<V> = Vec::new();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
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
