//! ARM misbehaving: throttling with Retry-After, failed long-running operations.
use std::time::Duration;

use podid_api::AssignedState::Assigned;
use podid_emulator::config::builtin::APP_IDENTITY;
use podid_emulator::{FaultAction, FaultSpec, Surface};
use serde_json::json;

use crate::support::{Env, MicOptions, aai_name};

async fn bound_pod(env: &Env) {
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
}

#[tokio::test]
async fn throttled_subscription_gets_no_call_before_retry_after() {
    let env = Env::new("arm-throttle").await;
    env.emu
        .add_fault(FaultSpec {
            method: Some("PATCH".into()),
            count: Some(1),
            ..FaultSpec::new(Surface::Arm, FaultAction::Throttle { retry_after_secs: 3 })
        })
        .unwrap();
    bound_pod(&env).await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_millis(200), ..MicOptions::default() });
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY));

    let arm = env.arm_requests();
    let throttled = arm.iter().find(|r| r.status == 429).expect("the PATCH was throttled");
    let next = arm.iter().find(|r| r.seq > throttled.seq).expect("a later call");
    let gap = next.unix_ms.saturating_sub(throttled.unix_ms + throttled.duration_ms);
    assert!(gap >= 2900, "next ARM call {gap} ms after the 429; Retry-After was 3 s: {arm:#?}");
}

#[tokio::test]
async fn failed_long_running_operation_is_rechecked_and_retried() {
    let env = Env::new("arm-lro-failed").await;
    let failed = json!({"status": "Failed", "error": {"code": "InternalExecutionError", "message": "boom"}});
    env.emu
        .add_fault(FaultSpec {
            method: Some("GET".into()),
            path: Some("/operations/".into()),
            count: Some(1),
            ..FaultSpec::new(
                Surface::Arm,
                FaultAction::Status { status: 200, body: Some(failed), headers: Default::default() },
            )
        })
        .unwrap();
    bound_pod(&env).await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_millis(200), ..MicOptions::default() });
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY));
    assert!(env.arm_requests().iter().any(|r| r.fault.is_some()), "the fault fired");
}

#[tokio::test]
async fn transient_server_errors_are_retried() {
    let env = Env::new("arm-transient").await;
    env.emu
        .add_fault(FaultSpec {
            method: Some("PATCH".into()),
            count: Some(2),
            ..FaultSpec::new(
                Surface::Arm,
                FaultAction::Status { status: 503, body: None, headers: Default::default() },
            )
        })
        .unwrap();
    bound_pod(&env).await;
    let _mic = env.mic(MicOptions { backoff: Duration::from_millis(200), ..MicOptions::default() });
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY));
}
