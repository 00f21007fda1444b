//! # podid-emulator
//!
//! An Azure emulator for local runs and tests of podid: Entra ID (token endpoints, OIDC discovery, JWKS),
//! ARM (resource groups, user-assigned identities, scale sets and VMs with identity PATCH semantics,
//! role assignments enforced) and IMDS (one listener per node), speaking the wire formats the real Azure
//! SDKs expect. Fault injection and a request log are driven through an admin API.
//!
//! ```text
//!             ┌─────────── Shared (Arc) ────────────┐
//!   login ───▶│ World (RwLock): groups, identities,  │◀── admin (faults, log, settings, nodes)
//!   arm   ───▶│ scale sets, VMs, apps, role assigns  │
//!   imds×N ──▶│ SigningKey · Settings · Faults/log   │
//!             └──────────────────────────────────────┘
//! ```
//!
//! Each surface is an axum `Router` built by `app(shared)` (testable with `tower::ServiceExt::oneshot`),
//! served by [`server::serve`] on 127.0.0.1. The pure model lives in [`model`]. Start everything with
//! [`Emulator::start`]; the binary `podid-emulator` wraps the same call.

pub mod admin;
pub mod arm;
pub mod clock;
pub mod config;
pub mod crypto;
mod emulator;
pub mod faults;
pub mod fetch;
pub mod imds;
pub mod login;
pub mod model;
pub mod server;
pub mod state;
pub mod tls;
pub mod tokens;

pub use admin::{NodeRequest, TokenRequest};
pub use config::EmulatorConfig;
pub use emulator::{AppInfo, Emulator, EmulatorError, IdentityInfo, ReadyInfo, RunningEmulator, build_state};
pub use faults::{FaultAction, FaultSpec, LoggedRequest, Surface};
pub use state::{Settings, SettingsUpdate};
