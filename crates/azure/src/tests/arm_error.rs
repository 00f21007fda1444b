use super::*;

const ID1: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg-1/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id_1";
const ID2: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/My.RG(2)/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-2";

#[test]
fn linked_authorization_failed_lists_every_quoted_id() {
    let message = format!(
        "The client 'c' with object id 'o' has permission to perform action 'Microsoft.Compute/virtualMachineScaleSets/write' on scope \
         '/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss'; however, it does not have \
         permission to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) \
         '{ID1},{ID2}' or the linked scope(s) are invalid."
    );
    assert_eq!(erroneous_identities(&message), [ID1.to_ascii_lowercase(), ID2.to_ascii_lowercase()]);
}

#[test]
fn failed_identity_operation_and_several_quoted_lists() {
    let message = format!("Identity (s) '{ID2}' not found. Also '{ID1}' and again '{ID2}'.");
    assert_eq!(erroneous_identities(&message), [ID2.to_ascii_lowercase(), ID1.to_ascii_lowercase()]);
}

#[test]
fn unquoted_or_foreign_ids_are_ignored() {
    assert!(erroneous_identities(&format!("no quotes {ID1}")).is_empty());
    assert!(
        erroneous_identities(
            "'/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm'"
        )
        .is_empty()
    );
    assert!(erroneous_identities("").is_empty());
}

#[test]
fn error_codes_gate_the_extraction() {
    let body = format!(
        r#"{{"error":{{"code":"LinkedAuthorizationFailed","message":"on the linked scope(s) '{ID1}' or"}}}}"#
    );
    let e = Error::from(ArmError::from_body(403, body.as_bytes(), None, None));
    assert_eq!(e.erroneous_identities(), [ID1.to_ascii_lowercase()]);
    let other = format!(r#"{{"error":{{"code":"AuthorizationFailed","message":"'{ID1}'"}}}}"#);
    assert!(ArmError::from_body(403, other.as_bytes(), None, None).erroneous_identities().is_empty());
    let failed = Error::OperationFailed {
        resource: "r".into(),
        state: "Failed".into(),
        code: "FailedIdentityOperation".into(),
        message: format!("Identity (s) '{ID1}' failed"),
    };
    assert_eq!(failed.erroneous_identities(), [ID1.to_ascii_lowercase()]);
}

#[test]
fn parses_arm_error_bodies() {
    let e = ArmError::from_body(
        409,
        br#"{"error":{"code":"OperationNotAllowed","message":"m","target":"t","details":[{"code":"D","message":"dm"}]}}"#,
        Some(Duration::from_secs(3)),
        Some("req-1".into()),
    );
    assert_eq!((e.code.as_str(), e.message.as_str()), ("OperationNotAllowed", "m"));
    assert_eq!(e.details, [("D".to_string(), "dm".to_string())]);
    assert_eq!(e.to_string(), "ARM answered 409 OperationNotAllowed: m");
    let bare = ArmError::from_body(200, br#"{"code":"X","message":"y"}"#, None, None);
    assert_eq!((bare.code.as_str(), bare.message.as_str()), ("X", "y"));
    let html = ArmError::from_body(502, b"<html>Bad Gateway</html>", None, None);
    assert_eq!((html.code.as_str(), html.message.as_str()), ("", "<html>Bad Gateway</html>"));
}
