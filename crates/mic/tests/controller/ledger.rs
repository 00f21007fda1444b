//! The controller removes what it added, always (issue 15): the ledger of each scale set records
//! what podid added and what was there before, and survives assigned identities deleted by hand,
//! controller restarts and leader changes.
use podid_api::AssignedState::Assigned;
use podid_api::PREEXISTING_ANNOTATION;
use podid_emulator::config::builtin::{AGENTPOOL_IDENTITY, APP_IDENTITY};

use crate::support::{Env, MicOptions, aai_name, until};

async fn bound(env: &Env, identity: &str, emu_identity: &str, selector: &str) {
    env.identity(identity, emu_identity).await;
    env.binding(&format!("{identity}-binding"), identity, selector).await;
}

#[tokio::test]
async fn an_assignment_deleted_by_hand_is_recreated_and_its_identity_still_removed_with_the_pod() {
    let env = Env::new("ledger-stripped").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    bound(&env, "app-id", APP_IDENTITY, "app").await;
    env.pod("web", &node, "app").await;
    let name = aai_name("web", &env.ns, "app-id");
    env.wait_states(&[(&name, Assigned)]).await;

    env.strip_and_delete_aai(&name).await;
    let again = env.wait_states(&[(&name, Assigned)]).await;
    let marked = again[0].metadata.annotations.as_ref().and_then(|a| a.get(PREEXISTING_ANNOTATION)).cloned();
    assert_eq!(marked, None, "re-created, and not mistaken for a pre-existing identity");

    env.delete_pod("web").await;
    env.wait_none().await;
    until("the identity podid added is off the scale set", || async { !env.has(APP_IDENTITY) }).await;
    until("the ledger is gone with it", || async { env.ledgers().await.is_empty() }).await;
}

#[tokio::test]
async fn an_assignment_stripped_while_the_controller_was_down_still_takes_the_identity_off() {
    let env = Env::new("ledger-orphan").await;
    let first = env.mic(MicOptions { identity: "mic-a".into(), ..MicOptions::default() });
    let node = env.node(0).await;
    bound(&env, "app-id", APP_IDENTITY, "app").await;
    env.pod("web", &node, "app").await;
    let name = aai_name("web", &env.ns, "app-id");
    env.wait_states(&[(&name, Assigned)]).await;
    drop(first);
    // No assigned identity is left to say podid put the identity there: only the ledger knows.
    env.delete_pod("web").await;
    env.strip_and_delete_aai(&name).await;
    let _second = env.mic(MicOptions { identity: "mic-b".into(), ..MicOptions::default() });
    until("the identity off the scale set", || async { !env.has(APP_IDENTITY) }).await;
    until("the ledger is gone with it", || async { env.ledgers().await.is_empty() }).await;
}

#[tokio::test]
async fn the_preexisting_decision_survives_restarts_and_recreated_assignments() {
    let env = Env::new("ledger-restart").await;
    let node = env.node(0).await;
    bound(&env, "pool", AGENTPOOL_IDENTITY, "app").await;
    bound(&env, "app-id", APP_IDENTITY, "app").await;
    env.pod("web", &node, "app").await;
    let (pool, app) = (aai_name("web", &env.ns, "pool"), aai_name("web", &env.ns, "app-id"));
    {
        let _first = env.mic(MicOptions { identity: "mic-a".into(), ..MicOptions::default() });
        env.wait_states(&[(&pool, Assigned), (&app, Assigned)]).await;
        let ledgers = env.ledgers().await;
        assert_eq!(ledgers.len(), 1, "{ledgers:?}");
        let pool_key = env.identity_id(AGENTPOOL_IDENTITY).to_ascii_lowercase();
        let app_key = env.identity_id(APP_IDENTITY).to_ascii_lowercase();
        assert!(ledgers[0].ledger.preexisting.contains(&pool_key), "{ledgers:?}");
        assert!(ledgers[0].ledger.added.contains_key(&app_key), "{ledgers:?}");
    }
    // A new controller (the old one killed), and both assignments deleted by hand.
    let _second = env.mic(MicOptions { identity: "mic-b".into(), ..MicOptions::default() });
    env.strip_and_delete_aai(&pool).await;
    env.strip_and_delete_aai(&app).await;
    env.wait_states(&[(&pool, Assigned), (&app, Assigned)]).await;
    env.delete_pod("web").await;
    env.wait_none().await;
    until("the identity podid added is off", || async { !env.has(APP_IDENTITY) }).await;
    assert!(env.has(AGENTPOOL_IDENTITY), "the pre-existing one stays: {:?}", env.on_vmss());
}

#[tokio::test]
async fn an_identity_podid_did_not_add_is_kept_even_if_an_assignment_held_it() {
    // The app identity is put on the scale set by someone else after podid's first visit.
    let env = Env::new("ledger-foreign").await;
    let _mic = env.mic(MicOptions::default());
    let node = env.node(0).await;
    bound(&env, "pool", AGENTPOOL_IDENTITY, "pool").await;
    env.pod("first", &node, "pool").await;
    env.wait_states(&[(&aai_name("first", &env.ns, "pool"), Assigned)]).await;
    env.add_behind_podids_back(APP_IDENTITY).await;
    env.emu.clear_requests();
    bound(&env, "app-id", APP_IDENTITY, "app").await;
    env.pod("web", &node, "app").await;
    env.wait_states(&[
        (&aai_name("first", &env.ns, "pool"), Assigned),
        (&aai_name("web", &env.ns, "app-id"), Assigned),
    ])
    .await;
    env.delete_pod("web").await;
    env.wait_states(&[(&aai_name("first", &env.ns, "pool"), Assigned)]).await;
    assert!(env.has(APP_IDENTITY), "not podid's to remove: {:?}", env.on_vmss());
    assert!(env.patches().is_empty(), "podid added nothing, so it removes nothing");
}
