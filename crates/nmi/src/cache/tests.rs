//! The cache's bounds: what a pod choosing `resource` (or an excepted pod choosing the client id)
//! can make it hold.
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::token::{ManualClock, Token, TokenFuture};

const NOW: u64 = 1_700_000_000;

/// Tokens of `size` bytes for every resource except those starting with `bad`, which fail.
struct Provider {
    size: usize,
    calls: AtomicUsize,
}

impl TokenProvider for Provider {
    fn fetch(&self, _: &TokenSource, resource: &str) -> TokenFuture {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let (resource, size) = (resource.to_string(), self.size);
        Box::pin(async move {
            if resource.starts_with("bad") {
                return Err(TokenError::Refused(format!("AADSTS500011: {resource} not found")));
            }
            Ok(TokenSet::single(Token {
                access_token: podid_azure::Secret::new("x".repeat(size)),
                refresh_token: String::new(),
                expires_in: Some(3600),
                expires_on: Some(NOW + 3600),
                not_before: None,
                resource,
                token_type: "Bearer".into(),
                client_id: None,
                obtained_at: NOW,
            }))
        })
    }
}

fn cache(limits: CacheLimits, size: usize) -> (TokenCache, Arc<Metrics>) {
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let provider = Arc::new(Provider { size, calls: AtomicUsize::new(0) });
    let clock = Arc::new(ManualClock::new(NOW));
    (TokenCache::bounded(provider, clock, 60, limits, Some(metrics.clone())), metrics)
}

fn source(client: &str) -> TokenSource {
    TokenSource::Imds { client_id: Some(client.into()) }
}

#[tokio::test]
async fn a_failed_fetch_leaves_nothing_behind() {
    let (c, m) = cache(CacheLimits::default(), 100);
    for i in 0..1000 {
        let r = c.get(&source("a"), &format!("bad-{i}-{}", "r".repeat(8000))).await;
        assert!(r.is_err());
    }
    assert_eq!(c.footprint(), (0, 0));
    assert_eq!(c.remembered(), 0, "only resources that got a token are remembered");
    assert_eq!((m.cache_entries.get(), m.cache_bytes.get()), (0, 0));
}

#[tokio::test]
async fn one_sources_many_resources_never_push_out_another_sources_token() {
    let limits = CacheLimits { max_entries: 100, max_entries_per_source: 10, max_bytes: 1 << 30 };
    let (c, m) = cache(limits, 100);
    c.get(&source("victim"), "https://vault.azure.net").await.unwrap();
    for i in 0..500 {
        c.get(&source("attacker"), &format!("https://r{i}.example")).await.unwrap();
    }
    assert_eq!(c.footprint().0, 11, "10 of the attacker's and the victim's one");
    let (_, status) = c.get(&source("victim"), "https://vault.azure.net").await.unwrap();
    assert_eq!(status, CacheStatus::Hit);
    assert_eq!(m.cache_entries.get(), 11, "the gauge follows every change");
    assert!(c.remembered() <= MAX_REMEMBERED_RESOURCES + 1);
}

#[tokio::test]
async fn many_sources_stay_within_the_entry_bound_least_recently_used_first() {
    let limits = CacheLimits { max_entries: 50, max_entries_per_source: 10, max_bytes: 1 << 30 };
    let (c, m) = cache(limits, 100);
    c.get(&source("kept"), "r").await.unwrap();
    for i in 0..300 {
        c.get(&source(&format!("excepted-{i}")), "r").await.unwrap();
        // Used now and then: the least recently used slots go first, not this one.
        if i % 20 == 0 {
            assert_eq!(c.get(&source("kept"), "r").await.unwrap().1, CacheStatus::Hit, "round {i}");
        }
    }
    assert_eq!(c.footprint().0, 50);
    assert_eq!(m.cache_entries.get(), 50);
    assert!(c.remembered() <= 50, "remembered sources are bounded too: {}", c.remembered());
}

#[tokio::test]
async fn bytes_stay_within_the_memory_bound() {
    let limits = CacheLimits { max_entries: 10_000, max_entries_per_source: 10_000, max_bytes: 256 * 1024 };
    let (c, m) = cache(limits, 4000);
    for i in 0..1000 {
        c.get(&source("a"), &format!("https://r{i}.example/{}", "p".repeat(4000))).await.unwrap();
        let (_, bytes) = c.footprint();
        assert!(bytes <= limits.max_bytes, "after {i}: {bytes}");
    }
    let (entries, bytes) = c.footprint();
    assert!(entries > 10 && entries < 40, "{entries} entries of ~8 KB in 256 KiB");
    assert_eq!(m.cache_bytes.get() as usize, bytes);
}

#[tokio::test]
async fn evicting_a_source_updates_the_gauges() {
    let (c, m) = cache(CacheLimits::default(), 100);
    c.get(&source("a"), "r1").await.unwrap();
    c.get(&source("a"), "r2").await.unwrap();
    c.get(&source("b"), "r1").await.unwrap();
    assert_eq!(m.cache_entries.get(), 3);
    assert_eq!(c.evict(&source("a")), 2);
    assert_eq!(m.cache_entries.get(), 1);
    assert_eq!(m.cache_bytes.get() as usize, c.footprint().1);
}
