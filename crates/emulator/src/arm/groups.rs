//! `Microsoft.Resources`: the subscription and its resource groups.

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ArmError, Ctx, ok, with_status};
use crate::model::ResourceGroup;

const READ: &str = "Microsoft.Resources/subscriptions/resourceGroups/read";
const WRITE: &str = "Microsoft.Resources/subscriptions/resourceGroups/write";
const DELETE: &str = "Microsoft.Resources/subscriptions/resourceGroups/delete";

fn group_id(sub: &str, rg: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}")
}

fn render(sub: &str, g: &ResourceGroup) -> Value {
    let mut v = json!({
        "id": group_id(sub, &g.name),
        "name": g.name,
        "type": "Microsoft.Resources/resourceGroups",
        "location": g.location,
        "properties": {"provisioningState": "Succeeded"},
    });
    if !g.tags.is_null() {
        v["tags"] = g.tags.clone();
    }
    v
}

pub fn subscription(ctx: &Ctx) -> Result<Response, ArmError> {
    let world = ctx.shared.world.read();
    Ok(ok(json!({
        "id": format!("/subscriptions/{}", world.subscription_id),
        "subscriptionId": world.subscription_id,
        "tenantId": world.tenant_id,
        "displayName": "podid emulator",
        "state": "Enabled",
    })))
}

pub fn list(ctx: &Ctx) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    let sub = ctx.subscription();
    let groups: Vec<ResourceGroup> = ctx.shared.world.read().groups.values().cloned().collect();
    let items =
        groups.iter().filter(|g| ctx.can(READ, &group_id(&sub, &g.name))).map(|g| render(&sub, g)).collect();
    Ok(ctx.page(items))
}

pub fn group(ctx: &Ctx, rg: &str) -> Result<Response, ArmError> {
    let sub = ctx.subscription();
    let id = group_id(&sub, rg);
    match ctx.method {
        Method::GET | Method::HEAD => {
            ctx.require(READ, &id)?;
            let g = ctx.shared.world.read().group(rg).cloned();
            match (g, ctx.method == Method::HEAD) {
                (Some(_), true) => Ok(StatusCode::NO_CONTENT.into_response()),
                (None, true) => Ok(StatusCode::NOT_FOUND.into_response()),
                (Some(g), false) => Ok(ok(render(&sub, &g))),
                (None, false) => Err(ArmError::group_not_found(rg)),
            }
        }
        Method::PUT | Method::PATCH => {
            ctx.require(WRITE, &id)?;
            let body = ctx.body_as(&super::members::RESOURCE_GROUP)?;
            let mut world = ctx.shared.world.write();
            let existing = world.group(rg).cloned();
            let location = match (body.get("location").and_then(Value::as_str), &existing) {
                (Some(l), _) => l.to_string(),
                (None, Some(g)) => g.location.clone(),
                (None, None) => {
                    return Err(ArmError::bad_request(
                        "LocationRequired",
                        "The location property is required for this definition.",
                    ));
                }
            };
            let tags = body.get("tags").cloned().or(existing.map(|g| g.tags)).unwrap_or(Value::Null);
            let created = world.put_group(rg, &location, tags);
            let g = world.group(rg).cloned().ok_or_else(|| ArmError::group_not_found(rg))?;
            tracing::info!(rg, created, "Resource group written");
            Ok(with_status(if created { StatusCode::CREATED } else { StatusCode::OK }, render(&sub, &g)))
        }
        Method::DELETE => {
            ctx.require(DELETE, &id)?;
            let mut world = ctx.shared.world.write();
            let key = rg.to_ascii_lowercase();
            if world.groups.remove(&key).is_none() {
                return Err(ArmError::group_not_found(rg));
            }
            world.identities.retain(|_, u| !u.resource_group.eq_ignore_ascii_case(rg));
            world.scale_sets.retain(|_, s| !s.resource_group.eq_ignore_ascii_case(rg));
            world.vms.retain(|_, v| !v.resource_group.eq_ignore_ascii_case(rg));
            tracing::info!(rg, "Resource group deleted");
            Ok(StatusCode::OK.into_response())
        }
        _ => Err(ArmError::method_not_allowed(ctx.method.as_str())),
    }
}
