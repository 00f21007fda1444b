//! The committed kustomize tree as users apply it: `kubectl apply -k deploy/overlays/managed` on
//! real nodes, unpatched (its images are the ones `make images` builds and the nodes imported,
//! under the names the tree uses). Managed mode is the overlay that needs no Azure endpoint but the
//! node's own IMDS; the standard and federated overlays name the public cloud's ARM and Entra ID,
//! which a user changes with `podid install --arm-endpoint/--aad-authority` (the same options the
//! other e2e binaries install with). Root only.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use podid_sandbox::Mode;
use support::{Install, shared};

const MODE: Mode = Mode::Managed;

#[tokio::test]
async fn kubectl_apply_k_of_the_managed_overlay_serves_bound_pods_on_every_node() {
    let world = support::world_installed(MODE, Install::Kustomize);
    let _guard = shared().await;
    let ns = support::app_namespace(world, MODE, "kustomize").await;
    support::python_sdk_gets_the_app_token_on_every_node(world, &ns).await;
    support::unbound_pod_is_refused_with_the_reason(world).await;
}
