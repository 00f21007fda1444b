//! The sandbox's Azure: the emulator's default world (node resource group with a two-node scale
//! set, identity resource group, the admin and cluster service principals) plus what the
//! walkthrough needs, and the ARM calls an administrator would make with `az`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use podid_azure::arm::{builtin_roles, role_definition_id};
use podid_azure::credential::ServicePrincipal;
use podid_azure::http::{HttpOptions, build_client};
use podid_azure::{AadClient, ArmClient, ArmOptions, CachedTokenSource, ClientCredential, Cloud, Secret};
use podid_core::scaleset::{IdentityPatch, Target, TargetKind};
use podid_emulator::config::{IdentityConfig, VmConfig, builtin};
use podid_emulator::{EmulatorConfig, RunningEmulator};

/// The walkthrough's first identity (the emulator's `podid-app`).
pub const FIRST_IDENTITY: &str = builtin::APP_IDENTITY;
/// The second identity of the multi-identity part.
pub const SECOND_IDENTITY: &str = "podid-app-2";
/// A VM in the node resource group, so that the demo's VM count shows its role works.
pub const JUMPBOX_VM: &str = "podid-jumpbox";
/// ARM long-running operations take this long in the sandbox (real ARM: 10 s to a minute).
pub const OPERATION_MS: u64 = 300;
/// A newly assigned identity reaches the node's IMDS this long after ARM reports it.
pub const IMDS_PROPAGATION_MS: u64 = 200;

/// An identity of the walkthrough, as `az identity show` prints it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// ARM resource id.
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Principal (object) id.
    pub principal_id: String,
}

/// The emulator configuration of the sandbox.
pub fn config() -> EmulatorConfig {
    let mut config = EmulatorConfig {
        operation_duration_ms: OPERATION_MS,
        imds_propagation_delay_ms: IMDS_PROPAGATION_MS,
        ..EmulatorConfig::default()
    };
    config.identities.push(IdentityConfig {
        name: SECOND_IDENTITY.into(),
        resource_group: builtin::IDENTITY_RESOURCE_GROUP.into(),
        client_id: Some("a99c11e0-0000-4000-8000-000000a99201".into()),
        principal_id: Some("a99c11e0-0000-4000-8000-000000a99202".into()),
        federated_credentials: vec![],
    });
    config.virtual_machines.push(VmConfig {
        name: JUMPBOX_VM.into(),
        resource_group: builtin::NODE_RESOURCE_GROUP.into(),
        system_assigned: false,
        identities: vec![],
    });
    config
}

/// The administrator's ARM client (`podid-admin`, Owner), on the host's loopback.
pub fn admin_arm(emulator: &RunningEmulator, ca_file: &std::path::Path) -> Result<ArmClient> {
    let info = emulator.info();
    let admin = info.applications.get(builtin::ADMIN_APP).context("the emulator has no admin application")?;
    let url = |u: String| url::Url::parse(&u).with_context(|| format!("emulator URL {u}"));
    let cloud = Cloud::public()
        .with_resource_manager(url(emulator.arm_url())?)
        .with_authority_host(url(emulator.login_url())?);
    let http = HttpOptions {
        extra_ca_files: vec![ca_file.to_owned()],
        proxy_from_env: false,
        ..HttpOptions::default()
    };
    let reqwest = build_client(&http).context("cannot set up HTTPS")?;
    let principal = ServicePrincipal {
        aad: AadClient::new(reqwest.clone(), cloud.authority_host.clone()),
        tenant_id: emulator.tenant_id(),
        client_id: admin.client_id.clone(),
        credential: ClientCredential::Secret(Secret::new(admin.secrets.first().cloned().unwrap_or_default())),
    };
    Ok(ArmClient::for_cloud(
        reqwest,
        &cloud,
        Arc::new(CachedTokenSource::new(principal)),
        ArmOptions::default(),
    ))
}

/// `az identity show -g <identity RG> -n <name>`.
pub async fn show_identity(arm: &ArmClient, emulator: &RunningEmulator, name: &str) -> Result<Identity> {
    let sub = emulator.subscription_id();
    let found = arm
        .get_user_assigned_identity(&sub, builtin::IDENTITY_RESOURCE_GROUP, name)
        .await
        .with_context(|| format!("az identity show -n {name}"))?;
    Ok(Identity { id: found.id, client_id: found.client_id, principal_id: found.principal_id })
}

/// `az role assignment create --role <role> --assignee <principal> --scope <node RG>`.
pub async fn grant(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    principal_id: &str,
    role: &str,
) -> Result<String> {
    let sub = emulator.subscription_id();
    let scope = format!("/subscriptions/{sub}/resourceGroups/{}", builtin::NODE_RESOURCE_GROUP);
    let definition = role_definition_id(&sub, role);
    match arm.create_role_assignment(&scope, &definition, principal_id, "ServicePrincipal").await {
        Ok(_) => Ok(scope),
        Err(e) if e.code() == Some("RoleAssignmentExists") => Ok(scope),
        Err(e) => Err(e).with_context(|| format!("az role assignment create on {scope}")),
    }
}

/// The two roles of the walkthrough: Virtual Machine Contributor (first part), Reader (second).
pub fn role_id(reader: bool) -> &'static str {
    if reader { builtin_roles::READER } else { builtin_roles::VIRTUAL_MACHINE_CONTRIBUTOR }
}

/// `az identity federated-credential create` on identity `name` for `issuer` and `subject`.
pub async fn federate(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    name: &str,
    issuer: &str,
    subject: &str,
) -> Result<()> {
    let audiences = [podid_testkit::TOKEN_EXCHANGE_AUDIENCE.to_owned()];
    arm.put_federated_credential(
        &emulator.subscription_id(),
        builtin::IDENTITY_RESOURCE_GROUP,
        name,
        "podid-sandbox",
        issuer,
        subject,
        &audiences,
    )
    .await
    .with_context(|| format!("cannot create the federated credential of {name}"))?;
    Ok(())
}

/// The node pool's scale set.
pub fn scale_set(emulator: &RunningEmulator) -> Target {
    Target {
        subscription: emulator.subscription_id(),
        resource_group: builtin::NODE_RESOURCE_GROUP.into(),
        kind: TargetKind::ScaleSet,
        name: builtin::SCALE_SET.into(),
    }
}

/// `az vmss identity assign|remove` for one identity (managed mode: AKS, not a controller, does it).
pub async fn set_on_scale_set(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    id: &str,
    present: bool,
) -> Result<()> {
    let target = scale_set(emulator);
    let current = arm.get_identity(&target).await.with_context(|| format!("cannot read {target}"))?;
    let mut after = current.identity.clone();
    let key = id.to_ascii_lowercase();
    if present == after.user_assigned.contains(&key) {
        return Ok(());
    }
    if present {
        after.user_assigned.insert(key.clone());
    } else {
        after.user_assigned.remove(&key);
    }
    let entries = if after.user_assigned.is_empty() { Default::default() } else { [(key, present)].into() };
    let patch = IdentityPatch { type_: after.type_str(), entries, after };
    arm.patch_identity(&target, &patch).await.with_context(|| format!("cannot update {target}"))?;
    Ok(())
}

/// Lower-cased ids of the user-assigned identities on the node pool's scale set.
pub fn scale_set_identities(emulator: &RunningEmulator) -> Vec<String> {
    emulator.assigned_identities(builtin::NODE_RESOURCE_GROUP, builtin::SCALE_SET).unwrap_or_default()
}

/// Waits until `check` holds for the scale set's identity list; the list it saw last otherwise.
pub async fn wait_scale_set(
    emulator: &RunningEmulator,
    timeout: Duration,
    check: impl Fn(&[String]) -> bool,
) -> std::result::Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = scale_set_identities(emulator);
        if check(&now) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The short name of an identity resource id.
pub fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}
