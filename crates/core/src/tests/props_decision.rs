//! The decision's invariants on generated worlds (those of [`super::props`]):
//! - the agent's per-pod binding rules ([`crate::candidates`]) give exactly the identities the
//!   controller ([`crate::matching::desired`]) assigns;
//! - a standard-mode request waits only when a binding gives the pod an identity it names;
//!   otherwise it is answered at once;
//! - prefetch's view ([`crate::decision::servable`]) is what a request for each identity gets;
//! - adding a binding never changes the identity served without a client id.
use std::collections::BTreeSet;

use proptest::prelude::*;

use super::decision::at;
use super::props::{World, apply, arb_world};
use super::*;
use crate::agent::{Request, wanted};
use crate::decision::{Outcome, Settings, candidates, decide, servable};
use crate::matching::object_key;
use crate::{Mode, Snapshot};

fn settings(w: &World, mode: Mode) -> Settings<'static> {
    Settings {
        mode,
        force_namespaced: w.force_namespaced || mode == Mode::Managed,
        mic_namespace: "kube-system",
        release_terminating: false,
        verified_callers: false,
    }
}

fn snapshot(w: &World, assigned: Vec<podid_api::AzureAssignedIdentity>) -> Snapshot {
    Snapshot { bindings: w.bindings.clone(), identities: w.identities.clone(), assigned, exceptions: vec![] }
}

/// Requests that name nothing, a bound identity, or one of the generated names.
fn arb_request() -> impl Strategy<Value = Option<String>> {
    prop::option::of((0..5usize).prop_map(|i| client_id(&format!("i{i}"))))
}

fn request(c: &Option<String>) -> Request<'_> {
    Request { client_id: c.as_deref(), ..Request::default() }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn agent_and_controller_agree_on_what_each_binding_gives(w in arb_world()) {
        let snap = snapshot(&w, vec![]);
        let s = settings(&w, Mode::Standard);
        let want = w.desired();
        for pod in w.pods.iter().filter(|p| crate::matching::holds_identities(p, Default::default())) {
            let agent: BTreeSet<_> = candidates(pod, &snap, &s).iter().filter_map(|c| c.applied()).map(object_key).collect();
            let controller: BTreeSet<_> = want.assignments.values().filter(|a| a.pod == pod.key).map(|a| object_key(&a.identity)).collect();
            prop_assert_eq!(agent, controller, "pod {}", pod.key);
        }
    }

    #[test]
    fn standard_mode_waits_only_for_what_can_arrive(w in arb_world(), c in arb_request(), assigned in any::<bool>()) {
        let snap = snapshot(&w, if assigned { apply(&w, vec![]) } else { vec![] });
        let s = settings(&w, Mode::Standard);
        let req = request(&c);
        for pod in &w.pods {
            let bound: Vec<_> = candidates(pod, &snap, &s).into_iter().filter_map(|c| c.applied()).filter(|i| wanted(i, &req)).collect();
            match decide(pod, &req, &snap, &s).outcome {
                Outcome::Pending(wait) => prop_assert!(bound.iter().any(|i| object_key(*i) == object_key(wait.identity)), "pod {} waits for {:?}", pod.key, object_key(wait.identity)),
                Outcome::Serve(served) => prop_assert!(wanted(served.identity, &req)),
                Outcome::Refuse(r) => prop_assert!(bound.is_empty() || !pod.phase.is_live(), "pod {} refused although bound: {}", pod.key, r.message),
                Outcome::Direct(_) => {}
            }
        }
    }

    #[test]
    fn prefetch_fetches_exactly_what_requests_get(w in arb_world(), mode in 0..3usize, assigned in any::<bool>()) {
        let mode = Mode::ALL[mode];
        let snap = snapshot(&w, if assigned { apply(&w, vec![]) } else { vec![] });
        let s = settings(&w, mode);
        for pod in &w.pods {
            for served in servable(pod, &snap, &s) {
                let cid = served.identity.spec.client_id.clone();
                let Outcome::Serve(got) = decide(pod, &request(&Some(cid.clone())), &snap, &s).outcome else {
                    return Err(TestCaseError::fail(format!("pod {}: prefetched {cid} but a request is not served", pod.key)));
                };
                prop_assert_eq!(&got.identity.spec.client_id, &cid);
            }
        }
    }

    #[test]
    fn adding_a_binding_never_changes_the_default_identity(w in arb_world(), mode in 0..3usize, b in 0..3usize, id in 0..5usize, sel in 0..3usize) {
        let mode = Mode::ALL[mode];
        let mut before = w.clone();
        for (n, binding) in before.bindings.iter_mut().enumerate() {
            binding.metadata.creation_timestamp = Some(at(n as i64));
        }
        let mut after = before.clone();
        let mut added = mk_binding(["a", "b"][b % 2], "added-later", &format!("i{id}"), &format!("s{sel}"));
        added.metadata.creation_timestamp = Some(at(1_000));
        after.bindings.push(added);
        let (s_before, s_after) = (settings(&before, mode), settings(&after, mode));
        let (snap_before, snap_after) = (snapshot(&before, apply(&before, vec![])), snapshot(&after, apply(&after, vec![])));
        for pod in &before.pods {
            if let Outcome::Serve(was) = decide(pod, &Request::default(), &snap_before, &s_before).outcome {
                let now = decide(pod, &Request::default(), &snap_after, &s_after).outcome;
                let Outcome::Serve(now) = now else {
                    return Err(TestCaseError::fail(format!("pod {}: served {:?}, now {now:?}", pod.key, object_key(was.identity))));
                };
                prop_assert_eq!(object_key(was.identity), object_key(now.identity), "pod {}", pod.key);
            }
        }
    }
}
