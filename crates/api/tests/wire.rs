//! The JSON/YAML of the four resources is exactly upstream's: examples from the spec round-trip,
//! committed CRDs equal the generated ones, and their schemas carry exactly upstream's fields.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::collections::BTreeSet;

use podid_api::crd::{CRD_MANIFEST_PATH, crds, render_yaml};
use podid_api::{
    AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException,
    IdentityKind,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

fn yaml<T: DeserializeOwned>(text: &str) -> T {
    serde_saphyr::from_str(text).unwrap()
}

/// Decodes `text` as `T`, encodes it again, and checks that nothing was lost or invented.
fn round_trip<T: DeserializeOwned + Serialize>(text: &str) -> T {
    let original: Value = yaml(text);
    let typed: T = serde_json::from_value(original.clone()).unwrap();
    assert_eq!(serde_json::to_value(&typed).unwrap(), original);
    typed
}

const IDENTITY: &str = r#"
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: demo-id, namespace: app, annotations: {aadpodidentity.k8s.io/Behavior: namespaced}}
spec: {type: 0, resourceID: /subscriptions/S/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-id, clientID: 00000000-0000-0000-0000-000000000001}
"#;

const BINDING: &str = r#"
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentityBinding
metadata: {name: demo-binding, namespace: app}
spec: {azureIdentity: demo-id, selector: demo}
"#;

#[test]
fn identity_example_round_trips() {
    let id: AzureIdentity = round_trip(IDENTITY);
    assert_eq!(id.spec.kind(), Ok(IdentityKind::UserAssigned));
    assert!(id.is_namespaced());
    assert_eq!(id.spec.client_id, "00000000-0000-0000-0000-000000000001");
}

#[test]
fn binding_example_round_trips() {
    let b: AzureIdentityBinding = round_trip(BINDING);
    assert_eq!((b.spec.azure_identity.as_str(), b.spec.selector.as_str()), ("demo-id", "demo"));
}

#[test]
fn service_principal_identity_round_trips_with_secret_reference_and_tenants() {
    let id: AzureIdentity = round_trip(
        r#"
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureIdentity
metadata: {name: sp, namespace: default}
spec:
  type: 1
  tenantID: t
  clientID: c
  clientPassword: {name: sp-secret, namespace: default}
  auxiliaryTenantIDs: [t2, t3]
  adEndpoint: https://login.microsoftonline.com/
"#,
    );
    assert_eq!(id.spec.kind(), Ok(IdentityKind::ServicePrincipal));
    assert_eq!(id.spec.auxiliary_tenant_ids.as_deref(), Some(&["t2".to_string(), "t3".to_string()][..]));
}

#[test]
fn assigned_identity_with_embedded_copies_round_trips() {
    let aai: AzureAssignedIdentity = round_trip(
        r#"
apiVersion: aadpodidentity.k8s.io/v1
kind: AzureAssignedIdentity
metadata:
  name: web-1-app-demo-id
  namespace: app
  labels: {nodename: aks-np-0000}
  finalizers: [azureassignedidentity.finalizers.aadpodidentity.k8s.io]
spec:
  azureIdentityRef:
    apiVersion: aadpodidentity.k8s.io/v1
    kind: AzureIdentity
    metadata: {name: demo-id, namespace: app, resourceVersion: "42"}
    spec: {type: 0, resourceID: /subscriptions/S/resourcegroups/RG/providers/Microsoft.ManagedIdentity/userAssignedIdentities/demo-id, clientID: c}
  azureBindingRef:
    apiVersion: aadpodidentity.k8s.io/v1
    kind: AzureIdentityBinding
    metadata: {name: demo-binding, namespace: app}
    spec: {azureIdentity: demo-id, selector: demo}
  pod: web-1
  podNamespace: app
  nodename: aks-np-0000
status: {status: Assigned, availableReplicas: 1}
"#,
    );
    assert_eq!(aai.state(), AssignedState::Assigned);
    assert_eq!(aai.spec.node_name, "aks-np-0000");
}

#[test]
fn exception_round_trips() {
    let e: AzurePodIdentityException = round_trip(
        r#"
apiVersion: aadpodidentity.k8s.io/v1
kind: AzurePodIdentityException
metadata: {name: aks-addon-exception, namespace: kube-system}
spec: {podLabels: {kubernetes.azure.com/managedby: aks}}
"#,
    );
    assert_eq!(e.spec.pod_labels["kubernetes.azure.com/managedby"], "aks");
}

#[test]
fn go_written_objects_with_omitted_type_and_nested_metadata_decode() {
    let id: AzureIdentity = yaml(
        "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: x}\n\
         spec: {metadata: {creationTimestamp: null}, clientID: c}\nstatus: {metadata: {creationTimestamp: null}}\n",
    );
    assert_eq!(id.spec.kind(), Ok(IdentityKind::UserAssigned));
}

#[test]
fn unknown_identity_type_decodes_and_is_rejected_with_a_reason() {
    let id: AzureIdentity = yaml(
        "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {name: x}\nspec: {type: 3}\n",
    );
    let err = id.spec.kind().unwrap_err();
    assert!(err.to_string().starts_with("unknown identity type 3: spec.type must be 0"), "{err}");
}

#[test]
fn assigned_identity_without_status_is_legacy_and_usable() {
    let aai: AzureAssignedIdentity = yaml(
        "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureAssignedIdentity\nmetadata: {name: x}\nspec: {pod: p}\n",
    );
    assert_eq!(aai.state(), AssignedState::Legacy);
    assert!(aai.state().is_usable());
}

#[test]
fn committed_crds_equal_the_generated_ones() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(CRD_MANIFEST_PATH);
    let committed = std::fs::read_to_string(&path).unwrap();
    assert!(
        committed == render_yaml().unwrap(),
        "{CRD_MANIFEST_PATH} is stale: run `make crds` and commit the result"
    );
}

fn spec_properties(kind: &str) -> BTreeSet<String> {
    let crd = crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
    let schema = serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap()).unwrap();
    schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

#[test]
fn schemas_declare_exactly_upstreams_spec_fields() {
    assert_eq!(
        spec_properties("AzureIdentity"),
        set(&[
            "metadata",
            "type",
            "resourceID",
            "clientID",
            "clientPassword",
            "tenantID",
            "auxiliaryTenantIDs",
            "adResourceID",
            "adEndpoint",
            "replicas"
        ])
    );
    assert_eq!(
        spec_properties("AzureIdentityBinding"),
        set(&["metadata", "azureIdentity", "selector", "weight"])
    );
    assert_eq!(
        spec_properties("AzureAssignedIdentity"),
        set(&[
            "metadata",
            "azureIdentityRef",
            "azureBindingRef",
            "pod",
            "podNamespace",
            "nodename",
            "replicas"
        ])
    );
    assert_eq!(spec_properties("AzurePodIdentityException"), set(&["metadata", "podLabels"]));
}

#[test]
fn crds_are_approved_structural_and_have_no_status_subresource() {
    for crd in crds() {
        let v = serde_json::to_value(&crd).unwrap();
        assert_eq!(v["metadata"]["annotations"]["api-approved.kubernetes.io"], "unapproved");
        assert!(v["spec"]["versions"][0]["subresources"].get("status").is_none(), "{}", crd.spec.names.kind);
        assert!(!v.to_string().contains("\"default\":"), "schema defaults would rewrite upstream objects");
        assert!(!v.to_string().contains("x-kubernetes-preserve-unknown-fields"));
    }
    let printer = |kind: &str| -> Vec<String> {
        let crd = crds().into_iter().find(|c| c.spec.names.kind == kind).unwrap();
        crd.spec.versions[0].additional_printer_columns.iter().flatten().map(|c| c.name.clone()).collect()
    };
    assert_eq!(printer("AzureIdentity"), ["Type", "ClientID", "Age"]);
    assert_eq!(printer("AzureIdentityBinding"), ["AzureIdentity", "Selector", "Age"]);
}

#[test]
fn embedded_references_are_marked_embedded_resources() {
    let crd = crds().into_iter().find(|c| c.spec.names.kind == "AzureAssignedIdentity").unwrap();
    let v = serde_json::to_value(crd.spec.versions[0].schema.as_ref().unwrap()).unwrap();
    let spec = &v["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for key in ["azureIdentityRef", "azureBindingRef"] {
        assert_eq!(spec[key]["x-kubernetes-embedded-resource"], true);
    }
    assert_eq!(spec["azureIdentityRef"]["properties"]["spec"]["properties"]["type"]["type"], "integer");
}
