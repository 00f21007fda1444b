//! The token cache: keyed by (token source, resource); single-flight (concurrent misses share one
//! upstream call); refreshed ahead of expiry in the background; never serves a token within
//! `min_remaining` seconds of expiry; keeps serving valid tokens while the upstream is down.
//!
//! The cache does not decide who may have a token: the pod-to-identity check runs on every
//! request before the cache is consulted.
use std::collections::HashMap;
use std::sync::{Arc, Weak};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use parking_lot::Mutex;

use crate::token::{Clock, TokenError, TokenProvider, TokenSet, TokenSource};

/// Resources remembered per source for prefetching (oldest-first eviction beyond this).
const MAX_REMEMBERED_RESOURCES: usize = 16;

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

#[derive(Default)]
struct Slot {
    ready: Option<Arc<TokenSet>>,
    /// When to start a background refresh (Unix seconds).
    refresh_at: u64,
    loading: Option<Fetch>,
}

struct Inner {
    slots: Mutex<HashMap<Key, Slot>>,
    asked: Mutex<HashMap<TokenSource, Vec<String>>>,
    provider: Arc<dyn TokenProvider>,
    clock: Arc<dyn Clock>,
    min_remaining: u64,
}

/// Cheap to clone; all clones share one cache.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl TokenCache {
    /// `min_remaining`: a token with less life than this is never served from the cache.
    pub fn new(provider: Arc<dyn TokenProvider>, clock: Arc<dyn Clock>, min_remaining: u64) -> Self {
        Self {
            inner: Arc::new(Inner {
                slots: Mutex::new(HashMap::new()),
                asked: Mutex::new(HashMap::new()),
                provider,
                clock,
                min_remaining,
            }),
        }
    }

    pub fn now(&self) -> u64 {
        self.inner.clock.now()
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
            let slot = slots.entry(key.clone()).or_default();
            if let Some(ready) = slot.ready.clone().filter(|t| self.usable(t, now)) {
                if now >= slot.refresh_at && slot.loading.is_none() {
                    let f = start(&self.inner, key);
                    slot.loading = Some(f.clone());
                    tokio::spawn(f);
                }
                return Ok((ready, CacheStatus::Hit));
            }
            match &slot.loading {
                Some(f) => (f.clone(), CacheStatus::Joined),
                None => {
                    // Remembered for prefetch on the miss: every later hit was preceded by one.
                    self.remember(source, resource);
                    let f = start(&self.inner, key);
                    slot.loading = Some(f.clone());
                    (f, CacheStatus::Miss)
                }
            }
        };
        fetch.await.map(|t| (t, status))
    }

    fn usable(&self, t: &TokenSet, now: u64) -> bool {
        t.expires_on() > now.saturating_add(self.inner.min_remaining)
    }

    /// Starts fetching every resource `source` was asked for before, unless cached and fresh.
    /// Returns how many fetches were started.
    pub fn prefetch(&self, source: &TokenSource) -> usize {
        let resources = self.inner.asked.lock().get(source).cloned().unwrap_or_default();
        let now = self.now();
        let mut started = 0;
        let mut slots = self.inner.slots.lock();
        for resource in resources {
            let key = (source.clone(), resource);
            let slot = slots.entry(key.clone()).or_default();
            let fresh = slot.ready.as_ref().is_some_and(|t| self.usable(t, now));
            if !fresh && slot.loading.is_none() {
                let f = start(&self.inner, key);
                slot.loading = Some(f.clone());
                tokio::spawn(f);
                started += 1;
            }
        }
        started
    }

    /// Drops every cached token of `source`, and any fetch in flight for it will not be cached
    /// (the resources asked for are remembered for prefetch).
    pub fn evict(&self, source: &TokenSource) -> usize {
        let mut slots = self.inner.slots.lock();
        let before = slots.len();
        slots.retain(|(s, _), _| s != source);
        before - slots.len()
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.inner.slots.lock().values().filter(|s| s.ready.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remember(&self, source: &TokenSource, resource: &str) {
        let mut asked = self.inner.asked.lock();
        let list = asked.entry(source.clone()).or_default();
        if !list.iter().any(|r| r == resource) {
            if list.len() >= MAX_REMEMBERED_RESOURCES {
                list.remove(0);
            }
            list.push(resource.to_string());
        }
    }
}

/// The shared upstream fetch for `key`; on completion it files the result in the slot.
fn start(inner: &Arc<Inner>, key: Key) -> Fetch {
    let weak: Weak<Inner> = Arc::downgrade(inner);
    let fut = inner.provider.fetch(&key.0, &key.1);
    async move {
        let result = fut.await.map(Arc::new);
        if let Some(inner) = weak.upgrade() {
            let now = inner.clock.now();
            let mut slots = inner.slots.lock();
            // A slot evicted while the fetch ran stays evicted: the waiters get the result (they
            // were authorised when they asked) but nothing is cached.
            if let Some(slot) = slots.get_mut(&key) {
                slot.loading = None;
                if let Ok(tokens) = &result {
                    slot.refresh_at = now + tokens.expires_on().saturating_sub(now) / 2;
                    slot.ready = Some(tokens.clone());
                }
            }
        }
        result
    }
    .boxed()
    .shared()
}
