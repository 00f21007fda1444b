//! The leader decision: create, renew, take over or follow, from the record and when it was seen.
use std::time::Duration;

use tokio::time::Instant;

use crate::leader::{Record, Seen, Step, decide, leading};

const LEASE: Duration = Duration::from_secs(15);

fn held_by(holder: &str, rv: &str) -> Record {
    Record { resource_version: rv.into(), holder: holder.into(), duration: LEASE }
}

#[tokio::test(start_paused = true)]
async fn no_lease_means_create_it() {
    assert_eq!(decide(None, "me", None, Instant::now()), (Step::Create, None));
}

#[tokio::test(start_paused = true)]
async fn holding_the_lease_means_renew_it() {
    let (step, seen) = decide(Some(&held_by("me", "7")), "me", None, Instant::now());
    assert_eq!(step, Step::Renew);
    assert_eq!(seen.map(|s| s.resource_version), Some("7".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_lease_someone_else_renews_is_followed() {
    let t0 = Instant::now();
    let (step, seen) = decide(Some(&held_by("other", "7")), "me", None, t0);
    assert_eq!(step, Step::Follow);
    tokio::time::advance(LEASE - Duration::from_millis(1)).await;
    let (step, _) = decide(Some(&held_by("other", "7")), "me", seen.as_ref(), Instant::now());
    assert_eq!(step, Step::Follow, "not yet a lease duration unchanged");
}

#[tokio::test(start_paused = true)]
async fn a_record_unchanged_for_a_lease_duration_is_taken_over() {
    let (_, seen) = decide(Some(&held_by("other", "7")), "me", None, Instant::now());
    tokio::time::advance(LEASE).await;
    let (step, _) = decide(Some(&held_by("other", "7")), "me", seen.as_ref(), Instant::now());
    assert_eq!(step, Step::TakeOver);
}

#[tokio::test(start_paused = true)]
async fn a_renewal_restarts_the_expiry_clock() {
    let (_, seen) = decide(Some(&held_by("other", "7")), "me", None, Instant::now());
    tokio::time::advance(LEASE - Duration::from_secs(1)).await;
    let (step, seen) = decide(Some(&held_by("other", "8")), "me", seen.as_ref(), Instant::now());
    assert_eq!(step, Step::Follow);
    assert_eq!(seen.as_ref().map(|s| s.at), Some(Instant::now()), "the new version was seen now");
    tokio::time::advance(Duration::from_secs(2)).await;
    let (step, _) = decide(Some(&held_by("other", "8")), "me", seen.as_ref(), Instant::now());
    assert_eq!(step, Step::Follow, "15 s since the first sight, 2 s since the renewal");
}

#[tokio::test(start_paused = true)]
async fn a_lease_nobody_holds_is_taken_at_once() {
    let (step, _) = decide(Some(&held_by("", "3")), "me", None, Instant::now());
    assert_eq!(step, Step::TakeOver);
}

#[tokio::test(start_paused = true)]
async fn the_record_s_own_duration_counts_not_the_electors() {
    let short = Record { duration: Duration::from_secs(2), ..held_by("other", "7") };
    let seen = Seen { resource_version: "7".into(), at: Instant::now() };
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(decide(Some(&short), "me", Some(&seen), Instant::now()).0, Step::TakeOver);
}

#[tokio::test(start_paused = true)]
async fn a_leader_steps_down_once_its_renewal_is_older_than_the_renew_deadline() {
    let renewed = Instant::now();
    let deadline = LEASE / 2;
    assert!(leading(Some(renewed), Instant::now(), deadline));
    tokio::time::advance(deadline - Duration::from_millis(1)).await;
    assert!(leading(Some(renewed), Instant::now(), deadline));
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!leading(Some(renewed), Instant::now(), deadline));
    assert!(!leading(None, Instant::now(), deadline), "never renewed: not leading");
}
