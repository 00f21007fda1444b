//! Nodes: deletion (no ARM call) and pods moving between scale sets.
use podid_api::AssignedState::Assigned;
use podid_emulator::NodeRequest;
use podid_emulator::config::builtin::{APP_IDENTITY, NODE_RESOURCE_GROUP};

use crate::support::{Env, MicOptions, aai_name};

#[tokio::test]
async fn node_deletion_deletes_its_assignments_without_arm_calls() {
    let env = Env::new("node-delete").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    let calls = env.arm_requests().len();
    podid_testkit::kubelet::delete_node(&env.client, &node).await.unwrap();
    env.wait_none().await;
    assert_eq!(env.arm_requests().len(), calls, "no ARM call for a deleted node");
}

#[tokio::test]
async fn pod_recreated_on_another_scale_set_moves_the_identity() {
    let env = Env::new("node-move").await;
    env.emu
        .add_nodes(&NodeRequest {
            resource_group: NODE_RESOURCE_GROUP.into(),
            scale_set: Some("other-vmss".into()),
            vm: None,
            count: Some(1),
        })
        .await
        .unwrap();
    let _mic = env.mic(MicOptions::default());
    let a = env.node(0).await;
    let b = env.node_in("other-vmss", 0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &a, "app").await;
    let name = aai_name("web", &env.ns, "app-id");
    env.wait_states(&[(&name, Assigned)]).await;
    // A StatefulSet pod comes back with the same name on another node.
    env.delete_pod("web").await;
    env.pod("web", &b, "app").await;
    crate::support::until("assignment on the new node", || async {
        env.aais().await.iter().any(|x| x.state() == Assigned && x.spec.node_name == b)
    })
    .await;
    let id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    crate::support::until("identity moved to the other scale set", || async {
        env.on_scale_set("other-vmss").contains(&id) && !env.has(APP_IDENTITY)
    })
    .await;
}
