//! # podid-mic — the standard-mode controller
//!
//! Watches pods, nodes, `AzureIdentity`, `AzureIdentityBinding` and `AzureAssignedIdentity`;
//! writes assigned identities exactly as upstream's MIC does; puts user-assigned identities on
//! the scale sets and VMs of the pods' nodes through ARM, and removes them when nothing needs
//! them any more.
//!
//! ```text
//!  watches ──▶ index::ClusterIndex ──(revision, coalesced)──▶ controller (leader only)
//!                    ▲                                            │ plan::decide (pure, podid-core)
//!                    │ write-through                              ▼
//!                    └────────── execute::Executor ◀── one task per Unit (scale set / VM / direct)
//!                                 kube: objects, events        ARM: GET, PATCH (LRO)
//!  leader::run (Lease) ─▶ leader flag ─▶ controller, /healthz ("Active" / "Not Active")
//! ```
//!
//! Deciding ([`plan`]) is separate from doing ([`execute`]); with nothing changing, nothing is
//! decided and no ARM call is made (apart from the optional drift check).
#![forbid(unsafe_code)]

pub mod args;
pub mod controller;
pub mod events;
pub mod execute;
pub mod index;
pub mod leader;
pub mod metrics;
pub mod objects;
pub mod plan;
pub mod runtime;

pub use args::Args;
pub use runtime::{Config, Running, start};

#[cfg(test)]
mod tests;
