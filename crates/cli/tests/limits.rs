//! The AKS add-on's limits: at most 200 pod identities and 200 exceptions per cluster. Each test
//! starts its own cluster, since the limits count every namespace.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use futures::StreamExt;
use podid_testkit::TestCluster;
use support::{podid, resource_id};

async fn fresh() -> (TestCluster, kube::Client, String) {
    let cluster = TestCluster::start().await.expect("cluster");
    let ns = cluster.namespace("limits").await.unwrap();
    let client = cluster.client().unwrap();
    (cluster, client, ns)
}

#[tokio::test]
async fn the_201st_identity_is_refused_unless_the_limit_is_raised() {
    let (_cluster, client, ns) = fresh().await;
    let client_id = "00000000-0000-4000-8000-000000000001";
    futures::stream::iter(0..200)
        .for_each_concurrent(32, |i| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                let name = format!("id-{i}");
                let id = resource_id(&name);
                podid(
                    &client,
                    &[
                        "identity",
                        "add",
                        "-n",
                        &ns,
                        "--name",
                        &name,
                        "--identity-resource-id",
                        &id,
                        "--client-id",
                        client_id,
                    ],
                )
                .await
                .ok();
            }
        })
        .await;
    let id = resource_id("one-more");
    let args = [
        "identity",
        "add",
        "-n",
        &ns,
        "--name",
        "one-more",
        "--identity-resource-id",
        &id,
        "--client-id",
        client_id,
    ];
    let err = podid(&client, &args).await.err();
    assert_eq!(
        err,
        "the cluster already has 200 pod identities (limit 200, as the AKS add-on allows): delete unused ones or \
         raise the limit with --max-identities"
    );
    let mut raised = args.to_vec();
    raised.extend(["--max-identities", "201"]);
    podid(&client, &raised).await.ok();
    // Re-adding an existing identity is not a new one: the limit does not apply.
    podid(&client, &args).await.ok();
}

#[tokio::test]
async fn the_201st_exception_is_refused_unless_the_limit_is_raised() {
    let (_cluster, client, ns) = fresh().await;
    futures::stream::iter(0..200)
        .for_each_concurrent(32, |i| {
            let (client, ns) = (client.clone(), ns.clone());
            async move {
                let name = format!("e-{i}");
                podid(&client, &["exception", "add", "-n", &ns, "--name", &name, "--pod-labels", "app=x"])
                    .await
                    .ok();
            }
        })
        .await;
    let args = ["exception", "add", "-n", &ns, "--name", "one-more", "--pod-labels", "app=x"];
    let err = podid(&client, &args).await.err();
    assert_eq!(
        err,
        "the cluster already has 200 pod identity exceptions (limit 200, as the AKS add-on allows): delete unused \
         ones or raise the limit with --max-exceptions"
    );
    let mut raised = args.to_vec();
    raised.extend(["--max-exceptions", "201"]);
    podid(&client, &raised).await.ok();
}
