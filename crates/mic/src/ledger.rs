//! Storing ledgers (what podid added to each scale set or VM, `podid_core::scaleset::ledger`) as
//! ConfigMaps in the controller's leader-election namespace.
//!
//! ```text
//!  ConfigMap podid-ledger-<name>-<hash of the target id>   labels: podid.io/ledger=v1
//!    annotations: podid.io/target: /subscriptions/…/virtualMachineScaleSets/<name>
//!    data: ledger.json: {"target":{…},"preexisting":[…],"added":{id: clientId}}
//! ```
//!
//! Why a ConfigMap: podid owns it (nobody else writes there), it lives next to the Lease (the
//! same namespace-scoped Role grants it), it survives the deletion of assigned identities,
//! restarts and leader changes (a new leader reads it from its watch), `podid uninstall` can read
//! it, and it is small (at most a few hundred ids). Writes carry the resourceVersion read, so a
//! stale leader cannot overwrite a newer ledger.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
use podid_core::scaleset::ledger::{LEDGER_KEY, LEDGER_LABEL};
use podid_core::scaleset::{Target, TargetLedger};
use sha2::{Digest, Sha256};

/// A ledger as stored: its object's name and version, and its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLedger {
    pub name: String,
    pub resource_version: Option<String>,
    pub value: TargetLedger,
}

impl StoredLedger {
    pub fn rv(&self) -> Option<u64> {
        self.resource_version.as_deref().and_then(|v| v.parse().ok())
    }
}

/// A ConfigMap that carries the ledger label but cannot be read as one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {name} is not a podid ledger: {reason}")]
pub struct BadLedger {
    pub name: String,
    pub reason: String,
}

/// A failed ledger write.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} ledger ConfigMap {namespace}/{name} (what podid added to {target}): {source}")]
pub struct LedgerError {
    pub action: &'static str,
    pub namespace: String,
    pub name: String,
    pub target: String,
    #[source]
    pub source: kube::Error,
}

/// The ConfigMap name of a target's ledger: readable, unique (hash of the lower-cased ARM id).
pub fn object_name(target: &Target) -> String {
    let id = target.to_string().to_ascii_lowercase();
    let hash = Sha256::digest(id.as_bytes());
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let readable: String = target
        .name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .take(40)
        .collect();
    format!("podid-ledger-{}-{hex}", readable.trim_matches('-'))
}

/// Reads a ledger ConfigMap (the watch's slimming step).
pub fn from_config_map(cm: ConfigMap) -> Result<StoredLedger, BadLedger> {
    let name = cm.metadata.name.clone().unwrap_or_default();
    let bad = |reason: String| BadLedger { name: name.clone(), reason };
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(LEDGER_KEY))
        .ok_or_else(|| bad(format!("no data key {LEDGER_KEY}")))?;
    let value: TargetLedger = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    Ok(StoredLedger { name: name.clone(), resource_version: cm.metadata.resource_version, value })
}

fn to_config_map(namespace: &str, name: &str, rv: Option<String>, value: &TargetLedger) -> ConfigMap {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            resource_version: rv,
            labels: Some(BTreeMap::from([
                (LEDGER_LABEL.to_string(), "v1".to_string()),
                ("app.kubernetes.io/managed-by".to_string(), "podid-mic".to_string()),
            ])),
            annotations: Some(BTreeMap::from([("podid.io/target".to_string(), value.target.to_string())])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(LEDGER_KEY.to_string(), text)])),
        ..ConfigMap::default()
    }
}

/// Writes ledgers in one namespace.
#[derive(Clone)]
pub struct LedgerStore {
    pub client: kube::Client,
    pub namespace: String,
}

/// What a save did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Nothing to write (unchanged, or empty and not stored).
    Unchanged,
    /// Written: the stored version now.
    Written(StoredLedger),
    /// Deleted (it recorded nothing to remove); the last version known.
    Deleted { name: String, last_rv: Option<u64> },
}

impl LedgerStore {
    fn api(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The label selector of the ledger watch.
    pub fn selector() -> String {
        LEDGER_LABEL.to_string()
    }

    /// Brings the stored ledger of `value.target` to `value`: creates, replaces (with the version
    /// read), deletes when it records nothing to remove, or does nothing when unchanged.
    pub async fn save(
        &self,
        stored: Option<&StoredLedger>,
        value: &TargetLedger,
    ) -> Result<Saved, LedgerError> {
        let name = stored.map_or_else(|| object_name(&value.target), |s| s.name.clone());
        let fail = |action: &'static str, source: kube::Error| LedgerError {
            action,
            namespace: self.namespace.clone(),
            name: name.clone(),
            target: value.target.to_string(),
            source,
        };
        match stored {
            Some(s) if s.value == *value => Ok(Saved::Unchanged),
            None if value.ledger.is_empty() => Ok(Saved::Unchanged),
            Some(s) if value.ledger.is_empty() => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: s.resource_version.clone(),
                        uid: None,
                    }),
                    ..DeleteParams::default()
                };
                match self.api().delete(&name, &params).await {
                    Ok(_) => Ok(Saved::Deleted { name, last_rv: s.rv() }),
                    Err(kube::Error::Api(e)) if e.code == 404 => Ok(Saved::Deleted { name, last_rv: s.rv() }),
                    Err(e) => Err(fail("delete", e)),
                }
            }
            Some(s) => {
                let cm = to_config_map(&self.namespace, &name, s.resource_version.clone(), value);
                let written = self
                    .api()
                    .replace(&name, &PostParams::default(), &cm)
                    .await
                    .map_err(|e| fail("update", e))?;
                Ok(Saved::Written(StoredLedger {
                    name,
                    resource_version: written.metadata.resource_version,
                    value: value.clone(),
                }))
            }
            None => {
                let cm = to_config_map(&self.namespace, &name, None, value);
                let written =
                    self.api().create(&PostParams::default(), &cm).await.map_err(|e| fail("create", e))?;
                Ok(Saved::Written(StoredLedger {
                    name,
                    resource_version: written.metadata.resource_version,
                    value: value.clone(),
                }))
            }
        }
    }
}
