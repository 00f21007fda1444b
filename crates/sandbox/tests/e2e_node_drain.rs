//! End to end, standard mode: a node is drained and deleted (a scale-down) while pods use an
//! identity. Its own world, since the node does not come back.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use podid_sandbox::Mode;
use support::{PodSpec, exclusive};

const MODE: Mode = Mode::Standard;
const REPLICAS: usize = 4;

fn deployment(world: &podid_sandbox::world::World) -> Deployment {
    let template = PodSpec::new("unused", "busybox", "app").shell("sleep 3600").build(world);
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": "app" },
        "spec": {
            "replicas": REPLICAS,
            "selector": { "matchLabels": { "app": "app" } },
            "template": {
                "metadata": { "labels": { "app": "app", "aadpodidbinding": "app" } },
                "spec": { "terminationGracePeriodSeconds": 1, "containers": template.spec.unwrap().containers }
            }
        }
    }))
    .unwrap()
}

/// The nodes of the assignments of namespace `ns` once there is one Assigned per running pod.
async fn assigned_nodes(world: &podid_sandbox::world::World, ns: &str) -> BTreeSet<String> {
    let client = world.cluster.api().client().unwrap();
    let pods = Api::<Pod>::namespaced(client, ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let running: BTreeSet<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .filter_map(|p| p.metadata.name)
            .collect();
        let list = support::assignments_of(world, ns).await;
        let for_pods: BTreeSet<String> = list.iter().map(|a| a.spec.pod.clone()).collect();
        let done = running.len() == REPLICAS
            && for_pods == running
            && list.iter().all(|a| a.status.as_ref().is_some_and(|s| s.status == "Assigned"));
        if done {
            return list.iter().map(|a| a.spec.node_name.clone()).collect();
        }
        assert!(tokio::time::Instant::now() < deadline, "pods {running:?}, assignments for {for_pods:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_drained_and_deleted_node_leaves_its_pods_served_on_the_other_node_and_no_assignment_behind() {
    let world = support::world(MODE);
    let _guard = exclusive().await;
    let ns = support::app_namespace(world, MODE, "drain").await;
    let client = world.cluster.api().client().unwrap();
    Api::<Deployment>::namespaced(client, &ns)
        .create(&PostParams::default(), &deployment(world))
        .await
        .unwrap();
    let before = assigned_nodes(world, &ns).await;
    let nodes = support::nodes(world);
    let (keep, gone) = (nodes[0].clone(), nodes[1].clone());
    support::run(world.kubectl().unwrap().args([
        "drain",
        &gone,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=120s",
    ]));
    world.cluster.stop_node(&gone).await.unwrap();
    support::run(world.kubectl().unwrap().args(["delete", "node", &gone, "--wait=true"]));
    let after = assigned_nodes(world, &ns).await;
    assert_eq!(after, BTreeSet::from([keep.clone()]), "assignments after the drain (before: {before:?})");
    // A pod of the identity is still served, on the remaining node.
    support::app_token_served(world, &ns, "after-drain", &keep).await;
}
