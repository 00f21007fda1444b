//! Federated identities (`podid.io/federated: "true"`) are the agent's business alone: the
//! controller writes no assigned identity for them and makes no ARM call, while an ordinary identity
//! next to them is assigned as usual.
use kube::Api;
use kube::api::PostParams;
use podid_api::AssignedState::Assigned;
use podid_api::{AzureIdentity, AzureIdentitySpec, FEDERATED_ANNOTATION};
use podid_emulator::EmulatorConfig;
use podid_emulator::config::IdentityConfig;
use podid_emulator::config::builtin::{APP_IDENTITY, IDENTITY_RESOURCE_GROUP};

use crate::support::{Env, MicOptions, aai_name};

#[tokio::test]
async fn federated_identity_gets_no_assignment_and_no_arm_call_while_its_neighbour_is_assigned() {
    let mut config = EmulatorConfig::default();
    config.identities.push(IdentityConfig {
        name: "podid-app2".into(),
        resource_group: IDENTITY_RESOURCE_GROUP.into(),
        client_id: None,
        principal_id: None,
        federated_credentials: vec![],
    });
    let env = Env::with_config("federated-skip", config).await;
    let node = env.node(0).await;
    let mut fed = AzureIdentity::new(
        "fed-id",
        AzureIdentitySpec {
            identity_type: 0,
            resource_id: env.identity_id(APP_IDENTITY),
            client_id: env.client_id(APP_IDENTITY),
            ..AzureIdentitySpec::default()
        },
    );
    fed.metadata.namespace = Some(env.ns.clone());
    fed.metadata.annotations = Some([(FEDERATED_ANNOTATION.to_string(), "true".to_string())].into());
    Api::<AzureIdentity>::namespaced(env.client.clone(), &env.ns)
        .create(&PostParams::default(), &fed)
        .await
        .unwrap();
    env.identity("plain-id", "podid-app2").await;
    env.binding("fed-binding", "fed-id", "fed").await;
    env.binding("plain-binding", "plain-id", "plain").await;
    env.pod("fed-pod", &node, "fed").await;
    env.pod("plain-pod", &node, "plain").await;
    env.emu.clear_requests();
    let _mic = env.mic(MicOptions::default());

    // Only the ordinary identity's assignment ever exists (wait_states wants exactly this set).
    env.wait_states(&[(&aai_name("plain-pod", &env.ns, "plain-id"), Assigned)]).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    env.wait_states(&[(&aai_name("plain-pod", &env.ns, "plain-id"), Assigned)]).await;
    assert!(env.has("podid-app2"), "ordinary identity on the scale set: {:?}", env.on_vmss());
    assert!(!env.has(APP_IDENTITY), "federated identity put on the scale set: {:?}", env.on_vmss());
    let fed_id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    let touching: Vec<_> =
        env.arm_requests().into_iter().filter(|r| r.path.to_ascii_lowercase().contains(&fed_id)).collect();
    assert!(touching.is_empty(), "ARM calls for the federated identity: {touching:?}");
}
