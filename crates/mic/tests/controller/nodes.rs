//! Nodes: deletion (no ARM call) and pods moving between scale sets.
use podid_api::AssignedState::Assigned;
use podid_emulator::NodeRequest;
use podid_emulator::config::builtin::{APP_IDENTITY, NODE_RESOURCE_GROUP};

use crate::support::{Env, MicOptions, aai_name, until};

#[tokio::test]
async fn node_deletion_deletes_its_assignments_and_takes_what_podid_added_off_the_scale_set() {
    let env = Env::new("node-delete").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    env.emu.clear_requests();
    podid_testkit::kubelet::delete_node(&env.client, &node).await.unwrap();
    env.wait_none().await;
    // The assignment goes without ARM (its node is gone); the scale set outlives its instance, and
    // nothing on it needs the identity podid put there any more.
    until("the identity off the scale set", || async { !env.has(APP_IDENTITY) }).await;
    let calls: Vec<String> = env
        .arm_requests()
        .iter()
        .filter(|r| !r.path.contains("/operations/"))
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(calls, ["GET", "PATCH"], "one read and one removal");
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
    until("assignment on the new node", || async {
        env.aais().await.iter().any(|x| x.state() == Assigned && x.spec.node_name == b)
    })
    .await;
    let id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    until("identity moved to the other scale set", || async {
        env.on_scale_set("other-vmss").contains(&id) && !env.has(APP_IDENTITY)
    })
    .await;
}
