//! `podid-nmi`: the node agent. It answers pods' calls to the instance metadata service on its
//! node — exactly as IMDS and upstream NMI do on the wire — for the identities bound to the
//! calling pod only, from a prefetched token cache.
//!
//! ```text
//!  pod ──(iptables DNAT 169.254.169.254:80 → 127.0.0.1:2579)──▶ http::app
//!                                   │ caller IP → index (pods of this node) → podid_core::agent
//!                                   ▼
//!                       cache (single-flight, refresh-ahead) ──▶ TokenProvider (IMDS / Entra ID)
//!  watches (pods of this node, assigned identities of this node, bindings, identities,
//!           exceptions) ──▶ index ──▶ change signal ──▶ waiting requests, prefetch, eviction
//! ```
#![forbid(unsafe_code)]

pub mod args;
pub mod cache;
pub mod drift;
pub mod http;
pub mod index;
pub mod iptables;
pub mod metrics;
pub mod prefetch;
pub mod provider;
pub mod runtime;
pub mod state;
pub mod token;
pub mod verify;
pub mod watch;

pub use http::app;
pub use state::{AgentState, Config, Mode, Shared};
