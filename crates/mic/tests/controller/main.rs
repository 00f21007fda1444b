//! The controller against a real kube-apiserver (podid-testkit) and the Azure emulator: the
//! upstream e2e scenarios (spec §7.2) that concern the controller, one behaviour per test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod arm_faults;
mod assign;
mod drift;
mod events;
mod faults;
mod federated;
mod ha;
mod ledger;
mod nodes;
mod removal;
