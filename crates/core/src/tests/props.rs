//! Invariants, checked on generated clusters:
//! - applying a plan reaches a fixed point (planning again yields no work);
//! - the plan does not depend on the order objects arrive in;
//! - no identity that a desired assignment on the target needs is ever removed, and nothing
//!   the ledger does not say podid added, nothing pre-existing and nothing immutable is removed;
//! - visits driven by the ledger, with PATCHes lost and controllers dying between the ledger
//!   write and the PATCH, end with exactly the pre-existing identities plus the needed ones;
//! - bad objects never change what is computed for the good ones;
//! - identity PATCHes carry at most 150 entries and add up to the delta.
use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::diff::plan;
use crate::matching::{MatchOptions, desired};
use crate::pod::Phase;
use crate::scaleset::{Delta, IdentityRef, Ledger, ResourceIdentity, Target, delta, needs, patches};
use podid_api::AzureAssignedIdentity;

const NAMESPACES: [&str; 2] = ["a", "b"];
const NODES: [&str; 3] = ["node-0", "node-1", "node-2"];

#[derive(Clone, Debug)]
pub(crate) struct World {
    pub pods: Vec<PodView>,
    pub bindings: Vec<AzureIdentityBinding>,
    pub identities: Vec<AzureIdentity>,
    pub force_namespaced: bool,
}

fn arb_pod() -> impl Strategy<Value = PodView> {
    (0..2usize, 0..6usize, 0..3usize, 0..3usize, 0..5usize, any::<bool>()).prop_map(
        |(ns, name, node, sel, phase, term)| {
            let mut p = mk_pod(NAMESPACES[ns], &format!("p{name}"), NODES[node], &format!("s{sel}"));
            p.phase =
                [Phase::Running, Phase::Pending, Phase::Succeeded, Phase::Running, Phase::Unknown][phase];
            p.terminating = term && phase == 3;
            p
        },
    )
}

fn arb_identity() -> impl Strategy<Value = AzureIdentity> {
    (0..2usize, 0..4usize, any::<bool>(), any::<bool>()).prop_map(|(ns, name, ns_flag, sp)| {
        let id = if sp {
            mk_sp_identity(NAMESPACES[ns], &format!("i{name}"))
        } else {
            mk_identity(NAMESPACES[ns], &format!("i{name}"))
        };
        if ns_flag { namespaced(id) } else { id }
    })
}

fn arb_binding() -> impl Strategy<Value = AzureIdentityBinding> {
    (0..2usize, 0..3usize, 0..5usize, 0..3usize).prop_map(|(ns, name, id, sel)| {
        mk_binding(NAMESPACES[ns], &format!("bind{name}"), &format!("i{id}"), &format!("s{sel}"))
    })
}

fn dedup<T, K: Ord>(items: Vec<T>, key: impl Fn(&T) -> K) -> Vec<T> {
    let mut seen = BTreeSet::new();
    items.into_iter().filter(|i| seen.insert(key(i))).collect()
}

pub(crate) fn arb_world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(arb_pod(), 0..10),
        prop::collection::vec(arb_binding(), 0..6),
        prop::collection::vec(arb_identity(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(pods, bindings, identities, force_namespaced)| World {
            pods: dedup(pods, |p| p.key.clone()),
            bindings: dedup(bindings, |b| (b.metadata.namespace.clone(), b.metadata.name.clone())),
            identities: dedup(identities, |i| (i.metadata.namespace.clone(), i.metadata.name.clone())),
            force_namespaced,
        })
}

impl World {
    pub(crate) fn desired(&self) -> crate::matching::Desired {
        desired(
            &self.pods,
            &self.bindings,
            &self.identities,
            MatchOptions { force_namespaced: self.force_namespaced, ..MatchOptions::default() },
        )
    }
}

fn node_targets() -> BTreeMap<String, Target> {
    let vmss = "azure:///subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0/virtualMachines/";
    BTreeMap::from([
        ("node-0".into(), Target::from_provider_id(&format!("{vmss}0")).unwrap()),
        ("node-1".into(), Target::from_provider_id(&format!("{vmss}1")).unwrap()),
        (
            "node-2".into(),
            Target::from_provider_id(
                "azure:///subscriptions/S/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm2",
            )
            .unwrap(),
        ),
    ])
}

/// What the controller does with a plan: create, rewrite and delete objects, and (the ARM part
/// succeeding) mark everything Assigned.
pub(crate) fn apply(world: &World, current: Vec<AzureAssignedIdentity>) -> Vec<AzureAssignedIdentity> {
    let p = plan(&world.desired(), &current);
    let deleted: BTreeSet<_> = p.delete.iter().map(|a| a.metadata.name.clone()).collect();
    let updated: BTreeMap<_, _> =
        p.update.iter().map(|(w, old)| (old.metadata.name.clone(), w.to_update(old, false))).collect();
    let mut next: Vec<AzureAssignedIdentity> = current
        .into_iter()
        .filter(|a| !deleted.contains(&a.metadata.name))
        .map(|a| updated.get(&a.metadata.name).cloned().unwrap_or(a))
        .chain(p.create.iter().map(|a| a.to_object(false)))
        .collect();
    for a in &mut next {
        a.status.get_or_insert_with(Default::default).status = "Assigned".into();
    }
    next
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn applying_the_plan_reaches_a_fixed_point(before in arb_world(), after in arb_world()) {
        let current = apply(&before, Vec::new());
        let converged = apply(&after, current);
        let again = plan(&after.desired(), &converged);
        prop_assert!(again.is_idle() && again.pending.is_empty(), "{:?}", again);
        prop_assert_eq!(converged.len(), after.desired().assignments.len());
    }

    #[test]
    fn plan_does_not_depend_on_input_order(world in arb_world(), before in arb_world()) {
        let current = apply(&before, Vec::new());
        let mut rev = world.clone();
        rev.pods.reverse();
        rev.bindings.reverse();
        rev.identities.reverse();
        let mut rev_current = current.clone();
        rev_current.reverse();
        prop_assert_eq!(world.desired().assignments, rev.desired().assignments);
        prop_assert_eq!(plan(&world.desired(), &current), plan(&rev.desired(), &rev_current));
    }

    #[test]
    fn identities_in_use_or_not_ours_are_never_removed(
        after in arb_world(), added in prop::collection::btree_set(0..4usize, 0..4),
        pre in prop::collection::btree_set(0..4usize, 0..2), extra in prop::collection::btree_set(0..4usize, 0..3),
        system in any::<bool>(), immutable in prop::collection::btree_set(0..4usize, 0..2),
    ) {
        let after_desired = after.desired();
        let (by_target, _) = needs(&after_desired, NO_AAIS, &node_targets());
        let immutable: BTreeSet<String> = immutable.iter().map(|i| client_id(&format!("i{i}")).to_lowercase()).collect();
        let ledger = Ledger {
            preexisting: pre.iter().map(|i| resource_id(&format!("i{i}")).to_lowercase()).filter(|k| !added.iter().any(|a| resource_id(&format!("i{a}")).to_lowercase() == *k)).collect(),
            added: added.iter().map(|i| (resource_id(&format!("i{i}")).to_lowercase(), client_id(&format!("i{i}")))).collect(),
        };
        for (target, n) in &by_target {
            let mut ua: BTreeSet<String> = ledger.added.keys().chain(&ledger.preexisting).cloned().collect();
            ua.extend(n.needed.keys().cloned());
            ua.extend(extra.iter().map(|i| resource_id(&format!("foreign{i}")).to_lowercase()));
            let current = ResourceIdentity { system_assigned: system, user_assigned: ua };
            let d = delta(n, &ledger, &current, &immutable);
            for k in &d.remove {
                prop_assert!(!n.needed.contains_key(k), "{target}: removes needed {k}");
                prop_assert!(ledger.added.contains_key(k), "{target}: removes {k} that podid did not add");
                prop_assert!(!ledger.preexisting.contains(k));
                prop_assert!(!immutable.contains(&ledger.added[k].to_lowercase()));
            }
            for p in patches(&current, &d) {
                prop_assert_eq!(p.after.system_assigned, system);
            }
        }
    }

    #[test]
    fn ledger_visits_end_with_exactly_the_preexisting_plus_the_needed(
        pre in prop::collection::btree_set(0..6usize, 0..3),
        steps in prop::collection::vec((prop::collection::btree_set(0..6usize, 0..4), 0..4u8), 1..12),
    ) {
        let k = |i: &usize| resource_id(&format!("i{i}")).to_lowercase();
        let needed_of = |set: &BTreeSet<usize>| -> BTreeMap<String, IdentityRef> {
            set.iter().map(|i| (k(i), IdentityRef { key: k(i), client_id: client_id(&format!("i{i}")) })).collect()
        };
        let initial: BTreeSet<String> = pre.iter().map(k).collect();
        let mut on_target = ResourceIdentity { system_assigned: false, user_assigned: initial.clone() };
        let mut stored: Option<Ledger> = None;
        let mut last = BTreeSet::new();
        // fate: 0 PATCH applied; 1 PATCH lost; 2 dies after the ledger write, before the PATCH;
        // 3 dies after the PATCH, before the ledger is updated.
        let settle = (steps[steps.len() - 1].0.clone(), 0u8);
        for (want, fate) in steps.iter().chain(std::iter::once(&settle)) {
            let needed = needed_of(want);
            let n = crate::scaleset::TargetNeeds { needed: needed.clone(), ..Default::default() };
            let mut ledger = stored.clone().unwrap_or_else(|| Ledger::first(&on_target, &n));
            ledger.observe(&on_target, &needed, &BTreeSet::new());
            let d = delta(&n, &ledger, &on_target, &BTreeSet::new());
            ledger.intend(&d.add, &needed);
            stored = (!ledger.is_empty() || stored.is_some()).then(|| ledger.clone());
            if *fate == 1 || *fate == 2 { last = want.clone(); continue; }
            for p in patches(&on_target, &d) { on_target = p.after; }
            if *fate == 0 {
                ledger.observe(&on_target, &needed, &BTreeSet::new());
                stored = (!ledger.is_empty()).then_some(ledger);
            }
            last = want.clone();
        }
        let mut expect = initial;
        expect.extend(last.iter().map(k));
        prop_assert_eq!(on_target.user_assigned, expect);
    }

    #[test]
    fn bad_objects_do_not_change_the_good_answer(world in arb_world(), bad_type in 3i64..100, sel in 0..3usize) {
        let mut noisy = world.clone();
        let mut unknown = mk_identity("a", "bad-type");
        unknown.spec.identity_type = bad_type;
        let mut bad_rid = mk_identity("b", "bad-rid");
        bad_rid.spec.resource_id = "not-an-id".into();
        noisy.identities.extend([unknown, bad_rid]);
        noisy.bindings.extend([
            mk_binding("a", "bad-1", "bad-type", &format!("s{sel}")),
            mk_binding("b", "bad-2", "bad-rid", &format!("s{sel}")),
            mk_binding("a", "bad-3", "missing", &format!("s{sel}")),
        ]);
        prop_assert_eq!(world.desired().assignments, noisy.desired().assignments);
    }

    #[test]
    fn patches_are_bounded_and_add_up(n_cur in 0..200usize, n_add in 0..400usize, n_rm in 0..200usize, system in any::<bool>()) {
        let id = |i: usize| resource_id(&format!("x{i}")).to_lowercase();
        let current = ResourceIdentity { system_assigned: system, user_assigned: (0..n_cur).map(id).collect() };
        let d = Delta { add: (1000..1000 + n_add).map(id).collect(), remove: (0..n_rm.min(n_cur)).map(id).collect() };
        let ps = patches(&current, &d);
        let mut expect = current.user_assigned.clone();
        expect.extend(d.add.iter().cloned());
        for k in &d.remove { expect.remove(k); }
        prop_assert!(ps.iter().all(|p| p.entries.len() <= 150));
        let last = ps.last().map(|p| p.after.user_assigned.clone()).unwrap_or(current.user_assigned.clone());
        prop_assert_eq!(last, expect);
    }
}
