//! The members each ARM request body may carry, checked the way Azure's resource providers check
//! them: their JSON.NET models refuse an unknown member with `400 InvalidRequestContent`, naming
//! the member, its model type and its path (`Could not find member 'user_assigned_identities' on
//! object of type 'VirtualMachineScaleSetIdentity'. Path 'identity.user_assigned_identities', line
//! 1, position 61.`). Member names match ignoring case, as JSON.NET matches them; [`conform`]
//! renames them to the model's spelling so handlers read one spelling only.
//!
//! A body that used to be accepted with an unknown member did nothing with it and answered 200:
//! azure-mgmt-compute sends a plain dict's keys verbatim, so `{"user_assigned_identities": …}`
//! looked like a successful PATCH that changed nothing.

use serde_json::{Map, Value};

use super::ArmError;

/// What a JSON value in a request body may be.
#[derive(Debug)]
pub enum Shape {
    /// Anything; not looked into.
    Any,
    /// An object of the named model type with exactly these members (any subset of them).
    Object(&'static str, &'static [(&'static str, Shape)]),
    /// An object whose keys are data (resource ids) and whose non-null values have this shape.
    Map(&'static Shape),
}

use Shape::{Any, Map as MapOf, Object};

const USER_IDENTITY_VALUE: Shape =
    Object("UserAssignedIdentitiesValue", &[("principalId", Any), ("clientId", Any)]);

const fn identity(model: &'static str) -> Shape {
    Object(
        model,
        &[
            ("type", Any),
            ("principalId", Any),
            ("tenantId", Any),
            ("userAssignedIdentities", MapOf(&USER_IDENTITY_VALUE)),
        ],
    )
}

const SCALE_SET_IDENTITY: Shape = identity("VirtualMachineScaleSetIdentity");
const VM_IDENTITY: Shape = identity("VirtualMachineIdentity");

/// Members of a compute resource (PUT) or its update model (PATCH). `properties` is not looked
/// into: the emulator reads nothing in it.
macro_rules! compute {
    ($model:literal, $identity:expr) => {
        Object(
            $model,
            &[
                ("id", Any),
                ("name", Any),
                ("type", Any),
                ("location", Any),
                ("tags", Any),
                ("sku", Any),
                ("plan", Any),
                ("properties", Any),
                ("identity", $identity),
                ("zones", Any),
                ("extendedLocation", Any),
                ("etag", Any),
                ("managedBy", Any),
                ("resources", Any),
                ("placement", Any),
                ("systemData", Any),
            ],
        )
    };
}

/// `PUT …/virtualMachineScaleSets/{name}`.
pub const SCALE_SET: Shape = compute!("VirtualMachineScaleSet", SCALE_SET_IDENTITY);
/// `PATCH …/virtualMachineScaleSets/{name}`.
pub const SCALE_SET_UPDATE: Shape = compute!("VirtualMachineScaleSetUpdate", SCALE_SET_IDENTITY);
/// `PUT …/virtualMachines/{name}`.
pub const VM: Shape = compute!("VirtualMachine", VM_IDENTITY);
/// `PATCH …/virtualMachines/{name}`.
pub const VM_UPDATE: Shape = compute!("VirtualMachineUpdate", VM_IDENTITY);

const TRACKED: &[(&str, Shape)] = &[
    ("id", Any),
    ("name", Any),
    ("type", Any),
    ("location", Any),
    ("tags", Any),
    ("properties", Any),
    ("managedBy", Any),
    ("systemData", Any),
];

/// `PUT|PATCH /subscriptions/{sub}/resourcegroups/{rg}`.
pub const RESOURCE_GROUP: Shape = Object("ResourceGroup", TRACKED);
/// `PUT|PATCH …/userAssignedIdentities/{name}`.
pub const USER_ASSIGNED_IDENTITY: Shape = Object("Identity", TRACKED);
/// `PUT …/federatedIdentityCredentials/{name}`.
pub const FEDERATED_CREDENTIAL: Shape = Object(
    "FederatedIdentityCredential",
    &[
        ("id", Any),
        ("name", Any),
        ("type", Any),
        ("systemData", Any),
        (
            "properties",
            Object(
                "FederatedIdentityCredentialProperties",
                &[("issuer", Any), ("subject", Any), ("audiences", Any)],
            ),
        ),
    ],
);
/// `PUT …/providers/Microsoft.Authorization/roleAssignments/{name}`.
pub const ROLE_ASSIGNMENT: Shape = Object(
    "RoleAssignmentCreateParameters",
    &[
        ("id", Any),
        ("name", Any),
        ("type", Any),
        (
            "properties",
            Object(
                "RoleAssignmentProperties",
                &[
                    ("roleDefinitionId", Any),
                    ("principalId", Any),
                    ("principalType", Any),
                    ("scope", Any),
                    ("description", Any),
                    ("condition", Any),
                    ("conditionVersion", Any),
                    ("delegatedManagedIdentityResourceId", Any),
                    ("createdOn", Any),
                    ("updatedOn", Any),
                    ("createdBy", Any),
                    ("updatedBy", Any),
                ],
            ),
        ),
    ],
);

/// Checks `body` (parsed from `raw`) against `shape` and returns it with every member spelled as
/// the model spells it; an unknown member is ARM's `InvalidRequestContent`.
pub fn conform(body: Map<String, Value>, shape: &Shape, raw: &[u8]) -> Result<Map<String, Value>, ArmError> {
    match walk(Value::Object(body), shape, "", raw)? {
        Value::Object(m) => Ok(m),
        _ => Ok(Map::new()),
    }
}

fn walk(value: Value, shape: &Shape, path: &str, raw: &[u8]) -> Result<Value, ArmError> {
    match (shape, value) {
        (Object(model, members), Value::Object(map)) => {
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                let Some((name, inner)) = members.iter().find(|(n, _)| n.eq_ignore_ascii_case(&key)) else {
                    return Err(unknown_member(&key, model, &join(path, &key), raw));
                };
                let v = walk(v, inner, &join(path, name), raw)?;
                out.insert((*name).to_string(), v);
            }
            Ok(Value::Object(out))
        }
        (MapOf(inner), Value::Object(map)) => {
            let mut out = Map::with_capacity(map.len());
            for (key, v) in map {
                let v = match v {
                    Value::Null => Value::Null,
                    v => walk(v, inner, &format!("{path}['{key}']"), raw)?,
                };
                out.insert(key, v);
            }
            Ok(Value::Object(out))
        }
        // Wrong JSON types are the handlers' to refuse, with their own messages.
        (_, value) => Ok(value),
    }
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() { member.to_string() } else { format!("{path}.{member}") }
}

fn unknown_member(member: &str, model: &str, path: &str, raw: &[u8]) -> ArmError {
    let (line, position) = locate(raw, member);
    ArmError::invalid_content(format!(
        "Could not find member '{member}' on object of type '{model}'. Path '{path}', line {line}, position {position}."
    ))
}

/// Line and column (1-based, JSON.NET's convention: just after the member name's closing quote)
/// of the first `"member":` in `raw`; line 1, position 0 if it cannot be found verbatim (an
/// escaped name).
fn locate(raw: &[u8], member: &str) -> (usize, usize) {
    let text = String::from_utf8_lossy(raw);
    let quoted = format!("\"{member}\"");
    let mut from = 0;
    while let Some(found) = text[from..].find(&quoted) {
        let end = from + found + quoted.len();
        if text[end..].trim_start().starts_with(':') {
            let before = &text[..end];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
            return (line, column);
        }
        from = end;
    }
    (1, 0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check(shape: &Shape, body: Value) -> Result<Value, String> {
        let raw = body.to_string();
        let Value::Object(map) = body else { panic!("an object") };
        conform(map, shape, raw.as_bytes()).map(Value::Object).map_err(|e| e.message)
    }

    #[test]
    fn an_unknown_member_is_named_with_its_model_and_path() {
        let body = json!({"identity": {"type": "UserAssigned", "user_assigned_identities": {"/x": {}}}});
        let err = check(&SCALE_SET_UPDATE, body).unwrap_err();
        assert_eq!(
            err,
            "The request content was invalid and could not be deserialized: 'Could not find member \
             'user_assigned_identities' on object of type 'VirtualMachineScaleSetIdentity'. Path \
             'identity.user_assigned_identities', line 1, position 61.'."
        );
    }

    #[test]
    fn members_match_ignoring_case_and_come_back_in_the_models_spelling() {
        let body = json!({"Identity": {"TYPE": "UserAssigned", "userassignedidentities": {"/A": {"clientId": "c"}}}});
        let out = check(&VM_UPDATE, body).unwrap();
        assert_eq!(
            out,
            json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {"/A": {"clientId": "c"}}}})
        );
    }

    #[test]
    fn identity_map_keys_are_data_but_their_values_are_checked() {
        assert!(
            check(&SCALE_SET_UPDATE, json!({"identity": {"userAssignedIdentities": {"/a": null, "/b": {}}}}))
                .is_ok()
        );
        let err = check(
            &SCALE_SET_UPDATE,
            json!({"identity": {"userAssignedIdentities": {"/b": {"client_id": "c"}}}}),
        )
        .unwrap_err();
        assert!(
            err.contains("'client_id' on object of type 'UserAssignedIdentitiesValue'. Path 'identity.userAssignedIdentities['/b'].client_id'"),
            "{err}"
        );
    }

    #[test]
    fn top_level_and_nested_properties_are_checked() {
        let err = check(&RESOURCE_GROUP, json!({"location": "eastus", "tag": {}})).unwrap_err();
        assert!(
            err.contains("Could not find member 'tag' on object of type 'ResourceGroup'. Path 'tag'"),
            "{err}"
        );
        let err = check(&ROLE_ASSIGNMENT, json!({"properties": {"principal_id": "p"}})).unwrap_err();
        assert!(err.contains("'principal_id' on object of type 'RoleAssignmentProperties'"), "{err}");
        assert!(
            check(
                &FEDERATED_CREDENTIAL,
                json!({"properties": {"issuer": "i", "subject": "s", "audiences": []}})
            )
            .is_ok()
        );
    }

    #[test]
    fn positions_count_lines_and_columns_of_pretty_printed_bodies() {
        let raw = "{\n  \"location\": \"eastus\",\n  \"bogus\": 1\n}";
        assert_eq!(locate(raw.as_bytes(), "bogus"), (3, 9));
        assert_eq!(locate(br#"{"a": "bogus", "bogus": 1}"#, "bogus"), (1, 22), "a value is not the member");
    }
}
