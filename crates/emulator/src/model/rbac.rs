//! Role-based access control: built-in role definitions (by their real GUIDs), role assignments and the
//! permission check ARM runs before every operation.
//!
//! A role is a list of action patterns (`*`, `*/read`, `Microsoft.Compute/virtualMachineScaleSets/*`) minus
//! `not_actions`. An assignment grants a role to a principal (object id) at a scope; scopes inherit
//! downwards, so an assignment at `/subscriptions/{sub}` covers every group and resource below it.
//! Everything here is compared case-insensitively, as ARM does.

use serde::Serialize;

/// A built-in role definition.
#[derive(Debug, Clone, Copy)]
pub struct RoleDefinition {
    pub guid: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub actions: &'static [&'static str],
    pub not_actions: &'static [&'static str],
}

pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const VIRTUAL_MACHINE_CONTRIBUTOR: &str = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c";
pub const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";
pub const MANAGED_IDENTITY_CONTRIBUTOR: &str = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";

/// The built-in roles the emulator knows, with (trimmed) real action lists.
pub const ROLES: &[RoleDefinition] = &[
    RoleDefinition {
        guid: OWNER,
        name: "Owner",
        description: "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[],
    },
    RoleDefinition {
        guid: CONTRIBUTOR,
        name: "Contributor",
        description: "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC.",
        actions: &["*"],
        not_actions: &[
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
        ],
    },
    RoleDefinition {
        guid: READER,
        name: "Reader",
        description: "View all resources, but does not allow you to make any changes.",
        actions: &["*/read"],
        not_actions: &[],
    },
    RoleDefinition {
        guid: VIRTUAL_MACHINE_CONTRIBUTOR,
        name: "Virtual Machine Contributor",
        description: "Create and manage virtual machines, manage disks, install and run software, reset password of the root user of the virtual machine using VM extensions, and manage local user accounts using VM extensions. This role does not grant you management access to the virtual network or storage account the virtual machines are connected to. This role does not allow you to assign roles in Azure RBAC.",
        actions: &[
            "Microsoft.Authorization/*/read",
            "Microsoft.Compute/locations/*",
            "Microsoft.Compute/virtualMachines/*",
            "Microsoft.Compute/virtualMachineScaleSets/*",
            "Microsoft.Network/*/read",
            "Microsoft.Resources/deployments/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ],
        not_actions: &[],
    },
    RoleDefinition {
        guid: MANAGED_IDENTITY_OPERATOR,
        name: "Managed Identity Operator",
        description: "Read and Assign User Assigned Identity",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "Microsoft.Authorization/*/read",
            "Microsoft.Insights/alertRules/*",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
        ],
        not_actions: &[],
    },
    RoleDefinition {
        guid: MANAGED_IDENTITY_CONTRIBUTOR,
        name: "Managed Identity Contributor",
        description: "Create, Read, Update, and Delete User Assigned Identity",
        actions: &[
            "Microsoft.ManagedIdentity/userAssignedIdentities/read",
            "Microsoft.ManagedIdentity/userAssignedIdentities/write",
            "Microsoft.ManagedIdentity/userAssignedIdentities/delete",
            "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/*",
            "Microsoft.Authorization/*/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
            "Microsoft.Resources/deployments/*",
        ],
        not_actions: &[],
    },
];

/// Finds a built-in role by GUID, by full role definition id, or by name (case-insensitive).
pub fn find_role(key: &str) -> Option<&'static RoleDefinition> {
    let guid = key.rsplit('/').next().unwrap_or(key);
    ROLES.iter().find(|r| r.guid.eq_ignore_ascii_case(guid) || r.name.eq_ignore_ascii_case(key))
}

/// One role assignment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RoleAssignment {
    /// The assignment's name (a GUID).
    pub name: String,
    /// The scope, as given when it was created.
    pub scope: String,
    pub role_guid: String,
    pub principal_id: String,
    pub principal_type: String,
}

impl RoleAssignment {
    pub fn id(&self) -> String {
        format!(
            "{}/providers/Microsoft.Authorization/roleAssignments/{}",
            self.scope.trim_end_matches('/'),
            self.name
        )
    }
}

/// `true` when `scope` is `target` or one of its ancestors (segment-wise, case-insensitive).
pub fn scope_covers(scope: &str, target: &str) -> bool {
    let s: Vec<&str> = scope.split('/').filter(|p| !p.is_empty()).collect();
    let t: Vec<&str> = target.split('/').filter(|p| !p.is_empty()).collect();
    s.len() <= t.len() && s.iter().zip(&t).all(|(a, b)| a.eq_ignore_ascii_case(b))
}

/// Glob match of an action pattern, case-insensitive. `*` matches any run of characters, and as in Azure a
/// `/*/` in the middle also matches a single `/` (so `.../userAssignedIdentities/*/read` grants
/// `.../userAssignedIdentities/read`).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    glob(pattern, action) || (pattern.contains("/*/") && glob(&pattern.replace("/*/", "/"), action))
}

fn glob(pattern: &str, action: &str) -> bool {
    fn go(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| go(rest, &a[i..])),
            Some((c, rest)) => a.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && go(rest, &a[1..]),
        }
    }
    go(pattern.as_bytes(), action.as_bytes())
}

/// Whether a role grants an action.
pub fn role_allows(role: &RoleDefinition, action: &str) -> bool {
    role.actions.iter().any(|p| action_matches(p, action))
        && !role.not_actions.iter().any(|p| action_matches(p, action))
}

/// Whether `principal` may perform `action` on `target` given these assignments.
pub fn is_allowed<'a>(
    assignments: impl IntoIterator<Item = &'a RoleAssignment>,
    principal: &str,
    action: &str,
    target: &str,
) -> bool {
    assignments.into_iter().any(|a| {
        a.principal_id.eq_ignore_ascii_case(principal)
            && scope_covers(&a.scope, target)
            && find_role(&a.role_guid).is_some_and(|r| role_allows(r, action))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ra(principal: &str, role: &str, scope: &str) -> RoleAssignment {
        RoleAssignment {
            name: "n".into(),
            scope: scope.into(),
            role_guid: role.into(),
            principal_id: principal.into(),
            principal_type: "ServicePrincipal".into(),
        }
    }

    #[test]
    fn globs() {
        assert!(action_matches("*", "Microsoft.Compute/virtualMachines/write"));
        assert!(action_matches("*/read", "Microsoft.Compute/virtualMachines/read"));
        assert!(!action_matches("*/read", "Microsoft.Compute/virtualMachines/write"));
        assert!(action_matches(
            "Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
            "microsoft.managedidentity/userassignedidentities/assign/action"
        ));
        assert!(!action_matches("Microsoft.Authorization/*/Write", "Microsoft.Compute/x/write"));
    }

    #[test]
    fn scopes_inherit_downwards_only() {
        assert!(scope_covers("/subscriptions/S", "/subscriptions/s/resourceGroups/rg/providers/x/y/z"));
        assert!(scope_covers("/subscriptions/s/resourcegroups/RG", "/subscriptions/s/resourceGroups/rg"));
        assert!(!scope_covers("/subscriptions/s/resourceGroups/rg", "/subscriptions/s"));
        assert!(!scope_covers("/subscriptions/s/resourceGroups/rg1", "/subscriptions/s/resourceGroups/rg10"));
    }

    #[test]
    fn roles_grant_what_they_should() {
        let vmss =
            "/subscriptions/s/resourceGroups/nodes/providers/Microsoft.Compute/virtualMachineScaleSets/v";
        let uai = "/subscriptions/s/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u";
        let set = [
            ra("p", VIRTUAL_MACHINE_CONTRIBUTOR, "/subscriptions/s/resourceGroups/nodes"),
            ra("p", MANAGED_IDENTITY_OPERATOR, "/subscriptions/s/resourceGroups/ids"),
            ra("r", READER, "/subscriptions/s"),
            ra("c", CONTRIBUTOR, "/subscriptions/s"),
        ];
        assert!(is_allowed(&set, "p", "Microsoft.Compute/virtualMachineScaleSets/write", vmss));
        assert!(is_allowed(&set, "P", "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", uai));
        assert!(!is_allowed(&set, "p", "Microsoft.ManagedIdentity/userAssignedIdentities/write", uai));
        assert!(!is_allowed(&set, "p", "Microsoft.Compute/virtualMachineScaleSets/write", uai));
        assert!(is_allowed(&set, "r", "Microsoft.Compute/virtualMachineScaleSets/read", vmss));
        assert!(!is_allowed(&set, "r", "Microsoft.Compute/virtualMachineScaleSets/write", vmss));
        assert!(is_allowed(&set, "c", "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", uai));
        assert!(!is_allowed(&set, "c", "Microsoft.Authorization/roleAssignments/write", uai));
        assert!(!is_allowed(&set, "nobody", "Microsoft.Compute/virtualMachineScaleSets/read", vmss));
    }

    #[test]
    fn roles_found_by_guid_id_or_name() {
        assert_eq!(find_role("reader").map(|r| r.guid), Some(READER));
        let id = format!("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/{OWNER}");
        assert_eq!(find_role(&id).map(|r| r.name), Some("Owner"));
        assert!(find_role("00000000-0000-0000-0000-000000000000").is_none());
    }
}
