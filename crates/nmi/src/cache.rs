//! The token cache: keyed by (token source, resource); single-flight (concurrent misses share one
//! upstream call); refreshed ahead of expiry in the background; never serves a token within
//! `min_remaining` seconds of expiry; keeps serving valid tokens while the upstream is down.
//!
//! Bounded, since pods choose the `resource` (and excepted pods the client id): at most
//! [`CacheLimits::max_entries`] slots, [`CacheLimits::max_entries_per_source`] per source and
//! [`CacheLimits::max_bytes`] of tokens and keys. A new slot that would exceed a bound evicts the
//! least recently used one (of its own source first, so one identity's many resources never push
//! out another identity's tokens). A failed fetch leaves nothing behind; only resources that got a
//! token are remembered for prefetch, at most [`MAX_REMEMBERED_RESOURCES`] per source and
//! `max_entries` sources. `podid_nmi_token_cache_entries` and `_bytes` follow every change.
//!
//! The cache does not decide who may have a token: the pod-to-identity check runs on every
//! request before the cache is consulted.
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::{Evicted, Metrics};
use crate::token::{Clock, TokenError, TokenProvider, TokenSet, TokenSource};

/// Resources remembered per source for prefetching (oldest-first eviction beyond this).
pub const MAX_REMEMBERED_RESOURCES: usize = 16;
/// Bytes accounted for a slot beyond its strings (map entry, timestamps, `Arc`s).
const SLOT_OVERHEAD: usize = 160;

type Key = (TokenSource, String);
type Fetch = Shared<BoxFuture<'static, Result<Arc<TokenSet>, TokenError>>>;

/// How a request was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheStatus {
    /// From the cache, no upstream call.
    Hit,
    /// This request started the upstream call.
    Miss,
    /// Joined an upstream call another request had started.
    Joined,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Miss => "miss",
            Self::Joined => "joined",
        }
    }
}

/// Bounds of the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheLimits {
    /// Slots (tokens or fetches in flight) in all.
    pub max_entries: usize,
    /// Slots of one token source (one identity, or one excepted pod's client id).
    pub max_entries_per_source: usize,
    /// Bytes of tokens and keys in all.
    pub max_bytes: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self { max_entries: 1024, max_entries_per_source: 64, max_bytes: 4 * 1024 * 1024 }
    }
}

struct Slot {
    ready: Option<Arc<TokenSet>>,
    /// When to start a background refresh (Unix seconds).
    refresh_at: u64,
    loading: Option<Fetch>,
    /// Bytes accounted for this slot (key, token and overhead).
    bytes: usize,
    /// Tick of the last use (larger is more recent).
    used: u64,
}

#[derive(Default)]
struct Slots {
    map: HashMap<Key, Slot>,
    bytes: usize,
    tick: u64,
}

/// Where the cache reports its size and evictions.
#[derive(Clone, Debug, Default)]
struct Gauges {
    entries: Gauge,
    bytes: Gauge,
    metrics: Option<Arc<Metrics>>,
}

struct Inner {
    slots: Mutex<Slots>,
    asked: Mutex<Asked>,
    provider: Arc<dyn TokenProvider>,
    clock: Arc<dyn Clock>,
    min_remaining: u64,
    limits: CacheLimits,
    gauges: Gauges,
}

/// Resources each source got tokens for, most recent last; sources in order of last use.
#[derive(Default)]
struct Asked {
    by_source: HashMap<TokenSource, (u64, Vec<String>)>,
    tick: u64,
}

/// Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl TokenCache {
    /// `min_remaining`: a token with less life than this is never served from the cache.
    pub fn new(provider: Arc<dyn TokenProvider>, clock: Arc<dyn Clock>, min_remaining: u64) -> Self {
        Self::bounded(provider, clock, min_remaining, CacheLimits::default(), None)
    }

    /// A cache with `limits`, reporting to `metrics` (its entry and byte gauges, evictions).
    pub fn bounded(
        provider: Arc<dyn TokenProvider>,
        clock: Arc<dyn Clock>,
        min_remaining: u64,
        limits: CacheLimits,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        let gauges = match &metrics {
            Some(m) => Gauges { entries: m.cache_entries.clone(), bytes: m.cache_bytes.clone(), metrics },
            None => Gauges::default(),
        };
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::default(),
                asked: Mutex::default(),
                provider,
                clock,
                min_remaining,
                limits: CacheLimits {
                    max_entries: limits.max_entries.max(1),
                    max_entries_per_source: limits.max_entries_per_source.max(1),
                    max_bytes: limits.max_bytes,
                },
                gauges,
            }),
        }
    }

    pub fn now(&self) -> u64 {
        self.inner.clock.now()
    }

    pub fn limits(&self) -> CacheLimits {
        self.inner.limits
    }

    /// A token for `source` and `resource`, from the cache when it has a usable one.
    pub async fn get(
        &self,
        source: &TokenSource,
        resource: &str,
    ) -> Result<(Arc<TokenSet>, CacheStatus), TokenError> {
        let key = (source.clone(), resource.to_string());
        let (fetch, status) = {
            let now = self.now();
            let mut slots = self.inner.slots.lock();
            slots.tick += 1;
            let tick = slots.tick;
            if let Some(slot) = slots.map.get_mut(&key) {
                slot.used = tick;
                if let Some(ready) = slot.ready.clone().filter(|t| self.usable(t, now)) {
                    if now >= slot.refresh_at && slot.loading.is_none() {
                        let f = start(&self.inner, key);
                        slot.loading = Some(f.clone());
                        tokio::spawn(f);
                    }
                    return Ok((ready, CacheStatus::Hit));
                }
                if let Some(f) = &slot.loading {
                    (f.clone(), CacheStatus::Joined)
                } else {
                    let f = start(&self.inner, key);
                    slot.loading = Some(f.clone());
                    (f, CacheStatus::Miss)
                }
            } else {
                let f = start(&self.inner, key.clone());
                self.insert(&mut slots, key, Some(f.clone()), tick);
                (f, CacheStatus::Miss)
            }
        };
        fetch.await.map(|t| (t, status))
    }

    fn usable(&self, t: &TokenSet, now: u64) -> bool {
        t.expires_on() > now.saturating_add(self.inner.min_remaining)
    }

    /// Adds a slot for `key`, evicting what the bounds require first.
    fn insert(&self, slots: &mut Slots, key: Key, loading: Option<Fetch>, tick: u64) {
        let bytes = key_bytes(&key);
        make_room(&self.inner, slots, &key.0, bytes);
        slots.bytes += bytes;
        slots.map.insert(key, Slot { ready: None, refresh_at: 0, loading, bytes, used: tick });
        self.inner.gauges.update(slots);
    }

    /// Starts fetching every resource `source` was asked for before, unless cached and fresh.
    /// Returns how many fetches were started.
    pub fn prefetch(&self, source: &TokenSource) -> usize {
        let resources =
            self.inner.asked.lock().by_source.get(source).map(|(_, r)| r.clone()).unwrap_or_default();
        let now = self.now();
        let mut started = 0;
        let mut slots = self.inner.slots.lock();
        for resource in resources {
            let key = (source.clone(), resource);
            slots.tick += 1;
            let tick = slots.tick;
            match slots.map.get_mut(&key) {
                Some(slot) => {
                    let fresh = slot.ready.as_ref().is_some_and(|t| self.usable(t, now));
                    if !fresh && slot.loading.is_none() {
                        let f = start(&self.inner, key);
                        slot.loading = Some(f.clone());
                        tokio::spawn(f);
                        started += 1;
                    }
                }
                None => {
                    let f = start(&self.inner, key.clone());
                    self.insert(&mut slots, key, Some(f.clone()), tick);
                    tokio::spawn(f);
                    started += 1;
                }
            }
        }
        started
    }

    /// Drops every cached token of `source`, and any fetch in flight for it will not be cached
    /// (the resources asked for are remembered for prefetch).
    pub fn evict(&self, source: &TokenSource) -> usize {
        let mut slots = self.inner.slots.lock();
        let before = slots.map.len();
        let mut freed = 0;
        slots.map.retain(|(s, _), slot| {
            let keep = s != source;
            if !keep {
                freed += slot.bytes;
            }
            keep
        });
        slots.bytes -= freed;
        self.inner.gauges.update(&slots);
        before - slots.map.len()
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.inner.slots.lock().map.values().filter(|s| s.ready.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots (tokens and fetches in flight) and the bytes accounted for them.
    pub fn footprint(&self) -> (usize, usize) {
        let slots = self.inner.slots.lock();
        (slots.map.len(), slots.bytes)
    }

    /// Resources remembered for prefetch, over all sources.
    pub fn remembered(&self) -> usize {
        self.inner.asked.lock().by_source.values().map(|(_, r)| r.len()).sum()
    }
}

impl Gauges {
    fn update(&self, slots: &Slots) {
        self.entries.set(slots.map.values().filter(|s| s.ready.is_some()).count() as i64);
        self.bytes.set(slots.bytes as i64);
    }

    fn evicted(&self, why: Evicted) {
        if let Some(m) = &self.metrics {
            m.evicted(why, 1);
        }
    }
}

fn source_bytes(s: &TokenSource) -> usize {
    match s {
        TokenSource::Imds { client_id } => client_id.as_ref().map_or(0, String::len),
        TokenSource::ServicePrincipal {
            authority,
            tenant_id,
            auxiliary_tenants,
            client_id,
            secret_namespace,
            secret_name,
            ..
        } => {
            authority.len()
                + tenant_id.len()
                + auxiliary_tenants.iter().map(String::len).sum::<usize>()
                + client_id.len()
                + secret_namespace.len()
                + secret_name.len()
        }
        TokenSource::Federated { authority, tenant_id, client_id, namespace, service_account, pod } => {
            authority.len()
                + tenant_id.len()
                + client_id.len()
                + namespace.len()
                + service_account.len()
                + pod.name.len()
                + pod.uid.len()
        }
    }
}

fn key_bytes(key: &Key) -> usize {
    SLOT_OVERHEAD + source_bytes(&key.0) + key.1.len()
}

fn tokens_bytes(set: &TokenSet) -> usize {
    set.tokens
        .iter()
        .map(|t| {
            t.access_token.expose().len()
                + t.refresh_token.len()
                + t.resource.len()
                + t.token_type.len()
                + t.not_before.as_ref().map_or(0, String::len)
                + t.client_id.as_ref().map_or(0, String::len)
                + 64
        })
        .sum()
}

/// Evicts least recently used slots until one more slot of `source` with `incoming` bytes fits.
fn make_room(inner: &Inner, slots: &mut Slots, source: &TokenSource, incoming: usize) {
    let limits = &inner.limits;
    loop {
        let of_source = slots.map.keys().filter(|(s, _)| s == source).count();
        let why = if of_source >= limits.max_entries_per_source {
            Evicted::PerSource
        } else if slots.map.len() >= limits.max_entries {
            Evicted::Entries
        } else if slots.bytes + incoming > limits.max_bytes && !slots.map.is_empty() {
            Evicted::Bytes
        } else {
            return;
        };
        let own = why == Evicted::PerSource;
        let victim = slots
            .map
            .iter()
            .filter(|((s, _), _)| !own || s == source)
            .min_by_key(|(_, slot)| slot.used)
            .map(|(k, _)| k.clone());
        let Some(victim) = victim else { return };
        if let Some(slot) = slots.map.remove(&victim) {
            slots.bytes -= slot.bytes;
        }
        inner.gauges.evicted(why);
    }
}

/// The shared upstream fetch for `key`; on completion it files the result in the slot (and
/// removes the slot if the fetch failed and it holds no token).
fn start(inner: &Arc<Inner>, key: Key) -> Fetch {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let fut = inner.provider.fetch(&key.0, &key.1);
    async move {
        let result = fut.await.map(Arc::new);
        if let Some(inner) = weak.upgrade() {
            file(&inner, &key, &result);
        }
        result
    }
    .boxed()
    .shared()
}

fn file(inner: &Inner, key: &Key, result: &Result<Arc<TokenSet>, TokenError>) {
    let now = inner.clock.now();
    let mut slots = inner.slots.lock();
    // A slot evicted while the fetch ran stays evicted: the waiters get the result (they were
    // authorised when they asked) but nothing is cached.
    let Some(slot) = slots.map.get_mut(key) else { return };
    slot.loading = None;
    let mut delta: isize = 0;
    let mut drop_slot = false;
    match result {
        Ok(tokens) => {
            let old = slot.ready.as_ref().map_or(0, |t| tokens_bytes(t));
            let new = tokens_bytes(tokens);
            delta = new as isize - old as isize;
            slot.bytes = slot.bytes.saturating_add_signed(delta);
            slot.refresh_at = now + tokens.expires_on().saturating_sub(now) / 2;
            slot.ready = Some(tokens.clone());
        }
        Err(_) if slot.ready.is_none() => drop_slot = true,
        Err(_) => {}
    }
    if drop_slot {
        if let Some(s) = slots.map.remove(key) {
            slots.bytes -= s.bytes;
        }
    } else {
        slots.bytes = slots.bytes.saturating_add_signed(delta);
        if slots.bytes > inner.limits.max_bytes {
            // The token was larger than the room made for its key: evict others (never itself).
            shrink_to_bytes(inner, &mut slots, key);
        }
    }
    inner.gauges.update(&slots);
    drop(slots);
    if result.is_ok() {
        remember(inner, &key.0, &key.1);
    }
}

fn shrink_to_bytes(inner: &Inner, slots: &mut Slots, keep: &Key) {
    while slots.bytes > inner.limits.max_bytes {
        let victim =
            slots.map.iter().filter(|(k, _)| *k != keep).min_by_key(|(_, s)| s.used).map(|(k, _)| k.clone());
        let Some(victim) = victim else { return };
        if let Some(s) = slots.map.remove(&victim) {
            slots.bytes -= s.bytes;
        }
        inner.gauges.evicted(Evicted::Bytes);
    }
}

fn remember(inner: &Inner, source: &TokenSource, resource: &str) {
    let mut asked = inner.asked.lock();
    asked.tick += 1;
    let tick = asked.tick;
    if !asked.by_source.contains_key(source) && asked.by_source.len() >= inner.limits.max_entries {
        let oldest = asked.by_source.iter().min_by_key(|(_, (t, _))| *t).map(|(s, _)| s.clone());
        if let Some(oldest) = oldest {
            asked.by_source.remove(&oldest);
        }
    }
    let (used, list) = asked.by_source.entry(source.clone()).or_default();
    *used = tick;
    if let Some(at) = list.iter().position(|r| r == resource) {
        let r = list.remove(at);
        list.push(r);
    } else {
        if list.len() >= MAX_REMEMBERED_RESOURCES {
            list.remove(0);
        }
        list.push(resource.to_string());
    }
}

#[cfg(test)]
mod tests;
