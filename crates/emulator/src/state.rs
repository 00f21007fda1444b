//! The state every surface shares: the world (behind a `parking_lot` lock), the token-signing key, the
//! run-time settings, the fault rules and request log, and the CAs trusted for outbound fetches.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use crate::config::EmulatorConfig;
use crate::crypto::SigningKey;
use crate::faults::Faults;
use crate::model::World;

/// Knobs that tests may change while the emulator runs (admin `PUT /admin/settings`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub token_lifetime_secs: u64,
    pub imds_token_lifetime_secs: u64,
    pub operation_duration_ms: u64,
    pub imds_propagation_delay_ms: u64,
    pub arm_page_size: usize,
    /// IMDS hands out the same token for the same identity and resource until 5 minutes before expiry,
    /// as real IMDS does; off, every request signs a new token.
    pub imds_token_cache: bool,
}

/// A partial update of [`Settings`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsUpdate {
    pub token_lifetime_secs: Option<u64>,
    pub imds_token_lifetime_secs: Option<u64>,
    pub operation_duration_ms: Option<u64>,
    pub imds_propagation_delay_ms: Option<u64>,
    pub arm_page_size: Option<usize>,
    pub imds_token_cache: Option<bool>,
}

impl Settings {
    pub fn from_config(c: &EmulatorConfig) -> Self {
        Self {
            token_lifetime_secs: c.token_lifetime_secs,
            imds_token_lifetime_secs: c.imds_token_lifetime_secs,
            operation_duration_ms: c.operation_duration_ms,
            imds_propagation_delay_ms: c.imds_propagation_delay_ms,
            arm_page_size: c.arm_page_size.max(1),
            imds_token_cache: true,
        }
    }

    pub fn apply(&mut self, u: &SettingsUpdate) {
        let SettingsUpdate {
            token_lifetime_secs,
            imds_token_lifetime_secs,
            operation_duration_ms,
            imds_propagation_delay_ms,
            arm_page_size,
            imds_token_cache,
        } = u;
        if let Some(v) = token_lifetime_secs {
            self.token_lifetime_secs = *v;
        }
        if let Some(v) = imds_token_lifetime_secs {
            self.imds_token_lifetime_secs = *v;
        }
        if let Some(v) = operation_duration_ms {
            self.operation_duration_ms = *v;
        }
        if let Some(v) = imds_propagation_delay_ms {
            self.imds_propagation_delay_ms = *v;
        }
        if let Some(v) = arm_page_size {
            self.arm_page_size = (*v).max(1);
        }
        if let Some(v) = imds_token_cache {
            self.imds_token_cache = *v;
        }
    }
}

/// Externally visible base URLs (no trailing slash), filled in once the listeners are bound.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Urls {
    pub login: String,
    pub arm: String,
}

#[derive(Debug)]
pub struct Shared {
    pub world: RwLock<World>,
    pub signing: SigningKey,
    pub settings: RwLock<Settings>,
    pub faults: Faults,
    pub urls: RwLock<Urls>,
    pub admin_url: RwLock<String>,
    pub trusted_cas: RwLock<Vec<CertificateDer<'static>>>,
    pub state_dir: PathBuf,
    /// Node name → IMDS base URL.
    pub imds_urls: RwLock<BTreeMap<String, String>>,
    /// Serialises the binding of new IMDS listeners.
    pub listener_lock: tokio::sync::Mutex<()>,
    /// IMDS token cache: (object id, resource) → token.
    pub imds_cache: parking_lot::Mutex<std::collections::HashMap<(String, String), crate::tokens::Minted>>,
    /// Turned to `true` to stop every listener.
    pub shutdown: tokio::sync::watch::Sender<bool>,
}

pub type SharedState = Arc<Shared>;

impl Shared {
    pub fn tenant_id(&self) -> String {
        self.world.read().tenant_id.clone()
    }
}
