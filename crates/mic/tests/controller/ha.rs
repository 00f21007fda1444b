//! High availability: one leader writes; a dead leader is replaced within the lease duration.
use std::time::Duration;

use tokio::time::Instant;

use podid_api::AssignedState::Assigned;
use podid_emulator::config::builtin::APP_IDENTITY;

use crate::support::{Env, MicOptions, aai_name, until};

#[tokio::test]
async fn killed_leader_is_replaced_without_duplicate_patches() {
    let env = Env::new("ha-failover").await;
    let a = env.mic(MicOptions { identity: "mic-a".into(), ..MicOptions::default() });
    until("mic-a leads", || async { a.is_leader() }).await;
    let b = env.mic(MicOptions { identity: "mic-b".into(), ..MicOptions::default() });
    until("both caches synced", || async {
        a.readiness.missing().is_empty() && b.readiness.missing().is_empty()
    })
    .await;
    assert_eq!(((a.health())(), (b.health())()), ("Active", "Not Active"));

    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    assert_eq!(env.patches().len(), 1);

    let killed = Instant::now();
    drop(a);
    until("mic-b takes over", || async { b.is_leader() }).await;
    // Lease 2 s, renewals every 0.5 s: the record is stale within 2.5 s of the last renewal.
    assert!(killed.elapsed() < Duration::from_secs(4), "took {:?}", killed.elapsed());
    assert_eq!((b.health())(), "Active");

    env.pod("api", &node, "app").await;
    env.wait_states(&[
        (&aai_name("web", &env.ns, "app-id"), Assigned),
        (&aai_name("api", &env.ns, "app-id"), Assigned),
    ])
    .await;
    assert_eq!(env.patches().len(), 1, "the identity was already there: no second PATCH");
    env.delete_pod("web").await;
    env.delete_pod("api").await;
    env.wait_none().await;
    assert_eq!(env.patches().len(), 2, "exactly one removal");
}
