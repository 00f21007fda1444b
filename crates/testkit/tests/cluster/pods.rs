//! Playing the kubelet: nodes, pods bound to them, phases, field selectors, deletion.
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use podid_testkit::kubelet::{self, NodeBuilder, PodBuilder};

use super::{cluster, ip};

#[tokio::test]
async fn a_node_carries_its_provider_id_and_reports_ready() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let name = format!("{}-n1", cluster.namespace("node").await.unwrap());
    NodeBuilder::new(&name)
        .vmss("S", "RG", "vmss0", 0)
        .internal_ip(ip("10.240.0.4"))
        .create(&client)
        .await
        .unwrap();

    let node = Api::<Node>::all(client.clone()).get(&name).await.unwrap();
    assert_eq!(
        node.spec.unwrap().provider_id.as_deref(),
        Some(
            "azure:///subscriptions/S/resourceGroups/RG/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0/virtualMachines/0"
        )
    );
    let status = node.status.unwrap();
    let ready = status.conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "True");
    assert!(status.addresses.unwrap().iter().any(|a| a.type_ == "InternalIP" && a.address == "10.240.0.4"));

    kubelet::delete_node(&client, &name).await.unwrap();
    assert!(Api::<Node>::all(client).get_opt(&name).await.unwrap().is_none());
}

#[tokio::test]
async fn a_pod_with_an_ip_runs_on_its_node() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pod-running").await.unwrap();
    let node = format!("{ns}-n1");
    NodeBuilder::new(&node).internal_ip(ip("10.240.0.5")).create(&client).await.unwrap();

    let pod = PodBuilder::new(&ns, "web")
        .node(&node)
        .label("aadpodidbinding", "web")
        .service_account("web-sa")
        .ip(ip("10.244.0.7"))
        .create(&client)
        .await
        .unwrap();

    let (spec, status) = (pod.spec.unwrap(), pod.status.unwrap());
    assert_eq!(spec.node_name.as_deref(), Some(node.as_str()));
    assert_eq!(spec.service_account_name.as_deref(), Some("web-sa"));
    assert_eq!(pod.metadata.labels.unwrap()["aadpodidbinding"], "web");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.7"));
    assert_eq!(status.host_ip.as_deref(), Some("10.240.0.5"));
}

#[tokio::test]
async fn a_host_network_pod_without_ip_stays_pending() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pod-pending").await.unwrap();
    let pod =
        PodBuilder::new(&ns, "agent").node(format!("{ns}-n1")).host_network().create(&client).await.unwrap();
    assert_eq!(pod.spec.unwrap().host_network, Some(true));
    assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Pending"));
}

#[tokio::test]
async fn a_pod_succeeds_then_is_deleted_at_once() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pod-lifecycle").await.unwrap();
    PodBuilder::new(&ns, "job").node(format!("{ns}-n1")).ip(ip("10.244.1.1")).create(&client).await.unwrap();

    let done = kubelet::set_succeeded(&client, &ns, "job").await.unwrap();
    assert_eq!(done.status.unwrap().phase.as_deref(), Some("Succeeded"));

    kubelet::delete_pod(&client, &ns, "job").await.unwrap();
    assert!(Api::<Pod>::namespaced(client.clone(), &ns).get_opt("job").await.unwrap().is_none());
    // Deleting what is gone is fine.
    kubelet::delete_pod(&client, &ns, "job").await.unwrap();
}

#[tokio::test]
async fn a_running_pod_is_deleted_without_a_kubelet() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pod-delete-running").await.unwrap();
    PodBuilder::new(&ns, "web").node(format!("{ns}-n1")).ip(ip("10.244.1.2")).create(&client).await.unwrap();
    kubelet::delete_pod(&client, &ns, "web").await.unwrap();
    assert!(Api::<Pod>::namespaced(client, &ns).get_opt("web").await.unwrap().is_none());
}

#[tokio::test]
async fn a_node_name_field_selector_sees_only_that_nodes_pods() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pods-by-node").await.unwrap();
    let (n1, n2) = (format!("{ns}-n1"), format!("{ns}-n2"));
    PodBuilder::new(&ns, "a1").node(&n1).ip(ip("10.244.2.1")).create(&client).await.unwrap();
    PodBuilder::new(&ns, "b1").node(&n2).ip(ip("10.244.3.1")).create(&client).await.unwrap();

    let pods = Api::<Pod>::namespaced(client.clone(), &ns);
    let selector = format!("spec.nodeName={n1}");
    let listed = pods.list(&ListParams::default().fields(&selector)).await.unwrap();
    assert_eq!(names(listed.items.iter()), ["a1"]);

    let mut watch =
        watcher(pods.clone(), watcher::Config::default().fields(&selector)).applied_objects().boxed();
    PodBuilder::new(&ns, "b2").node(&n2).ip(ip("10.244.3.2")).create(&client).await.unwrap();
    PodBuilder::new(&ns, "a2").node(&n1).ip(ip("10.244.2.2")).create(&client).await.unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"a2".to_owned()) {
        let pod =
            tokio::time::timeout(Duration::from_secs(10), watch.try_next()).await.unwrap().unwrap().unwrap();
        seen.push(pod.name_any());
    }
    assert!(seen.iter().all(|name| name.starts_with('a')), "the watch saw another node's pods: {seen:?}");
}

#[tokio::test]
async fn a_pod_is_found_by_its_ip() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("pods-by-ip").await.unwrap();
    let node = format!("{ns}-n1");
    PodBuilder::new(&ns, "one").node(&node).ip(ip("10.244.4.1")).create(&client).await.unwrap();
    PodBuilder::new(&ns, "two").node(&node).ip(ip("10.244.4.2")).create(&client).await.unwrap();
    PodBuilder::new(&ns, "pending").node(&node).create(&client).await.unwrap();

    let pods = Api::<Pod>::namespaced(client, &ns);
    let found = pods.list(&ListParams::default().fields("status.podIP=10.244.4.2")).await.unwrap();
    assert_eq!(names(found.items.iter()), ["two"]);
    let none = pods.list(&ListParams::default().fields("status.podIP=10.244.4.9")).await.unwrap();
    assert!(none.items.is_empty());
}

fn names<'a>(pods: impl Iterator<Item = &'a Pod>) -> Vec<String> {
    pods.map(|pod| pod.name_any()).collect()
}
