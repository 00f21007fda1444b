//! The API server killed and started again, and etcd compacted, under a running controller.
//!
//! On a cluster of its own (`TestCluster::start`, never the shared one): the API server is killed
//! (SIGKILL) while a pod is `Assigned`, started again on the same port and etcd, changes are made
//! at once, and etcd is compacted at its current revision, so every watch that resumes from its
//! last resource version gets `410 Gone` and must re-list. Asserted: the controller applies the
//! changes, leaves no orphaned and no duplicate assigned identity, and ARM ends in the right state.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "controller/support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use podid_api::AssignedState::Assigned;
use podid_emulator::config::IdentityConfig;
use podid_emulator::config::builtin::{APP_IDENTITY, IDENTITY_RESOURCE_GROUP};
use podid_emulator::{Emulator, EmulatorConfig, SettingsUpdate};
use podid_testkit::TestCluster;
use support::{Env, MicOptions, aai_name};

/// A second identity the cluster's app may assign.
const OTHER: &str = "fault-other";

async fn own_cluster_env(name: &str) -> (Env, &'static TestCluster) {
    podid_azure::install_crypto_provider();
    let cluster: &'static TestCluster = Box::leak(Box::new(TestCluster::start().await.expect("cluster")));
    let client = cluster.client().unwrap();
    let ns = cluster.namespace(name).await.unwrap();
    let mut config = EmulatorConfig::default();
    config.identities.push(IdentityConfig {
        name: OTHER.into(),
        resource_group: IDENTITY_RESOURCE_GROUP.into(),
        client_id: None,
        principal_id: None,
        federated_credentials: vec![],
    });
    let emu = Emulator::start(config).await.unwrap();
    emu.update_settings(&SettingsUpdate { operation_duration_ms: Some(50), ..SettingsUpdate::default() });
    let scope = BTreeSet::from([ns.clone()]);
    (Env { cluster, client, ns, emu, scope }, cluster)
}

#[tokio::test]
async fn controller_survives_apiserver_restart_and_etcd_compaction() {
    podid_testkit::init_tracing();
    let (env, cluster) = own_cluster_env("apiserver-restart").await;
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.identity("other-id", OTHER).await;
    env.binding("b-app", "app-id", "app").await;
    env.binding("b-other", "other-id", "other").await;
    env.pod("web-1", &node, "app").await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_millis(200), ..MicOptions::default() });
    env.wait_states(&[(&aai_name("web-1", &env.ns, "app-id"), Assigned)]).await;

    cluster.stop_apiserver().unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await; // the controller's watches fail meanwhile
    cluster.start_apiserver().await.unwrap();
    // Changes the controller has not seen: web-1 gone, web-2 (other identity) new.
    env.delete_pod("web-1").await;
    env.pod("web-2", &node, "other").await;
    let revision = cluster.compact_etcd().await.unwrap();
    assert!(revision > 0);

    let want = aai_name("web-2", &env.ns, "other-id");
    env.wait_states(&[(&want, Assigned)]).await;
    let other = env.identity_id(OTHER).to_ascii_lowercase();
    support::until("ARM: only the other identity on the scale set", || async {
        let on = env.on_vmss();
        on.iter().filter(|i| **i == other).count() == 1 && !env.has(APP_IDENTITY)
    })
    .await;
    // Stable: no late duplicate or resurrected assignment after another restart.
    cluster.restart_apiserver().await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let aais = env.wait_states(&[(&want, Assigned)]).await;
    assert_eq!(aais.len(), 1, "{aais:#?}");
}
