//! Model-based test of "the controller removes what it added, always" (issue 15), against the real
//! kube-apiserver (test kit) and the Azure emulator.
//!
//! Each sequence: a fresh namespace and emulator (two scale sets, each with an identity on it
//! before podid starts), a controller, then random steps — pods, bindings and identities created
//! and deleted, assigned identities deleted (with and without their finalizer) and re-created by
//! hand, the controller killed (and replaced a few steps later), ARM faults (5xx, throttling, latency) — with short
//! pauses so the controller acts in between. Then quiescence, checked against a model computed
//! here independently of podid's matching — once after the steps and once more after every pod
//! is deleted (everything podid added during the sequence must come off):
//!
//! ```text
//!  desired = {(pod, identity) | binding.selector = pod's label ∧ binding.identity exists}
//!  every scale set holds exactly  pre-existing ∪ {identities of desired pairs on its nodes}
//!  the assigned identities are exactly the desired pairs, all Assigned
//! ```
//!
//! `MODEL_SEQS` sequences (default 12), `MODEL_PARALLEL` at a time (default 3), seeds from
//! `MODEL_SEED` (default: random, printed). A failure prints the seed and the steps to replay it
//! (`MODEL_SEED=<seed> MODEL_SEQS=1`). More sequences: `make model MODEL_SEQS=500`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "controller/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use podid_api::{
    AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, DEFAULT_AAI_NAMESPACE,
};
use podid_emulator::config::builtin::{
    APP_IDENTITY, IDENTITY_RESOURCE_GROUP, NODE_RESOURCE_GROUP, SCALE_SET,
};
use podid_emulator::config::{IdentityConfig, ScaleSetConfig};
use podid_emulator::{EmulatorConfig, FaultAction, FaultSpec, Surface};
use podid_mic::Running;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{Env, MicOptions};
use tokio::time::Instant;

const OTHER_SET: &str = "model-vmss1";
/// Emulator identities behind AzureIdentities i0..i3 (all in the identity resource group, where
/// the controller may assign them). Before podid starts, `model-c` (and the agent pool identity,
/// which no AzureIdentity uses) is on `SCALE_SET` and `model-b` on `OTHER_SET`.
const EMU_IDS: [&str; 4] = [APP_IDENTITY, "model-a", "model-b", "model-c"];
/// Node → scale set: n0, n1 on the built-in one, n2 on the other.
const NODES: [(&str, u32); 3] = [(SCALE_SET, 0), (SCALE_SET, 1), (OTHER_SET, 0)];
const PODS: usize = 5;
const BINDINGS: usize = 3;
const SELECTORS: usize = 3;
const QUIESCE: Duration = Duration::from_secs(60);

/// One step of a sequence.
#[derive(Clone, Debug)]
enum Step {
    CreatePod {
        pod: usize,
        node: usize,
        selector: usize,
    },
    DeletePod {
        pod: usize,
    },
    CreateBinding {
        binding: usize,
        selector: usize,
        identity: usize,
    },
    DeleteBinding {
        binding: usize,
    },
    CreateIdentity {
        identity: usize,
    },
    DeleteIdentity {
        identity: usize,
    },
    /// Delete an assigned identity (the finalizer keeps it until the controller lets go).
    DeleteAssignment {
        pick: usize,
    },
    /// Strip its finalizer first: it is gone at once.
    StripAssignment {
        pick: usize,
    },
    /// Create again, by hand, a copy of an assigned identity seen earlier (its status reset).
    RestoreAssignment {
        pick: usize,
    },
    /// Kill the controller; a new one starts after `down_for` more steps.
    KillController {
        down_for: usize,
    },
    ArmFault {
        kind: usize,
    },
    Pause {
        ms: u64,
    },
}

fn random_step(rng: &mut StdRng) -> Step {
    match rng.random_range(0..100) {
        0..18 => Step::CreatePod {
            pod: rng.random_range(0..PODS),
            node: rng.random_range(0..NODES.len()),
            selector: rng.random_range(0..SELECTORS),
        },
        18..30 => Step::DeletePod { pod: rng.random_range(0..PODS) },
        30..41 => Step::CreateBinding {
            binding: rng.random_range(0..BINDINGS),
            selector: rng.random_range(0..SELECTORS),
            identity: rng.random_range(0..EMU_IDS.len()),
        },
        41..46 => Step::DeleteBinding { binding: rng.random_range(0..BINDINGS) },
        46..55 => Step::CreateIdentity { identity: rng.random_range(0..EMU_IDS.len()) },
        55..59 => Step::DeleteIdentity { identity: rng.random_range(0..EMU_IDS.len()) },
        59..64 => Step::DeleteAssignment { pick: rng.random_range(0..8) },
        64..76 => Step::StripAssignment { pick: rng.random_range(0..8) },
        76..80 => Step::RestoreAssignment { pick: rng.random_range(0..8) },
        80..84 => Step::KillController { down_for: rng.random_range(0..4) },
        84..91 => Step::ArmFault { kind: rng.random_range(0..4) },
        _ => Step::Pause { ms: rng.random_range(50..600) },
    }
}

/// The world as the test believes it is.
#[derive(Default, Debug)]
struct Model {
    pods: BTreeMap<usize, (usize, usize)>,     // pod → (node, selector)
    bindings: BTreeMap<usize, (usize, usize)>, // binding → (selector, identity)
    identities: BTreeSet<usize>,
}

impl Model {
    /// (pod, identity) pairs that must have an Assigned assigned identity.
    fn desired(&self) -> BTreeSet<(usize, usize)> {
        let mut out = BTreeSet::new();
        for (pod, (_, sel)) in &self.pods {
            for (bsel, identity) in self.bindings.values() {
                if bsel == sel && self.identities.contains(identity) {
                    out.insert((*pod, *identity));
                }
            }
        }
        out
    }
}

struct Sequence {
    env: Env,
    model: Model,
    mic: Option<Running>,
    generation: u32,
    /// Steps left before a killed controller is replaced.
    down: usize,
    seen: Vec<AzureAssignedIdentity>,
    nodes: Vec<String>,
    preexisting: BTreeMap<&'static str, BTreeSet<String>>,
}

fn emulator_config() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    for name in ["model-a", "model-b", "model-c"] {
        config.identities.push(IdentityConfig {
            name: name.into(),
            resource_group: IDENTITY_RESOURCE_GROUP.into(),
            client_id: None,
            principal_id: None,
            federated_credentials: vec![],
        });
    }
    config.scale_sets[0].identities.push("model-c".into());
    config.scale_sets.push(ScaleSetConfig {
        name: OTHER_SET.into(),
        resource_group: NODE_RESOURCE_GROUP.into(),
        instances: 1,
        system_assigned: false,
        identities: vec!["model-b".into()],
    });
    config
}

fn mic_options(generation: u32) -> MicOptions {
    MicOptions {
        identity: format!("mic-{generation}"),
        lease: Duration::from_secs(1),
        backoff: Duration::from_millis(200),
        ..MicOptions::default()
    }
}

impl Sequence {
    async fn start(seed: u64) -> Self {
        let env = Env::with_config(&format!("model-{}", seed % 100_000), emulator_config()).await;
        let mut nodes = Vec::new();
        for (set, i) in NODES {
            nodes.push(env.node_in(set, i).await);
        }
        let preexisting = [SCALE_SET, OTHER_SET]
            .into_iter()
            .map(|s| (s, env.on_scale_set(s).into_iter().collect()))
            .collect();
        let mic = Some(env.mic(mic_options(0)));
        Self {
            env,
            model: Model::default(),
            mic,
            generation: 0,
            down: 0,
            seen: Vec::new(),
            nodes,
            preexisting,
        }
    }

    fn pod_name(pod: usize) -> String {
        format!("p{pod}")
    }

    async fn apply(&mut self, step: &Step) {
        let env = &self.env;
        match *step {
            Step::CreatePod { pod, node, selector } if !self.model.pods.contains_key(&pod) => {
                env.pod(&Self::pod_name(pod), &self.nodes[node], &format!("s{selector}")).await;
                self.model.pods.insert(pod, (node, selector));
            }
            Step::DeletePod { pod } if self.model.pods.remove(&pod).is_some() => {
                env.delete_pod(&Self::pod_name(pod)).await;
            }
            Step::CreateBinding { binding, selector, identity }
                if !self.model.bindings.contains_key(&binding) =>
            {
                env.binding(&format!("b{binding}"), &format!("i{identity}"), &format!("s{selector}")).await;
                self.model.bindings.insert(binding, (selector, identity));
            }
            Step::DeleteBinding { binding } if self.model.bindings.remove(&binding).is_some() => {
                env.delete::<AzureIdentityBinding>(&format!("b{binding}")).await;
            }
            Step::CreateIdentity { identity } if self.model.identities.insert(identity) => {
                env.identity(&format!("i{identity}"), EMU_IDS[identity]).await;
            }
            Step::DeleteIdentity { identity } if self.model.identities.remove(&identity) => {
                env.delete::<AzureIdentity>(&format!("i{identity}")).await;
            }
            Step::DeleteAssignment { pick } | Step::StripAssignment { pick } => {
                let aais = env.aais().await;
                self.seen.extend(aais.iter().cloned());
                if aais.is_empty() {
                    return;
                }
                let name = aais[pick % aais.len()].metadata.name.clone().unwrap();
                let api = Api::<AzureAssignedIdentity>::namespaced(env.client.clone(), DEFAULT_AAI_NAMESPACE);
                if matches!(step, Step::StripAssignment { .. }) {
                    let patch = serde_json::json!({ "metadata": { "finalizers": null } });
                    let _ = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                }
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
            Step::RestoreAssignment { pick } if !self.seen.is_empty() => {
                let mut copy = self.seen[pick % self.seen.len()].clone();
                copy.metadata = podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                    name: copy.metadata.name.clone(),
                    namespace: copy.metadata.namespace.clone(),
                    labels: copy.metadata.labels.clone(),
                    annotations: copy.metadata.annotations.clone(),
                    finalizers: copy.metadata.finalizers.clone(),
                    ..Default::default()
                };
                if let Some(s) = copy.status.as_mut() {
                    s.status = AssignedState::Created.as_str().into();
                }
                let api = Api::<AzureAssignedIdentity>::namespaced(env.client.clone(), DEFAULT_AAI_NAMESPACE);
                let _ = api.create(&PostParams::default(), &copy).await; // 409 when it exists: fine
            }
            Step::KillController { down_for } => {
                drop(self.mic.take());
                self.down = down_for;
            }
            Step::ArmFault { kind } => {
                let (method, action) = match kind {
                    0 => (
                        "PATCH",
                        FaultAction::Status { status: 503, body: None, headers: Default::default() },
                    ),
                    1 => {
                        ("GET", FaultAction::Status { status: 500, body: None, headers: Default::default() })
                    }
                    2 => ("PATCH", FaultAction::Throttle { retry_after_secs: 1 }),
                    _ => ("PATCH", FaultAction::Latency { ms: 700 }),
                };
                let spec = FaultSpec {
                    method: Some(method.into()),
                    count: Some(2),
                    ..FaultSpec::new(Surface::Arm, action)
                };
                env.emu.add_fault(spec).unwrap();
            }
            Step::Pause { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            _ => {} // a step that does not apply to the current state
        }
    }

    /// Starts a new controller once a killed one has been down for its steps (`now`: at once).
    fn revive(&mut self, now: bool) {
        if self.mic.is_some() {
            return;
        }
        if self.down > 0 && !now {
            self.down -= 1;
            return;
        }
        self.generation += 1;
        self.mic = Some(self.env.mic(mic_options(self.generation)));
    }

    /// What must hold after quiescence; `Err` describes the difference.
    async fn check(&self) -> Result<(), String> {
        let ns = &self.env.ns;
        let want: BTreeSet<String> =
            self.model.desired().iter().map(|(p, i)| format!("{}-{ns}-i{i}", Self::pod_name(*p))).collect();
        let aais = self.env.aais().await;
        let have: BTreeSet<String> = aais
            .iter()
            .filter(|a| a.state() == AssignedState::Assigned && a.metadata.deletion_timestamp.is_none())
            .filter_map(|a| a.metadata.name.clone())
            .collect();
        if have != want || aais.len() != want.len() {
            let all: Vec<_> = aais.iter().map(|a| (a.metadata.name.clone(), a.state())).collect();
            return Err(format!("assigned identities: want {want:?} Assigned, have {all:?}"));
        }
        for set in [SCALE_SET, OTHER_SET] {
            let mut expect = self.preexisting[set].clone();
            for (pod, identity) in self.model.desired() {
                if NODES[self.model.pods[&pod].0].0 == set {
                    expect.insert(self.env.identity_id(EMU_IDS[identity]).to_ascii_lowercase());
                }
            }
            let on: BTreeSet<String> = self.env.on_scale_set(set).into_iter().collect();
            if on != expect {
                return Err(format!("scale set {set}: want {expect:?}, have {on:?}"));
            }
        }
        Ok(())
    }

    async fn quiesce(&self) -> Result<(), String> {
        self.env.emu.clear_faults();
        let deadline = Instant::now() + QUIESCE;
        loop {
            match self.check().await {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

async fn run_sequence(seed: u64) -> Result<(), String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut seq = Sequence::start(seed).await;
    // A start that makes assignments likely: every identity, and two bindings.
    let mut steps: Vec<Step> = (0..EMU_IDS.len()).map(|identity| Step::CreateIdentity { identity }).collect();
    for binding in 0..2 {
        let (selector, identity) = (rng.random_range(0..SELECTORS), rng.random_range(0..EMU_IDS.len()));
        steps.push(Step::CreateBinding { binding, selector, identity });
    }
    steps.extend((0..rng.random_range(10..20)).map(|_| random_step(&mut rng)));
    for step in &steps {
        seq.apply(step).await;
        seq.revive(false);
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
    }
    seq.revive(true);
    let ns = seq.env.ns.clone();
    let fail = |phase: &str, e: String| format!("seed {seed} ({ns}), {phase}: {e}\nsteps: {steps:#?}");
    seq.quiesce().await.map_err(|e| fail("after the steps", e))?;
    // Then every pod goes: whatever podid added during the sequence must come off again.
    for pod in seq.model.pods.keys().copied().collect::<Vec<_>>() {
        seq.apply(&Step::DeletePod { pod }).await;
    }
    seq.quiesce().await.map_err(|e| fail("after deleting every pod", e))
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_any_sequence_each_scale_set_holds_its_preexisting_identities_plus_those_in_use() {
    podid_testkit::init_tracing();
    let count = env_num("MODEL_SEQS", 12);
    let parallel = usize::try_from(env_num("MODEL_PARALLEL", 3)).unwrap_or(3).max(1);
    let first = env_num("MODEL_SEED", rand::random_range(0..u64::from(u32::MAX)));
    println!(
        "model: {count} sequences from seed {first} ({parallel} at a time); replay one with MODEL_SEED=<seed> MODEL_SEQS=1"
    );
    let started = Instant::now();
    let failures: Vec<String> = futures::stream::iter(first..first + count)
        .map(run_sequence)
        .buffer_unordered(parallel)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await;
    println!("model: {count} sequences in {:.1} s", started.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {count} sequences failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
