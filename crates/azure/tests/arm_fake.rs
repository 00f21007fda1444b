//! Exact-call tests of the ARM client against a scripted server: paths, bodies, headers, LRO
//! sequences, the throttle gate and retries. Time is paused, so waits cost nothing and the
//! recorded arrival instants show exactly when each request went out.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use parking_lot::Mutex;
use podid_azure::arm::{ArmOptions, Error, Operation};
use podid_core::scaleset::{IdentityPatch, ResourceIdentity, Target, TargetKind, patches};
use serde_json::json;
use support::{Fake, Step, arm_client, options};
use tokio::time::Instant;

const SUB: &str = "00000000-0000-0000-0000-000000000001";
const VMSS_PATH: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/MC_rg/providers/Microsoft.Compute/virtualMachineScaleSets/aks-pool-1";
const ID1: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourcegroups/rg/providers/microsoft.managedidentity/userassignedidentities/id1";

fn vmss() -> Target {
    Target {
        subscription: SUB.into(),
        resource_group: "MC_rg".into(),
        kind: TargetKind::ScaleSet,
        name: "aks-pool-1".into(),
    }
}

fn vmss_body(state: &str, ids: &[&str]) -> String {
    let uai: serde_json::Map<String, serde_json::Value> =
        ids.iter().map(|id| (id.to_string(), json!({"principalId": "p", "clientId": "c"}))).collect();
    json!({
        "id": VMSS_PATH, "name": "aks-pool-1", "location": "eastus",
        "identity": {"type": if ids.is_empty() { "SystemAssigned" } else { "SystemAssigned, UserAssigned" },
                     "principalId": "sp", "tenantId": "t", "userAssignedIdentities": uai},
        "properties": {"provisioningState": state}
    })
    .to_string()
}

fn add_id1() -> IdentityPatch {
    let current = ResourceIdentity { system_assigned: true, ..ResourceIdentity::default() };
    let delta = podid_core::scaleset::Delta { add: [ID1.to_string()].into(), remove: Default::default() };
    patches(&current, &delta).remove(0)
}

type Records = Arc<Mutex<Vec<(Operation, &'static str, Duration)>>>;

fn recording() -> (Records, Arc<dyn podid_azure::arm::ArmObserver>) {
    let records: Records = Arc::default();
    let sink = records.clone();
    let observer =
        move |r: &podid_azure::arm::CallRecord<'_>| sink.lock().push((r.operation, r.result, r.duration));
    (records, Arc::new(observer))
}

#[tokio::test(start_paused = true)]
async fn get_identity_reads_the_identity_block() {
    let fake =
        Fake::start(vec![Step::new(200, vmss_body("Succeeded", &[ID1])).expect(Method::GET, VMSS_PATH)])
            .await;
    let (records, observer) = recording();
    let arm = arm_client(&fake, options()).with_observer(observer);
    let got = arm.get_identity(&vmss()).await.unwrap();
    assert!(got.identity.system_assigned);
    assert_eq!(got.identity.user_assigned.iter().collect::<Vec<_>>(), [ID1]);
    assert_eq!(got.provisioning_state.as_deref(), Some("Succeeded"));
    assert_eq!(got.user_assigned[ID1].client_id.as_deref(), Some("c"));
    fake.assert_done();
    let req = &fake.log()[0];
    assert_eq!(req.query, "api-version=2019-12-01");
    assert_eq!(req.header("authorization"), Some("Bearer fake-arm-token"));
    assert_eq!(req.header("x-ms-client-request-id").map(str::len), Some(36));
    assert_eq!(records.lock().as_slice(), [(Operation::VmssGet, "success", Duration::ZERO)]);
}

#[tokio::test(start_paused = true)]
async fn patch_follows_azure_async_operation_and_takes_the_result_from_the_patch_response() {
    let op = "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Compute/locations/eastus/operations/op1";
    let fake = Fake::start(vec![]).await;
    fake.push([
        Step::new(200, vmss_body("Updating", &[ID1]))
            .expect(Method::PATCH, VMSS_PATH)
            .header("Azure-AsyncOperation", fake.at(&format!("{op}?api-version=2019-12-01")))
            .header("Retry-After", "3"),
        Step::new(200, r#"{"status":"InProgress"}"#).expect(Method::GET, op).header("Retry-After", "2"),
        Step::new(200, r#"{"status":"InProgress"}"#).expect(Method::GET, op),
        Step::new(200, r#"{"status":"Succeeded"}"#).expect(Method::GET, op),
    ]);
    let (records, observer) = recording();
    let arm = arm_client(&fake, options()).with_observer(observer);
    let after = arm.patch_identity(&vmss(), &add_id1()).await.unwrap();
    assert!(after.identity.user_assigned.contains(ID1));
    assert_eq!(after.provisioning_state.as_deref(), Some("Succeeded"), "the operation's end state");
    fake.assert_done();
    assert_eq!(fake.log().len(), 4, "no GET of what the PATCH response already said");

    let log = fake.log();
    let body: serde_json::Value = serde_json::from_str(&log[0].body).unwrap();
    assert_eq!(
        body,
        json!({"identity": {"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {ID1: {}}}})
    );
    assert_eq!(log[0].header("content-type"), Some("application/json"));
    let ids: Vec<_> = log.iter().map(|r| r.header("x-ms-client-request-id").unwrap().to_string()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "one request id per operation: {ids:?}");
    let gaps: Vec<u64> = log.windows(2).map(|w| (w[1].at - w[0].at).as_secs()).collect();
    assert_eq!(gaps, [0, 2, 5], "first poll at once, then Retry-After, then poll_interval");
    assert_eq!(records.lock()[0].0, Operation::VmssUpdate);
    assert_eq!(records.lock()[0].2, Duration::from_secs(7));
}

#[tokio::test(start_paused = true)]
async fn patch_answered_with_a_finished_resource_is_not_polled() {
    let op = "/subscriptions/00000000-0000-0000-0000-000000000001/providers/Microsoft.Compute/locations/eastus/operations/op2";
    let fake = Fake::start(vec![]).await;
    fake.push([Step::new(200, vmss_body("Succeeded", &[ID1]))
        .expect(Method::PATCH, VMSS_PATH)
        .header("Azure-AsyncOperation", fake.at(&format!("{op}?api-version=2019-12-01")))]);
    let arm = arm_client(&fake, options());
    let after = arm.patch_identity(&vmss(), &add_id1()).await.unwrap();
    assert!(after.identity.user_assigned.contains(ID1));
    fake.assert_done();
    assert_eq!(fake.log().len(), 1, "one request: the PATCH said it was done");
}

#[tokio::test(start_paused = true)]
async fn patch_answered_with_a_failed_resource_fails_without_polling() {
    let fake = Fake::start(vec![]).await;
    fake.push([Step::new(200, vmss_body("Failed", &[ID1]))
        .expect(Method::PATCH, VMSS_PATH)
        .header("Azure-AsyncOperation", fake.at("/operations/op3?api-version=2019-12-01"))]);
    let arm = arm_client(&fake, options());
    let err = arm.patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    assert!(matches!(err, Error::OperationFailed { .. }), "{err}");
    assert_eq!(fake.log().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn patch_follows_location_until_it_stops_answering_202() {
    let fake = Fake::start(vec![]).await;
    fake.push([
        Step::new(202, "")
            .expect(Method::PATCH, VMSS_PATH)
            .header("Location", fake.at("/operationResults/1?api-version=x")),
        Step::new(202, "").expect(Method::GET, "/operationResults/1").header("Retry-After", "1"),
        Step::new(200, vmss_body("Succeeded", &[ID1])).expect(Method::GET, "/operationResults/1"),
    ]);
    let arm = arm_client(&fake, options());
    let after = arm.patch_identity(&vmss(), &add_id1()).await.unwrap();
    assert!(after.identity.user_assigned.contains(ID1));
    fake.assert_done();
}

#[tokio::test(start_paused = true)]
async fn patch_without_lro_headers_polls_the_provisioning_state() {
    let fake = Fake::start(vec![
        Step::new(200, vmss_body("Updating", &[ID1])).expect(Method::PATCH, VMSS_PATH),
        Step::new(200, vmss_body("Updating", &[ID1]))
            .expect(Method::GET, VMSS_PATH)
            .header("Retry-After", "0"),
        Step::new(200, vmss_body("Succeeded", &[ID1])).expect(Method::GET, VMSS_PATH),
    ])
    .await;
    let arm = arm_client(&fake, options());
    arm.patch_identity(&vmss(), &add_id1()).await.unwrap();
    fake.assert_done();
    let log = fake.log();
    assert_eq!((log[2].at - log[1].at).as_secs(), 5, "Retry-After: 0 means the default interval");
}

#[tokio::test(start_paused = true)]
async fn failed_operation_reports_arm_code_and_quoted_identities() {
    let fake = Fake::start(vec![]).await;
    fake.push([
        Step::new(200, "").header("Azure-AsyncOperation", fake.at("/op/2")),
        Step::new(
            200,
            json!({"status": "Failed", "error": {"code": "FailedIdentityOperation", "message": format!("Identity (s) '{ID1}' not found")}})
                .to_string(),
        ),
    ]);
    let arm = arm_client(&fake, options());
    let err = arm.patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    assert!(matches!(&err, Error::OperationFailed { state, .. } if state == "Failed"), "{err}");
    assert_eq!(err.code(), Some("FailedIdentityOperation"));
    assert_eq!(err.erroneous_identities(), [ID1]);
    fake.assert_done();
}

#[tokio::test(start_paused = true)]
async fn linked_authorization_failure_is_a_typed_403() {
    let message = format!("... on the linked scope(s) '{ID1}' or the linked scope(s) are invalid.");
    let fake = Fake::start(vec![Step::new(
        403,
        json!({"error": {"code": "LinkedAuthorizationFailed", "message": message}}).to_string(),
    )])
    .await;
    let err = arm_client(&fake, options()).patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    let arm = err.arm().unwrap();
    assert_eq!((arm.status, arm.code.as_str()), (403, "LinkedAuthorizationFailed"));
    assert_eq!(err.erroneous_identities(), [ID1]);
    assert_eq!(fake.log().len(), 1, "403 is not retried");
}

#[tokio::test(start_paused = true)]
async fn throttled_subscription_gets_no_call_before_retry_after() {
    let other = Target { subscription: "other-sub".into(), ..vmss() };
    let fake = Fake::start(vec![
        Step::new(429, r#"{"error":{"code":"TooManyRequests","message":"slow down"}}"#)
            .header("Retry-After", "30"),
        Step::new(200, vmss_body("Succeeded", &[])),
        Step::new(200, vmss_body("Succeeded", &[])),
    ])
    .await;
    let (records, observer) = recording();
    let arm = arm_client(&fake, options()).with_observer(observer);
    let started = Instant::now();

    let err = arm.get_identity(&vmss()).await.unwrap_err();
    assert_eq!(err.status(), Some(429));
    assert_eq!(err.arm().unwrap().retry_after, Some(Duration::from_secs(30)));
    assert_eq!(fake.log().len(), 1, "429 is not retried within the call");

    tokio::time::advance(Duration::from_secs(10)).await;
    let err = arm.patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    let Error::Throttled { until, remaining, .. } = err else { panic!("{err}") };
    assert_eq!(until, started + Duration::from_secs(30));
    assert_eq!(remaining, Duration::from_secs(20));
    assert_eq!(arm.throttled_until(&SUB.to_uppercase()), Some(until));
    assert_eq!(fake.log().len(), 1, "nothing is sent while throttled");

    arm.get_identity(&other).await.unwrap();
    assert_eq!(fake.log().len(), 2, "other subscriptions are not throttled");

    tokio::time::advance(Duration::from_secs(20)).await;
    arm.get_identity(&vmss()).await.unwrap();
    let log = fake.log();
    assert_eq!(log.len(), 3);
    assert!(log[2].at >= started + Duration::from_secs(30));
    fake.assert_done();
    let results: Vec<_> = records.lock().iter().map(|r| r.1).collect();
    assert_eq!(results, ["throttled", "throttled_locally", "success", "success"]);
}

#[tokio::test(start_paused = true)]
async fn retry_after_as_http_date_and_without_value() {
    let in_a_minute = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(61));
    let fake =
        Fake::start(vec![Step::new(429, "{}").header("Retry-After", in_a_minute), Step::new(429, "{}")])
            .await;
    let arm = arm_client(&fake, options());
    arm.get_identity(&vmss()).await.unwrap_err();
    let until = arm.throttled_until(SUB).unwrap();
    let wait = until - Instant::now();
    assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(61), "{wait:?}");

    tokio::time::advance(wait).await;
    arm.get_identity(&vmss()).await.unwrap_err();
    assert_eq!(arm.throttled_until(SUB).unwrap() - Instant::now(), ArmOptions::default().default_throttle);
}

#[tokio::test(start_paused = true)]
async fn transient_errors_are_retried_with_exponential_backoff() {
    let fake = Fake::start(vec![
        Step::new(500, "{}"),
        Step::new(503, "oops"),
        Step::new(408, "{}"),
        Step::new(200, vmss_body("Succeeded", &[])),
    ])
    .await;
    arm_client(&fake, options()).get_identity(&vmss()).await.unwrap();
    let log = fake.log();
    let gaps: Vec<u64> = log.windows(2).map(|w| (w[1].at - w[0].at).as_secs()).collect();
    assert_eq!(gaps, [1, 2, 4]);
}

#[tokio::test(start_paused = true)]
async fn retries_are_bounded_and_honour_retry_after() {
    let fake = Fake::start(vec![
        Step::new(503, "{}").header("Retry-After", "6"),
        Step::new(503, "{}"),
        Step::new(503, "{}"),
        Step::new(503, r#"{"error":{"code":"ServiceUnavailable","message":"down"}}"#),
    ])
    .await;
    let err = arm_client(&fake, options()).get_identity(&vmss()).await.unwrap_err();
    assert_eq!(err.code(), Some("ServiceUnavailable"));
    let log = fake.log();
    let gaps: Vec<u64> = log.windows(2).map(|w| (w[1].at - w[0].at).as_secs()).collect();
    assert_eq!(gaps, [6, 2, 4], "the first wait is max(back-off, Retry-After)");
    fake.assert_done();

    let fake = Fake::start(vec![Step::new(503, "{}").header("Retry-After", "600")]).await;
    let err = arm_client(&fake, options()).get_identity(&vmss()).await.unwrap_err();
    assert_eq!(err.status(), Some(503), "a Retry-After beyond max_retry_after ends the call");
    fake.assert_done();
}

#[tokio::test(start_paused = true)]
async fn connection_failures_are_transport_errors_after_retries() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let fake = Fake::start(vec![]).await;
    let mut arm_fake = fake.clone();
    arm_fake.url = url::Url::parse(&format!("http://{addr}/")).unwrap();
    let arm = arm_client(&arm_fake, ArmOptions { backoff: podid_azure::http::Backoff::none(), ..options() });
    let err = arm.get_identity(&vmss()).await.unwrap_err();
    assert!(matches!(err, Error::Transport { .. }), "{err}");
    assert_eq!(err.metric_label(), "transport");
}

#[tokio::test(start_paused = true)]
async fn deleting_targets_are_never_patched() {
    let fake =
        Fake::start(vec![Step::new(200, vmss_body("Deleting", &[])).expect(Method::GET, VMSS_PATH)]).await;
    let arm = arm_client(&fake, options());
    assert!(arm.get_identity(&vmss()).await.unwrap().is_deleting());
    let err = arm.patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    assert!(matches!(err, Error::Deleting { .. }), "{err}");
    assert!(err.to_string().contains("Deleting provisioning state"));
    assert_eq!(fake.log().len(), 1, "no PATCH was sent");
}

#[tokio::test(start_paused = true)]
async fn poll_links_to_other_hosts_are_refused() {
    let fake = Fake::start(vec![
        Step::new(200, "").header("Azure-AsyncOperation", "https://evil.example/op?api-version=1"),
    ])
    .await;
    let err = arm_client(&fake, options()).patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    assert!(matches!(err, Error::InvalidResponse { .. }), "{err}");
    assert_eq!(fake.log().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn long_operations_time_out() {
    let fake = Fake::start(vec![]).await;
    fake.push([Step::new(200, "").header("Azure-AsyncOperation", fake.at("/op/slow"))]);
    fake.push((0..4).map(|_| Step::new(200, r#"{"status":"InProgress"}"#).header("Retry-After", "60")));
    let options = ArmOptions { max_poll_duration: Duration::from_secs(200), ..options() };
    let err = arm_client(&fake, options).patch_identity(&vmss(), &add_id1()).await.unwrap_err();
    assert!(matches!(err, Error::PollTimeout { .. }), "{err}");
    assert_eq!(fake.log().len(), 5, "initial + polls at 0, 60, 120, 180 s");
}

#[tokio::test(start_paused = true)]
async fn too_large_patches_are_refused_locally() {
    let fake = Fake::start(vec![]).await;
    let mut patch = add_id1();
    for i in 0..151 {
        patch.entries.insert(format!("{ID1}{i}"), true);
    }
    let err = arm_client(&fake, options()).patch_identity(&vmss(), &patch).await.unwrap_err();
    assert!(matches!(err, Error::TooManyIdentities { count: 152, .. }), "{err}");
    assert!(fake.log().is_empty());
}

#[tokio::test(start_paused = true)]
async fn lists_follow_next_links() {
    let rg = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines";
    let fake = Fake::start(vec![]).await;
    fake.push([
        Step::new(200, json!({"value": [{"id": "vm1", "name": "vm1", "location": "eastus"}], "nextLink": fake.at(&format!("{rg}?api-version=2019-12-01&$skiptoken=1"))}).to_string())
            .expect(Method::GET, rg),
        Step::new(200, json!({"value": [{"id": "vm2", "name": "vm2", "identity": {"type": "SystemAssigned"}}]}).to_string())
            .expect(Method::GET, rg),
    ]);
    let vms = arm_client(&fake, options()).list_vms(SUB, "rg").await.unwrap();
    assert_eq!(vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["vm1", "vm2"]);
    assert!(vms[1].identity.identity.system_assigned);
    assert_eq!(fake.log()[1].query, "api-version=2019-12-01&$skiptoken=1");
    fake.assert_done();
}

#[tokio::test(start_paused = true)]
async fn role_assignments_put_and_list_with_filter() {
    let scope = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/MC_rg";
    let role = podid_azure::arm::role_definition_id(
        SUB,
        podid_azure::arm::builtin_roles::VIRTUAL_MACHINE_CONTRIBUTOR,
    );
    let assignment = json!({"id": "a", "name": "n", "properties": {"scope": scope, "roleDefinitionId": role, "principalId": "p1", "principalType": "ServicePrincipal"}});
    let fake = Fake::start(vec![
        Step::new(201, assignment.to_string()),
        Step::new(200, json!({"value": [assignment]}).to_string())
            .expect(Method::GET, &format!("{scope}/providers/Microsoft.Authorization/roleAssignments")),
    ])
    .await;
    let arm = arm_client(&fake, options());
    let created = arm.create_role_assignment(scope, &role, "p1", "ServicePrincipal").await.unwrap();
    assert_eq!(created.role_definition_id, role);
    let put = &fake.log()[0];
    assert!(put.path.starts_with(&format!("{scope}/providers/Microsoft.Authorization/roleAssignments/")));
    assert_eq!(put.query, "api-version=2022-04-01");
    let sent: serde_json::Value = serde_json::from_str(&put.body).unwrap();
    assert_eq!(sent["properties"]["principalId"], "p1");
    let listed = arm.list_role_assignments(scope, Some("p1")).await.unwrap();
    assert_eq!(listed, [created]);
    assert_eq!(fake.log()[1].query, "api-version=2022-04-01&$filter=principalId%20eq%20%27p1%27");
    fake.assert_done();
}
