//! podid's decision logic, free of I/O: no tokio, no clock, no network, no Kubernetes client.
//! Time and leadership, when they matter, are passed in as values.
//!
//! ```text
//!  pods ─┐
//!  bindings ─┼─▶ matching::desired ─▶ Desired ──▶ diff::plan(current AAIs) ─▶ Plan {create, update, delete}
//!  identities┘                           │
//!                                        └──▶ scaleset::needs ─▶ scaleset::delta(ARM state) ─▶ identity PATCHes
//!
//!  caller IP ─▶ agent::find_caller ─▶ decision::decide(pod, request, Objects, Settings) ─▶ Decision
//!                                        (outcome + trace; candidates: the bindings' verdicts)
//! ```
//!
//! **Which pod gets which identity** is [`decision`]: its header is the rule book. The node agent
//! (`podid-nmi`: token path and prefetch) and `podid explain` call [`decision::decide`]; the
//! controller (`podid-mic`) calls [`matching::desired`], whose binding rules
//! [`candidates`] applies to one pod — so none of them can disagree about an answer.
#![forbid(unsafe_code)]

pub mod agent;
pub mod candidates;
pub mod cgroup;
pub mod decision;
pub mod diagnostics;
pub mod diff;
pub mod exception;
pub mod federation;
pub mod matching;
pub mod mode;
pub mod pod;
pub mod redact;
pub mod refusal;
pub mod scaleset;
pub mod world;

pub use diagnostics::Diagnostic;
pub use mode::Mode;
pub use pod::{PodKey, PodView};
pub use world::{Objects, Snapshot};

#[cfg(test)]
mod tests;
