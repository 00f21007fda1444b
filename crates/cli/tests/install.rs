//! `podid install --apply` and `kubectl apply` of `deploy/` against a real API server (this
//! binary's own: installing writes cluster-wide RBAC and CRDs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use install_support::{CLUSTER_WIDE, exists, kubectl, parse_yaml, private_cluster};
use podid_cli::install::{InstallOptions, render};
use serde_json::Value;
use support::podid;

fn resource_versions(objs: &[kube::api::DynamicObject]) -> Vec<Option<String>> {
    objs.iter().map(|o| o.metadata.resource_version.clone()).collect()
}

async fn fetch_all(client: &kube::Client, objs: &[Value]) -> Vec<kube::api::DynamicObject> {
    let mut out = Vec::new();
    for o in objs {
        assert!(exists(client, o).await, "{} {} was not applied", o["kind"], o["metadata"]["name"]);
        let text = serde_json::to_string(o).unwrap();
        let (gvk, ns, name) = {
            let v = o["apiVersion"].as_str().unwrap();
            let (g, ver) = v.split_once('/').unwrap_or(("", v));
            let mut gvk = kube::core::GroupVersionKind::gvk(g, ver, o["kind"].as_str().unwrap());
            if g == "policy" && kube::discovery::pinned_kind(client, &gvk).await.is_err() {
                gvk.version = "v1beta1".into();
            }
            (
                gvk,
                o["metadata"]["namespace"].as_str().map(String::from),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        };
        let (ar, caps) = kube::discovery::pinned_kind(client, &gvk).await.unwrap();
        let api: kube::Api<kube::api::DynamicObject> = match (caps.scope, ns) {
            (kube::discovery::Scope::Namespaced, Some(ns)) => {
                kube::Api::namespaced_with(client.clone(), &ns, &ar)
            }
            _ => kube::Api::all_with(client.clone(), &ar),
        };
        out.push(api.get(&name).await.unwrap_or_else(|e| panic!("{text}: {e}")));
    }
    out
}

#[tokio::test]
async fn install_apply_creates_every_object_and_reapplying_changes_nothing() {
    let cluster = private_cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("podid-install").await.unwrap();
    let _serial = CLUSTER_WIDE.lock().await;
    let out = podid(&client, &["install", "--apply", "--namespace", &ns]).await.ok();
    assert!(out.contains("applied"), "{out}");
    let objs = render(&InstallOptions { namespace: ns.clone(), ..InstallOptions::default() }).unwrap();
    let first = fetch_all(&client, &objs).await;
    // The controller Deployment carries the flags the install renders.
    let mic = first.iter().find(|o| o.types.as_ref().is_some_and(|t| t.kind == "Deployment")).unwrap();
    assert_eq!(mic.data["spec"]["replicas"], 2);
    podid(&client, &["install", "--apply", "--namespace", &ns]).await.ok();
    let second = fetch_all(&client, &objs).await;
    assert_eq!(resource_versions(&first), resource_versions(&second), "re-applying changed objects");
}

#[tokio::test]
async fn install_refuses_the_kubenet_policy_without_gatekeeper_and_writes_nothing() {
    let cluster = private_cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("podid-kubenet").await.unwrap();
    let line = podid(&client, &["install", "--apply", "--allow-kubenet", "--namespace", &ns]).await.err();
    assert!(line.contains("K8sPSPCapabilities") && line.contains("Gatekeeper"), "{line}");
    let sa = serde_json::json!({
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": "podid-nmi", "namespace": ns }
    });
    assert!(!exists(&client, &sa).await, "install wrote objects before failing");
}

#[tokio::test]
async fn install_rejects_an_invalid_namespace_with_one_line() {
    let cluster = private_cluster().await;
    let client = cluster.client().unwrap();
    let line = podid(&client, &["install", "--namespace", "Not_Valid"]).await.err();
    assert!(line.contains("namespace"), "{line}");
}

/// `kubectl apply --server-side` of `kubectl kustomize deploy/overlays/standard`. The test API
/// server is Kubernetes 1.20, which predates `policy/v1`: there the PodDisruptionBudget is sent
/// as `policy/v1beta1` (same fields), as `podid install --apply` does.
#[tokio::test]
async fn kubectl_applies_the_standard_overlay_to_the_api_server() {
    let cluster = private_cluster().await;
    let client = cluster.client().unwrap();
    let _serial = CLUSTER_WIDE.lock().await;
    let overlay = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/overlays/standard");
    let rendered = Command::new(kubectl()).arg("kustomize").arg(&overlay).output().unwrap();
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let mut objs = parse_yaml(&String::from_utf8(rendered.stdout).unwrap());
    let versions = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .arg("api-versions")
        .output()
        .unwrap();
    let served = String::from_utf8(versions.stdout).unwrap();
    assert!(served.contains("apps/v1"), "kubectl api-versions: {served}");
    if !served.lines().any(|l| l == "policy/v1") {
        for o in objs.iter_mut().filter(|o| o["kind"] == "PodDisruptionBudget") {
            o["apiVersion"] = "policy/v1beta1".into();
        }
    }
    let mut text = String::new();
    for o in &objs {
        text.push_str("---\n");
        text.push_str(&serde_json::to_string(o).unwrap());
        text.push('\n');
    }
    let mut child = Command::new(kubectl())
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["apply", "--server-side", "--force-conflicts", "--field-manager=kubectl-test", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(objs.len(), render(&InstallOptions::default()).unwrap().len());
    for o in &objs {
        assert!(
            exists(&client, o).await,
            "{} {} missing after kubectl apply",
            o["kind"],
            o["metadata"]["name"]
        );
    }
    // The agent runs in standard mode in kube-system.
    let ds = objs.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
    let args = ds["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--operation-mode=standard"), "{args}");
}
