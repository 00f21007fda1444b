//! Events where upstream puts them (issue 19): `binding applied` on the binding, once per
//! assignment; `LeaderElection` on becoming leader; podid's Warnings on unusable identities
//! (issue 16). Also what an assignment costs in ARM requests.
use podid_api::AssignedState::Assigned;
use podid_api::AzureIdentity;
use podid_emulator::SettingsUpdate;
use podid_emulator::config::builtin::APP_IDENTITY;

use crate::support::{Env, MicOptions, aai_name, until};

fn kinds(events: &[k8s_openapi::api::events::v1::Event]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| e.regarding.as_ref())
        .map(|r| (r.kind.clone().unwrap_or_default(), r.uid.is_some()))
        .collect()
}

#[tokio::test]
async fn binding_applied_is_recorded_once_on_the_binding() {
    let env = Env::new("events-applied").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    let binding = env.binding("app-binding", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    until("a `binding applied` event", || async { !env.events("binding applied").await.is_empty() }).await;
    let applied = env.events("binding applied").await;
    assert_eq!(kinds(&applied), [("AzureIdentityBinding".to_string(), true)], "{applied:?}");
    let on = applied[0].regarding.as_ref().unwrap();
    assert_eq!(on.uid, binding.metadata.uid, "kubectl describe finds events by uid");
    let note = applied[0].note.clone().unwrap_or_default();
    assert!(note.contains("app-binding") && note.contains(&node), "{note}");
}

#[tokio::test]
async fn becoming_leader_is_a_leader_election_event_on_the_lease() {
    let env = Env::new("events-leader").await;
    let mic = env.mic(MicOptions { identity: "mic-events".into(), ..MicOptions::default() });
    until("leading", || async { mic.is_leader() }).await;
    until("a LeaderElection event", || async { !env.events("LeaderElection").await.is_empty() }).await;
    let e = env.events("LeaderElection").await.remove(0);
    let on = e.regarding.unwrap();
    assert_eq!((on.kind.as_deref(), on.name.as_deref()), (Some("Lease"), Some("podid-mic")));
    assert!(on.uid.is_some());
    assert_eq!(e.note.as_deref(), Some("mic-events became leader"));
}

#[tokio::test]
async fn identities_with_an_unknown_type_or_a_bad_resource_id_get_a_warning_event() {
    let env = Env::new("events-invalid").await;
    let _mic = env.mic(MicOptions::default());
    let api = kube::Api::<AzureIdentity>::namespaced(env.client.clone(), &env.ns);
    let mut odd = env.identity("odd-type", APP_IDENTITY).await;
    odd.spec.identity_type = 7;
    api.replace("odd-type", &Default::default(), &odd).await.unwrap();
    let mut bad = env.identity("bad-id", APP_IDENTITY).await;
    bad.spec.resource_id = "/subscriptions/x/resourceGroups/y?x=1".into();
    api.replace("bad-id", &Default::default(), &bad).await.unwrap();
    env.binding("b1", "odd-type", "app").await;
    env.binding("b2", "bad-id", "app").await;
    env.binding("b3", "missing", "app").await;
    let node = env.node(0).await;
    env.pod("web", &node, "app").await;
    until("Warnings on both identities and the dangling binding", || async {
        let on: Vec<String> = env
            .events("InvalidIdentity")
            .await
            .into_iter()
            .chain(env.events("IdentityNotFound").await)
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .filter_map(|e| e.regarding.and_then(|r| r.name))
            .collect();
        ["odd-type", "bad-id", "b3"].iter().all(|n| on.iter().any(|o| o == n))
    })
    .await;
}

#[tokio::test]
async fn an_assignment_costs_one_read_and_one_update_in_arm() {
    let env = Env::new("events-arm-cost").await;
    env.emu.update_settings(&SettingsUpdate { operation_duration_ms: Some(0), ..SettingsUpdate::default() });
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    env.identity("app-id", APP_IDENTITY).await;
    env.binding("b", "app-id", "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[(&aai_name("web", &env.ns, "app-id"), Assigned)]).await;
    let calls: Vec<String> = env.arm_requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(calls, ["GET", "PATCH"], "no operation poll, no GET after the PATCH");
}
