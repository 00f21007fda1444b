//! Fuzzes custom-resource decoding and the pure decisions on decoded objects: JSON bytes are
//! upgraded with `podid_api::legacy::upgrade_keys`, decoded as each of the four aadpodidentity
//! kinds (and as a Pod), validated, and fed to `podid_core`'s matching, planning and agent
//! decisions together with a few fixed pods.
//!
//! Invariants (beyond "no panic"): `upgrade_keys` is idempotent (a second pass renames nothing);
//! a decoded object re-encodes to JSON that decodes to the same object; every desired assignment
//! names a pod, a node and an identity that validated; a pod is only ever served an identity that
//! a binding with its own label selects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podid_api::legacy::upgrade_keys;
use podid_api::resource_id::UserAssignedIdentityId;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, Pod};
use podid_core::agent;
use podid_core::decision::{Outcome, Settings, decide};
use podid_core::matching::{self, MatchOptions};
use podid_core::{Mode, PodView, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Decodes `value` as `T`; when it decodes, its encoding must decode to an equal object.
fn decode<T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug>(value: &Value) -> Option<T> {
    let decoded: T = serde_json::from_value(value.clone()).ok()?;
    let encoded = serde_json::to_value(&decoded).unwrap_or_else(|e| panic!("re-encoding failed: {e}"));
    let again: T = serde_json::from_value(encoded.clone())
        .unwrap_or_else(|e| panic!("re-encoded object does not decode: {e}: {encoded}"));
    assert_eq!(decoded, again, "round trip changed the object: {encoded}");
    Some(decoded)
}

fn fixed_pods() -> Vec<PodView> {
    [("app", "a", "10.0.0.1", "demo"), ("other", "b", "10.0.0.2", "demo"), ("app", "c", "10.0.0.3", "")]
        .iter()
        .filter_map(|(ns, name, ip, sel)| {
            serde_json::from_value::<Pod>(json!({
                "metadata": {"namespace": ns, "name": name, "labels": {"aadpodidbinding": sel}},
                "spec": {"nodeName": "node-0", "containers": []},
                "status": {"phase": "Running", "podIP": ip}
            }))
            .ok()
        })
        .map(|p| PodView::from_pod(&p))
        .collect()
}

fn check_decisions(
    pods: &[PodView],
    identities: &[AzureIdentity],
    bindings: &[AzureIdentityBinding],
    exceptions: &[AzurePodIdentityException],
    assigned: &[AzureAssignedIdentity],
) {
    for identity in identities {
        let _ = matching::validate_identity(identity);
        let _ = UserAssignedIdentityId::parse(&identity.spec.resource_id);
        let _ = identity.is_namespaced();
        for force_namespaced in [false, true] {
            let _ = matching::assignment_namespace(
                identity,
                MatchOptions { force_namespaced, ..MatchOptions::default() },
            );
        }
    }
    for force_namespaced in [false, true] {
        let opts = MatchOptions { force_namespaced, ..MatchOptions::default() };
        let desired = matching::desired(pods, bindings, identities, opts);
        for a in desired.assignments.values() {
            assert!(!a.node.is_empty(), "assignment without node: {a:?}");
            assert!(matching::validate_identity(&a.identity).is_ok(), "invalid identity assigned: {a:?}");
            assert!(pods.iter().any(|p| p.key == a.pod), "assignment for an unknown pod: {a:?}");
            let _ = a.to_object(false);
        }
        let plan = podid_core::diff::plan(&desired, assigned);
        let _ = plan.is_idle();
        let objects = Snapshot {
            bindings: bindings.to_vec(),
            identities: identities.to_vec(),
            assigned: assigned.to_vec(),
            exceptions: exceptions.to_vec(),
        };
        for mode in Mode::ALL {
            let settings = Settings {
                mode,
                force_namespaced,
                mic_namespace: "kube-system",
                release_terminating: false,
                verified_callers: false,
            };
            for pod in pods {
                for client_id in [None, identities.first().map(|i| i.spec.client_id.as_str())] {
                    let req = agent::Request { client_id, resource_id: None, object_id: None };
                    if let Outcome::Serve(served) = decide(pod, &req, &objects, &settings).outcome
                        && served.binding.is_some()
                    {
                        let identity = served.identity;
                        let selected = bindings.iter().any(|b| {
                            Some(b.spec.selector.as_str()) == pod.binding_selector()
                                && identity.metadata.name.as_deref() == Some(b.spec.azure_identity.as_str())
                                && b.metadata.namespace == identity.metadata.namespace
                        });
                        assert!(selected, "{mode} mode served an identity no binding selects for {pod:?}");
                    }
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut value) = serde_json::from_slice::<Value>(data) else { return };
    let _ = upgrade_keys(&mut value);
    let second = upgrade_keys(&mut value.clone());
    assert!(second.is_empty(), "upgrade_keys is not idempotent: {second:?} on {value}");

    // One object, or an array of objects of any kinds.
    let objects: Vec<Value> = match &value {
        Value::Array(items) => items.iter().take(16).cloned().collect(),
        other => vec![other.clone()],
    };
    let mut identities = Vec::new();
    let mut bindings = Vec::new();
    let mut exceptions = Vec::new();
    let mut assigned = Vec::new();
    let mut pods = fixed_pods();
    for mut object in objects {
        let _ = upgrade_keys(&mut object);
        if let Some(i) = decode::<AzureIdentity>(&object) {
            identities.push(i);
        }
        if let Some(b) = decode::<AzureIdentityBinding>(&object) {
            bindings.push(b);
        }
        if let Some(e) = decode::<AzurePodIdentityException>(&object) {
            exceptions.push(e);
        }
        if let Some(a) = decode::<AzureAssignedIdentity>(&object) {
            let _ = a.state();
            assigned.push(a);
        }
        if let Ok(p) = serde_json::from_value::<Pod>(object) {
            pods.push(PodView::from_pod(&p));
        }
    }
    check_decisions(&pods, &identities, &bindings, &exceptions, &assigned);
});
