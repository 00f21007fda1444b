//! podid's decision logic, free of I/O: no tokio, no clock, no network, no Kubernetes client.
//! Time and leadership, when they matter, are passed in as values.
//!
//! ```text
//!  pods ─┐
//!  bindings ─┼─▶ matching::desired ─▶ Desired ──▶ diff::plan(current AAIs) ─▶ Plan {create, update, delete}
//!  identities┘                           │
//!                                        └──▶ scaleset::needs ─▶ scaleset::delta(ARM state) ─▶ identity PATCHes
//!
//!  caller IP ─▶ agent::find_caller ─▶ agent::decide(request, AAIs | bindings, exceptions) ─▶ Decision
//! ```
//!
//! The controller (`podid-mic`), the node agent (`podid-nmi`) and `podid explain` all call these
//! functions, so they cannot disagree about an answer.
#![forbid(unsafe_code)]

pub mod agent;
pub mod diagnostics;
pub mod diff;
pub mod exception;
pub mod federation;
pub mod matching;
pub mod pod;
pub mod redact;
pub mod scaleset;

pub use diagnostics::Diagnostic;
pub use pod::{PodKey, PodView};

#[cfg(test)]
mod tests;
