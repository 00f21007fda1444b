//! ARM ids of user-assigned identities:
//! `/subscriptions/<sub>/resourcegroups/<rg>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`.
//!
//! Two levels of checking:
//! - [`UserAssignedIdentityId::parse`] (what the controller and the agent use): the shape, anchored,
//!   with each name made only of characters ARM allows in it, so a query (`?x=1`), a fragment, a
//!   space or a percent escape never reaches an ARM PATCH body.
//! - [`UserAssignedIdentityId::parse_exact`] (what the CLI uses before writing anything): also the
//!   lengths ARM enforces and a GUID subscription, with the reason when it fails.
use std::fmt;
use std::sync::LazyLock;

use regex::Regex;

use crate::guid::is_guid;

/// Subscription: letters, digits, `-`. Resource group: letters and digits (Unicode), `-_.()`, not
/// ending with `.`. Identity: letters, digits, `-_`, starting with a letter or digit.
static USER_ASSIGNED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i)^/subscriptions/([a-z0-9-]+)/resourcegroups/([-\w.()]*[-\w()])/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/([a-z0-9][a-z0-9_-]*)/?$",
    )
    .ok()
});

/// Longest resource group name ARM accepts.
pub const MAX_RESOURCE_GROUP_LEN: usize = 90;
/// Shortest and longest user-assigned identity name ARM accepts.
pub const IDENTITY_NAME_LEN: std::ops::RangeInclusive<usize> = 3..=128;

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

/// Why an id is not exactly one ARM could have issued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InexactResourceId {
    /// Not the shape at all.
    #[error(transparent)]
    Shape(#[from] InvalidResourceId),
    /// A query or fragment after the name.
    #[error(
        "invalid resource id: {id:?} has {rest:?} after the identity's name: an ARM id has no query or fragment \
         (copy it from `az identity show --query id -o tsv`)"
    )]
    QueryOrFragment { id: String, rest: String },
    /// The subscription is not a GUID.
    #[error("invalid resource id: {id:?}: the subscription {subscription:?} is not a GUID")]
    Subscription { id: String, subscription: String },
    /// The resource group is longer than ARM allows.
    #[error(
        "invalid resource id: {id:?}: the resource group name has {len} characters; ARM allows at most 90"
    )]
    ResourceGroup { id: String, len: usize },
    /// The identity name is shorter or longer than ARM allows.
    #[error("invalid resource id: {id:?}: the identity name has {len} characters; ARM allows 3 to 128")]
    Name { id: String, len: usize },
}

impl UserAssignedIdentityId {
    /// Parses an id (case-insensitive in the fixed segments, anchored, one trailing `/` allowed,
    /// each name made of the characters ARM allows in it).
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

    /// Parses an id that must be exactly what ARM issues for a user-assigned identity: [`parse`]'s
    /// shape, no query or fragment, a GUID subscription, a resource group of at most 90
    /// characters and a name of 3 to 128.
    ///
    /// [`parse`]: UserAssignedIdentityId::parse
    pub fn parse_exact(id: &str) -> Result<Self, InexactResourceId> {
        if let Some(at) = id.find(['?', '#']) {
            let (base, rest) = id.split_at(at);
            if Self::parse(base).is_ok() {
                return Err(InexactResourceId::QueryOrFragment {
                    id: id.to_string(),
                    rest: rest.to_string(),
                });
            }
        }
        let parsed = Self::parse(id)?;
        if !is_guid(&parsed.subscription) {
            return Err(InexactResourceId::Subscription { id: id.into(), subscription: parsed.subscription });
        }
        let rg = parsed.resource_group.chars().count();
        if rg > MAX_RESOURCE_GROUP_LEN {
            return Err(InexactResourceId::ResourceGroup { id: id.into(), len: rg });
        }
        if !IDENTITY_NAME_LEN.contains(&parsed.name.len()) {
            return Err(InexactResourceId::Name { id: id.into(), len: parsed.name.len() });
        }
        Ok(parsed)
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

    #[test]
    fn characters_arm_never_allows_are_rejected() {
        for bad in [
            format!("{ID}?x=1"),
            format!("{ID}#frag"),
            format!("{ID}/?api-version=1"),
            ID.replace("id1", "id 1"),
            ID.replace("id1", "id%31"),
            ID.replace("id1", "-id"),
            ID.replace("id1", "id.1"),
            ID.replace("/rg/", "/rg./"),
            ID.replace("/rg/", "/r g/"),
            ID.replace("/s1/", "/s_1/"),
        ] {
            assert!(UserAssignedIdentityId::parse(&bad).is_err(), "{bad} should be rejected");
        }
        for ok in
            [ID.replace("/rg/", "/My_RG.(test)-1/"), ID.replace("/rg/", "/grüne-gruppe/"), format!("{ID}/")]
        {
            UserAssignedIdentityId::parse(&ok).unwrap();
        }
    }

    const GUID_SUB: &str = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f";

    fn exact(sub: &str, rg: &str, name: &str) -> String {
        format!(
            "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
        )
    }

    #[test]
    fn exact_ids_are_what_arm_issues() {
        let id = UserAssignedIdentityId::parse_exact(&exact(GUID_SUB, "podid-identities", "web")).unwrap();
        assert_eq!(id.name, "web");
        UserAssignedIdentityId::parse_exact(&exact(GUID_SUB, &"r".repeat(90), &"n".repeat(128))).unwrap();
    }

    #[test]
    fn inexact_ids_say_what_is_wrong() {
        let with_query = format!("{}?x=1", exact(GUID_SUB, "rg", "web"));
        let err = UserAssignedIdentityId::parse_exact(&with_query).unwrap_err();
        assert_eq!(err, InexactResourceId::QueryOrFragment { id: with_query.clone(), rest: "?x=1".into() });
        assert!(err.to_string().contains("has \"?x=1\" after the identity's name"), "{err}");
        let cases = [
            (exact("s1", "rg", "web"), "the subscription \"s1\" is not a GUID"),
            (exact(GUID_SUB, &"r".repeat(91), "web"), "91 characters; ARM allows at most 90"),
            (exact(GUID_SUB, "rg", "ab"), "2 characters; ARM allows 3 to 128"),
            (exact(GUID_SUB, "rg", &"n".repeat(129)), "129 characters; ARM allows 3 to 128"),
            ("nope".to_string(), "must match /subscriptions/<subid>/"),
        ];
        for (id, want) in cases {
            let err = UserAssignedIdentityId::parse_exact(&id).unwrap_err().to_string();
            assert!(err.contains(want), "{id}: {err}");
        }
    }
}
