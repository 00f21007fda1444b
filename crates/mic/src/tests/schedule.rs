//! When the loop acts: the leading-edge batch window, backoff, and rate-limited re-checks, on
//! paused tokio time.
use std::time::Duration;

use tokio::time::Instant;

use super::mk_node;
use crate::index::NodeView;
use crate::schedule::{Batcher, Rechecks, Retries};

const WINDOW: Duration = Duration::from_millis(100);

fn target(vmss: &str) -> podid_core::scaleset::Target {
    NodeView::from_node(mk_node("n", vmss, 0)).target.unwrap()
}

#[tokio::test(start_paused = true)]
async fn nothing_changed_means_no_pass() {
    assert_eq!(Batcher::new(WINDOW).due(Instant::now()), None);
}

#[tokio::test(start_paused = true)]
async fn the_first_change_is_acted_on_at_once() {
    let mut b = Batcher::new(WINDOW);
    b.changed();
    assert_eq!(b.due(Instant::now()), Some(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn a_change_long_after_the_last_pass_is_acted_on_at_once() {
    let mut b = Batcher::new(WINDOW);
    b.changed();
    b.passed(Instant::now());
    tokio::time::advance(Duration::from_secs(5)).await;
    b.changed();
    assert_eq!(b.due(Instant::now()), Some(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn the_rest_of_a_burst_waits_for_the_window_and_goes_in_one_pass() {
    let mut b = Batcher::new(WINDOW);
    let t0 = Instant::now();
    b.changed();
    b.passed(t0);
    for _ in 0..10 {
        tokio::time::advance(Duration::from_millis(7)).await;
        b.changed();
        assert_eq!(b.due(Instant::now()), Some(t0 + WINDOW), "batched into one pass at the window's end");
    }
    tokio::time::advance(WINDOW).await;
    assert_eq!(b.due(Instant::now()), Some(Instant::now()), "overdue: now");
    b.passed(Instant::now());
    assert_eq!(b.due(Instant::now()), None);
}

#[tokio::test(start_paused = true)]
async fn a_finished_unit_releases_what_waited_for_it_at_once() {
    let mut b = Batcher::new(WINDOW);
    b.changed();
    b.passed(Instant::now());
    tokio::time::advance(Duration::from_millis(10)).await;
    b.changed();
    b.finished();
    assert_eq!(b.due(Instant::now()), Some(Instant::now()));
}

#[tokio::test(start_paused = true)]
async fn backoff_doubles_from_the_base_up_to_the_cap_with_bounded_jitter() {
    let (base, max) = (Duration::from_secs(5), Duration::from_secs(40));
    let mut r = Retries::new(base, max);
    let mut expect = base;
    for n in 1..=6u32 {
        let now = Instant::now();
        let (until, attempts) = r.failed("t", now, None);
        assert_eq!(attempts, n);
        let waited = until - now;
        assert!(waited >= expect && waited < expect * 2, "failure {n}: {waited:?}, want [{expect:?}, 2×)");
        expect = (expect * 2).min(max);
        tokio::time::advance(waited).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_success_resets_the_backoff() {
    let mut r = Retries::new(Duration::from_secs(5), Duration::from_secs(300));
    r.failed("t", Instant::now(), None);
    r.failed("t", Instant::now(), None);
    r.succeeded(&"t");
    assert!(r.is_empty());
    let (until, attempts) = r.failed("t", Instant::now(), None);
    assert_eq!(attempts, 1);
    assert!(until - Instant::now() < Duration::from_secs(10));
}

#[tokio::test(start_paused = true)]
async fn arm_s_retry_after_wins_when_it_is_later() {
    let mut r = Retries::new(Duration::from_secs(1), Duration::from_secs(300));
    let arm = Instant::now() + Duration::from_secs(60);
    assert_eq!(r.failed("t", Instant::now(), Some(arm)).0, arm);
    let soon = Instant::now() + Duration::from_millis(1);
    assert!(r.failed("u", Instant::now(), Some(soon)).0 > soon, "the backoff when ARM's is sooner");
}

#[tokio::test(start_paused = true)]
async fn only_keys_still_backing_off_are_waiting() {
    let mut r = Retries::new(Duration::from_secs(5), Duration::from_secs(300));
    let (until, _) = r.failed("t", Instant::now(), None);
    assert_eq!(r.waiting(Instant::now()).get("t"), Some(&until));
    tokio::time::advance(Duration::from_secs(11)).await;
    assert!(r.waiting(Instant::now()).is_empty(), "due again (still remembered for the next backoff)");
    assert_eq!(r.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reported_target_is_rechecked_at_once_then_at_most_once_per_interval() {
    let mut c = Rechecks::new(Duration::from_secs(10));
    let t = target("vmss0");
    c.request(t.clone());
    let (due, next) = c.due(Instant::now());
    assert_eq!((due.len(), next), (1, None));
    c.visited(&t, Instant::now());
    assert_eq!(c.pending(), 0);

    tokio::time::advance(Duration::from_secs(3)).await;
    c.request(t.clone());
    let (due, next) = c.due(Instant::now());
    assert!(due.is_empty(), "re-checked 3 s ago");
    assert_eq!(next, Some(Instant::now() + Duration::from_secs(7)));
    tokio::time::advance(Duration::from_secs(7)).await;
    assert_eq!(c.due(Instant::now()).0.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_visit_for_any_reason_satisfies_a_recheck() {
    let mut c = Rechecks::new(Duration::from_secs(10));
    let (a, b) = (target("vmss0"), target("vmss1"));
    c.request(a.clone());
    c.request(b.clone());
    c.visited(&a, Instant::now());
    assert_eq!(c.due(Instant::now()).0.into_iter().collect::<Vec<_>>(), vec![b]);
}
