//! The test kit's own tests, against a real API server: one test binary, one shared cluster
//! (plus the clusters `clusters.rs` starts itself).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod clusters;
mod crds;
mod lease;
mod pods;
mod rbac;
mod tokens;

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use podid_testkit::TestCluster;

/// The shared cluster, with test logging on.
async fn cluster() -> &'static TestCluster {
    podid_testkit::init_tracing();
    TestCluster::shared().await.unwrap()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Retries `check` until it returns true (RBAC changes reach the authorizer a moment later).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The HTTP status of a failed API call.
fn status_code<T: std::fmt::Debug>(result: kube::Result<T>) -> u16 {
    match result {
        Err(kube::Error::Api(status)) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}
