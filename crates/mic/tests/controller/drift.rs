//! Drift found without polling (issue 19): an agent reports IMDS refusing an identity the
//! controller has as `Assigned` (an `IdentityNotOnNode` Event on the assigned identity), and the
//! controller re-checks that scale set at once. The drift check is off in all of these.
use std::time::Duration;

use podid_api::AssignedState::Assigned;
use podid_emulator::config::builtin::APP_IDENTITY;

use crate::support::{Env, MicOptions, aai_name, until};

async fn assigned(env: &Env) -> podid_api::AzureAssignedIdentity {
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await.remove(0)
}

#[tokio::test]
async fn an_agent_s_report_puts_an_identity_removed_behind_podids_back_back() {
    let env = Env::new("drift-report").await;
    let _mic = env.mic(MicOptions::default());
    let aai = assigned(&env).await;
    env.remove_behind_podids_back(APP_IDENTITY);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!env.has(APP_IDENTITY), "nothing polls");
    env.report_drift(&aai).await;
    until("the reported identity is back on the scale set", || async { env.has(APP_IDENTITY) }).await;
}

#[tokio::test]
async fn a_report_about_an_assignment_the_controller_does_not_know_is_ignored() {
    let env = Env::new("drift-unknown").await;
    let _mic = env.mic(MicOptions::default());
    let mut aai = assigned(&env).await;
    env.emu.clear_requests();
    aai.metadata.name = Some("someone-elses".into());
    env.report_drift(&aai).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(env.arm_requests().is_empty(), "{:?}", env.arm_requests());
}

#[tokio::test]
async fn a_flood_of_reports_costs_at_most_one_read_per_recheck_interval() {
    let env = Env::new("drift-flood").await;
    let _mic = env.mic(MicOptions::default()); // re-checks at most every 500 ms
    let aai = assigned(&env).await;
    env.emu.clear_requests();
    for _ in 0..20 {
        env.report_drift(&aai).await;
    }
    tokio::time::sleep(Duration::from_millis(900)).await;
    let gets = env.arm_requests().iter().filter(|r| r.method == "GET").count();
    assert!((1..=2).contains(&gets), "{gets} reads for 20 reports in under a second");
}
