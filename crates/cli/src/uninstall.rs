//! `podid uninstall`: the seed's clean-up, in the order that leaves nothing behind.
//!
//! ```text
//!  1 delete every AzureIdentityBinding, then every AzureIdentity
//!  2 wait for the controller to remove the AzureAssignedIdentities and to clear its ledgers (it
//!    takes every identity it added off the scale sets and VMs, then drops its finalizer)
//!  3 drop finalizers of assigned identities still left (no controller: warns)
//!  4 report what the ledgers still record — each scale set / VM and identity podid added and did
//!    not remove, with the command that removes it — then delete the ledgers
//!  5 delete what `install` renders, in reverse: exceptions, agent, controller, RBAC, CRDs;
//!    with --wait, until they are gone
//! ```
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};
use serde_json::json;
use tokio::time::Instant;

use crate::args::UninstallArgs;
use crate::error::{Error, KubeContext, Result, is_not_found};
use crate::install::{InstallOptions, Mode, render};

mod left;

const POLL: Duration = Duration::from_millis(250);

/// Runs `podid uninstall`.
pub async fn run(client: &kube::Client, args: &UninstallArgs, out: &mut impl Write) -> Result<ExitCode> {
    let timeout = Duration::from_secs(args.timeout_secs);
    let deadline = Instant::now() + timeout;
    let crds_present = crds_installed(client).await?;
    let mut code = ExitCode::SUCCESS;
    if crds_present {
        let bindings = delete_all::<AzureIdentityBinding>(client, "AzureIdentityBindings").await?;
        let identities = delete_all::<AzureIdentity>(client, "AzureIdentities").await?;
        writeln!(out, "deleted {bindings} bindings and {identities} identities")?;
        if controller_running(client, &args.namespace).await? {
            writeln!(
                out,
                "waiting for the controller to remove the assigned identities from the scale sets"
            )?;
            if !wait_empty::<AzureAssignedIdentity>(client, timeout).await? {
                writeln!(
                    out,
                    "warning: assigned identities remain after {}s; removing them without the controller",
                    timeout.as_secs()
                )?;
                code = ExitCode::FAILURE;
            }
            left::wait_cleared(client, &args.namespace, deadline).await?;
        }
        let stripped = strip_finalizers(client).await?;
        if stripped > 0 {
            writeln!(
                out,
                "warning: {stripped} assigned identities had no running controller to clean them up"
            )?;
        }
    }
    let (left, unreadable) = left::read(client, &args.namespace).await?;
    if !left.is_empty() {
        write!(out, "{}", left::report(&left))?;
        code = ExitCode::FAILURE;
    }
    for name in &unreadable {
        writeln!(
            out,
            "warning: ledger ConfigMap {}/{name} cannot be read; check its scale set by hand",
            args.namespace
        )?;
        code = ExitCode::FAILURE;
    }
    left::delete_all(client, &args.namespace).await?;
    // Everything `install` may have rendered: standard mode with kubenet is the superset.
    let opts = InstallOptions {
        mode: Mode::Standard,
        allow_kubenet: true,
        federated_identities: true,
        namespace: args.namespace.clone(),
        ..InstallOptions::default()
    };
    let mut deleted = 0;
    for obj in render(&opts)?.iter().rev() {
        if delete_object(client, obj).await? {
            deleted += 1;
        }
    }
    writeln!(out, "deleted {deleted} installed objects")?;
    if args.wait {
        wait_crds_gone(client, timeout).await?;
        if left.is_empty() && unreadable.is_empty() {
            writeln!(out, "podid is uninstalled: nothing is left")?;
        } else {
            let ids: usize = left.iter().map(|l| l.ledger.ledger.added.len()).sum();
            writeln!(
                out,
                "podid is uninstalled, but {ids} identities it added are left on {} scale sets or VMs (listed above)",
                left.len() + unreadable.len()
            )?;
        }
    }
    Ok(code)
}

async fn crds_installed(client: &kube::Client) -> Result<bool> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    match api.get("azureassignedidentities.aadpodidentity.k8s.io").await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).doing(|| "read the podid CRDs".into()),
    }
}

async fn delete_all<K>(client: &kube::Client, what: &str) -> Result<usize>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let items =
        Api::<K>::all(client.clone()).list(&ListParams::default()).await.doing(|| format!("list {what}"))?;
    let mut n = 0;
    for item in items.items {
        let (Some(ns), Some(name)) = (item.meta().namespace.clone(), item.meta().name.clone()) else {
            continue;
        };
        match Api::<K>::namespaced(client.clone(), &ns).delete(&name, &DeleteParams::default()).await {
            Ok(_) => n += 1,
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e).doing(|| format!("delete {what} {ns}/{name}")),
        }
    }
    Ok(n)
}

/// Name of the controller's leader-election Lease (its default, which `install` keeps).
const LEASE: &str = "aad-pod-identity-mic";
/// A Lease renewed this recently means a controller is running.
const LEASE_FRESH: Duration = Duration::from_secs(60);

/// Whether a controller runs for `ns`: its Lease was renewed recently, or the Deployment has a
/// ready replica.
async fn controller_running(client: &kube::Client, ns: &str) -> Result<bool> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    match leases.get_opt(LEASE).await {
        Ok(Some(lease)) => {
            let renewed = lease.spec.and_then(|s| s.renew_time).map(|t| t.0);
            let fresh = renewed.is_some_and(|t| {
                let age = k8s_openapi::jiff::Timestamp::now().duration_since(t);
                age.as_secs() < LEASE_FRESH.as_secs() as i64
            });
            if fresh {
                return Ok(true);
            }
        }
        Ok(None) => {}
        Err(e) => return Err(e).doing(|| format!("read the controller's Lease in {ns}")),
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    match api.get(crate::install::MIC_DEPLOYMENT).await {
        Ok(d) => Ok(d.status.and_then(|s| s.ready_replicas).unwrap_or(0) > 0),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).doing(|| format!("read the controller Deployment in {ns}")),
    }
}

/// Waits until no object of `K` exists; `false` on timeout.
async fn wait_empty<K>(client: &kube::Client, timeout: Duration) -> Result<bool>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let deadline = Instant::now() + timeout;
    loop {
        let list = Api::<K>::all(client.clone())
            .list(&ListParams::default().limit(1))
            .await
            .doing(|| "list assigned identities".into())?;
        if list.items.is_empty() {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Drops the finalizers of (and deletes) assigned identities still present; returns how many.
async fn strip_finalizers(client: &kube::Client) -> Result<usize> {
    let all: Api<AzureAssignedIdentity> = Api::all(client.clone());
    let list = all.list(&ListParams::default()).await.doing(|| "list assigned identities".into())?;
    let mut n = 0;
    for aai in list.items {
        let (Some(ns), Some(name)) = (aai.metadata.namespace.clone(), aai.metadata.name.clone()) else {
            continue;
        };
        let api: Api<AzureAssignedIdentity> = Api::namespaced(client.clone(), &ns);
        let patch = json!({ "metadata": { "finalizers": null } });
        match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                return Err(e).doing(|| format!("remove the finalizer of AzureAssignedIdentity {ns}/{name}"));
            }
        }
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => n += 1,
            Err(e) if is_not_found(&e) => n += 1,
            Err(e) => return Err(e).doing(|| format!("delete AzureAssignedIdentity {ns}/{name}")),
        }
    }
    Ok(n)
}

/// Deletes one rendered object; `false` when it was not there (or its kind is not served).
async fn delete_object(client: &kube::Client, obj: &serde_json::Value) -> Result<bool> {
    use crate::install::apply::{api_for, identify, resolve};
    let (gvk, ns, name) = identify(obj)?;
    let Ok((ar, caps)) = resolve(client, &gvk).await else { return Ok(false) };
    let api = api_for(client, &ar, &caps, ns.as_deref());
    let params = DeleteParams::default();
    match api.delete(&name, &params).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(e).doing(|| format!("delete {} {name}", gvk.kind)),
    }
}

async fn wait_crds_gone(client: &kube::Client, timeout: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let list = api.list(&ListParams::default()).await.doing(|| "list CRDs".into())?;
        let left: Vec<String> = list
            .items
            .iter()
            .filter_map(|c| c.metadata.name.clone())
            .filter(|n| n.ends_with(".aadpodidentity.k8s.io"))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::Usage(format!(
                "CRDs {} are still being deleted after {}s: check for objects with finalizers",
                left.join(", "),
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}
