//! The default AzurePodIdentityExceptions and, for kubenet clusters, the NET_RAW drop policy.
//!
//! Kubenet lets a pod with `CAP_NET_RAW` spoof another pod's IP (ARP) and obtain its tokens
//! (CVE-2021-1677). The seed's mitigation is Gatekeeper's `K8sPSPCapabilities` constraint requiring
//! every container to drop `NET_RAW`; it needs Gatekeeper and the gatekeeper-library template
//! `k8spspcapabilities` installed (docs/install.md).
use serde_json::{Value, json};

use super::{InstallOptions, labels};

/// The AKS add-on's exception: AKS-managed pods reach IMDS directly.
pub const AKS_ADDON_EXCEPTION: &str = "aks-addon-exception";
/// The exception for the controller's own pods.
pub const MIC_EXCEPTION: &str = "podid-mic-exception";
/// Name of the Gatekeeper constraint rendered with `--allow-kubenet`.
pub const NET_RAW_CONSTRAINT: &str = "podid-drop-net-raw";

fn exception(name: &str, ns: &str, pod_labels: Value) -> Value {
    json!({
        "apiVersion": "aadpodidentity.k8s.io/v1",
        "kind": "AzurePodIdentityException",
        "metadata": { "name": name, "namespace": ns, "labels": labels(None) },
        "spec": { "podLabels": pod_labels }
    })
}

/// Exceptions (and the kubenet policy).
pub(crate) fn objects(opts: &InstallOptions) -> Vec<Value> {
    let mut out = vec![exception(
        AKS_ADDON_EXCEPTION,
        "kube-system",
        json!({ "kubernetes.azure.com/managedby": "aks" }),
    )];
    if opts.mode.has_controller() {
        out.push(exception(MIC_EXCEPTION, &opts.namespace, json!({ "app.kubernetes.io/component": "mic" })));
    }
    if opts.allow_kubenet {
        let mut excluded = vec!["kube-system".to_string()];
        if opts.namespace != "kube-system" {
            excluded.push(opts.namespace.clone());
        }
        out.push(json!({
            "apiVersion": "constraints.gatekeeper.sh/v1beta1",
            "kind": "K8sPSPCapabilities",
            "metadata": { "name": NET_RAW_CONSTRAINT, "labels": labels(None) },
            "spec": {
                "match": {
                    "kinds": [{ "apiGroups": [""], "kinds": ["Pod"] }],
                    "excludedNamespaces": excluded
                },
                "parameters": { "requiredDropCapabilities": ["NET_RAW"] }
            }
        }));
    }
    out
}
