//! `podid identity delete` and `podid uninstall` leave nothing behind: against the API server, the
//! emulator's scale set and the real controller running as its installed ServiceAccount.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use install_support::components::InstalledWorld;
use install_support::{aais, on_scale_set, until};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use podid_api::AssignedState;
use podid_cli::install::InstallOptions;
use podid_emulator::config::builtin::APP_IDENTITY;
use support::podid;

#[tokio::test(flavor = "multi_thread")]
async fn identity_delete_then_uninstall_cleans_the_scale_set_and_leaves_nothing() {
    let w = InstalledWorld::start().await;
    let (admin, emu, apps, system) = (&w.admin, &w.emu, &w.apps, &w.system);
    let before = on_scale_set(emu);
    w.pod("web-0", "web", "10.244.0.10").await;
    w.pod("api-0", "api", "10.244.0.11").await;
    let app_id = emu.info().identities[APP_IDENTITY].id.to_ascii_lowercase();
    let assigned = async |n: usize| {
        let a = aais(admin).await;
        a.len() == n && a.iter().all(|a| a.state() == AssignedState::Assigned)
    };

    // identity delete: the controller takes the identity off the scale set; the assignment and
    // its finalizer go.
    podid(&w.admin, &w.app_identity_args("web").each_ref().map(String::as_str)).await.ok();
    until("web Assigned", async || assigned(1).await).await;
    assert!(on_scale_set(emu).contains(&app_id));
    podid(admin, &["identity", "delete", "-n", apps, "--name", "web"]).await.ok();
    until("web off the scale set and its assignment gone", async || {
        !on_scale_set(emu).contains(&app_id) && aais(admin).await.is_empty()
    })
    .await;

    podid(&w.admin, &w.app_identity_args("api").each_ref().map(String::as_str)).await.ok();
    until("api Assigned", async || assigned(1).await).await;
    assert!(on_scale_set(emu).contains(&app_id));

    // uninstall: the rest goes, scale set included, then every installed object.
    let out =
        podid(admin, &["uninstall", "--namespace", system, "--wait", "--timeout-secs", "60"]).await.ok();
    assert!(out.contains("waiting for the controller"), "uninstall saw the running controller: {out}");
    assert!(out.contains("nothing is left"), "{out}");
    assert_eq!(on_scale_set(emu), before, "the scale set is back to its own identities");
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
                !install_support::exists(admin, &obj).await,
                "{} {} left",
                obj["kind"],
                obj["metadata"]["name"]
            );
        }
    }
    // Re-running finds nothing to do and succeeds.
    let again = podid(admin, &["uninstall", "--namespace", system, "--wait"]).await.ok();
    assert!(again.contains("deleted 0 installed objects"), "{again}");
}
