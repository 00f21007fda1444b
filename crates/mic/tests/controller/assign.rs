//! Assigning: objects written as upstream, identities put on the scale set.
use std::time::Duration;

use podid_api::AssignedState::{Assigned, Created};
use podid_api::{
    AAI_FINALIZER, AzureIdentity, DEFAULT_AAI_NAMESPACE, NODENAME_LABEL, PREEXISTING_ANNOTATION,
};
use podid_emulator::EmulatorConfig;
use podid_emulator::config::IdentityConfig;
use podid_emulator::config::builtin::{
    AGENTPOOL_IDENTITY, APP_IDENTITY, IDENTITY_RESOURCE_GROUP, RESTRICTED_IDENTITY,
};

use crate::support::{Env, MicOptions, aai_name, until};

#[tokio::test]
async fn single_identity_goes_created_then_assigned_and_onto_the_scale_set() {
    let env = Env::new("assign-single").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("app-binding", "app-id", "app").await;
    env.pod("web", &node, "app").await;

    let name = aai_name("web", &env.ns, "app-id");
    let aais = env.wait_states(&[(&name, Assigned)]).await;
    let aai = &aais[0];
    assert_eq!(aai.metadata.namespace.as_deref(), Some(DEFAULT_AAI_NAMESPACE));
    assert_eq!(aai.metadata.labels.as_ref().unwrap()[NODENAME_LABEL], node);
    assert_eq!(aai.metadata.finalizers.as_deref(), Some(&[AAI_FINALIZER.to_string()][..]));
    assert_eq!(
        (aai.spec.pod.as_str(), aai.spec.pod_namespace.as_str(), aai.spec.node_name.as_str()),
        ("web", env.ns.as_str(), node.as_str())
    );
    assert_eq!(aai.spec.azure_identity_ref.as_ref().unwrap().metadata.name.as_deref(), Some("app-id"));
    assert_eq!(aai.spec.azure_binding_ref.as_ref().unwrap().metadata.name.as_deref(), Some("app-binding"));
    assert!(env.has(APP_IDENTITY), "identity on the scale set: {:?}", env.on_vmss());
    until("a `binding applied` event", || async { !env.events("binding applied").await.is_empty() }).await;
}

#[tokio::test]
async fn several_identities_on_one_pod_share_one_patch() {
    let mut config = EmulatorConfig::default();
    config.identities.push(IdentityConfig {
        name: "podid-app2".into(),
        resource_group: IDENTITY_RESOURCE_GROUP.into(),
        client_id: None,
        principal_id: None,
        federated_credentials: vec![],
    });
    let env = Env::with_config("assign-several", config).await;
    let node = env.node(0).await;
    env.identity("one", APP_IDENTITY).await;
    env.identity("two", "podid-app2").await;
    env.binding("b1", "one", "app").await;
    env.binding("b2", "two", "app").await;
    env.pod("web", &node, "app").await;
    env.emu.clear_requests();
    let _mic = env.mic(MicOptions::default());

    env.wait_states(&[
        (&aai_name("web", &env.ns, "one"), Assigned),
        (&aai_name("web", &env.ns, "two"), Assigned),
    ])
    .await;
    assert!(env.has(APP_IDENTITY) && env.has("podid-app2"));
    assert_eq!(env.patches().len(), 1, "one PATCH carries both identities");
}

#[tokio::test]
async fn same_names_in_two_namespaces_both_work() {
    let mut env = Env::new("assign-ns-a").await;
    let other = env.extra_namespace("assign-ns-b").await;
    let node = env.node(0).await;
    let ns = env.ns.clone();
    for n in [&ns, &other] {
        env.identity_in(n, "app-id", APP_IDENTITY).await;
        env.binding_in(n, "app-binding", "app-id", "app").await;
        env.pod_in(n, "web", &node, "app").await;
    }
    let _mic = env.mic(MicOptions::default());
    env.wait_states(&[
        (&aai_name("web", &ns, "app-id"), Assigned),
        (&aai_name("web", &other, "app-id"), Assigned),
    ])
    .await;
}

#[tokio::test]
async fn in_place_identity_update_rewrites_the_assignment() {
    let env = Env::new("assign-update").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("app-binding", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    let name = aai_name("web", &env.ns, "app-id");
    env.wait_states(&[(&name, Assigned)]).await;

    // Point the identity at the agent pool identity instead.
    let api = kube::Api::<AzureIdentity>::namespaced(env.client.clone(), &env.ns);
    let mut id = api.get("app-id").await.unwrap();
    id.spec.resource_id = env.identity_id(AGENTPOOL_IDENTITY);
    id.spec.client_id = env.client_id(AGENTPOOL_IDENTITY);
    api.replace("app-id", &Default::default(), &id).await.unwrap();

    until("the assigned identity embeds the new resource id", || async {
        env.aais().await.iter().any(|a| {
            a.state() == Assigned
                && a.spec
                    .azure_identity_ref
                    .as_ref()
                    .is_some_and(|i| i.spec.resource_id == env.identity_id(AGENTPOOL_IDENTITY))
        })
    })
    .await;
    until("the old identity is removed", || async { !env.has(APP_IDENTITY) }).await;
    assert!(env.has(AGENTPOOL_IDENTITY));
}

#[tokio::test]
async fn preexisting_identity_is_marked_and_never_removed() {
    let env = Env::new("assign-preexisting").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("pool", AGENTPOOL_IDENTITY).await;
    env.binding("b", "pool", "app").await;
    env.pod("web", &node, "app").await;
    let aais = env.wait_states(&[(&aai_name("web", &env.ns, "pool"), Assigned)]).await;
    assert_eq!(
        aais[0].metadata.annotations.as_ref().and_then(|a| a.get(PREEXISTING_ANNOTATION)).map(String::as_str),
        Some("true")
    );
    assert!(env.patches().is_empty(), "nothing to add");

    env.delete_pod("web").await;
    env.wait_none().await;
    assert!(env.has(AGENTPOOL_IDENTITY), "a pre-existing identity stays");
    assert!(env.patches().is_empty());
}

#[tokio::test]
async fn invalid_identity_is_isolated_and_valid_one_assigned() {
    let env = Env::new("assign-invalid").await;
    let node = env.node(0).await;
    env.identity("good", APP_IDENTITY).await;
    env.identity("bad", RESTRICTED_IDENTITY).await;
    env.binding("b-good", "good", "app").await;
    env.binding("b-bad", "bad", "app").await;
    env.pod("web", &node, "app").await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_secs(30), ..MicOptions::default() });

    env.wait_states(&[
        (&aai_name("web", &env.ns, "good"), Assigned),
        (&aai_name("web", &env.ns, "bad"), Created),
    ])
    .await;
    assert!(env.has(APP_IDENTITY) && !env.has(RESTRICTED_IDENTITY));
    until("a `binding apply error` event naming the refused identity", || async {
        env.events("binding apply error")
            .await
            .iter()
            .any(|e| e.note.as_deref().unwrap_or_default().contains("LinkedAuthorizationFailed"))
    })
    .await;
    // Backing off: no new attempt within the back-off period.
    let patches = env.patches().len();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.patches().len(), patches, "the refused identity is not retried every pass");
}

#[tokio::test]
async fn a_failure_retried_every_pass_is_one_event_whose_series_counts_the_repeats() {
    let env = Env::new("assign-event-series").await;
    let node = env.node(0).await;
    env.identity("bad", RESTRICTED_IDENTITY).await;
    env.binding("b-bad", "bad", "app").await;
    env.pod("web", &node, "app").await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_millis(200), ..MicOptions::default() });

    until("the apply error repeated as a series", || async {
        env.events("binding apply error")
            .await
            .iter()
            .any(|e| e.series.as_ref().is_some_and(|s| s.count >= 3))
    })
    .await;
    let on_pod: Vec<_> = env
        .events("binding apply error")
        .await
        .into_iter()
        .filter(|e| e.regarding.as_ref().is_some_and(|r| r.kind.as_deref() == Some("Pod")))
        .collect();
    assert_eq!(on_pod.len(), 1, "one Event on the pod, not one per attempt: {on_pod:?}");
}

#[tokio::test]
async fn service_principal_identity_is_assigned_without_arm() {
    let env = Env::new("assign-sp").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    let mut sp = AzureIdentity::new(
        "sp",
        podid_api::AzureIdentitySpec {
            identity_type: 1,
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            tenant_id: env.emu.tenant_id(),
            client_password: podid_api::SecretReference {
                name: "sp-secret".into(),
                namespace: env.ns.clone(),
            },
            ..podid_api::AzureIdentitySpec::default()
        },
    );
    sp.metadata.namespace = Some(env.ns.clone());
    kube::Api::<AzureIdentity>::namespaced(env.client.clone(), &env.ns)
        .create(&Default::default(), &sp)
        .await
        .unwrap();
    env.binding("b", "sp", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "sp"), Assigned)]).await;
    assert!(env.arm_requests().is_empty(), "no ARM call for a service principal");
}

#[tokio::test]
async fn more_than_150_identities_go_out_in_two_patches() {
    const N: usize = 160;
    let mut config = EmulatorConfig::default();
    for i in 0..N {
        config.identities.push(IdentityConfig {
            name: format!("many-{i}"),
            resource_group: IDENTITY_RESOURCE_GROUP.into(),
            client_id: None,
            principal_id: None,
            federated_credentials: vec![],
        });
    }
    let env = Env::with_config("assign-many", config).await;
    let node = env.node(0).await;
    for i in 0..N {
        env.identity(&format!("id-{i}"), &format!("many-{i}")).await;
        env.binding(&format!("b-{i}"), &format!("id-{i}"), "app").await;
    }
    env.pod("web", &node, "app").await;
    let _mic = env.mic(MicOptions::default());
    let names: Vec<String> = (0..N).map(|i| aai_name("web", &env.ns, &format!("id-{i}"))).collect();
    let want: Vec<(&str, podid_api::AssignedState)> = names.iter().map(|n| (n.as_str(), Assigned)).collect();
    env.wait_states(&want).await;
    assert_eq!(env.patches().len(), 2, "ARM takes at most 150 identities per PATCH");
    assert_eq!(env.on_vmss().len(), N + 1, "all of them, plus the agent pool identity");
}

#[tokio::test]
async fn forty_pods_are_all_assigned_well_within_upstreams_budget() {
    // Upstream's e2e budget: the assigned identities of 40 pods created *and* validated in 150 s.
    let env = Env::new("assign-forty").await;
    let _mic = env.mic(MicOptions::default());
    let nodes = [env.node(0).await, env.node(1).await];
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("app-binding", "app-id", "app").await;
    let started = tokio::time::Instant::now();
    let pods: Vec<(String, &String)> = (0..40).map(|i| (format!("web-{i}"), &nodes[i % 2])).collect();
    futures::future::join_all(pods.iter().map(|(name, node)| env.pod(name, node, "app"))).await;
    let names: Vec<String> = (0..40).map(|i| aai_name(&format!("web-{i}"), &env.ns, "app-id")).collect();
    let want: Vec<(&str, podid_api::AssignedState)> = names.iter().map(|n| (n.as_str(), Assigned)).collect();
    env.wait_states(&want).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(150), "40 pods took {took:?}");
    assert!(env.has(APP_IDENTITY));
    assert!(
        env.patches().len() <= 2,
        "one identity on one scale set needs one update (allowing a second wave): {}",
        env.patches().len()
    );
}
