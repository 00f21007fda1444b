//! What a fresh API server needs before tests can use it: readiness, anonymous access to the
//! service-account issuer discovery documents, and podid's CRDs, Established and served.
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::wait::{Condition, conditions};
use kube::{Api, Client};
use tracing::instrument::WithSubscriber as _;
use tracing::subscriber::NoSubscriber;

use crate::error::KubeContext;
use crate::process::Processes;
use crate::wait::eventually;
use crate::{Error, Result};

const MANAGER: &str = "podid-testkit";
const POLL: Duration = Duration::from_millis(100);

/// Waits until `/readyz` answers `ok`, failing early if a process dies.
pub(crate) async fn wait_ready(client: &Client, processes: &mut Processes, timeout: Duration) -> Result<()> {
    eventually("the API server to become ready (/readyz)", timeout, POLL, || {
        let alive = processes.check_alive();
        async move {
            alive?;
            Ok(readyz(client).await.then_some(()))
        }
    })
    .await
}

pub(crate) async fn readyz(client: &Client) -> bool {
    // Refused connections and 500s are expected until it is ready; kube would log each as an error.
    let probe = client.request_text(get("/readyz")).with_subscriber(NoSubscriber::default());
    probe.await.is_ok_and(|body| body.trim() == "ok")
}

/// A GET of a fixed path of the API server.
fn get(path: &'static str) -> http::Request<Vec<u8>> {
    let mut request = http::Request::new(Vec::new());
    *request.uri_mut() = http::Uri::from_static(path);
    request
}

/// Lets anyone read `/.well-known/openid-configuration` and `/openid/v1/jwks`, as a cluster
/// whose issuer Entra ID must reach does.
pub(crate) async fn allow_issuer_discovery(client: &Client) -> Result<()> {
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some("podid-testkit:service-account-issuer-discovery".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "system:service-account-issuer-discovery".into(),
        },
        subjects: Some(vec![Subject {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Group".into(),
            name: "system:unauthenticated".into(),
            ..Default::default()
        }]),
    };
    let name = binding.metadata.name.clone().unwrap_or_default();
    Api::<ClusterRoleBinding>::all(client.clone())
        .patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&binding))
        .await
        .context(|| format!("apply ClusterRoleBinding {name}"))?;
    Ok(())
}

/// Applies podid's CRDs and waits until each is Established and its resources can be listed.
pub(crate) async fn install_crds(client: &Client, timeout: Duration) -> Result<()> {
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let crds = podid_api::crd::crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(crd))
            .await
            .context(|| format!("apply CRD {name}"))?;
    }
    for crd in &crds {
        wait_served(&api, client, crd, timeout).await?;
    }
    Ok(())
}

async fn wait_served(
    api: &Api<CustomResourceDefinition>,
    client: &Client,
    crd: &CustomResourceDefinition,
    timeout: Duration,
) -> Result<()> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let version = crd.spec.versions.first().map(|v| v.name.clone()).unwrap_or_default();
    let gvk = GroupVersionKind::gvk(&crd.spec.group, &version, &crd.spec.names.kind);
    let resources = Api::<DynamicObject>::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, &crd.spec.names.plural),
    );
    eventually(&format!("CRD {name} to be Established and served"), timeout, POLL, || async {
        let current = api.get_opt(&name).await.context(|| format!("get CRD {name}"))?;
        if !conditions::is_crd_established().matches_object(current.as_ref()) {
            return Ok(None);
        }
        // Established can precede the first successful list by a moment.
        Ok(resources.list(&ListParams::default().limit(1)).await.ok().map(|_| ()))
    })
    .await
}

/// The issuer a cluster's service-account tokens carry, from its discovery document.
pub(crate) async fn discover_issuer(client: &Client) -> Result<String> {
    const PATH: &str = "/.well-known/openid-configuration";
    let action = || format!("GET {PATH} (service-account issuer discovery)");
    let document: serde_json::Value = client.request(get(PATH)).await.context(action)?;
    match document["issuer"].as_str() {
        Some(issuer) => Ok(issuer.to_owned()),
        None => Err(Error::Unexpected(format!("{PATH} names no issuer: {document}"))),
    }
}
