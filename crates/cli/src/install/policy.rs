//! The default AzurePodIdentityExceptions and, for kubenet clusters, the NET_RAW drop policy.
//!
//! Kubenet lets a pod with `CAP_NET_RAW` spoof another pod's IP (ARP) and obtain its tokens
//! (CVE-2021-1677). The seed's mitigation is Gatekeeper's `K8sPSPCapabilities` constraint requiring
//! every container to drop `NET_RAW`; it needs Gatekeeper and the gatekeeper-library template
//! `k8spspcapabilities` installed (docs/install.md).
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzurePodIdentityException, AzurePodIdentityExceptionSpec};
use serde::Serialize;

use super::{InstallOptions, Rendered, meta};
use crate::error::Result;

/// The AKS add-on's exception: AKS-managed pods reach IMDS directly.
pub const AKS_ADDON_EXCEPTION: &str = "aks-addon-exception";
/// The exception for the controller's own pods.
pub const MIC_EXCEPTION: &str = "podid-mic-exception";
/// Name of the Gatekeeper constraint rendered with `--allow-kubenet`.
pub const NET_RAW_CONSTRAINT: &str = "podid-drop-net-raw";

fn exception(name: &str, ns: &str, label: (&str, &str)) -> AzurePodIdentityException {
    let spec = AzurePodIdentityExceptionSpec {
        pod_labels: BTreeMap::from([(label.0.to_owned(), label.1.to_owned())]),
        ..Default::default()
    };
    let mut exception = AzurePodIdentityException::new(name, spec);
    exception.metadata = meta(name, Some(ns), None);
    exception
}

/// Gatekeeper's `K8sPSPCapabilities` constraint (a custom resource of the gatekeeper-library).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PspCapabilities {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta,
    spec: PspCapabilitiesSpec,
}

#[derive(Debug, Serialize)]
struct PspCapabilitiesSpec {
    #[serde(rename = "match")]
    matches: ConstraintMatch,
    parameters: PspCapabilitiesParameters,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConstraintMatch {
    kinds: Vec<MatchKinds>,
    excluded_namespaces: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct MatchKinds {
    api_groups: Vec<String>,
    kinds: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PspCapabilitiesParameters {
    required_drop_capabilities: Vec<String>,
}

fn net_raw_constraint(opts: &InstallOptions) -> PspCapabilities {
    let mut excluded = vec!["kube-system".to_string()];
    if opts.namespace != "kube-system" {
        excluded.push(opts.namespace.clone());
    }
    PspCapabilities {
        api_version: "constraints.gatekeeper.sh/v1beta1",
        kind: "K8sPSPCapabilities",
        metadata: meta(NET_RAW_CONSTRAINT, None, None),
        spec: PspCapabilitiesSpec {
            matches: ConstraintMatch {
                kinds: vec![MatchKinds { api_groups: vec![String::new()], kinds: vec!["Pod".into()] }],
                excluded_namespaces: excluded,
            },
            parameters: PspCapabilitiesParameters { required_drop_capabilities: vec!["NET_RAW".into()] },
        },
    }
}

/// Exceptions (and the kubenet policy).
pub(crate) fn objects(opts: &InstallOptions, out: &mut Rendered) -> Result<()> {
    out.push(&exception(AKS_ADDON_EXCEPTION, "kube-system", ("kubernetes.azure.com/managedby", "aks")))?;
    if opts.mode.has_controller() {
        out.push(&exception(MIC_EXCEPTION, &opts.namespace, ("app.kubernetes.io/component", "mic")))?;
    }
    if opts.allow_kubenet {
        out.push(&net_raw_constraint(opts))?;
    }
    Ok(())
}
