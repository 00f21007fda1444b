//! `Microsoft.Compute`: scale sets, their instances, VMs, and the long-running operations their updates
//! start.
//!
//! A PATCH (or PUT) that carries `identity` is checked in ARM's order: write permission on the resource
//! (`AuthorizationFailed`), members the model does not have (`InvalidRequestContent`, see
//! [`super::members`]), the 150-per-request limit, the same id twice (`DuplicateIdentityIds`), `assign/action` on every added identity
//! (`LinkedAuthorizationFailed`, quoting the ids), existence of every added identity
//! (`FailedIdentityOperation`, quoting the ids). It then answers **200** with the resource in
//! `Updating` (or `Succeeded` when the configured duration is 0) and an `Azure-AsyncOperation` URL whose
//! status turns `Succeeded` after the duration. New identities become visible to IMDS at the end of the
//! operation plus the propagation delay.

use std::time::{Duration, Instant, SystemTime};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::{ArmError, Ctx, members, ok, with_status};
use crate::clock;
use crate::model::identity_block::{IdentityBlock, IdentityPatch, PatchError, apply_patch};
use crate::model::{Operation, Provisioning, ScaleSet, VirtualMachine, World, compute_id};

const ASSIGN: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action";
const VMSS_TYPE: &str = "Microsoft.Compute/virtualMachineScaleSets";
const VM_TYPE: &str = "Microsoft.Compute/virtualMachines";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    ScaleSet,
    Vm,
}

impl Kind {
    fn provider_type(self) -> &'static str {
        match self {
            Self::ScaleSet => VMSS_TYPE,
            Self::Vm => VM_TYPE,
        }
    }
    fn segment(self) -> &'static str {
        match self {
            Self::ScaleSet => "virtualMachineScaleSets",
            Self::Vm => "virtualMachines",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Self::ScaleSet => "VM Scale Set",
            Self::Vm => "VM",
        }
    }
}

fn render_scale_set(w: &World, s: &ScaleSet, now: Instant) -> Value {
    let mut v = json!({
        "id": compute_id(&w.subscription_id, &s.resource_group, "virtualMachineScaleSets", &s.name),
        "name": s.name,
        "type": VMSS_TYPE,
        "location": s.location,
        "sku": {"name": "Standard_DS2_v2", "tier": "Standard", "capacity": s.instances.len()},
        "properties": {
            "provisioningState": s.provisioning.state(now),
            "uniqueId": s.unique_id,
            "orchestrationMode": "Uniform",
            "overprovision": false,
            "upgradePolicy": {"mode": "Manual"},
            "virtualMachineProfile": {"osProfile": {"computerNamePrefix": s.name, "adminUsername": "azureuser"}},
        },
    });
    if let Some(identity) = s.identity.to_json(&w.tenant_id) {
        v["identity"] = identity;
    }
    if !s.tags.is_null() {
        v["tags"] = s.tags.clone();
    }
    v
}

fn render_instance(w: &World, s: &ScaleSet, inst: &crate::model::Instance, now: Instant) -> Value {
    let parent = compute_id(&w.subscription_id, &s.resource_group, "virtualMachineScaleSets", &s.name);
    json!({
        "id": format!("{parent}/virtualMachines/{}", inst.instance_id),
        "name": format!("{}_{}", s.name, inst.instance_id),
        "type": format!("{VMSS_TYPE}/virtualMachines"),
        "location": s.location,
        "instanceId": inst.instance_id.to_string(),
        "sku": {"name": "Standard_DS2_v2", "tier": "Standard"},
        "properties": {
            "latestModelApplied": true,
            "vmId": inst.vm_id,
            "provisioningState": s.provisioning.state(now),
            "osProfile": {"computerName": inst.node_name, "adminUsername": "azureuser"},
            "networkProfile": {"networkInterfaces": []},
        },
    })
}

fn render_vm(w: &World, vm: &VirtualMachine, now: Instant) -> Value {
    let mut v = json!({
        "id": compute_id(&w.subscription_id, &vm.resource_group, "virtualMachines", &vm.name),
        "name": vm.name,
        "type": VM_TYPE,
        "location": vm.location,
        "properties": {
            "vmId": vm.vm_id,
            "provisioningState": vm.provisioning.state(now),
            "hardwareProfile": {"vmSize": "Standard_DS2_v2"},
            "osProfile": {"computerName": vm.name, "adminUsername": "azureuser"},
        },
    });
    if let Some(identity) = vm.identity.to_json(&w.tenant_id) {
        v["identity"] = identity;
    }
    if !vm.tags.is_null() {
        v["tags"] = vm.tags.clone();
    }
    v
}

fn require_group(ctx: &Ctx, rg: &str) -> Result<(), ArmError> {
    if ctx.shared.world.read().group(rg).is_some() { Ok(()) } else { Err(ArmError::group_not_found(rg)) }
}

pub fn list_scale_sets(ctx: &Ctx, rg: Option<&str>) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    if let Some(rg) = rg {
        require_group(ctx, rg)?;
    }
    let now = Instant::now();
    let world = ctx.shared.world.read().clone();
    let items = world
        .scale_sets
        .values()
        .filter(|s| rg.is_none_or(|rg| s.resource_group.eq_ignore_ascii_case(rg)))
        .map(|s| render_scale_set(&world, s, now))
        .filter(|v| ctx.can(&format!("{VMSS_TYPE}/read"), v["id"].as_str().unwrap_or_default()))
        .collect();
    Ok(ctx.page(items))
}

pub fn list_vms(ctx: &Ctx, rg: Option<&str>) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    if let Some(rg) = rg {
        require_group(ctx, rg)?;
    }
    let now = Instant::now();
    let world = ctx.shared.world.read().clone();
    let items = world
        .vms
        .values()
        .filter(|v| rg.is_none_or(|rg| v.resource_group.eq_ignore_ascii_case(rg)))
        .map(|v| render_vm(&world, v, now))
        .filter(|v| ctx.can(&format!("{VM_TYPE}/read"), v["id"].as_str().unwrap_or_default()))
        .collect();
    Ok(ctx.page(items))
}

pub fn scale_set_vms(ctx: &Ctx, rg: &str, name: &str, instance: Option<&str>) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    let sub = ctx.subscription();
    let id = compute_id(&sub, rg, "virtualMachineScaleSets", name);
    ctx.require(&format!("{VMSS_TYPE}/virtualMachines/read"), &id)?;
    require_group(ctx, rg)?;
    let now = Instant::now();
    let world = ctx.shared.world.read();
    let set = world
        .scale_sets
        .get(&id.to_ascii_lowercase())
        .ok_or_else(|| ArmError::resource_not_found(VMSS_TYPE, name, rg))?;
    match instance {
        None => {
            let items = set.instances.values().map(|i| render_instance(&world, set, i, now)).collect();
            drop(world);
            Ok(ctx.page(items))
        }
        Some(iid) => {
            let inst = iid.parse::<u32>().ok().and_then(|n| set.instances.get(&n)).ok_or_else(|| {
                ArmError::resource_not_found(
                    &format!("{VMSS_TYPE}/virtualMachines"),
                    &format!("{name}/{iid}"),
                    rg,
                )
            })?;
            Ok(ok(render_instance(&world, set, inst, now)))
        }
    }
}

pub async fn scale_set(ctx: &Ctx, rg: &str, name: &str) -> Result<Response, ArmError> {
    resource(ctx, Kind::ScaleSet, rg, name).await
}

pub async fn vm(ctx: &Ctx, rg: &str, name: &str) -> Result<Response, ArmError> {
    resource(ctx, Kind::Vm, rg, name).await
}

fn render(world: &World, kind: Kind, key: &str, now: Instant) -> Option<Value> {
    match kind {
        Kind::ScaleSet => world.scale_sets.get(key).map(|s| render_scale_set(world, s, now)),
        Kind::Vm => world.vms.get(key).map(|v| render_vm(world, v, now)),
    }
}

fn parts(world: &mut World, kind: Kind, key: &str) -> Option<(IdentityBlock, Provisioning)> {
    match kind {
        Kind::ScaleSet => world.scale_sets.get(key).map(|s| (s.identity.clone(), s.provisioning.clone())),
        Kind::Vm => world.vms.get(key).map(|v| (v.identity.clone(), v.provisioning.clone())),
    }
}

async fn resource(ctx: &Ctx, kind: Kind, rg: &str, name: &str) -> Result<Response, ArmError> {
    let sub = ctx.subscription();
    let id = compute_id(&sub, rg, kind.segment(), name);
    let key = id.to_ascii_lowercase();
    match ctx.method {
        Method::GET => {
            ctx.require(&format!("{}/read", kind.provider_type()), &id)?;
            require_group(ctx, rg)?;
            let world = ctx.shared.world.read();
            let body = render(&world, kind, &key, Instant::now())
                .ok_or_else(|| ArmError::resource_not_found(kind.provider_type(), name, rg))?;
            Ok(ok(body))
        }
        Method::PATCH | Method::PUT => {
            let created = write(ctx, kind, rg, name, &id, &key)?;
            if created {
                crate::imds::ensure_listeners(&ctx.shared).await;
            }
            let (op_id, busy) = start_operation(ctx, kind, &key);
            let world = ctx.shared.world.read();
            let body = render(&world, kind, &key, Instant::now())
                .ok_or_else(|| ArmError::resource_not_found(kind.provider_type(), name, rg))?;
            drop(world);
            let status = if created { StatusCode::CREATED } else { StatusCode::OK };
            let mut resp = with_status(status, body);
            let op_url = format!(
                "{}/subscriptions/{sub}/providers/Microsoft.Compute/locations/{}/operations/{op_id}?api-version={}",
                ctx.base,
                ctx.shared.world.read().location,
                ctx.api_version
            );
            if let Ok(v) = HeaderValue::from_str(&op_url) {
                resp.headers_mut().insert("azure-asyncoperation", v);
            }
            if busy {
                resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Ok(resp)
        }
        Method::DELETE => Err(ArmError::method_not_allowed("DELETE")),
        _ => Err(ArmError::method_not_allowed(ctx.method.as_str())),
    }
}

/// Validates and applies a PATCH/PUT. Returns whether the resource was created.
fn write(ctx: &Ctx, kind: Kind, rg: &str, name: &str, id: &str, key: &str) -> Result<bool, ArmError> {
    let write_action = format!("{}/write", kind.provider_type());
    ctx.require(&write_action, id)?;
    require_group(ctx, rg)?;
    let shape = match (kind, ctx.method == Method::PUT) {
        (Kind::ScaleSet, true) => &members::SCALE_SET,
        (Kind::ScaleSet, false) => &members::SCALE_SET_UPDATE,
        (Kind::Vm, true) => &members::VM,
        (Kind::Vm, false) => &members::VM_UPDATE,
    };
    let body = ctx.body_as(shape)?;
    let exists = parts(&mut ctx.shared.world.write(), kind, key);
    let created = exists.is_none();
    if created && ctx.method == Method::PATCH {
        return Err(ArmError::resource_not_found(kind.provider_type(), name, rg));
    }
    if let Some((_, prov)) = &exists
        && prov.deleting
    {
        return Err(ArmError::new(
            StatusCode::CONFLICT,
            "OperationNotAllowed",
            format!(
                "Operation 'Update' is not allowed on {} '{name}' since it is in Deleting provisioning state.",
                kind.label()
            ),
        ));
    }
    let patch = match body.get("identity") {
        None | Some(Value::Null) => None,
        Some(v) => Some(IdentityPatch::parse(v).map_err(|e| patch_error(e, id))?),
    };
    // Linked authorization: assign/action on every identity being added.
    if let Some(p) = &patch {
        let current = exists.as_ref().map(|(b, _)| b.clone()).unwrap_or_default();
        let missing: Vec<String> = p
            .user
            .iter()
            .flatten()
            .filter(|(id, add)| *add && !current.user.contains_key(&id.to_ascii_lowercase()))
            .filter(|(id, _)| !ctx.can(ASSIGN, id))
            .map(|(id, _)| id.clone())
            .collect();
        if !missing.is_empty() {
            tracing::info!(principal = ctx.principal, resource = id, ?missing, "Linked authorization failed");
            return Err(ArmError::linked_authorization_failed(&ctx.principal, &write_action, id, &missing));
        }
    }
    let settings = ctx.shared.settings.read().clone();
    let now = Instant::now();
    let visible_at = now
        + Duration::from_millis(settings.operation_duration_ms)
        + Duration::from_millis(settings.imds_propagation_delay_ms);
    let mut world = ctx.shared.world.write();
    if created {
        match kind {
            Kind::ScaleSet => {
                let capacity = body
                    .get("sku")
                    .and_then(|s| s.get("capacity"))
                    .and_then(Value::as_u64)
                    .unwrap_or(0)
                    .min(100) as u32;
                world.add_scale_set(name, rg, capacity);
            }
            Kind::Vm => {
                world.add_vm(name, rg);
            }
        }
    }
    let replace = ctx.method == Method::PUT;
    if let Some(p) = &patch {
        let current = parts(&mut world, kind, key).map(|(b, _)| b).unwrap_or_default();
        let next = apply_patch(&current, p, replace, visible_at, |id| world.resolve_identity(id))
            .map_err(|e| patch_error(e, id))?;
        tracing::info!(
            resource = id,
            kind = next.identity_type().as_str(),
            user = next.user.len(),
            principal = ctx.principal,
            "Identity updated"
        );
        match kind {
            Kind::ScaleSet => {
                if let Some(s) = world.scale_sets.get_mut(key) {
                    s.identity = next;
                }
            }
            Kind::Vm => {
                if let Some(v) = world.vms.get_mut(key) {
                    v.identity = next;
                }
            }
        }
    }
    if let Some(tags) = body.get("tags") {
        match kind {
            Kind::ScaleSet => world.scale_sets.get_mut(key).into_iter().for_each(|s| s.tags = tags.clone()),
            Kind::Vm => world.vms.get_mut(key).into_iter().for_each(|v| v.tags = tags.clone()),
        }
    }
    Ok(created)
}

fn patch_error(e: PatchError, resource: &str) -> ArmError {
    match e {
        PatchError::NotFound(ids) => ArmError::bad_request(
            "FailedIdentityOperation",
            format!(
                "Identity operation for resource '{resource}' failed with error 'Failed to perform resource identity operation. Status: 'NotFound'. Response: 'The user-assigned identities '{}' were not found.''.",
                ids.join(",")
            ),
        ),
        PatchError::TooMany(_) => ArmError::bad_request("BadRequest", e.to_string()),
        PatchError::Duplicate(_) => ArmError::bad_request("DuplicateIdentityIds", e.to_string()),
        PatchError::InvalidType(_) | PatchError::InvalidValue(_) | PatchError::NeedsUserIdentities(_) => {
            ArmError::bad_request("InvalidParameter", e.to_string())
        }
    }
}

/// Marks the resource busy for the configured duration and records the operation.
fn start_operation(ctx: &Ctx, kind: Kind, key: &str) -> (String, bool) {
    let duration = Duration::from_millis(ctx.shared.settings.read().operation_duration_ms);
    let now = Instant::now();
    let done_at = now + duration;
    let op_id = uuid::Uuid::new_v4().to_string();
    let mut world = ctx.shared.world.write();
    let prov = match kind {
        Kind::ScaleSet => world.scale_sets.get_mut(key).map(|s| &mut s.provisioning),
        Kind::Vm => world.vms.get_mut(key).map(|v| &mut v.provisioning),
    };
    if let Some(p) = prov {
        p.busy_until = Some(p.busy_until.map_or(done_at, |b| b.max(done_at)));
    }
    world.operations.insert(op_id.clone(), Operation { done_at, started: SystemTime::now() });
    (op_id, !duration.is_zero())
}

pub fn operation(ctx: &Ctx, _location: &str, id: &str) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    let op = ctx.shared.world.read().operations.get(id).cloned().ok_or_else(|| {
        ArmError::new(StatusCode::NOT_FOUND, "NotFound", format!("The operation '{id}' could not be found."))
    })?;
    let now = Instant::now();
    let mut body = json!({"startTime": clock::arm_timestamp(op.started), "name": id});
    if op.done_at > now {
        body["status"] = json!("InProgress");
        let mut resp = ok(body);
        resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(resp);
    }
    body["status"] = json!("Succeeded");
    let ended = SystemTime::now().checked_sub(now.duration_since(op.done_at)).unwrap_or(op.started);
    body["endTime"] = json!(clock::arm_timestamp(ended));
    Ok(ok(body).into_response())
}
