//! The test kit's real nodes: kubelets, containerd and CNI in namespaces of their own, running
//! real containers, and leaving nothing behind. Needs root (CI runs as root; a missing
//! prerequisite fails the test with what to install).
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use podid_testkit::images::Catalog;
use podid_testkit::{NodeSpec, RealCluster};

const NODE0: &str = "aks-nodepool1-12345678-vmss000000";
const NODE1: &str = "aks-nodepool1-12345678-vmss000001";

fn catalog() -> Catalog {
    Catalog::load().unwrap()
}

async fn two_nodes() -> RealCluster {
    podid_testkit::init_tracing();
    RealCluster::builder()
        .node(NodeSpec::new(NODE0).kube_proxy(true))
        .node(NodeSpec::new(NODE1).kube_proxy(false))
        .catalog(&catalog(), &["busybox"])
        .unwrap()
        .start()
        .await
        .unwrap()
}

fn busybox(name: &str, node: &str, script: &str) -> Pod {
    let image = catalog().reference("busybox").unwrap();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name },
        "spec": {
            "nodeName": node,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": image,
                "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/sh", "-c", script]
            }]
        }
    }))
    .unwrap()
}

async fn running(pods: &Api<Pod>, name: &str) -> Pod {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let pod = pods.get(name).await.unwrap();
        if pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            return pod;
        }
        assert!(tokio::time::Instant::now() < deadline, "pod {name} not Running: {:?}", pod.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn kubectl(cluster: &RealCluster, args: &[&str]) -> (bool, String) {
    let out = cluster.kubectl().args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn two_real_nodes_run_containers_reach_the_api_and_leave_nothing_behind() {
    let cluster = two_nodes().await;
    let tag = cluster.tag().to_owned();
    let ns = cluster.namespace("real-nodes").await.unwrap();
    let pods = Api::<Pod>::namespaced(cluster.api().client().unwrap(), &ns);
    // One pod per node: node 0 reaches the API through kube-proxy, node 1 through the one DNAT.
    let script =
        "echo hello from $(hostname); nc -w 3 10.96.0.1 443 </dev/null && echo api-reachable; sleep 3600";
    for (name, node) in [("on-node0", NODE0), ("on-node1", NODE1)] {
        pods.create(&PostParams::default(), &busybox(name, node, script)).await.unwrap();
    }
    for (name, node) in [("on-node0", NODE0), ("on-node1", NODE1)] {
        let pod = running(&pods, name).await;
        assert_eq!(pod.spec.as_ref().and_then(|s| s.node_name.as_deref()), Some(node));
        let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_default();
        assert!(ip.starts_with(if node == NODE0 { "10.244.0." } else { "10.244.1." }), "pod ip {ip}");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, logs) = kubectl(&cluster, &["-n", &ns, "logs", name]);
            if ok && logs.contains("api-reachable") {
                assert!(logs.contains(&format!("hello from {name}")), "{logs}");
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "logs of {name}: {logs}");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let (ok, out) = kubectl(&cluster, &["-n", &ns, "exec", name, "--", "sh", "-c", "echo exec-$((6*7))"]);
        assert!(ok && out.contains("exec-42"), "{out}");
        // Nothing beyond the node: a documentation address (TEST-NET-2) is unreachable.
        let (_, out) = kubectl(
            &cluster,
            &["-n", &ns, "exec", name, "--", "sh", "-c", "nc -w 2 198.51.100.1 80 </dev/null; echo rc=$?"],
        );
        assert!(out.contains("rc=1"), "{out}");
    }
    for node in cluster.nodes() {
        let routes = node.run(&["ip", "route"]).unwrap();
        assert!(!routes.contains("default"), "node {} has a default route: {routes}", node.name());
    }
    drop(cluster);
    let left = RealCluster::leftovers(&tag);
    assert!(left.is_empty(), "left behind: {left:#?}");
}
