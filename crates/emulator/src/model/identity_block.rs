//! The `identity` block of a VM or scale set, and the PATCH semantics ARM applies to it.
//!
//! A block is a system-assigned identity (present iff the type includes `SystemAssigned`) plus a map of
//! user-assigned identities keyed by lower-cased resource id. Each user entry remembers when it becomes
//! visible to IMDS (`visible_at`: end of the long-running operation plus the propagation delay).
//!
//! A PATCH carries an optional `type` and a *delta* map: `{}` adds an id, `null` removes it, absent ids
//! are kept. Ids compare ignoring case, and a key keeps the case it had when the id was first added:
//! re-adding it in another case changes nothing, and one request naming an id twice in different
//! cases is refused (`DuplicateIdentityIds`). That is what Compute does: identities added with
//! `az vmss identity assign` come back as `…/resourceGroups/…`, those added by the portal all
//! lower-case, those added by aad-pod-identity (which lower-cases its PATCH) lower-case
//! (aad-pod-identity#269, terraform-provider-azurerm#10300). Type transitions follow ARM: `UserAssigned` drops the system identity, `SystemAssigned`
//! drops all user identities, `None` drops everything. At most 150 entries per request.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::{Map, Value, json};

/// Most user-assigned identities one PATCH may carry (ARM's limit).
pub const MAX_IDENTITIES_PER_REQUEST: usize = 150;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityType {
    None,
    SystemAssigned,
    UserAssigned,
    SystemAndUserAssigned,
}

impl IdentityType {
    /// Parses ARM's spelling, case-insensitively and ignoring spaces (`"SystemAssigned, UserAssigned"`).
    pub fn parse(s: &str) -> Option<Self> {
        let n: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_lowercase();
        match n.as_str() {
            "none" => Some(Self::None),
            "systemassigned" => Some(Self::SystemAssigned),
            "userassigned" => Some(Self::UserAssigned),
            "systemassigned,userassigned" | "userassigned,systemassigned" => {
                Some(Self::SystemAndUserAssigned)
            }
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "None",
            Self::SystemAssigned => "SystemAssigned",
            Self::UserAssigned => "UserAssigned",
            Self::SystemAndUserAssigned => "SystemAssigned, UserAssigned",
        }
    }

    fn has_system(self) -> bool {
        matches!(self, Self::SystemAssigned | Self::SystemAndUserAssigned)
    }
}

/// A system-assigned identity: a service principal owned by the VM or scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemIdentity {
    pub principal_id: String,
    pub client_id: String,
}

impl SystemIdentity {
    pub fn generate() -> Self {
        Self { principal_id: uuid::Uuid::new_v4().to_string(), client_id: uuid::Uuid::new_v4().to_string() }
    }
}

/// A user-assigned identity attached to a VM or scale set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentityRef {
    /// The id as the caller wrote it when it was added.
    pub id: String,
    pub principal_id: String,
    pub client_id: String,
    /// IMDS serves tokens for it from this instant on.
    pub visible_at: Instant,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityBlock {
    pub system: Option<SystemIdentity>,
    /// Keyed by lower-cased resource id.
    pub user: BTreeMap<String, UserIdentityRef>,
}

impl IdentityBlock {
    pub fn identity_type(&self) -> IdentityType {
        match (self.system.is_some(), !self.user.is_empty()) {
            (false, false) => IdentityType::None,
            (true, false) => IdentityType::SystemAssigned,
            (false, true) => IdentityType::UserAssigned,
            (true, true) => IdentityType::SystemAndUserAssigned,
        }
    }

    /// The ARM JSON of the block, or `None` when the resource has no identity.
    pub fn to_json(&self, tenant_id: &str) -> Option<Value> {
        let kind = self.identity_type();
        if kind == IdentityType::None {
            return None;
        }
        let mut out = Map::new();
        out.insert("type".into(), json!(kind.as_str()));
        if let Some(sys) = &self.system {
            out.insert("principalId".into(), json!(sys.principal_id));
            out.insert("tenantId".into(), json!(tenant_id));
        }
        if !self.user.is_empty() {
            let users: Map<String, Value> = self
                .user
                .values()
                .map(|u| (u.id.clone(), json!({"principalId": u.principal_id, "clientId": u.client_id})))
                .collect();
            out.insert("userAssignedIdentities".into(), Value::Object(users));
        }
        Some(Value::Object(out))
    }
}

/// A parsed `identity` object from a PATCH or PUT body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IdentityPatch {
    pub kind: Option<IdentityType>,
    /// `(id as sent, true = add / false = remove)`, in request order.
    pub user: Option<Vec<(String, bool)>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("The value '{0}' of parameter 'identity.type' is invalid.")]
    InvalidType(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("User Assigned Identities Number '{0}' Assign exceed limit '150' in one request.")]
    TooMany(usize),
    #[error(
        "The identity type '{0}' requires at least one user assigned identity in 'identity.userAssignedIdentities'."
    )]
    NeedsUserIdentities(&'static str),
    /// Ids added that do not exist.
    #[error("user-assigned identities not found: {0:?}")]
    NotFound(Vec<String>),
    /// The same id more than once in one request, in different cases (ARM compares ids ignoring
    /// case; aad-pod-identity#167 quotes the message).
    #[error("The request content has the following duplicate identity ids '{}'.", .0.join(","))]
    Duplicate(Vec<String>),
}

impl IdentityPatch {
    /// Parses the `identity` value of a request body.
    pub fn parse(v: &Value) -> Result<Self, PatchError> {
        let Some(obj) = v.as_object() else {
            return Err(PatchError::InvalidValue("The 'identity' property must be an object.".into()));
        };
        let kind = match obj.get("type") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(IdentityType::parse(s).ok_or_else(|| PatchError::InvalidType(s.clone()))?)
            }
            Some(other) => return Err(PatchError::InvalidType(other.to_string())),
        };
        let user = match obj.get("userAssignedIdentities") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => {
                if m.len() > MAX_IDENTITIES_PER_REQUEST {
                    return Err(PatchError::TooMany(m.len()));
                }
                let mut out = Vec::with_capacity(m.len());
                let mut seen = std::collections::BTreeSet::new();
                let duplicates: Vec<String> =
                    m.keys().filter(|id| !seen.insert(id.to_ascii_lowercase())).cloned().collect();
                if !duplicates.is_empty() {
                    return Err(PatchError::Duplicate(duplicates));
                }
                for (id, val) in m {
                    match val {
                        Value::Null => out.push((id.clone(), false)),
                        Value::Object(_) => out.push((id.clone(), true)),
                        _ => {
                            return Err(PatchError::InvalidValue(format!(
                                "The value of user assigned identity '{id}' must be an object or null."
                            )));
                        }
                    }
                }
                Some(out)
            }
            Some(_) => {
                return Err(PatchError::InvalidValue(
                    "The 'identity.userAssignedIdentities' property must be an object.".into(),
                ));
            }
        };
        Ok(Self { kind, user })
    }

    /// Ids this patch adds (`{}`), lower-cased and de-duplicated, in request order.
    pub fn added(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (id, add) in self.user.iter().flatten() {
            let lower = id.to_ascii_lowercase();
            if *add && !out.contains(&lower) {
                out.push(lower);
            }
        }
        out
    }
}

/// What an existing user-assigned identity resolves to.
#[derive(Debug, Clone)]
pub struct ResolvedIdentity {
    pub principal_id: String,
    pub client_id: String,
}

/// Applies a patch to a block. `resolve` maps a lower-cased id to the identity, or `None` when it does
/// not exist; `visible_at` is when newly added identities become visible to IMDS. When `replace` is
/// set (a PUT), the map is the full list rather than a delta.
pub fn apply_patch(
    block: &IdentityBlock,
    patch: &IdentityPatch,
    replace: bool,
    visible_at: Instant,
    resolve: impl Fn(&str) -> Option<ResolvedIdentity>,
) -> Result<IdentityBlock, PatchError> {
    let missing: Vec<String> = patch
        .user
        .iter()
        .flatten()
        .filter(|(id, add)| *add && resolve(&id.to_ascii_lowercase()).is_none())
        .map(|(id, _)| id.clone())
        .collect();
    if !missing.is_empty() {
        return Err(PatchError::NotFound(missing));
    }
    let mut user = if replace { BTreeMap::new() } else { block.user.clone() };
    for (id, add) in patch.user.iter().flatten() {
        let key = id.to_ascii_lowercase();
        if !*add {
            user.remove(&key);
        } else if let Some(existing) = block.user.get(&key) {
            user.insert(key, existing.clone());
        } else if let Some(r) = resolve(&key) {
            let entry = UserIdentityRef {
                id: id.clone(),
                principal_id: r.principal_id,
                client_id: r.client_id,
                visible_at,
            };
            user.insert(key, entry);
        }
    }
    let kind = match patch.kind {
        Some(k) => k,
        // No type: keep the system identity as it is, and let the map decide the rest.
        None => match (block.system.is_some(), !user.is_empty()) {
            (true, true) => IdentityType::SystemAndUserAssigned,
            (true, false) => IdentityType::SystemAssigned,
            (false, true) => IdentityType::UserAssigned,
            (false, false) => IdentityType::None,
        },
    };
    let system = if kind.has_system() {
        Some(block.system.clone().unwrap_or_else(SystemIdentity::generate))
    } else {
        None
    };
    match kind {
        IdentityType::None | IdentityType::SystemAssigned => user.clear(),
        IdentityType::UserAssigned | IdentityType::SystemAndUserAssigned if user.is_empty() => {
            return Err(PatchError::NeedsUserIdentities(kind.as_str()));
        }
        _ => {}
    }
    Ok(IdentityBlock { system, user })
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str =
        "/subscriptions/s/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a";
    const B: &str =
        "/subscriptions/s/resourceGroups/ids/providers/Microsoft.ManagedIdentity/userAssignedIdentities/b";

    fn resolve(id: &str) -> Option<ResolvedIdentity> {
        (id == A.to_ascii_lowercase() || id == B.to_ascii_lowercase())
            .then(|| ResolvedIdentity { principal_id: format!("p-{id}"), client_id: format!("c-{id}") })
    }

    fn patch(v: Value) -> IdentityPatch {
        IdentityPatch::parse(&v).unwrap()
    }

    fn apply(block: &IdentityBlock, v: Value) -> Result<IdentityBlock, PatchError> {
        apply_patch(block, &patch(v), false, Instant::now(), resolve)
    }

    #[test]
    fn add_then_remove_with_delta_map() {
        let empty = IdentityBlock::default();
        let one = apply(&empty, json!({"type": "UserAssigned", "userAssignedIdentities": {A: {}}})).unwrap();
        assert_eq!(one.identity_type(), IdentityType::UserAssigned);
        let same =
            apply(&one, json!({"type": "UserAssigned", "userAssignedIdentities": {A.to_uppercase(): {}}}));
        assert_eq!(same.unwrap().user.len(), 1, "ids compare case-insensitively");
        let two = apply(&one, json!({"type": "UserAssigned", "userAssignedIdentities": {B: {}}})).unwrap();
        assert_eq!(two.user.len(), 2);
        let back = apply(&two, json!({"type": "UserAssigned", "userAssignedIdentities": {A: null}})).unwrap();
        assert_eq!(back.user.keys().collect::<Vec<_>>(), vec![&B.to_ascii_lowercase()]);
        let none = apply(&back, json!({"type": "None"})).unwrap();
        assert_eq!(none.identity_type(), IdentityType::None);
        assert!(none.to_json("t").is_none());
    }

    #[test]
    fn type_transitions_keep_or_drop_the_system_identity() {
        let sys = apply(&IdentityBlock::default(), json!({"type": "SystemAssigned"})).unwrap();
        let principal = sys.system.clone().unwrap().principal_id;
        let both =
            apply(&sys, json!({"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": {A: {}}}))
                .unwrap();
        assert_eq!(both.identity_type(), IdentityType::SystemAndUserAssigned);
        assert_eq!(both.system.as_ref().unwrap().principal_id, principal, "system identity kept");
        let json = both.to_json("tenant").unwrap();
        assert_eq!(json["type"], "SystemAssigned, UserAssigned");
        assert_eq!(json["principalId"], principal.as_str());
        let sys_only = apply(&both, json!({"type": "SystemAssigned"})).unwrap();
        assert!(sys_only.user.is_empty());
        let user_only = apply(&both, json!({"type": "UserAssigned"})).unwrap();
        assert!(user_only.system.is_none());
        assert_eq!(user_only.user.len(), 1);
    }

    #[test]
    fn refusals() {
        let empty = IdentityBlock::default();
        assert!(matches!(IdentityPatch::parse(&json!({"type": "Bogus"})), Err(PatchError::InvalidType(_))));
        assert!(matches!(
            apply(&empty, json!({"type": "UserAssigned"})),
            Err(PatchError::NeedsUserIdentities("UserAssigned"))
        ));
        let missing = format!("{A}-missing");
        let err =
            apply(&empty, json!({"type": "UserAssigned", "userAssignedIdentities": {missing.clone(): {}}}));
        assert_eq!(err, Err(PatchError::NotFound(vec![missing])));
        let many: Map<String, Value> = (0..151).map(|i| (format!("{A}{i}"), json!({}))).collect();
        let err = IdentityPatch::parse(&json!({"type": "UserAssigned", "userAssignedIdentities": many}));
        assert_eq!(err, Err(PatchError::TooMany(151)));
        assert_eq!(
            PatchError::TooMany(165).to_string(),
            "User Assigned Identities Number '165' Assign exceed limit '150' in one request."
        );
    }

    #[test]
    fn keys_keep_the_case_they_were_first_added_in() {
        let mixed = A.replace("resourceGroups", "resourcegroups");
        let one =
            apply(&IdentityBlock::default(), json!({"userAssignedIdentities": {mixed.clone(): {}}})).unwrap();
        let again = apply(&one, json!({"userAssignedIdentities": {A.to_ascii_lowercase(): {}}})).unwrap();
        let keys: Vec<Value> = again.to_json("t").unwrap()["userAssignedIdentities"]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| json!(k))
            .collect();
        assert_eq!(keys, [json!(mixed)], "re-adding in another case keeps the first spelling");
        let gone = apply(&again, json!({"userAssignedIdentities": {A.to_uppercase(): null}})).unwrap();
        assert!(gone.user.is_empty(), "removal ignores case");
        let lower = apply(&gone, json!({"userAssignedIdentities": {A.to_ascii_lowercase(): {}}})).unwrap();
        assert!(lower.to_json("t").unwrap()["userAssignedIdentities"].get(A.to_ascii_lowercase()).is_some());
    }

    #[test]
    fn one_request_naming_an_id_twice_in_different_cases_is_refused() {
        let err = IdentityPatch::parse(&json!({"userAssignedIdentities": {A: {}, A.to_uppercase(): {}}}));
        let Err(PatchError::Duplicate(ids)) = err else { panic!("{err:?}") };
        assert_eq!(ids.len(), 1);
        assert!(ids[0].eq_ignore_ascii_case(A));
    }

    #[test]
    fn re_adding_keeps_visibility_time() {
        let t0 = Instant::now();
        let one = apply_patch(
            &IdentityBlock::default(),
            &patch(json!({"type": "UserAssigned", "userAssignedIdentities": {A: {}}})),
            false,
            t0,
            resolve,
        )
        .unwrap();
        let later = t0 + std::time::Duration::from_secs(60);
        let again =
            apply_patch(&one, &patch(json!({"userAssignedIdentities": {A: {}}})), false, later, resolve)
                .unwrap();
        assert_eq!(again.user.values().next().unwrap().visible_at, t0);
    }
}
