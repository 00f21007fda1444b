//! The sandbox's Azure: the emulator's default world (node resource group with a two-node scale
//! set, identity resource group, the admin and cluster service principals) plus what the
//! walkthrough needs, and the ARM calls an administrator would make with `az`.
use std::time::{Duration, Instant};

use podid_azure::ArmClient;
use podid_azure::arm::{builtin_roles, role_definition_id};
use podid_core::scaleset::{IdentityPatch, Target, TargetKind};
use podid_emulator::config::{IdentityConfig, VmConfig, builtin};
use podid_emulator::{Emulator, EmulatorConfig, RunningEmulator};

use super::SandboxError;
use crate::args::AzureArgs;

/// The walkthrough's first identity (the emulator's `podid-app`).
pub const FIRST_IDENTITY: &str = builtin::APP_IDENTITY;
/// The second identity behind the same selector.
pub const SECOND_IDENTITY: &str = "podid-app-2";
/// A VM in the node resource group, so that the demo's VM count shows its role works.
pub const JUMPBOX_VM: &str = "podid-jumpbox";
/// ARM long-running operations take this long in the sandbox (real ARM: 10 s to a minute).
pub const OPERATION_MS: u64 = 300;
/// A newly assigned identity reaches the node's IMDS this long after ARM reports it.
pub const IMDS_PROPAGATION_MS: u64 = 200;

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

/// Starts the emulator.
pub async fn start() -> Result<RunningEmulator, SandboxError> {
    Emulator::start(config()).await.map_err(|e| SandboxError::new(format!("cannot start the emulator: {e}")))
}

/// How `podid identity add` reaches ARM as the administrator (`podid-admin`, Owner).
pub fn admin_args(emulator: &RunningEmulator) -> Result<AzureArgs, SandboxError> {
    let info = emulator.info();
    let admin = info
        .applications
        .get(builtin::ADMIN_APP)
        .ok_or_else(|| SandboxError::new("the emulator has no admin application".into()))?;
    let url =
        |u: String| url::Url::parse(&u).map_err(|e| SandboxError::new(format!("emulator URL {u}: {e}")));
    Ok(AzureArgs {
        arm_endpoint: Some(url(emulator.arm_url())?),
        aad_authority: Some(url(emulator.login_url())?),
        trusted_ca_files: vec![emulator.ca_pem_path().to_path_buf()],
        tenant_id: Some(emulator.tenant_id()),
        azure_client_id: Some(admin.client_id.clone()),
        azure_client_secret: admin.secrets.first().cloned(),
        subscription_id: Some(emulator.subscription_id()),
    })
}

/// The administrator's ARM client.
pub fn admin_arm(emulator: &RunningEmulator) -> Result<ArmClient, SandboxError> {
    crate::azure::client(&admin_args(emulator)?, "the sandbox drives the emulator's ARM")
        .map_err(|e| SandboxError::new(e.to_string()))
}

/// `az role assignment create --role "Virtual Machine Contributor" --assignee <principal> --scope <node RG>`.
pub async fn grant_vm_contributor(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    principal_id: &str,
) -> Result<String, SandboxError> {
    let sub = emulator.subscription_id();
    let scope = format!("/subscriptions/{sub}/resourceGroups/{}", builtin::NODE_RESOURCE_GROUP);
    let role = role_definition_id(&sub, builtin_roles::VIRTUAL_MACHINE_CONTRIBUTOR);
    match arm.create_role_assignment(&scope, &role, principal_id, "ServicePrincipal").await {
        Ok(_) => Ok(scope),
        Err(e) if e.code() == Some("RoleAssignmentExists") => Ok(scope),
        Err(e) => Err(SandboxError::new(format!("cannot grant Virtual Machine Contributor on {scope}: {e}"))),
    }
}

/// `az identity federated-credential create` on identity `name` for `issuer` and `subject`.
pub async fn federate(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    name: &str,
    issuer: &str,
    subject: &str,
) -> Result<(), SandboxError> {
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
    .map_err(|e| SandboxError::new(format!("cannot create the federated credential of {name}: {e}")))?;
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

/// `az vmss identity assign|remove` for one identity (managed mode: no controller does it).
pub async fn set_on_scale_set(
    arm: &ArmClient,
    emulator: &RunningEmulator,
    id: &str,
    present: bool,
) -> Result<(), SandboxError> {
    let target = scale_set(emulator);
    let current = arm
        .get_identity(&target)
        .await
        .map_err(|e| SandboxError::new(format!("cannot read {target}: {e}")))?;
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
    arm.patch_identity(&target, &patch)
        .await
        .map_err(|e| SandboxError::new(format!("cannot update {target}: {e}")))?;
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
) -> Result<Vec<String>, Vec<String>> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = scale_set_identities(emulator);
        if check(&now) {
            return Ok(now);
        }
        if Instant::now() > deadline {
            return Err(now);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The short name of an identity resource id.
pub fn short(id: &str) -> &str {
    id.rsplit('/').next().unwrap_or(id)
}
