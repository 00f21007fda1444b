//! `Microsoft.Authorization`: role assignments at any scope, and the built-in role definitions.

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ArmError, Ctx, ok, with_status};
use crate::model::rbac::{self, RoleAssignment, RoleDefinition, scope_covers};

const READ: &str = "Microsoft.Authorization/roleAssignments/read";
const WRITE: &str = "Microsoft.Authorization/roleAssignments/write";
const DELETE: &str = "Microsoft.Authorization/roleAssignments/delete";
const DEF_READ: &str = "Microsoft.Authorization/roleDefinitions/read";

fn definition_id(sub: &str, guid: &str) -> String {
    format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}")
}

fn render(sub: &str, a: &RoleAssignment) -> Value {
    json!({
        "id": a.id(),
        "name": a.name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "scope": a.scope,
            "roleDefinitionId": definition_id(sub, &a.role_guid),
            "principalId": a.principal_id,
            "principalType": a.principal_type,
        },
    })
}

/// Applies a `$filter` (`principalId eq '…'`, `assignedTo('…')`, `atScope()`) to one assignment.
fn filter_matches(filter: Option<&str>, a: &RoleAssignment, scope: &str) -> bool {
    let Some(f) = filter else { return true };
    let quoted = |s: &str| s.split('\'').nth(1).map(str::to_string);
    for clause in f.split(" and ") {
        let c = clause.trim();
        let lower = c.to_ascii_lowercase();
        let ok = if lower.starts_with("atscope()") {
            scope_covers(&a.scope, scope)
        } else if lower.starts_with("principalid eq") || lower.starts_with("assignedto(") {
            quoted(c).is_some_and(|p| p.eq_ignore_ascii_case(&a.principal_id))
        } else {
            true
        };
        if !ok {
            return false;
        }
    }
    true
}

pub fn assignments(ctx: &Ctx, scope: &str) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    ctx.require(READ, scope)?;
    let sub = ctx.subscription();
    let filter = ctx.query("$filter");
    let world = ctx.shared.world.read();
    let items = world
        .role_assignments
        .iter()
        .filter(|a| scope_covers(&a.scope, scope) || scope_covers(scope, &a.scope))
        .filter(|a| filter_matches(filter, a, scope))
        .map(|a| render(&sub, a))
        .collect();
    drop(world);
    Ok(ctx.page(items))
}

pub fn assignment(ctx: &Ctx, scope: &str, name: &str) -> Result<Response, ArmError> {
    let sub = ctx.subscription();
    let same = |a: &RoleAssignment| a.name.eq_ignore_ascii_case(name) && a.scope.eq_ignore_ascii_case(scope);
    let not_found = || {
        ArmError::new(
            StatusCode::NOT_FOUND,
            "RoleAssignmentNotFound",
            format!("The role assignment '{name}' is not found."),
        )
    };
    match ctx.method {
        Method::GET => {
            ctx.require(READ, scope)?;
            let world = ctx.shared.world.read();
            let a = world.role_assignments.iter().find(|a| same(a)).ok_or_else(not_found)?;
            Ok(ok(render(&sub, a)))
        }
        Method::PUT => {
            ctx.require(WRITE, scope)?;
            let body = ctx.body_as(&super::members::ROLE_ASSIGNMENT)?;
            let props = body.get("properties").and_then(Value::as_object);
            let field = |k: &str| {
                props.and_then(|p| p.get(k)).and_then(Value::as_str).unwrap_or_default().to_string()
            };
            let role_id = field("roleDefinitionId");
            let principal = field("principalId");
            if uuid::Uuid::parse_str(name).is_err() {
                return Err(ArmError::bad_request(
                    "InvalidRoleAssignmentId",
                    format!(
                        "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
                    ),
                ));
            }
            let role = rbac::find_role(&role_id).filter(|_| !role_id.is_empty()).ok_or_else(|| {
                ArmError::bad_request(
                    "RoleDefinitionDoesNotExist",
                    format!(
                        "The specified role definition with ID '{}' does not exist.",
                        role_id.rsplit('/').next().unwrap_or_default()
                    ),
                )
            })?;
            let mut world = ctx.shared.world.write();
            if !world.principal_exists(&principal) {
                return Err(ArmError::bad_request(
                    "PrincipalNotFound",
                    format!(
                        "Principal {} does not exist in the directory {}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                        principal.replace('-', ""),
                        world.tenant_id
                    ),
                ));
            }
            let assignment = RoleAssignment {
                name: name.to_string(),
                scope: scope.to_string(),
                role_guid: role.guid.to_string(),
                principal_id: principal.to_ascii_lowercase(),
                principal_type: Some(field("principalType"))
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "ServicePrincipal".into()),
            };
            if let Some(existing) = world.role_assignments.iter().find(|a| same(a)) {
                if existing.role_guid == assignment.role_guid
                    && existing.principal_id == assignment.principal_id
                {
                    return Ok(with_status(StatusCode::CREATED, render(&sub, existing)));
                }
                return Err(ArmError::new(
                    StatusCode::BAD_REQUEST,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                ));
            }
            if world.role_assignments.iter().any(|a| {
                a.scope.eq_ignore_ascii_case(scope)
                    && a.role_guid == assignment.role_guid
                    && a.principal_id == assignment.principal_id
            }) {
                return Err(ArmError::new(
                    StatusCode::CONFLICT,
                    "RoleAssignmentExists",
                    "The role assignment already exists.",
                ));
            }
            tracing::info!(
                scope,
                role = role.name,
                principal = assignment.principal_id,
                "Role assignment created"
            );
            let out = render(&sub, &assignment);
            world.role_assignments.push(assignment);
            Ok(with_status(StatusCode::CREATED, out))
        }
        Method::DELETE => {
            ctx.require(DELETE, scope)?;
            let mut world = ctx.shared.world.write();
            match world.role_assignments.iter().position(same) {
                Some(i) => {
                    let a = world.role_assignments.remove(i);
                    Ok(ok(render(&sub, &a)))
                }
                None => Ok(StatusCode::NO_CONTENT.into_response()),
            }
        }
        _ => Err(ArmError::method_not_allowed(ctx.method.as_str())),
    }
}

fn render_definition(sub: &str, r: &RoleDefinition) -> Value {
    json!({
        "id": definition_id(sub, r.guid),
        "name": r.guid,
        "type": "Microsoft.Authorization/roleDefinitions",
        "properties": {
            "roleName": r.name,
            "type": "BuiltInRole",
            "description": r.description,
            "assignableScopes": ["/"],
            "permissions": [{"actions": r.actions, "notActions": r.not_actions, "dataActions": [], "notDataActions": []}],
        },
    })
}

pub fn definitions(ctx: &Ctx, scope: &str, id: Option<&str>) -> Result<Response, ArmError> {
    if ctx.method != Method::GET {
        return Err(ArmError::method_not_allowed(ctx.method.as_str()));
    }
    ctx.require(DEF_READ, scope)?;
    let sub = ctx.subscription();
    match id {
        Some(id) => {
            let r = rbac::ROLES.iter().find(|r| r.guid.eq_ignore_ascii_case(id)).ok_or_else(|| {
                ArmError::new(
                    StatusCode::NOT_FOUND,
                    "RoleDefinitionDoesNotExist",
                    format!("The specified role definition with ID '{id}' does not exist."),
                )
            })?;
            Ok(ok(render_definition(&sub, r)))
        }
        None => {
            let wanted = ctx.query("$filter").and_then(|f| f.split('\'').nth(1)).map(str::to_string);
            let items = rbac::ROLES
                .iter()
                .filter(|r| wanted.as_deref().is_none_or(|w| r.name.eq_ignore_ascii_case(w)))
                .map(|r| render_definition(&sub, r))
                .collect();
            Ok(ctx.page(items))
        }
    }
}
