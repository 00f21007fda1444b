//! Hand-written Azure clients for podid: the controller's ARM calls, the node agent's token
//! requests, and the CLI's identity and role-assignment calls.
//!
//! ```text
//!  azure.json / env ─▶ config::CloudConfig ─▶ cloud::Cloud (endpoints, overridable)
//!                                         └─▶ config::ArmAuth ─▶ credential::token_source
//!                                                                  │ (secret, PKCS#12, IMDS; cached)
//!  arm::ArmClient ◀── Arc<dyn TokenSource> ──────────────────────────┘
//!    get_identity / patch_identity (VMSS, VM; LRO; throttle gate; retries; metrics hook)
//!    get_user_assigned_identity, put_federated_credential, role assignments, list_vms
//!
//!  imds::ImdsClient   GET /metadata/identity/oauth2/token          ─┐
//!  aad::AadClient     POST /{tenant}/oauth2/token | /v2.0/token     ─┴▶ token::Token (NMI's JSON)
//! ```
//!
//! Every endpoint comes from configuration; tests point them at the emulator on 127.0.0.1.
//! `proxy::ProxySettings` decides, per destination, whether ARM, Entra ID (and the programs'
//! Kubernetes clients) go through `HTTPS_PROXY`; IMDS, link-local and loopback never do.
//! Secrets and tokens never appear in `Debug`, `Display` or logs.
#![forbid(unsafe_code)]

pub mod aad;
pub mod arm;
pub mod certificate;
pub mod cloud;
pub mod config;
pub mod credential;
pub mod env;
pub mod http;
pub mod imds;
pub mod proxy;
pub mod secret;
pub mod token;
pub mod token_error;

pub use aad::{AadClient, ClientCredential};
pub use arm::{ArmClient, ArmOptions};
pub use certificate::ClientCertificate;
pub use cloud::Cloud;
pub use config::{ArmAuth, CloudConfig};
pub use credential::{CachedTokenSource, TokenSource};
pub use env::{Env, ProcessEnv};
pub use http::{HttpOptions, build_client, install_crypto_provider};
pub use imds::{ImdsClient, ImdsOptions, ManagedIdentity};
pub use proxy::ProxySettings;
pub use secret::Secret;
pub use token::Token;
pub use token_error::{EntraError, TokenError};
