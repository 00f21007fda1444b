//! `podid identity delete` and `podid uninstall` leave nothing behind: against the API server, the
//! emulator's scale set and the real controller running as its installed ServiceAccount.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use std::time::{Duration, Instant};

use install_support::components::controller;
use install_support::{install, private_cluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_cli::install::{InstallOptions, MIC_SERVICE_ACCOUNT};
use podid_emulator::config::builtin::{APP_IDENTITY, NODE_RESOURCE_GROUP, SCALE_SET};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator, SettingsUpdate};
use podid_testkit::{NodeBuilder, PodBuilder};
use support::podid;

fn on_scale_set(emu: &RunningEmulator) -> Vec<String> {
    emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap_or_default()
}

async fn aais(admin: &kube::Client) -> Vec<AzureAssignedIdentity> {
    Api::<AzureAssignedIdentity>::all(admin.clone()).list(&ListParams::default()).await.unwrap().items
}

async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_delete_then_uninstall_cleans_the_scale_set_and_leaves_nothing() {
    podid_testkit::init_tracing();
    let cluster = private_cluster().await;
    let admin = cluster.client().unwrap();
    let system = cluster.namespace("podid-system").await.unwrap();
    install(&admin, &InstallOptions { namespace: system.clone(), ..InstallOptions::default() }).await;
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    emu.update_settings(&SettingsUpdate { operation_duration_ms: Some(50), ..SettingsUpdate::default() });
    let before = on_scale_set(&emu);
    let mic_client = cluster.service_account_client(&system, MIC_SERVICE_ACCOUNT).await.unwrap();
    let _mic = controller(mic_client, &emu, &system);

    let apps = cluster.namespace("apps").await.unwrap();
    let node = format!("{apps}-n0");
    NodeBuilder::new(&node)
        .vmss(&emu.subscription_id(), NODE_RESOURCE_GROUP, SCALE_SET, 0)
        .create(&admin)
        .await
        .unwrap();
    for (pod, selector, ip) in [("web-0", "web", "10.244.0.10"), ("api-0", "api", "10.244.0.11")] {
        PodBuilder::new(&apps, pod)
            .node(&node)
            .label("aadpodidbinding", selector)
            .ip(ip.parse().unwrap())
            .create(&admin)
            .await
            .unwrap();
    }
    let info = emu.info();
    let app = &info.identities[APP_IDENTITY];
    let app_id = app.id.to_ascii_lowercase();
    let add = |name: &'static str| {
        let (admin, apps, id, client_id) =
            (admin.clone(), apps.clone(), app.id.clone(), app.client_id.clone());
        async move {
            podid(
                &admin,
                &[
                    "identity",
                    "add",
                    "-n",
                    &apps,
                    "--name",
                    name,
                    "--identity-resource-id",
                    &id,
                    "--client-id",
                    &client_id,
                ],
            )
            .await
            .ok();
        }
    };
    let assigned = async |n: usize| {
        let a = aais(&admin).await;
        a.len() == n && a.iter().all(|a| a.state() == AssignedState::Assigned)
    };

    // identity delete: the controller takes the identity off the scale set; the assignment and
    // its finalizer go.
    add("web").await;
    until("web Assigned", async || assigned(1).await).await;
    assert!(on_scale_set(&emu).contains(&app_id));
    podid(&admin, &["identity", "delete", "-n", &apps, "--name", "web"]).await.ok();
    until("web off the scale set and its assignment gone", async || {
        !on_scale_set(&emu).contains(&app_id) && aais(&admin).await.is_empty()
    })
    .await;

    add("api").await;
    until("api Assigned", async || assigned(1).await).await;
    assert!(on_scale_set(&emu).contains(&app_id));

    // uninstall: the rest goes, scale set included, then every installed object.
    let out =
        podid(&admin, &["uninstall", "--namespace", &system, "--wait", "--timeout-secs", "60"]).await.ok();
    assert!(out.contains("waiting for the controller"), "uninstall saw the running controller: {out}");
    assert!(out.contains("nothing is left"), "{out}");
    assert_eq!(on_scale_set(&emu), before, "the scale set is back to its own identities");
    let crds =
        Api::<CustomResourceDefinition>::all(admin.clone()).list(&ListParams::default()).await.unwrap();
    assert!(
        !crds.items.iter().any(|c| c
            .metadata
            .name
            .as_deref()
            .unwrap_or_default()
            .ends_with(".aadpodidentity.k8s.io")),
        "CRDs left"
    );
    for obj in
        podid_cli::install::render(&InstallOptions { namespace: system.clone(), ..InstallOptions::default() })
            .unwrap()
    {
        if obj["kind"] != "CustomResourceDefinition" && obj["apiVersion"] != "aadpodidentity.k8s.io/v1" {
            assert!(
                !install_support::exists(&admin, &obj).await,
                "{} {} left",
                obj["kind"],
                obj["metadata"]["name"]
            );
        }
    }
    // Re-running finds nothing to do and succeeds.
    let again = podid(&admin, &["uninstall", "--namespace", &system, "--wait"]).await.ok();
    assert!(again.contains("deleted 0 installed objects"), "{again}");
}
