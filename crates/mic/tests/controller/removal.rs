//! Removing: deleted pods, identities and bindings; identities still in use, system-assigned,
//! immutable, manually removed; label changes; the drift check.
use std::time::Duration;

use kube::Api;
use kube::api::{Patch, PatchParams};
use podid_api::AssignedState::Assigned;
use podid_api::{AzureIdentity, AzureIdentityBinding, Pod};
use podid_emulator::EmulatorConfig;
use podid_emulator::config::builtin::{AGENTPOOL_IDENTITY, APP_IDENTITY};
use serde_json::json;

use crate::support::{Env, MicOptions, aai_name, until};

async fn assigned_pod(env: &Env) -> String {
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("app-binding", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY));
    node
}

#[tokio::test]
async fn pod_deletion_removes_assignment_and_identity() {
    let env = Env::new("remove-pod").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    env.delete_pod("web").await;
    env.wait_none().await;
    assert!(!env.has(APP_IDENTITY));
    assert!(env.has(AGENTPOOL_IDENTITY), "identities podid never held stay");
    until("a `binding removed` event", || async { !env.events("binding removed").await.is_empty() }).await;
}

#[tokio::test]
async fn identity_deletion_removes_assignment() {
    let env = Env::new("remove-identity").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    env.delete::<AzureIdentity>("app-id").await;
    env.wait_none().await;
    assert!(!env.has(APP_IDENTITY));
}

#[tokio::test]
async fn binding_deletion_removes_assignment() {
    let env = Env::new("remove-binding").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    env.delete::<AzureIdentityBinding>("app-binding").await;
    env.wait_none().await;
    assert!(!env.has(APP_IDENTITY));
}

#[tokio::test]
async fn identity_used_on_another_node_of_the_scale_set_is_kept() {
    let env = Env::new("remove-shared").await;
    let _mic = env.mic(MicOptions::default());
    let n0 = assigned_pod(&env).await;
    let n1 = env.node(1).await;
    assert_ne!(n0, n1);
    env.pod("api", &n1, "app").await;
    env.wait_states(&[
        (&aai_name("web", &env.ns, "app-id"), Assigned),
        (&aai_name("api", &env.ns, "app-id"), Assigned),
    ])
    .await;
    env.delete_pod("web").await;
    env.wait_states(&[(&aai_name("api", &env.ns, "app-id"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY), "still used by a pod on another node of the scale set");
}

#[tokio::test]
async fn manually_unassigned_identity_lets_the_assignment_go() {
    let env = Env::new("remove-manual").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    let id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    env.emu.with_world(|w| {
        for s in w.scale_sets.values_mut() {
            s.identity.user.remove(&id);
        }
    });
    let patches = env.patches().len();
    env.delete_pod("web").await;
    env.wait_none().await;
    assert_eq!(env.patches().len(), patches, "nothing left to remove");
}

#[tokio::test]
async fn system_assigned_and_immutable_identities_are_kept() {
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].system_assigned = true;
    let env = Env::with_config("remove-immutable", config).await;
    let _mic = env.mic(MicOptions {
        immutable: vec![env.client_id(APP_IDENTITY).to_uppercase()],
        ..MicOptions::default()
    });
    assigned_pod(&env).await;
    env.delete_pod("web").await;
    env.wait_none().await;
    assert!(env.has(APP_IDENTITY), "immutable identity stays");
    let system = env.emu.with_world(|w| w.scale_sets.values().all(|s| s.identity.system.is_some()));
    assert!(system, "system-assigned identity untouched");
}

#[tokio::test]
async fn system_assigned_identity_survives_removal_of_the_last_user_identity() {
    let mut config = EmulatorConfig::default();
    config.scale_sets[0].system_assigned = true;
    config.scale_sets[0].identities.clear();
    let env = Env::with_config("remove-system", config).await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    env.delete_pod("web").await;
    env.wait_none().await;
    assert!(env.on_vmss().is_empty());
    let system = env.emu.with_world(|w| w.scale_sets.values().all(|s| s.identity.system.is_some()));
    assert!(system, "system-assigned identity untouched");
}

#[tokio::test]
async fn drift_check_repairs_a_manual_removal() {
    let env = Env::new("remove-drift").await;
    let _mic = env.mic(MicOptions { drift: Some(Duration::from_secs(1)), ..MicOptions::default() });
    assigned_pod(&env).await;
    let id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    env.emu.with_world(|w| {
        for s in w.scale_sets.values_mut() {
            s.identity.user.remove(&id);
        }
    });
    until("the drift check re-adds the identity", || async { env.has(APP_IDENTITY) }).await;
}

#[tokio::test]
async fn label_change_moves_the_assignment() {
    let env = Env::new("remove-label").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    env.identity("pool", AGENTPOOL_IDENTITY).await;
    env.binding("pool-binding", "pool", "pool").await;
    let patch = json!({ "metadata": { "labels": { "aadpodidbinding": "pool" } } });
    Api::<Pod>::namespaced(env.client.clone(), &env.ns)
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    env.wait_states(&[(&aai_name("web", &env.ns, "pool"), Assigned)]).await;
    until("the old identity is removed", || async { !env.has(APP_IDENTITY) }).await;
}

#[tokio::test]
async fn idle_controller_makes_no_arm_calls() {
    let env = Env::new("remove-idle").await;
    let _mic = env.mic(MicOptions::default());
    assigned_pod(&env).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    env.emu.clear_requests();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(env.arm_requests().is_empty(), "ARM calls while idle: {:?}", env.arm_requests());
}
