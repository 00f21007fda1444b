//! End to end in managed mode on real nodes: podid installed with `podid install --apply --mode
//! managed`, the agents running from the images built here, pods running the real Python and Rust
//! Azure SDKs. Root only (CI runs as root; a missing prerequisite fails with what to do).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use podid_sandbox::Mode;
use support::{APP_CLIENT, PodSpec, exclusive, shared};

const MODE: Mode = Mode::Managed;

fn world() -> &'static podid_sandbox::world::World {
    support::world(MODE)
}

#[tokio::test]
async fn the_python_and_rust_sdks_get_the_bound_identity_on_every_node() {
    let world = world();
    let _guard = shared().await;
    let ns = support::app_namespace(world, MODE, "sdks").await;
    for (i, node) in support::nodes(world).iter().enumerate() {
        for image in ["sdk-python", "sdk-rust"] {
            let pod = PodSpec::new(&format!("{image}-{i}"), image, "app")
                .on(node)
                .args(&["--client-id", APP_CLIENT]);
            let (ok, logs) = support::run_pod(world, &ns, &pod.build(world), Duration::from_secs(150)).await;
            assert!(ok && logs.starts_with("token "), "{image} on {node}: {logs}");
        }
        support::app_token_served(world, &ns, &format!("whose-{i}"), node).await;
    }
}

#[tokio::test]
async fn a_pod_without_a_binding_is_refused_and_the_sdk_shows_why() {
    let _guard = shared().await;
    support::unbound_pod_is_refused_with_the_reason(world()).await;
}

/// The recorded contrast to e2e_verified.rs: by source address alone (upstream's way, and
/// podid's without --verified-callers), a pod that takes another pod's address gets its token.
#[tokio::test]
async fn without_verified_callers_a_pod_that_takes_another_pods_address_gets_its_token() {
    let world = world();
    let _guard = shared().await;
    let got = support::spoof_a_victim(world, MODE).await;
    assert!(got.contains("200 OK") && got.contains("access_token"), "the contrast no longer holds: {got}");
}

/// The recorded contrast for a reused address: by source address alone, a new pod that got a
/// deleted pod's address before the agent heard of the deletion gets the deleted pod's token.
#[tokio::test]
async fn without_verified_callers_a_pod_on_a_reused_address_gets_the_old_pods_token() {
    let world = world();
    let _guard = exclusive().await;
    let got = support::reuse_a_victims_address(world, MODE).await;
    assert!(got.contains("200 OK") && got.contains("access_token"), "the contrast no longer holds: {got}");
}

/// The contrast for the node's network: without --verified-callers a hostNetwork pod's calls are
/// not intercepted and reach IMDS itself, with every identity of the node.
#[tokio::test]
async fn without_verified_callers_a_host_network_pod_reaches_imds_with_the_nodes_identities() {
    let world = world();
    let _guard = shared().await;
    let ns = support::namespace(world, "hostnet").await;
    support::assign_out_of_band(world, MODE).await;
    let node = support::nodes(world)[1].clone();
    let pod = PodSpec::new("hostnet", "busybox", "nobody-binds-this")
        .on(&node)
        .host_network()
        .shell(&support::raw_token_request(APP_CLIENT));
    let (_, logs) = support::run_pod(world, &ns, &pod.build(world), Duration::from_secs(120)).await;
    assert!(logs.contains("200 OK") && logs.contains("access_token"), "the contrast no longer holds: {logs}");
}
