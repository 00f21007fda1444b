//! Drift found without polling, end to end with the installed RBAC: the real agent (`podid-nmi` as
//! its ServiceAccount) sees IMDS refuse an identity whose assignment is `Assigned` and records an
//! `IdentityNotOnNode` Event; the controller (as its ServiceAccount, drift check off) re-checks the
//! scale set and puts the identity back; the pod's next request gets its token.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use install_support::components::{Agent, InstalledWorld};
use install_support::until;
use kube::Api;
use kube::api::ListParams;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_cli::install::NMI_SERVICE_ACCOUNT;
use podid_emulator::config::builtin::{APP_IDENTITY, NODE_RESOURCE_GROUP, SCALE_SET};
use support::podid;

const POD_IP: &str = "127.0.0.78";

/// A token request as the pod, for `resource` (a resource not asked for before misses the cache).
async fn token(agent: &Agent, client_id: &str, resource: &str) -> u16 {
    let http = reqwest::Client::builder()
        .no_proxy()
        .local_address(POD_IP.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let url = format!(
        "http://127.0.0.1:{}/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}&client_id={client_id}",
        agent.port
    );
    http.get(url).header("Metadata", "true").send().await.unwrap().status().as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_identity_removed_behind_podids_back_is_put_back_once_the_agent_sees_imds_refuse_it() {
    let w = InstalledWorld::start().await;
    let (admin, emu, system) = (&w.admin, &w.emu, &w.system);
    w.pod("web-0", "web", POD_IP).await;
    podid(admin, &w.app_identity_args("web").each_ref().map(String::as_str)).await.ok();
    let app = emu.info().identities[APP_IDENTITY].clone();
    let key = app.id.to_ascii_lowercase();
    let on_vmss = || emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap_or_default();
    let aais = Api::<AzureAssignedIdentity>::all(admin.clone());
    until("Assigned", async || {
        aais.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .iter()
            .any(|a| a.state() == AssignedState::Assigned)
    })
    .await;
    let kubeconfig = w.cluster.service_account_kubeconfig(system, NMI_SERVICE_ACCOUNT).await.unwrap();
    let imds = emu.imds_urls().into_values().next().unwrap();
    let agent = Agent::start(&kubeconfig, &w.node, &imds, system).await;
    assert_eq!(token(&agent, &app.client_id, "https://vault.azure.net").await, 200);

    emu.with_world(|world| {
        for s in world.scale_sets.values_mut() {
            s.identity.user.remove(&key);
        }
    });
    assert!(!on_vmss().contains(&key));
    let refused = token(&agent, &app.client_id, "https://storage.azure.com").await;
    assert_ne!(refused, 200, "IMDS no longer has the identity");
    until("the controller puts the identity back", async || on_vmss().contains(&key)).await;
    until("the pod gets its token again", async || {
        token(&agent, &app.client_id, "https://storage.azure.com").await == 200
    })
    .await;
    let reports = Api::<k8s_openapi::api::core::v1::Event>::all(admin.clone())
        .list(&ListParams::default().fields("reason=IdentityNotOnNode"))
        .await
        .unwrap();
    let on = reports.items.first().map(|e| e.involved_object.kind.clone());
    assert_eq!(on, Some(Some("AzureAssignedIdentity".to_string())), "{:?}", reports.items);
}
