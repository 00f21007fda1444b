//! Server-side apply of rendered objects, in order; waits for CRDs to be Established before
//! anything that needs them.
use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use serde_json::Value;
use tracing::{debug, info};

use super::FIELD_MANAGER;
use crate::error::{Error, KubeContext, Result};

/// How long to wait for the CRDs to be served.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// `apiVersion`, `kind`, namespace and name of an object.
pub(crate) fn identify(obj: &Value) -> Result<(GroupVersionKind, Option<String>, String)> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default();
    let kind = obj["kind"].as_str().unwrap_or_default();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if api_version.is_empty() || kind.is_empty() || name.is_empty() {
        return Err(Error::Usage(format!("object without apiVersion, kind or name: {obj}")));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let ns = obj["metadata"]["namespace"].as_str().map(str::to_string);
    Ok((GroupVersionKind::gvk(group, version, kind), ns, name.to_string()))
}

/// Finds how the server serves `gvk`; the PodDisruptionBudget falls back to `policy/v1beta1` on
/// servers older than Kubernetes 1.21.
pub(crate) async fn resolve(
    client: &kube::Client,
    gvk: &GroupVersionKind,
) -> Result<(ApiResource, ApiCapabilities)> {
    match kube::discovery::pinned_kind(client, gvk).await {
        Ok(found) => Ok(found),
        Err(e) if gvk.group == "policy" && gvk.version == "v1" => {
            debug!(error = %e, "policy/v1 not served; trying policy/v1beta1");
            let old = GroupVersionKind::gvk("policy", "v1beta1", &gvk.kind);
            kube::discovery::pinned_kind(client, &old).await.doing(|| format!("find {}", gvk.kind))
        }
        Err(e) => Err(Error::Kube {
            action: format!(
                "the API server does not serve {}/{} {}{}",
                gvk.group,
                gvk.version,
                gvk.kind,
                if gvk.group == "constraints.gatekeeper.sh" {
                    " (install Gatekeeper and the gatekeeper-library template k8spspcapabilities first, see docs/install.md)"
                } else {
                    ""
                }
            ),
            source: e,
        }),
    }
}

/// An `Api` for one object.
pub(crate) fn api_for(
    client: &kube::Client,
    ar: &ApiResource,
    caps: &ApiCapabilities,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    match (&caps.scope, ns) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, ar),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), ar),
        (Scope::Cluster, _) => Api::all_with(client.clone(), ar),
    }
}

/// Applies `objects` server-side (field manager `podid-install`, forced), in order. Fails before
/// writing anything if the server does not serve a kind the objects themselves do not define
/// (e.g. the kubenet policy without Gatekeeper).
pub async fn apply(client: &kube::Client, objects: &[Value]) -> Result<()> {
    let defined: Vec<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .filter_map(|o| o["spec"]["group"].as_str())
        .collect();
    for obj in objects {
        let (gvk, _, _) = identify(obj)?;
        if !defined.contains(&gvk.group.as_str()) {
            resolve(client, &gvk).await?;
        }
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut crds = Vec::new();
    for (i, obj) in objects.iter().enumerate() {
        let (gvk, ns, name) = identify(obj)?;
        if gvk.kind != "CustomResourceDefinition" && !crds.is_empty() {
            wait_established(client, &std::mem::take(&mut crds)).await?;
        }
        let (ar, caps) = resolve(client, &gvk).await?;
        let mut body = obj.clone();
        body["apiVersion"] = Value::String(ar.api_version.clone());
        let api = api_for(client, &ar, &caps, ns.as_deref());
        api.patch(&name, &params, &Patch::Apply(&body))
            .await
            .doing(|| format!("apply {} {}", gvk.kind, display(ns.as_deref(), &name)))?;
        debug!(kind = %gvk.kind, %name, "applied");
        if gvk.kind == "CustomResourceDefinition" {
            crds.push(name);
        }
        if i + 1 == objects.len() && !crds.is_empty() {
            wait_established(client, &crds).await?;
        }
    }
    info!(count = objects.len(), "applied");
    Ok(())
}

fn display(ns: Option<&str>, name: &str) -> String {
    ns.map_or_else(|| name.to_string(), |ns| format!("{ns}/{name}"))
}

/// Waits until every CRD in `names` has condition `Established=True` and its kind is discoverable.
async fn wait_established(client: &kube::Client, names: &[String]) -> Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + CRD_TIMEOUT;
    for name in names {
        loop {
            let crd = api.get(name).await.doing(|| format!("read CRD {name}"))?;
            let established = crd
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
            let served = if established {
                let v =
                    crd.spec.versions.iter().find(|v| v.served).map(|v| v.name.clone()).unwrap_or_default();
                let gvk = GroupVersionKind::gvk(&crd.spec.group, &v, &crd.spec.names.kind);
                kube::discovery::pinned_kind(client, &gvk).await.is_ok()
            } else {
                false
            };
            if served {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::Usage(format!(
                    "CRD {name} was not established within {}s: check the API server's logs",
                    CRD_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}
