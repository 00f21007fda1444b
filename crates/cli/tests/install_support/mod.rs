//! Helpers of the install, uninstall and RBAC tests: a private API server per test binary
//! (installing writes cluster-wide objects, which must not race other binaries' tests), kubectl,
//! and order-insensitive comparison of rendered objects.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod components;

use std::path::PathBuf;

use podid_cli::install::{InstallOptions, apply, render};
use podid_testkit::TestCluster;
use serde_json::Value;
use tokio::sync::OnceCell;

static CLUSTER: OnceCell<TestCluster> = OnceCell::const_new();

/// This test binary's own cluster (started on first use, stopped when the process ends).
pub async fn private_cluster() -> &'static TestCluster {
    podid_azure::install_crypto_provider();
    CLUSTER.get_or_init(|| async { TestCluster::start().await.expect("private test cluster starts") }).await
}

/// Renders and applies `opts`; returns the objects.
pub async fn install(client: &kube::Client, opts: &InstallOptions) -> Vec<Value> {
    let objects = render(opts).unwrap();
    apply(client, &objects).await.unwrap();
    objects
}

/// `kubectl` from PATH, else the one `scripts/test-deps.sh` puts into the podid cache.
pub fn kubectl() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file());
    let cached = podid_testkit::cache_dir().join("bin/kubectl");
    on_path
        .or_else(|| cached.is_file().then_some(cached))
        .expect("kubectl is missing: run scripts/test-deps.sh (make test-deps), which installs it")
}

/// Objects sorted by apiVersion, kind, namespace, name.
pub fn sorted(mut objs: Vec<Value>) -> Vec<Value> {
    objs.sort_by_key(|o| {
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        (s(&o["apiVersion"]), s(&o["kind"]), s(&o["metadata"]["namespace"]), s(&o["metadata"]["name"]))
    });
    objs
}

/// Multi-document YAML as objects.
pub fn parse_yaml(text: &str) -> Vec<Value> {
    let docs: Vec<Option<Value>> = serde_saphyr::from_multiple(text).unwrap();
    docs.into_iter().flatten().collect()
}

/// Whether the object exists on the server (any served version of its kind).
pub async fn exists(client: &kube::Client, obj: &Value) -> bool {
    use kube::api::{Api, DynamicObject};
    use kube::core::GroupVersionKind;
    use kube::discovery::Scope;
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let mut gvk = GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap());
    if kube::discovery::pinned_kind(client, &gvk).await.is_err() && group == "policy" {
        gvk.version = "v1beta1".into();
    }
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
    let name = obj["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match (caps.scope, obj["metadata"]["namespace"].as_str()) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, &ar),
        _ => Api::all_with(client.clone(), &ar),
    };
    api.get_opt(name).await.unwrap().is_some()
}

/// Held by tests that write cluster-wide objects (CRDs, ClusterRoles), so they do not interleave.
pub static CLUSTER_WIDE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The identities on the emulator's built-in scale set.
pub fn on_scale_set(emu: &podid_emulator::RunningEmulator) -> Vec<String> {
    use podid_emulator::config::builtin::{NODE_RESOURCE_GROUP, SCALE_SET};
    emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap_or_default()
}

/// Every AzureAssignedIdentity of the cluster.
pub async fn aais(admin: &kube::Client) -> Vec<podid_api::AzureAssignedIdentity> {
    let all = kube::Api::<podid_api::AzureAssignedIdentity>::all(admin.clone());
    all.list(&Default::default()).await.unwrap().items
}

/// Polls `f` every 100 ms until it holds; fails after 30 s naming `what`.
pub async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !f().await {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
