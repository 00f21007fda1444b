//! ARM wire behaviour: authentication, api-version, identity PATCH semantics, role enforcement with the
//! real error codes, long-running operations, paging, role assignments.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers outside #[test] fns panic on failure by design

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn requests_need_api_version_and_a_valid_token() {
    let emu = start().await;
    let http = client(&emu);
    let path = vmss_path(&emu);
    let resp = http.get(format!("{}{path}", emu.arm_url())).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");
    let resp = http.get(format!("{}{path}?api-version=2019-12-01", emu.arm_url())).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(resp.headers().contains_key("www-authenticate"));
    assert_eq!(resp.json::<Value>().await.unwrap()["error"]["code"], "AuthenticationFailed");
    let (status, _, body) = arm(&emu, &http, "garbage.token.here", Method::GET, &path, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("InvalidAuthenticationToken")));
    let wrong_aud = emu.mint_token("podid-admin", "https://vault.azure.net").unwrap();
    let (status, _, body) = arm(&emu, &http, &wrong_aud, Method::GET, &path, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("InvalidAuthenticationTokenAudience")));
    let token = secret_token(&emu, &http, "podid-admin").await;
    let (status, _, body) =
        arm(&emu, &http, &token, Method::GET, "/subscriptions/nope/resourceGroups/x", None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("SubscriptionNotFound")));
    let missing = path.replace("vmss", "gone");
    let (status, _, body) = arm(&emu, &http, &token, Method::GET, &missing, None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("ResourceNotFound")));
    // Case-insensitive paths.
    let (status, _, body) = arm(&emu, &http, &token, Method::GET, &path.to_lowercase(), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["identity"]["type"], "UserAssigned");
}

#[tokio::test]
async fn identity_patch_semantics_and_permissions() {
    let emu = start().await;
    let http = client(&emu);
    let cluster = secret_token(&emu, &http, "podid-cluster").await;
    let path = vmss_path(&emu);
    let app_id = identity_id(&emu, "podid-app").to_lowercase();
    let restricted = identity_id(&emu, "podid-restricted-app").to_lowercase();
    let add = |ids: &[&str]| {
        let m: serde_json::Map<String, Value> = ids.iter().map(|i| (i.to_string(), json!({}))).collect();
        json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": m}})
    };
    // Allowed: Managed Identity Operator on the identity group.
    let (status, headers, body) =
        arm(&emu, &http, &cluster, Method::PATCH, &path, Some(add(&[&app_id]))).await;
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("azure-asyncoperation"));
    assert_eq!(body["identity"]["userAssignedIdentities"].as_object().unwrap().len(), 2);
    // Refused: only Reader on the restricted group → LinkedAuthorizationFailed quoting the id.
    let (status, _, body) =
        arm(&emu, &http, &cluster, Method::PATCH, &path, Some(add(&[&restricted, &app_id]))).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "LinkedAuthorizationFailed");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&format!("linked scope(s) '{restricted}' (respectively)")), "{msg}");
    // Unknown identity in a group the caller may assign from → FailedIdentityOperation quoting it.
    let ghost = app_id.replace("podid-app", "ghost");
    let (status, _, body) = arm(&emu, &http, &cluster, Method::PATCH, &path, Some(add(&[&ghost]))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("FailedIdentityOperation")));
    assert!(body["error"]["message"].as_str().unwrap().contains(&format!("'{ghost}'")));
    // More than 150 → 400 with ARM's message.
    let many: Vec<String> = (0..151).map(|i| format!("{app_id}{i}")).collect();
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let (status, _, body) = arm(&emu, &http, &cluster, Method::PATCH, &path, Some(add(&refs))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"]["message"],
        "User Assigned Identities Number '151' Assign exceed limit '150' in one request."
    );
    // Removal with null; the write permission is checked first.
    let remove =
        json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {app_id.clone(): null}}});
    let reader_only = emu.mint_token("podid-app", "https://management.azure.com/").unwrap();
    let (status, _, body) = arm(&emu, &http, &reader_only, Method::PATCH, &path, Some(remove.clone())).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("AuthorizationFailed")));
    let (status, _, body) = arm(&emu, &http, &cluster, Method::PATCH, &path, Some(remove)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        emu.assigned_identities("MC_podid_podid_eastus", "aks-nodepool1-12345678-vmss").unwrap().len(),
        1
    );
    let (status, _, body) =
        arm(&emu, &http, &cluster, Method::PATCH, &path, Some(json!({"identity": {"type": "None"}}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.get("identity").is_none());
    let (status, _, _) = arm(&emu, &http, &cluster, Method::PATCH, &path, Some(json!("not an object"))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn long_running_operations_report_progress() {
    let emu = start().await;
    emu.update_settings(&podid_emulator::SettingsUpdate {
        operation_duration_ms: Some(600),
        ..Default::default()
    });
    let http = client(&emu);
    let token = secret_token(&emu, &http, "podid-cluster").await;
    let path = vmss_path(&emu);
    let app_id = identity_id(&emu, "podid-app");
    let body = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {app_id: {}}}});
    let (status, headers, resource) = arm(&emu, &http, &token, Method::PATCH, &path, Some(body)).await;
    assert_eq!(status, 200);
    assert_eq!(resource["properties"]["provisioningState"], "Updating");
    assert_eq!(headers["retry-after"], "1");
    let op = headers["azure-asyncoperation"].to_str().unwrap().to_string();
    assert!(op.contains("api-version="));
    let poll = |op: String| {
        let http = http.clone();
        let token = token.clone();
        async move { http.get(op).bearer_auth(token).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    assert_eq!(poll(op.clone()).await["status"], "InProgress");
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    assert_eq!(poll(op).await["status"], "Succeeded");
    let (_, _, after) = arm(&emu, &http, &token, Method::GET, &path, None).await;
    assert_eq!(after["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn identities_groups_roles_and_paging() {
    let emu = start().await;
    emu.update_settings(&podid_emulator::SettingsUpdate { arm_page_size: Some(2), ..Default::default() });
    let http = client(&emu);
    let admin = secret_token(&emu, &http, "podid-admin").await;
    let cluster = secret_token(&emu, &http, "podid-cluster").await;
    let sub = emu.subscription_id();
    let rg = format!("/subscriptions/{sub}/resourcegroups/podid-identities");
    for n in 0..3 {
        let path = format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-{n}");
        let (status, _, body) =
            arm(&emu, &http, &admin, Method::PUT, &path, Some(json!({"location": "eastus"}))).await;
        assert_eq!(status, 201, "{body}");
        assert!(body["properties"]["clientId"].is_string());
    }
    // Cluster SP may not create identities.
    let path = format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/nope");
    let (status, _, body) =
        arm(&emu, &http, &cluster, Method::PUT, &path, Some(json!({"location": "eastus"}))).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("AuthorizationFailed")));
    // Paging: 4 identities in the group, pages of 2, absolute nextLink with api-version.
    let (_, _, page) = arm(
        &emu,
        &http,
        &admin,
        Method::GET,
        &format!("{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities"),
        None,
    )
    .await;
    assert_eq!(page["value"].as_array().unwrap().len(), 2);
    let next = page["nextLink"].as_str().unwrap();
    assert!(next.starts_with(&emu.arm_url()) && next.contains("api-version="), "{next}");
    let page2: Value = http.get(next).bearer_auth(&admin).send().await.unwrap().json().await.unwrap();
    assert_eq!(page2["value"].as_array().unwrap().len(), 2);
    assert!(page2.get("nextLink").is_none());
    // Role assignment create, duplicate, list with filter, bad role, unknown principal.
    let cluster_oid = app(&emu, "podid-cluster").object_id;
    let ra = |name: &str, role: &str, principal: &str| {
        (
            format!("{rg}/providers/Microsoft.Authorization/roleAssignments/{name}"),
            json!({"properties": {
                "roleDefinitionId": format!("/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}"),
                "principalId": principal,
                "principalType": "ServicePrincipal",
            }}),
        )
    };
    let (p, b) =
        ra("11111111-1111-4111-8111-111111111111", "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59", &cluster_oid);
    let (status, _, body) = arm(&emu, &http, &admin, Method::PUT, &p, Some(b)).await;
    assert_eq!(status, 201, "{body}");
    let (p, b) =
        ra("22222222-2222-4222-8222-222222222222", "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59", &cluster_oid);
    let (status, _, body) = arm(&emu, &http, &admin, Method::PUT, &p, Some(b)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("RoleAssignmentExists")));
    let (p, b) =
        ra("33333333-3333-4333-8333-333333333333", "00000000-0000-0000-0000-000000000000", &cluster_oid);
    let (status, _, body) = arm(&emu, &http, &admin, Method::PUT, &p, Some(b)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("RoleDefinitionDoesNotExist")));
    let (p, b) = ra(
        "44444444-4444-4444-8444-444444444444",
        "acdd72a7-3385-48ef-bd42-f606fba81ae7",
        "99999999-9999-4999-8999-999999999999",
    );
    let (status, _, body) = arm(&emu, &http, &admin, Method::PUT, &p, Some(b)).await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("PrincipalNotFound")));
    // Cluster may not write role assignments; now it may create identities.
    let (p, b) =
        ra("55555555-5555-4555-8555-555555555555", "acdd72a7-3385-48ef-bd42-f606fba81ae7", &cluster_oid);
    let (status, _, _) = arm(&emu, &http, &cluster, Method::PUT, &p, Some(b)).await;
    assert_eq!(status, 403);
    let (status, _, body) =
        arm(&emu, &http, &cluster, Method::PUT, &path, Some(json!({"location": "eastus"}))).await;
    assert_eq!(status, 201, "{body}");
    let filter = format!(
        "{rg}/providers/Microsoft.Authorization/roleAssignments?$filter=principalId%20eq%20'{cluster_oid}'"
    );
    let (_, _, list) = arm(&emu, &http, &admin, Method::GET, &filter, None).await;
    let roles: Vec<&str> = list["value"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["properties"]["roleDefinitionId"].as_str())
        .collect();
    assert!(roles.iter().any(|r| r.ends_with("e40ec5ca-96e0-45a2-b4ff-59039f2c2b59")), "{list}");
    // Delete identity; federated credential round trip.
    let fic_path = format!("{path}/federatedIdentityCredentials/kube");
    let fic = json!({"properties": {"issuer": "https://127.0.0.1:6443", "subject": "system:serviceaccount:default:app", "audiences": ["api://AzureADTokenExchange"]}});
    let (status, _, body) = arm(&emu, &http, &admin, Method::PUT, &fic_path, Some(fic)).await;
    assert_eq!(status, 201, "{body}");
    let (status, _, body) = arm(&emu, &http, &admin, Method::GET, &fic_path, None).await;
    assert_eq!(
        (status, body["properties"]["subject"].as_str()),
        (200, Some("system:serviceaccount:default:app"))
    );
    let (status, _, list) =
        arm(&emu, &http, &admin, Method::GET, &format!("{path}/federatedIdentityCredentials"), None).await;
    assert_eq!(status, 200, "{list}");
    let names: Vec<&str> =
        list["value"].as_array().unwrap().iter().filter_map(|v| v["name"].as_str()).collect();
    assert_eq!(names, ["kube"], "{list}");
    let (status, _, _) = arm(&emu, &http, &admin, Method::DELETE, &path, None).await;
    assert_eq!(status, 200);
    let (status, _, _) = arm(&emu, &http, &admin, Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    // Groups.
    let (status, _, _) = arm(
        &emu,
        &http,
        &admin,
        Method::PUT,
        &format!("/subscriptions/{sub}/resourcegroups/new-rg"),
        Some(json!({"location": "westus"})),
    )
    .await;
    assert_eq!(status, 201);
    let (_, _, vms) = arm(&emu, &http, &admin, Method::GET, &format!("/subscriptions/{sub}/resourceGroups/MC_podid_podid_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-nodepool1-12345678-vmss/virtualMachines"), None).await;
    assert_eq!(
        vms["value"][1]["properties"]["osProfile"]["computerName"],
        "aks-nodepool1-12345678-vmss000001"
    );
}

async fn identity_keys(
    emu: &podid_emulator::RunningEmulator,
    http: &reqwest::Client,
    token: &str,
) -> Vec<String> {
    let (status, _, body) = arm(emu, http, token, Method::GET, &vmss_path(emu), None).await;
    assert_eq!(status, 200, "{body}");
    body["identity"]["userAssignedIdentities"].as_object().unwrap().keys().cloned().collect()
}

#[tokio::test]
async fn unknown_members_are_refused_with_arms_error_and_change_nothing() {
    let emu = start().await;
    let http = client(&emu);
    let token = secret_token(&emu, &http, "podid-cluster").await;
    let app = identity_id(&emu, "podid-app");
    let before = identity_keys(&emu, &http, &token).await;
    // What azure-mgmt-compute sends for a plain dict with Python-style keys.
    let body = json!({"identity": {"type": "UserAssigned", "user_assigned_identities": {app.clone(): {}}}});
    let (status, _, err) = arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(body)).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "InvalidRequestContent");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "Could not find member 'user_assigned_identities' on object of type 'VirtualMachineScaleSetIdentity'. \
             Path 'identity.user_assigned_identities'"
        ),
        "{message}"
    );
    assert_eq!(identity_keys(&emu, &http, &token).await, before, "nothing was assigned");
    let (status, _, err) =
        arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(json!({"identityy": {}}))).await;
    assert_eq!(status, 400);
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'identityy' on object of type 'VirtualMachineScaleSetUpdate'")
    );
    // Members in another case are the same members (JSON.NET matches them ignoring case).
    let body = json!({"Identity": {"Type": "UserAssigned", "UserAssignedIdentities": {app.clone(): {}}}});
    let (status, _, body) = arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(body)).await;
    assert_eq!(status, 200, "{body}");
    assert!(identity_keys(&emu, &http, &token).await.contains(&app), "assigned");
}

#[tokio::test]
async fn identity_keys_keep_the_case_they_were_first_sent_in() {
    let emu = start().await;
    let http = client(&emu);
    let token = secret_token(&emu, &http, "podid-cluster").await;
    let app = identity_id(&emu, "podid-app");
    let mixed = app.replace("/resourcegroups/", "/resourceGroups/").replace("podid-app", "Podid-App");
    assert_ne!(mixed, app);
    let patch = |id: &str, value: Value| json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {id: value}}});
    let (status, _, body) =
        arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(patch(&mixed, json!({})))).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["identity"]["userAssignedIdentities"].get(&mixed).is_some(),
        "the PATCH answer uses it: {body}"
    );
    assert!(identity_keys(&emu, &http, &token).await.contains(&mixed), "GET returns the key as sent");
    // Upstream's lower-cased PATCH of an id that is already there changes nothing, not even the case.
    let lower = mixed.to_ascii_lowercase();
    let (status, _, _) =
        arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(patch(&lower, json!({})))).await;
    assert_eq!(status, 200);
    let keys = identity_keys(&emu, &http, &token).await;
    assert!(keys.contains(&mixed) && !keys.contains(&lower), "{keys:?}");
    // Removal ignores case; a new add then keeps the new spelling.
    let (status, _, _) =
        arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(patch(&lower, Value::Null))).await;
    assert_eq!(status, 200);
    let (status, _, _) =
        arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(patch(&lower, json!({})))).await;
    assert_eq!(status, 200);
    let keys = identity_keys(&emu, &http, &token).await;
    assert!(keys.contains(&lower) && !keys.contains(&mixed), "{keys:?}");
    // One request naming the id twice, in two cases.
    let both = json!({"identity": {"type": "UserAssigned", "userAssignedIdentities": {mixed.clone(): {}, lower.clone(): {}}}});
    let (status, _, err) = arm(&emu, &http, &token, Method::PATCH, &vmss_path(&emu), Some(both)).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("DuplicateIdentityIds")), "{err}");
}
