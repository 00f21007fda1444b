//! `podid uninstall` after assigned identities were deleted by hand (issue 15): the controller
//! re-creates them and still knows what it added; with no controller left to clean up, uninstall
//! names every scale set and identity podid added and did not remove (from the controller's
//! ledgers), with the command that removes it, and fails instead of saying "nothing is left".
//! (With the controller running, `install_uninstall.rs` and podid-mic's `ledger` tests show
//! nothing is left.) Its own test binary: one installed world (a private cluster) per binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod install_support;
mod support;

use install_support::components::InstalledWorld;
use install_support::{aais, on_scale_set, until};
use kube::Api;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_emulator::config::builtin::{APP_IDENTITY, SCALE_SET};
use support::podid;

/// Strips an assigned identity's finalizer and deletes it, as a careless operator would.
async fn strip_and_delete(admin: &kube::Client, aai: &AzureAssignedIdentity) {
    use kube::api::{DeleteParams, Patch, PatchParams};
    let api =
        Api::<AzureAssignedIdentity>::namespaced(admin.clone(), aai.metadata.namespace.as_deref().unwrap());
    let name = aai.metadata.name.as_deref().unwrap();
    let patch = serde_json::json!({ "metadata": { "finalizers": null } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    api.delete(name, &DeleteParams::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_controller_uninstall_names_each_identity_podid_added_and_left_behind() {
    let w = InstalledWorld::start().await;
    let (admin, emu, system) = (&w.admin, &w.emu, w.system.clone());
    let before = on_scale_set(emu);
    w.pod("web-0", "web", "10.244.0.10").await;
    podid(&w.admin, &w.app_identity_args("web").each_ref().map(String::as_str)).await.ok();
    let app_id = emu.info().identities[APP_IDENTITY].id.to_ascii_lowercase();
    let assigned = async || {
        let a = aais(admin).await;
        (a.len() == 1 && a[0].state() == AssignedState::Assigned).then(|| a[0].clone())
    };
    until("web Assigned", async || assigned().await.is_some()).await;
    // By hand: the controller re-creates it, and still knows it added the identity.
    strip_and_delete(admin, &assigned().await.unwrap()).await;
    until("re-created and Assigned", async || assigned().await.is_some()).await;
    assert!(on_scale_set(emu).contains(&app_id));

    // The controller dies; the assignment is stripped again: nothing will take the identity off.
    drop(w.mic);
    strip_and_delete(admin, &assigned().await.unwrap()).await;
    let out = podid(admin, &["uninstall", "--namespace", &system, "--wait", "--timeout-secs", "10"]).await;
    let code = out.result.as_ref().ok().copied();
    let text = out.out;
    assert_eq!(code, Some(std::process::ExitCode::FAILURE), "{text}");
    assert!(!text.contains("nothing is left"), "{text}");
    assert!(text.contains(&format!("virtualMachineScaleSets/{SCALE_SET}")), "names the scale set: {text}");
    assert!(text.contains(&app_id), "names the identity: {text}");
    assert!(text.contains("az vmss identity remove"), "says how to remove it: {text}");
    assert!(text.contains("1 identities it added are left on 1 scale sets or VMs"), "{text}");
    assert_eq!(on_scale_set(emu).len(), before.len() + 1, "really left there");
}
