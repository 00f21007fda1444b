//! End to end in federated mode on real nodes: podid installed with `podid install --apply --mode
//! federated`, the agents running from the images built here, pods running the real Python and Rust
//! Azure SDKs. Root only (CI runs as root; a missing prerequisite fails with what to do).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::time::Duration;

use podid_sandbox::Mode;
use support::{APP_CLIENT, PodSpec, shared};

const MODE: Mode = Mode::Federated;

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
