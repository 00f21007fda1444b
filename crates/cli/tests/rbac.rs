//! The RBAC `podid install` renders is enough and no more: the real controller and the real agent
//! run as the installed `podid-mic` / `podid-nmi` ServiceAccounts (TokenRequest tokens, no other
//! bindings), assign an identity and serve its token to the bound pod; actions outside their
//! roles are refused with 403.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use std::time::{Duration, Instant};

use install_support::components::{Agent, InstalledWorld, LEASE};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use podid_api::{AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentitySpec};
use podid_cli::install::NMI_SERVICE_ACCOUNT;
use podid_emulator::config::builtin::{APP_IDENTITY, NODE_RESOURCE_GROUP, SCALE_SET};
use support::podid;

const POD_IP: &str = "127.0.0.77";

fn is_forbidden<T: std::fmt::Debug>(r: Result<T, kube::Error>) -> bool {
    matches!(r, Err(kube::Error::Api(ref s)) if s.code == 403)
}

/// The first Assigned identity in any namespace (without forceNamespaced they live in `default`).
async fn wait_assigned(admin: &kube::Client) -> AzureAssignedIdentity {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list =
            Api::<AzureAssignedIdentity>::all(admin.clone()).list(&ListParams::default()).await.unwrap();
        if let Some(a) = list.items.into_iter().find(|a| a.state() == AssignedState::Assigned) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no Assigned identity within 30 s: the controller's RBAC is short"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn installed_rbac_lets_the_controller_assign_and_the_agent_serve_and_refuses_the_rest() {
    let w = InstalledWorld::start().await;
    let (cluster, admin, emu, apps, system, node) =
        (w.cluster, &w.admin, &w.emu, &w.apps, &w.system, &w.node);
    let (mic, mic_client) = (&w.mic, w.mic_client.clone());
    // A workload pod on the node, and a pod identity for it.
    w.pod("web-0", "web", POD_IP).await;
    podid(&w.admin, &w.app_identity_args("web").each_ref().map(String::as_str)).await.ok();
    let app = emu.info().identities[APP_IDENTITY].clone();

    // The controller, as podid-mic, assigns it to the scale set.
    let aai = wait_assigned(admin).await;
    assert!(mic.is_leader(), "the controller holds its Lease in {system}");
    let on_vmss = emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap_or_default();
    assert!(on_vmss.contains(&app.id.to_ascii_lowercase()), "scale set identities: {on_vmss:?}");
    let events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(admin.clone(), apps)
        .list(&ListParams::default())
        .await
        .unwrap();
    assert!(
        events.items.iter().any(|e| e.reason.as_deref() == Some(podid_mic::events::APPLIED)),
        "the controller could not record its event: {:?}",
        events.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );

    // The agent, as podid-nmi, serves the bound pod a token from the node's IMDS.
    let nmi_kubeconfig = cluster.service_account_kubeconfig(system, NMI_SERVICE_ACCOUNT).await.unwrap();
    let imds = emu.imds_urls().into_values().next().unwrap();
    let agent = Agent::start(&nmi_kubeconfig, node, &imds, system).await;
    let (status, body) = agent.token(POD_IP, &app.client_id).await;
    assert_eq!(status, 200, "token for the bound pod: {body}");
    assert!(body.contains("access_token"), "{body}");

    // Outside their roles: 403.
    let nmi_client = cluster.service_account_client(system, NMI_SERVICE_ACCOUNT).await.unwrap();
    let aai_name = aai.metadata.name.clone().unwrap();
    let aai_ns = aai.metadata.namespace.clone().unwrap();
    let nmi_aais = Api::<AzureAssignedIdentity>::namespaced(nmi_client.clone(), &aai_ns);
    assert!(
        is_forbidden(nmi_aais.delete(&aai_name, &DeleteParams::default()).await),
        "agent deleting an assignment"
    );
    assert!(
        is_forbidden(Api::<Secret>::namespaced(nmi_client.clone(), apps).list(&ListParams::default()).await),
        "agent listing secrets"
    );
    let rogue = AzureIdentity::new(
        "rogue",
        AzureIdentitySpec { resource_id: app.id.clone(), ..AzureIdentitySpec::default() },
    );
    assert!(
        is_forbidden(
            Api::<AzureIdentity>::namespaced(nmi_client.clone(), apps)
                .create(&PostParams::default(), &rogue)
                .await
        ),
        "agent creating an identity"
    );
    assert!(
        is_forbidden(
            Api::<Pod>::namespaced(nmi_client, apps).delete("web-0", &DeleteParams::default()).await
        ),
        "agent deleting a pod"
    );

    assert!(
        is_forbidden(Api::<Secret>::namespaced(mic_client.clone(), apps).get("any").await),
        "controller reading secrets"
    );
    assert!(
        is_forbidden(
            Api::<Pod>::namespaced(mic_client.clone(), apps).delete("web-0", &DeleteParams::default()).await
        ),
        "controller deleting a pod"
    );
    assert!(
        is_forbidden(Api::<Lease>::namespaced(mic_client.clone(), "default").get(LEASE).await),
        "controller reading Leases outside its namespace"
    );
    assert!(
        is_forbidden(
            Api::<AzureIdentity>::namespaced(mic_client, apps).delete("web", &DeleteParams::default()).await
        ),
        "controller deleting an identity"
    );
    drop(agent);
    drop(w);
}
