//! ARM ids of user-assigned identities:
//! `/subscriptions/<sub>/resourcegroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`.
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

static USER_ASSIGNED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^/subscriptions/([^/]+)/resourcegroups/([^/]+)/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([^/]+)/?$",
    )
    .ok()
});

/// A parsed user-assigned identity id. Comparisons use [`UserAssignedIdentityId::key`], the
/// lower-cased id, because ARM ids are case-insensitive (and upstream lower-cases them in PATCHes).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserAssignedIdentityId {
    /// Subscription id as written.
    pub subscription: String,
    /// Resource group as written.
    pub resource_group: String,
    /// Identity name as written.
    pub name: String,
}

/// A resource id that is not a user-assigned identity id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid resource id: {0:?}, must match \
     /subscriptions/<subid>/resourcegroups/<resourcegroup>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>"
)]
pub struct InvalidResourceId(pub String);

impl UserAssignedIdentityId {
    /// Parses an id (case-insensitive in the fixed segments, anchored, one trailing `/` allowed).
    pub fn parse(id: &str) -> Result<Self, InvalidResourceId> {
        let caps = USER_ASSIGNED
            .as_ref()
            .and_then(|re| re.captures(id))
            .ok_or_else(|| InvalidResourceId(id.to_string()))?;
        Ok(Self {
            subscription: caps[1].to_string(),
            resource_group: caps[2].to_string(),
            name: caps[3].to_string(),
        })
    }

    /// The canonical, lower-cased id used as a map key and in ARM PATCH bodies.
    pub fn key(&self) -> String {
        self.to_string().to_ascii_lowercase()
    }
}

impl fmt::Display for UserAssignedIdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription, self.resource_group, self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str =
        "/subscriptions/s1/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id1";

    #[test]
    fn parses_canonical_id() {
        let id = UserAssignedIdentityId::parse(ID).unwrap();
        assert_eq!(
            (id.subscription.as_str(), id.resource_group.as_str(), id.name.as_str()),
            ("s1", "rg", "id1")
        );
        assert_eq!(id.to_string(), ID);
    }

    #[test]
    fn fixed_segments_are_case_insensitive() {
        let id = UserAssignedIdentityId::parse(
            "/Subscriptions/S1/resourceGroups/RG/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/Id1",
        )
        .unwrap();
        assert_eq!(id.key(), ID.to_ascii_lowercase());
    }

    #[test]
    fn rejects_empty_id_with_upstream_message() {
        let err = UserAssignedIdentityId::parse("").unwrap_err();
        assert!(err.to_string().starts_with("invalid resource id: \"\", must match /subscriptions/"));
    }

    #[test]
    fn rejects_other_resource_types_and_extra_segments() {
        for bad in [
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm",
            "/subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a/b",
            "subscriptions/s/resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
            "/subscriptions//resourcegroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
        ] {
            assert!(UserAssignedIdentityId::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
