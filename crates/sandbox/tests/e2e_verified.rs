//! Verified callers on real nodes (`podid install --mode managed --verified-callers`): the kernel,
//! not the source address, says which pod is calling. The same attacks served in e2e_managed.rs
//! (verification off) are refused here. Root only.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use podid_sandbox::Mode;
use support::{APP_CLIENT, PodSpec, exclusive, raw_token_request, shared};

const MODE: Mode = Mode::Managed;

fn world() -> &'static podid_sandbox::world::World {
    support::world_with(MODE, &["--verified-callers"])
}

#[tokio::test]
async fn a_pod_that_takes_another_pods_address_is_refused() {
    let world = world();
    let _guard = shared().await;
    let got = support::spoof_a_victim(world, MODE).await;
    assert!(!got.contains("access_token"), "the attacker got the victim's token: {got}");
    assert!(
        got.contains("403") && got.contains("is not in the network namespace of pod"),
        "refused, saying why: {got}"
    );
}

/// A deleted pod's address given to a new pod before the agent heard of the deletion: the index
/// still names the old pod, whose network namespace is gone.
#[tokio::test]
async fn a_pod_on_an_address_reused_before_the_agent_saw_the_old_pod_go_is_refused() {
    let world = world();
    let _guard = exclusive().await;
    let got = support::reuse_a_victims_address(world, MODE).await;
    assert!(!got.contains("access_token"), "the new pod got the old pod's token: {got}");
    assert!(got.contains("403") && got.contains("no process of pod"), "refused, saying why: {got}");
}

#[tokio::test]
async fn a_host_network_pod_gets_its_own_identity_and_an_unbound_one_is_refused() {
    let world = world();
    let _guard = shared().await;
    let ns = support::app_namespace(world, MODE, "hostnet").await;
    let node = support::nodes(world)[1].clone();
    for (name, selector, served) in [("bound", "app", true), ("unbound", "nobody-binds-this", false)] {
        let pod = PodSpec::new(&format!("hostnet-{name}"), "busybox", selector)
            .on(&node)
            .host_network()
            .shell(&raw_token_request(APP_CLIENT));
        let (_, logs) = support::run_pod(world, &ns, &pod.build(world), Duration::from_secs(120)).await;
        if served {
            assert!(logs.contains("200 OK") && logs.contains("access_token"), "{name}: {logs}");
        } else {
            assert!(!logs.contains("access_token"), "{name} got a token: {logs}");
            assert!(logs.contains("no AzureIdentityBinding has selector"), "{name}: {logs}");
        }
    }
}

#[tokio::test]
async fn a_node_process_that_is_not_excepted_gets_no_token() {
    let world = world();
    let _guard = shared().await;
    // A process of the node itself: its network, mount and pid namespaces, no pod's cgroup.
    let node = world.cluster.node(&support::nodes(world)[0]).unwrap();
    let out = node.command("/bin/sh").args(["-c", &raw_token_request(APP_CLIENT)]).output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert!(!got.contains("access_token"), "a node process got a token: {got}");
    assert!(got.contains("403") && got.contains("belongs to no pod and is not excepted"), "{got}");
}

#[tokio::test]
async fn a_bound_pod_is_still_served_with_verification_on() {
    let world = world();
    let _guard = shared().await;
    let ns = support::app_namespace(world, MODE, "served").await;
    support::python_sdk_gets_the_app_token_on_every_node(world, &ns).await;
}
