//! # podid-mic — the standard-mode controller
//!
//! Watches pods, nodes, `AzureIdentity`, `AzureIdentityBinding` and `AzureAssignedIdentity`;
//! writes assigned identities exactly as upstream's MIC does; puts user-assigned identities on
//! the scale sets and VMs of the pods' nodes through ARM, and removes them when nothing needs
//! them any more.
//!
//! ```text
//!  watches ──▶ index::ClusterIndex ──(revision; schedule::Batcher)──▶ controller (leader only)
//!   (+ ledgers,       ▲                                                 │ plan::decide (pure)
//!    agents' drift    │ write-through                                   ▼
//!    reports)         └────────── execute::Executor ◀── one task per Unit (scale set / VM / direct)
//!                         kube: objects, ledgers, events        ARM: GET, PATCH
//!  leader::run (Lease) ─▶ leader flag ─▶ controller, /healthz ("Active" / "Not Active")
//! ```
//!
//! Deciding ([`plan`], [`leader::decide`], [`schedule`]) is separate from doing ([`execute`],
//! [`leader::run`]); everything runs on tokio's clock (clippy's `disallowed-types` keeps
//! `std::time::Instant` out). With nothing changing, nothing is decided and no ARM call is made
//! apart from the slow drift check; drift is found when an agent reports IMDS refusing an
//! identity the controller has as `Assigned`.
#![forbid(unsafe_code)]

pub mod args;
pub mod controller;
pub mod events;
pub mod execute;
pub mod index;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod runtime;
pub mod schedule;

pub use args::Args;
pub use runtime::{Config, Running, start};

#[cfg(test)]
mod tests;
