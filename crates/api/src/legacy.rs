//! Objects written for aad-pod-identity < 1.6 used other key spellings (`ResourceID`, `ClientID`,
//! `AzureIdentity`, `Selector`, `PodLabels`, capitalised `Status`, ...). Go decoded them
//! case-insensitively; the v1 structural CRDs make the API server prune them silently. podid decodes
//! such objects without error (unknown keys are ignored) and offers [`upgrade_keys`] to rename them
//! to the current spelling before an object is applied, reporting each rename.
use serde_json::{Map, Value};

/// Canonical keys of `spec` per kind.
fn spec_keys(kind: &str) -> &'static [&'static str] {
    match kind {
        "AzureIdentity" => &[
            "type",
            "resourceID",
            "clientID",
            "clientPassword",
            "tenantID",
            "auxiliaryTenantIDs",
            "adResourceID",
            "adEndpoint",
            "replicas",
            "metadata",
        ],
        "AzureIdentityBinding" => &["azureIdentity", "selector", "weight", "metadata"],
        "AzurePodIdentityException" => &["podLabels", "metadata"],
        "AzureAssignedIdentity" => &[
            "azureIdentityRef",
            "azureBindingRef",
            "pod",
            "podNamespace",
            "nodename",
            "replicas",
            "metadata",
        ],
        _ => &[],
    }
}

const STATUS_KEYS: &[&str] = &["status", "availableReplicas", "metadata"];
const SECRET_REF_KEYS: &[&str] = &["name", "namespace"];

/// One key renamed by [`upgrade_keys`], as a JSON path (`spec.ClientID -> spec.clientID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rename {
    pub from: String,
    pub to: String,
}

/// Renames keys of `object` (an aadpodidentity object as JSON) that differ from the current
/// spelling only by case. A key that is already present in its canonical form wins over its
/// differently-cased duplicate, which is dropped and reported. Nested embedded objects of an
/// assigned identity are upgraded too.
pub fn upgrade_keys(object: &mut Value) -> Vec<Rename> {
    let mut renames = Vec::new();
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    upgrade_in(object, "", &kind, &mut renames);
    renames
}

fn upgrade_in(object: &mut Value, prefix: &str, kind: &str, renames: &mut Vec<Rename>) {
    let Some(map) = object.as_object_mut() else { return };
    if let Some(spec) = map.get_mut("spec").and_then(Value::as_object_mut) {
        let path = format!("{prefix}spec");
        rename_keys(spec, spec_keys(kind), &path, renames);
        if let Some(secret) = spec.get_mut("clientPassword").and_then(Value::as_object_mut) {
            rename_keys(secret, SECRET_REF_KEYS, &format!("{path}.clientPassword"), renames);
        }
        for (key, inner_kind) in
            [("azureIdentityRef", "AzureIdentity"), ("azureBindingRef", "AzureIdentityBinding")]
        {
            if let Some(inner) = spec.get_mut(key) {
                upgrade_in(inner, &format!("{path}.{key}."), inner_kind, renames);
            }
        }
    }
    if let Some(status) = map.get_mut("status").and_then(Value::as_object_mut) {
        rename_keys(status, STATUS_KEYS, &format!("{prefix}status"), renames);
    }
}

fn rename_keys(map: &mut Map<String, Value>, canonical: &[&str], path: &str, renames: &mut Vec<Rename>) {
    let keys: Vec<String> = map.keys().cloned().collect();
    for key in keys {
        let Some(target) = canonical.iter().find(|c| c.eq_ignore_ascii_case(&key) && **c != key) else {
            continue;
        };
        if let Some(value) = map.remove(&key) {
            map.entry(target.to_string()).or_insert(value);
            renames.push(Rename { from: format!("{path}.{key}"), to: format!("{path}.{target}") });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AzureIdentity;
    use serde_json::json;

    fn old_identity() -> Value {
        json!({
            "apiVersion": "aadpodidentity.k8s.io/v1", "kind": "AzureIdentity",
            "metadata": {"name": "old", "namespace": "default"},
            "spec": {"type": 1, "ClientID": "c", "TenantID": "t",
                     "ClientPassword": {"Name": "s", "Namespace": "default"}}
        })
    }

    #[test]
    fn capitalised_keys_decode_without_error_but_lose_their_values() {
        let id: AzureIdentity = serde_json::from_value(old_identity()).unwrap();
        assert_eq!(id.spec.client_id, "");
        assert!(id.spec.client_password.is_empty());
    }

    #[test]
    fn upgrade_renames_every_old_key_and_reports_it() {
        let mut v = old_identity();
        let renames = upgrade_keys(&mut v);
        let id: AzureIdentity = serde_json::from_value(v).unwrap();
        assert_eq!((id.spec.client_id.as_str(), id.spec.tenant_id.as_str()), ("c", "t"));
        assert_eq!(id.spec.client_password.name, "s");
        assert_eq!(renames.len(), 5);
        assert!(renames.contains(&Rename { from: "spec.ClientID".into(), to: "spec.clientID".into() }));
    }

    #[test]
    fn canonical_key_wins_over_old_duplicate() {
        let mut v = json!({"kind": "AzureIdentityBinding", "spec": {"selector": "new", "Selector": "old"}});
        upgrade_keys(&mut v);
        assert_eq!(v["spec"], json!({"selector": "new"}));
    }

    #[test]
    fn assigned_identity_status_and_embedded_refs_are_upgraded() {
        let mut v = json!({"kind": "AzureAssignedIdentity",
            "spec": {"AzureIdentityRef": {"spec": {"ResourceID": "r"}}, "PodNamespace": "ns", "NodeName": "n"},
            "status": {"Status": "Assigned"}});
        upgrade_keys(&mut v);
        assert_eq!(v["spec"]["azureIdentityRef"]["spec"]["resourceID"], "r");
        assert_eq!(v["spec"]["nodename"], "n");
        assert_eq!(v["status"]["status"], "Assigned");
    }
}
