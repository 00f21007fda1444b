//! What one caller may cost the agent: connections and requests per source address, a global
//! connection budget below the process's file-descriptor limit, and how long a connection may
//! take to send a request head or sit idle.
//!
//! [`Sources`] is the bookkeeping, with time passed in (no clock inside): per source address the
//! number of open connections and a token bucket of requests. An entry lives while the source has
//! connections or its bucket is not yet full again, so closing and reopening connections does not
//! refill the bucket; the table is swept when it grows, and never holds more than
//! [`Sources::max_entries`] entries.
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// File descriptors kept out of the connection budget: watches, outbound connections to IMDS,
/// Entra ID and the API server, the admin port, logs.
pub const RESERVED_FDS: u64 = 256;
/// Ceiling of the automatic global connection budget.
pub const MAX_AUTO_CONNECTIONS: usize = 8192;
/// Connections over the per-source cap that are still answered with a 429 at a time (beyond
/// these, closed at once): answering costs a socket and a task for up to the header timeout.
pub const MAX_REFUSING: usize = 16;

/// The agent's bounds on its callers. Zero turns a rate limit off.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Time from connection (or from the first byte of a request) to a complete request head.
    pub header_timeout: Duration,
    /// Time a connection may sit with no request in flight before it is closed.
    pub idle_timeout: Duration,
    /// Open connections per source address; more are answered 429 and closed.
    pub max_connections_per_source: usize,
    /// Open connections in all.
    pub max_connections: usize,
    /// Requests per second per source address (token bucket refill); 0: unlimited.
    pub requests_per_second: u32,
    /// Requests a source may send at once (bucket size).
    pub request_burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections_per_source: 64,
            max_connections: 1024,
            requests_per_second: 100,
            request_burst: 200,
        }
    }
}

/// The global connection budget: `requested`, or (0) `min(8192, (fd limit - 256) / 2)` — half,
/// since every proxied request or token miss may hold an outbound connection too. Never above
/// `fd limit - 256`.
pub fn connection_budget(requested: usize, fd_limit: u64) -> usize {
    let usable = fd_limit.saturating_sub(RESERVED_FDS).max(16);
    let cap = usize::try_from(usable).unwrap_or(usize::MAX);
    if requested == 0 { (cap / 2).clamp(8, MAX_AUTO_CONNECTIONS) } else { requested.min(cap) }
}

/// The soft `RLIMIT_NOFILE` of this process (`/proc/self/limits`); `None` when unreadable.
pub fn fd_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// Why a connection was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The source has `max_connections_per_source` open.
    PerSource,
    /// The agent has `max_connections` open.
    Global,
}

#[derive(Debug)]
struct Source {
    connections: usize,
    /// Requests the source may still send now (at most the burst).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    updated: Instant,
}

#[derive(Debug, Default)]
struct Table {
    sources: HashMap<IpAddr, Source>,
    /// Open connections over all sources.
    open: usize,
}

/// Per-source connection counts and request buckets. Cheap to clone; clones share the table.
#[derive(Clone, Debug)]
pub struct Sources {
    limits: Arc<Limits>,
    table: Arc<Mutex<Table>>,
}

/// An open connection, counted until dropped.
#[derive(Debug)]
pub struct ConnectionSlot {
    sources: Sources,
    ip: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut t = self.sources.table.lock();
        t.open = t.open.saturating_sub(1);
        if let Some(s) = t.sources.get_mut(&self.ip) {
            s.connections = s.connections.saturating_sub(1);
        }
    }
}

impl Sources {
    pub fn new(limits: Limits) -> Self {
        Self { limits: Arc::new(limits), table: Arc::default() }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Most entries the table holds (idle sources beyond it lose their bucket state).
    pub fn max_entries(&self) -> usize {
        self.limits.max_connections.saturating_mul(4).max(1024)
    }

    /// Counts a new connection from `ip`, or says why it may not be served.
    pub fn open(&self, ip: IpAddr, now: Instant) -> Result<ConnectionSlot, Refused> {
        let mut t = self.table.lock();
        if t.open >= self.limits.max_connections {
            return Err(Refused::Global);
        }
        if t.sources.len() >= self.max_entries() {
            self.sweep(&mut t, now);
        }
        let burst = f64::from(self.limits.request_burst);
        let source =
            t.sources.entry(ip).or_insert_with(|| Source { connections: 0, tokens: burst, updated: now });
        if source.connections >= self.limits.max_connections_per_source {
            return Err(Refused::PerSource);
        }
        source.connections += 1;
        t.open += 1;
        drop(t);
        Ok(ConnectionSlot { sources: self.clone(), ip })
    }

    /// Takes one request from `ip`'s bucket; `Err(wait)` says when the next one is allowed.
    pub fn request(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.limits.requests_per_second);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.limits.request_burst.max(1));
        let mut t = self.table.lock();
        // Only sources with a connection are tracked (callers not served through `open`, such
        // as in-process tests, are not limited).
        let Some(s) = t.sources.get_mut(&ip) else { return Ok(()) };
        let elapsed = now.saturating_duration_since(s.updated).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        s.updated = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / rate))
        }
    }

    /// Open connections in all.
    pub fn open_connections(&self) -> usize {
        self.table.lock().open
    }

    /// Sources remembered (open connections or a bucket still refilling).
    pub fn tracked(&self) -> usize {
        self.table.lock().sources.len()
    }

    /// Drops sources with no connection whose bucket is full again; if that is not enough, every
    /// source with no connection.
    fn sweep(&self, t: &mut Table, now: Instant) {
        let rate = f64::from(self.limits.requests_per_second);
        let burst = f64::from(self.limits.request_burst);
        t.sources.retain(|_, s| {
            let refilled = s.tokens + now.saturating_duration_since(s.updated).as_secs_f64() * rate;
            s.connections > 0 || (rate > 0.0 && refilled < burst)
        });
        if t.sources.len() >= self.max_entries() {
            t.sources.retain(|_, s| s.connections > 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections_per_source: 2,
            max_connections: 3,
            requests_per_second: 10,
            request_burst: 5,
            ..Limits::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_source_cap_then_global_budget() {
        let s = Sources::new(limits());
        let now = Instant::now();
        let a1 = s.open(ip(1), now).unwrap();
        let _a2 = s.open(ip(1), now).unwrap();
        assert_eq!(s.open(ip(1), now).unwrap_err(), Refused::PerSource);
        let _b1 = s.open(ip(2), now).unwrap();
        assert_eq!(s.open(ip(3), now).unwrap_err(), Refused::Global);
        drop(a1);
        assert_eq!(s.open_connections(), 2);
        s.open(ip(1), now).unwrap();
    }

    #[test]
    fn bucket_allows_the_burst_then_the_rate_and_says_when_to_retry() {
        let s = Sources::new(limits());
        let t0 = Instant::now();
        let (_c1, _c2) = (s.open(ip(1), t0).unwrap(), s.open(ip(2), t0).unwrap());
        for _ in 0..5 {
            s.request(ip(1), t0).unwrap();
        }
        let wait = s.request(ip(1), t0).unwrap_err();
        assert!(wait > Duration::from_millis(90) && wait <= Duration::from_millis(100), "{wait:?}");
        s.request(ip(2), t0).unwrap();
        let t1 = t0 + Duration::from_millis(250);
        s.request(ip(1), t1).unwrap();
        s.request(ip(1), t1).unwrap();
        assert!(s.request(ip(1), t1).is_err(), "2.5 requests refilled, 2 taken");
    }

    #[test]
    fn reconnecting_does_not_refill_the_bucket() {
        let s = Sources::new(limits());
        let t0 = Instant::now();
        let c = s.open(ip(1), t0).unwrap();
        for _ in 0..5 {
            s.request(ip(1), t0).unwrap();
        }
        drop(c);
        let _c = s.open(ip(1), t0).unwrap();
        assert!(s.request(ip(1), t0).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let s = Sources::new(Limits { requests_per_second: 0, ..limits() });
        let t0 = Instant::now();
        let _c = s.open(ip(1), t0).unwrap();
        for _ in 0..10_000 {
            s.request(ip(1), t0).unwrap();
        }
    }

    #[test]
    fn the_table_stays_bounded_under_many_sources() {
        let s = Sources::new(Limits { max_connections: 4, ..limits() });
        let t0 = Instant::now();
        for i in 0..20_000u32 {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let slot = s.open(addr, t0);
            let _ = s.request(addr, t0);
            drop(slot);
        }
        assert!(s.tracked() <= s.max_entries() + 1, "{} > {}", s.tracked(), s.max_entries());
    }

    #[test]
    fn budget_is_half_the_usable_fds_capped() {
        assert_eq!(connection_budget(0, 1024), 384);
        assert_eq!(connection_budget(0, 1_048_576), MAX_AUTO_CONNECTIONS);
        assert_eq!(connection_budget(100, 1024), 100);
        assert_eq!(connection_budget(5000, 1024), 768, "never above the fd limit minus the reserve");
        assert!(fd_limit().is_some_and(|n| n >= 16));
    }
}
