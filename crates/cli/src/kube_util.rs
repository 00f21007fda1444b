//! Small Kubernetes helpers shared by the commands, and the client itself: built from the
//! kubeconfig with a short connect timeout and podid's proxy decision for the API server.
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::ListParams;
use podid_api::names::validate_dns_subdomain;

use crate::error::{Error, KubeContext, Result, is_forbidden, is_not_found};

pub use crate::error::ApiServer;

/// A Kubernetes client from `kubeconfig`, else `$KUBECONFIG`/`~/.kube/config`/in-cluster, that
/// gives up connecting after `connect_timeout` and reaches the server through `proxy` when its
/// rules say so (never for loopback).
pub async fn connect(
    kubeconfig: Option<&Path>,
    connect_timeout: Duration,
    proxy: &podid_azure::ProxySettings,
) -> Result<(kube::Client, ApiServer)> {
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| Error::Usage(format!("cannot read kubeconfig {}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &Default::default())
                .await
                .map_err(|e| Error::Usage(format!("kubeconfig {} is unusable: {e}", path.display())))?
        }
        None => kube::Config::infer().await.map_err(|e| {
            Error::Usage(format!("no Kubernetes configuration found (pass --kubeconfig): {e}"))
        })?,
    };
    config.connect_timeout = Some(connect_timeout);
    config.proxy_url = proxy.for_kube(&config.cluster_url, config.proxy_url.as_ref());
    let server = ApiServer {
        url: config.cluster_url.to_string().trim_end_matches('/').to_string(),
        connect_timeout,
        proxy: config.proxy_url.as_ref().map(podid_azure::proxy::redacted_uri),
    };
    let client = kube::Client::try_from(config)
        .map_err(|e| Error::Usage(format!("cannot build a Kubernetes client: {e}")))?;
    Ok((client, server))
}

/// Checks `name` is an RFC 1123 subdomain.
pub(crate) fn valid_name(what: &'static str, name: &str) -> Result<()> {
    validate_dns_subdomain(name).map_err(|source| Error::InvalidName { what, source })
}

/// Fails unless namespace `ns` exists. A caller that may not read namespaces is let through (the
/// create that follows fails clearly if it is missing).
pub(crate) async fn ensure_namespace(client: &kube::Client, ns: &str) -> Result<()> {
    valid_name("namespace", ns)?;
    match Api::<Namespace>::all(client.clone()).get(ns).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Err(Error::NoNamespace(ns.to_string())),
        Err(e) if is_forbidden(&e) => Ok(()),
        Err(e) => Err(e).doing(|| format!("read namespace {ns}")),
    }
}

/// `Api` for one namespace, or all of them.
pub(crate) fn scoped<K>(client: &kube::Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Every object of a kind, in one namespace or all.
pub(crate) async fn list_all<K>(client: &kube::Client, ns: Option<&str>, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let list = scoped::<K>(client, ns).list(&ListParams::default()).await.doing(|| format!("list {what}"))?;
    Ok(list.items)
}

/// Splits `NAMESPACE/NAME`.
pub(crate) fn split_ref(s: &str, what: &'static str) -> Result<(String, String)> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(Error::Usage(format!("{what} must be given as NAMESPACE/NAME, not {s:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_exactly_one_slash() {
        assert_eq!(split_ref("ns/pod", "the pod").unwrap(), ("ns".into(), "pod".into()));
        for bad in ["pod", "/pod", "ns/", "a/b/c"] {
            assert!(split_ref(bad, "the pod").is_err(), "{bad}");
        }
    }
}
