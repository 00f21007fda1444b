//! The committed CRDs, applied with kubectl to a real kube-apiserver, refuse integers that do not
//! fit the int32 fields upstream's Go types (and podid's) hold them in. `format: int32` alone is
//! not enforced by the API server: before the bounds, `type: 1099511627776` was stored, and every
//! client then failed to decode the whole list.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use podid_api::crd::CRD_MANIFEST_PATH;
use podid_testkit::TestCluster;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kubectl(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs (it is installed by scripts/test-deps.sh)");
    if let Some(text) = stdin {
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// The shared cluster with the committed CRDs applied by kubectl (as a user installs them), and a
/// fresh namespace.
async fn cluster_with_committed_crds(prefix: &str) -> (&'static TestCluster, String) {
    let cluster = TestCluster::shared().await.expect("test cluster starts");
    let manifest = repo_root().join(CRD_MANIFEST_PATH);
    let path = manifest.display().to_string();
    let kubeconfig = cluster.kubeconfig_path();
    let applied = kubectl(kubeconfig, &["apply", "--server-side", "--force-conflicts", "-f", &path], None);
    assert!(applied.status.success(), "kubectl apply: {}", String::from_utf8_lossy(&applied.stderr));
    let waited = kubectl(
        kubeconfig,
        &["wait", "--for", "condition=Established", "--timeout", "60s", "-f", &path],
        None,
    );
    assert!(waited.status.success(), "kubectl wait: {}", String::from_utf8_lossy(&waited.stderr));
    let ns = cluster.namespace(prefix).await.expect("namespace");
    (cluster, ns)
}

fn identity(ns: &str, name: &str, identity_type: &str) -> String {
    format!(
        "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentity\nmetadata: {{name: {name}, namespace: {ns}}}\n\
         spec: {{type: {identity_type}, clientID: 00000000-0000-4000-8000-000000000001, resourceID: \
         /subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}}}\n"
    )
}

fn create(cluster: &TestCluster, yaml: &str) -> Output {
    kubectl(cluster.kubeconfig_path(), &["create", "-f", "-"], Some(yaml))
}

#[tokio::test]
async fn identity_type_beyond_int32_is_refused_by_the_api_server() {
    let (cluster, ns) = cluster_with_committed_crds("crd-type-bounds").await;
    for (name, too_big) in
        [("above", "1099511627776"), ("just-above", "2147483648"), ("below", "-2147483649")]
    {
        let out = create(cluster, &identity(&ns, name, too_big));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "type {too_big} was accepted");
        assert!(stderr.contains("spec.type"), "{too_big}: {stderr}");
        assert!(
            stderr.contains("should be less than or equal to 2147483647")
                || stderr.contains("should be greater than or equal to -2147483648"),
            "{too_big}: {stderr}"
        );
    }
    let listed =
        kubectl(cluster.kubeconfig_path(), &["get", "azureidentities", "-n", &ns, "-o", "name"], None);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "", "nothing was stored");
}

#[tokio::test]
async fn every_int32_value_including_unknown_identity_types_is_stored() {
    let (cluster, ns) = cluster_with_committed_crds("crd-type-int32").await;
    // An unknown type stays storable: the controller reports it instead of the API server hiding it.
    for (name, value) in [("zero", "0"), ("unknown", "7"), ("max", "2147483647"), ("min", "-2147483648")] {
        let out = create(cluster, &identity(&ns, name, value));
        assert!(out.status.success(), "type {value}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let client = cluster.client().unwrap();
    let api: kube::Api<podid_api::AzureIdentity> = kube::Api::namespaced(client, &ns);
    let mut types: Vec<i64> =
        api.list(&Default::default()).await.unwrap().items.iter().map(|i| i.spec.identity_type).collect();
    types.sort_unstable();
    assert_eq!(types, [-2147483648, 0, 7, 2147483647], "the whole list decodes");
}

#[tokio::test]
async fn binding_weight_beyond_int32_is_refused_by_the_api_server() {
    let (cluster, ns) = cluster_with_committed_crds("crd-weight-bounds").await;
    let binding = |weight: &str| {
        format!(
            "apiVersion: aadpodidentity.k8s.io/v1\nkind: AzureIdentityBinding\nmetadata: {{name: b{}, namespace: {ns}}}\n\
             spec: {{azureIdentity: id, selector: app, weight: {weight}}}\n",
            weight.len()
        )
    };
    let out = create(cluster, &binding("4294967296"));
    assert!(!out.status.success(), "weight 4294967296 was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("spec.weight"), "{out:?}");
    let out = create(cluster, &binding("100"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
