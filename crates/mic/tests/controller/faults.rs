//! Faults beyond `arm_faults.rs` (429 with Retry-After, failed long-running operations, 5xx) and
//! `ha.rs` (leader killed): ARM answering later than the controller's HTTP timeout.
//!
//! Asserted: the controller times out (twice), retries, converges; the identity is on the scale
//! set exactly once and there is exactly one assigned identity. (The emulator drops a request whose
//! client has gone, so the timed-out PATCHes are never applied nor logged: the retry is what lands.)
use std::time::Duration;

use podid_api::AssignedState::Assigned;
use podid_emulator::config::builtin::APP_IDENTITY;
use podid_emulator::{FaultAction, FaultSpec, Surface};

use crate::support::{Env, MicOptions, aai_name};

const CLIENT_TIMEOUT: Duration = Duration::from_millis(800);

#[tokio::test]
async fn arm_timeouts_are_retried_and_converge_without_duplicates() {
    let env = Env::new("arm-timeout").await;
    // The first two PATCHes would answer after 3 s, long after the client's 0.8 s timeout.
    env.emu
        .add_fault(FaultSpec {
            method: Some("PATCH".into()),
            count: Some(2),
            ..FaultSpec::new(Surface::Arm, FaultAction::Latency { ms: 3000 })
        })
        .unwrap();
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    let started = tokio::time::Instant::now();
    let opts =
        MicOptions { identity: "mic-faults".into(), lease: Duration::from_secs(2), ..MicOptions::default() };
    let _mic = env.mic_using(opts, env.arm_with_timeout(Some(CLIENT_TIMEOUT)));

    let name = aai_name("web", &env.ns, "app-id");
    env.wait_states(&[(&name, Assigned)]).await;
    let took = started.elapsed();
    assert!(took >= CLIENT_TIMEOUT * 2, "two PATCHes timed out before the retry landed ({took:?})");
    tokio::time::sleep(Duration::from_secs(4)).await; // past the delayed answers
    let patches = env.patches();
    assert_eq!(patches.iter().filter(|r| r.status == 200).count(), 1, "one PATCH applied: {patches:#?}");
    let id = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
    let on = env.on_vmss();
    assert_eq!(on.iter().filter(|i| **i == id).count(), 1, "identity on the scale set exactly once: {on:?}");
    let aais = env.aais().await;
    assert_eq!(aais.len(), 1, "exactly one assigned identity: {aais:#?}");
    assert_eq!(aais[0].state(), Assigned);
}
