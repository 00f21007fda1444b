//! `Microsoft.ManagedIdentity/userAssignedIdentities` and their `federatedIdentityCredentials`.

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ArmError, Ctx, ok, with_status};
use crate::model::{FederatedCredential, UAI_TYPE, UserAssignedIdentity};

const READ: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/read";
const WRITE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/write";
const DELETE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/delete";
const FIC_READ: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read";
const FIC_WRITE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write";
const FIC_DELETE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete";
const MAX_FICS: usize = 20;

fn render(sub: &str, tenant: &str, u: &UserAssignedIdentity) -> Value {
    let mut v = json!({
        "id": u.id(sub),
        "name": u.name,
        "type": UAI_TYPE,
        "location": u.location,
        "properties": {
            "isolationScope": "None",
            "tenantId": tenant,
            "principalId": u.principal_id,
            "clientId": u.client_id,
        },
    });
    v["tags"] = if u.tags.is_null() { json!({}) } else { u.tags.clone() };
    v
}

fn render_fic(parent: &str, f: &FederatedCredential) -> Value {
    json!({
        "id": format!("{parent}/federatedIdentityCredentials/{}", f.name),
        "name": f.name,
        "type": format!("{UAI_TYPE}/federatedIdentityCredentials"),
        "properties": {"issuer": f.issuer, "subject": f.subject, "audiences": f.audiences},
    })
}

fn not_found(name: &str, rg: &str) -> ArmError {
    ArmError::resource_not_found(UAI_TYPE, name, rg)
}

pub fn list(ctx: &Ctx, rg: Option<&str>) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    let world = ctx.shared.world.read();
    if let Some(rg) = rg
        && world.group(rg).is_none()
    {
        return Err(ArmError::group_not_found(rg));
    }
    let ids: Vec<UserAssignedIdentity> = world
        .identities
        .values()
        .filter(|u| rg.is_none_or(|rg| u.resource_group.eq_ignore_ascii_case(rg)))
        .cloned()
        .collect();
    let (sub, tenant) = (world.subscription_id.clone(), world.tenant_id.clone());
    drop(world);
    let items = ids.iter().filter(|u| ctx.can(READ, &u.id(&sub))).map(|u| render(&sub, &tenant, u)).collect();
    Ok(ctx.page(items))
}

pub fn identity(ctx: &Ctx, rg: &str, name: &str) -> Result<Response, ArmError> {
    let (sub, tenant) = {
        let w = ctx.shared.world.read();
        (w.subscription_id.clone(), w.tenant_id.clone())
    };
    let id = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{UAI_TYPE}/{name}");
    match ctx.method {
        Method::GET => {
            ctx.require(READ, &id)?;
            let world = ctx.shared.world.read();
            world.group(rg).ok_or_else(|| ArmError::group_not_found(rg))?;
            let u = world.identities.get(&world.identity_key(rg, name)).ok_or_else(|| not_found(name, rg))?;
            Ok(ok(render(&sub, &tenant, u)))
        }
        Method::PUT | Method::PATCH => {
            ctx.require(WRITE, &id)?;
            let body = ctx.body_as(&super::members::USER_ASSIGNED_IDENTITY)?;
            let mut world = ctx.shared.world.write();
            world.group(rg).ok_or_else(|| ArmError::group_not_found(rg))?;
            let key = world.identity_key(rg, name);
            let existing = world.identities.get(&key).cloned();
            let created = existing.is_none();
            if created && ctx.method == Method::PATCH {
                return Err(not_found(name, rg));
            }
            let mut u = existing.unwrap_or_else(|| world.new_identity(name, rg));
            if let Some(l) = body.get("location").and_then(Value::as_str) {
                u.location = l.to_string();
            } else if created {
                return Err(ArmError::bad_request(
                    "LocationRequired",
                    "The location property is required for this definition.",
                ));
            }
            if let Some(tags) = body.get("tags") {
                u.tags = tags.clone();
            }
            let out = render(&sub, &tenant, &u);
            world.insert_identity(u);
            tracing::info!(rg, name, created, "User-assigned identity written");
            Ok(with_status(if created { StatusCode::CREATED } else { StatusCode::OK }, out))
        }
        Method::DELETE => {
            ctx.require(DELETE, &id)?;
            let mut world = ctx.shared.world.write();
            let key = world.identity_key(rg, name);
            match world.identities.remove(&key) {
                Some(_) => {
                    tracing::info!(rg, name, "User-assigned identity deleted");
                    Ok(StatusCode::OK.into_response())
                }
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
        _ => Err(ArmError::method_not_allowed(ctx.method.as_str())),
    }
}

pub fn fics(ctx: &Ctx, rg: &str, name: &str) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    let sub = ctx.subscription();
    let id = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{UAI_TYPE}/{name}");
    ctx.require(FIC_READ, &id)?;
    let world = ctx.shared.world.read();
    let u = world.identities.get(&world.identity_key(rg, name)).ok_or_else(|| not_found(name, rg))?;
    let parent = u.id(&sub);
    let items = u.federated.values().map(|f| render_fic(&parent, f)).collect();
    drop(world);
    Ok(ctx.page(items))
}

fn parse_fic(name: &str, body: &serde_json::Map<String, Value>) -> Result<FederatedCredential, ArmError> {
    let props = body.get("properties").and_then(Value::as_object);
    let field =
        |k: &str| props.and_then(|p| p.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
    let issuer = field("issuer");
    let subject = field("subject");
    let audiences: Vec<String> = props
        .and_then(|p| p.get("audiences"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if issuer.is_empty() || !issuer.starts_with("https://") {
        return Err(ArmError::bad_request(
            "BadRequest",
            "Issuer must be a valid URL that uses the https scheme.",
        ));
    }
    if subject.is_empty() {
        return Err(ArmError::bad_request("BadRequest", "Subject is required."));
    }
    if audiences.len() != 1 {
        return Err(ArmError::bad_request("BadRequest", "Exactly one audience is required."));
    }
    Ok(FederatedCredential { name: name.to_string(), issuer, subject, audiences })
}

pub fn fic(ctx: &Ctx, rg: &str, name: &str, fic: &str) -> Result<Response, ArmError> {
    let sub = ctx.subscription();
    let id = format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{UAI_TYPE}/{name}");
    let fic_missing =
        || ArmError::resource_not_found(&format!("{UAI_TYPE}/{name}/federatedIdentityCredentials"), fic, rg);
    match ctx.method {
        Method::GET => {
            ctx.require(FIC_READ, &id)?;
            let world = ctx.shared.world.read();
            let u = world.identities.get(&world.identity_key(rg, name)).ok_or_else(|| not_found(name, rg))?;
            let f = u.federated.get(&fic.to_ascii_lowercase()).ok_or_else(fic_missing)?;
            Ok(ok(render_fic(&u.id(&sub), f)))
        }
        Method::PUT => {
            ctx.require(FIC_WRITE, &id)?;
            let cred = parse_fic(fic, &ctx.body_as(&super::members::FEDERATED_CREDENTIAL)?)?;
            let mut world = ctx.shared.world.write();
            let key = world.identity_key(rg, name);
            let u = world.identities.get_mut(&key).ok_or_else(|| not_found(name, rg))?;
            let lower = fic.to_ascii_lowercase();
            let created = !u.federated.contains_key(&lower);
            if created && u.federated.len() >= MAX_FICS {
                return Err(ArmError::bad_request(
                    "BadRequest",
                    format!(
                        "Too many Federated Identity Credentials are written to Managed Identity '{id}'."
                    ),
                ));
            }
            u.federated.insert(lower, cred.clone());
            let out = render_fic(&u.id(&sub), &cred);
            tracing::info!(
                rg,
                name,
                fic,
                issuer = cred.issuer,
                subject = cred.subject,
                "Federated credential written"
            );
            Ok(with_status(if created { StatusCode::CREATED } else { StatusCode::OK }, out))
        }
        Method::DELETE => {
            ctx.require(FIC_DELETE, &id)?;
            let mut world = ctx.shared.world.write();
            let key = world.identity_key(rg, name);
            let u = world.identities.get_mut(&key).ok_or_else(|| not_found(name, rg))?;
            Ok(match u.federated.remove(&fic.to_ascii_lowercase()) {
                Some(_) => StatusCode::OK.into_response(),
                None => StatusCode::NO_CONTENT.into_response(),
            })
        }
        _ => Err(ArmError::method_not_allowed(ctx.method.as_str())),
    }
}
