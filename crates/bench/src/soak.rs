//! The soak: the real `podid-nmi` (managed mode) against the test kube-apiserver and the emulator,
//! under sustained token load for a bounded time while pods churn and a binding is created and
//! deleted, asserting that nothing but the expected errors occurs, that no pod ever receives
//! another identity's token, and that the agent's memory stays flat.
//!
//! ```text
//!   slots 127.0.3.1-4    stable pods, bound to identity A: every answer must be 200 with A
//!   slots 127.0.3.5-8    churning pods (deleted and recreated), bound to A: 200 with A, or an
//!                        error while the pod is absent
//!   slots 127.0.3.9-12   toggled pods, bound to B by a binding that is deleted and recreated:
//!                        200 with B while bound, 4xx while unbound; never A; after GRACE, never
//!                        200 while unbound nor an error while bound
//! ```
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec, AzureIdentitySpec};
use podid_emulator::config::IdentityConfig;
use podid_emulator::config::builtin::{
    APP_IDENTITY, IDENTITY_RESOURCE_GROUP, NODE_RESOURCE_GROUP, SCALE_SET,
};
use podid_emulator::{Emulator, EmulatorConfig};
use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};
use tokio::sync::Mutex;

mod load;
mod outcome;

pub use outcome::Outcome;

const SLOTS: usize = 12;
const TOGGLE_IDENTITY: &str = "soak-toggle";
/// Time the agent's watches get to see a change before a stale answer counts as an error.
const GRACE: Duration = Duration::from_secs(5);

/// `podid-bench soak` options.
#[derive(Debug, Clone, clap::Args)]
pub struct SoakOptions {
    /// How long to load the agent.
    #[arg(long, default_value_t = 10.0)]
    pub minutes: f64,
    /// Concurrent load connections.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Seconds between pod churn cycles (each deletes and recreates the four churning pods).
    #[arg(long, default_value_t = 10)]
    pub churn_secs: u64,
    /// Seconds between binding toggles.
    #[arg(long, default_value_t = 15)]
    pub toggle_secs: u64,
    /// Seconds between RSS samples.
    #[arg(long, default_value_t = 5)]
    pub sample_secs: u64,
    /// A `podid-nmi` binary to use instead of building the release one.
    #[arg(long)]
    pub agent: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stable,
    Churn,
    Toggle,
}

pub(crate) fn kind(slot: usize) -> Kind {
    match slot {
        0..4 => Kind::Stable,
        4..8 => Kind::Churn,
        _ => Kind::Toggle,
    }
}

pub(crate) fn slot_ip(slot: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 3, u8::try_from(slot + 1).unwrap_or(1)))
}

/// What the load generator knows about the world: per slot, whether the pod exists (churn) or is
/// bound (toggle), and since when (ms after the start).
pub(crate) struct World {
    pub(crate) start: Instant,
    pub(crate) present: Vec<AtomicBool>,
    pub(crate) since_ms: Vec<AtomicU64>,
    pub(crate) client_a: String,
    pub(crate) client_b: String,
}

impl World {
    pub(crate) fn set(&self, slot: usize, on: bool) {
        self.present[slot].store(on, Ordering::SeqCst);
        self.since_ms[slot].store(self.start.elapsed().as_millis() as u64, Ordering::SeqCst);
    }
    /// (on, settled): the slot's state and whether it has held for longer than [`GRACE`].
    pub(crate) fn state(&self, slot: usize) -> (bool, bool) {
        let since = Duration::from_millis(self.since_ms[slot].load(Ordering::SeqCst));
        (self.present[slot].load(Ordering::SeqCst), self.start.elapsed() > since + GRACE)
    }
}

/// Runs the soak; `Err` only if it could not be set up.
pub async fn run(root: &Path, options: &SoakOptions) -> anyhow::Result<Outcome> {
    let agent_bin = match &options.agent {
        Some(path) => path.clone(),
        None => build_agent(root)?,
    };
    let cluster = TestCluster::shared().await.context("test cluster")?;
    let client = cluster.client()?;
    let ns = cluster.namespace("soak").await?;
    let mut config = EmulatorConfig::default();
    config.identities.push(IdentityConfig {
        name: TOGGLE_IDENTITY.into(),
        resource_group: IDENTITY_RESOURCE_GROUP.into(),
        client_id: None,
        principal_id: None,
        federated_credentials: vec![],
    });
    config.scale_sets[0].identities.extend([APP_IDENTITY.to_string(), TOGGLE_IDENTITY.to_string()]);
    let emulator = Emulator::start(config).await?;
    let info = emulator.info();
    let (a, b) = (&info.identities[APP_IDENTITY], &info.identities[TOGGLE_IDENTITY]);
    let (_, imds) = emulator.imds_urls().into_iter().next().context("emulator has no IMDS")?;
    let node = format!("{ns}-n0");
    NodeBuilder::new(&node)
        .vmss(&emulator.subscription_id(), NODE_RESOURCE_GROUP, SCALE_SET, 0)
        .create(&client)
        .await?;
    for (name, rid, cid) in [("id-a", &a.id, &a.client_id), ("id-b", &b.id, &b.client_id)] {
        let mut id = AzureIdentity::new(
            name,
            AzureIdentitySpec { resource_id: rid.clone(), client_id: cid.clone(), ..Default::default() },
        );
        id.metadata.namespace = Some(ns.clone());
        Api::<AzureIdentity>::namespaced(client.clone(), &ns).create(&PostParams::default(), &id).await?;
    }
    let bindings = Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns);
    bindings.create(&PostParams::default(), &binding(&ns, "bind-a", "id-a", "app")).await?;
    bindings.create(&PostParams::default(), &binding(&ns, "bind-b", "id-b", "toggle")).await?;
    for slot in 0..SLOTS {
        pod(&client, &ns, &node, slot).await?;
    }
    let world = Arc::new(World {
        start: Instant::now(),
        present: (0..SLOTS).map(|_| AtomicBool::new(true)).collect(),
        since_ms: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        client_a: a.client_id.clone(),
        client_b: b.client_id.clone(),
    });

    let mut agent = load::Agent::start(&agent_bin, cluster, &node, &imds).await?;
    tracing::info!(minutes = options.minutes, "Soak running");
    let duration = Duration::from_secs_f64(options.minutes * 60.0);
    let outcome = Arc::new(Mutex::new(Outcome::new(options.minutes)));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..options.workers)
        .map(|w| {
            tokio::spawn(load::worker(
                w,
                options.workers,
                agent.token_url(),
                world.clone(),
                outcome.clone(),
                deadline,
            ))
        })
        .collect();
    let churner = tokio::spawn(churn(
        client.clone(),
        ns.clone(),
        node.clone(),
        world.clone(),
        outcome.clone(),
        options.churn_secs,
        deadline,
    ));
    let toggler = tokio::spawn(toggle(
        bindings.clone(),
        ns.clone(),
        world.clone(),
        outcome.clone(),
        options.toggle_secs,
        deadline,
    ));
    while Instant::now() < deadline {
        let rss = agent.rss_kib();
        outcome.lock().await.rss_kib.push((world.start.elapsed().as_secs(), rss));
        tokio::time::sleep(
            Duration::from_secs(options.sample_secs).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
    for w in workers {
        let _ = w.await;
    }
    let _ = churner.await;
    let _ = toggler.await;
    let rss = agent.rss_kib();
    let mut outcome = outcome.lock().await.clone();
    outcome.rss_kib.push((world.start.elapsed().as_secs(), rss));
    outcome.agent_alive = agent.alive();
    drop(agent);
    emulator.shutdown().await;
    Ok(outcome)
}

/// Builds the release agent (a no-op when up to date) and returns its path.
fn build_agent(root: &Path) -> anyhow::Result<PathBuf> {
    let status = std::process::Command::new("cargo")
        .args(["build", "--release", "-q", "-p", "podid-nmi", "--bin", "podid-nmi"])
        .current_dir(root)
        .status()?;
    anyhow::ensure!(status.success(), "cargo build -p podid-nmi failed");
    Ok(root.join("target/release/podid-nmi"))
}

fn binding(ns: &str, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
    AzureIdentityBinding {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some(ns.into()), ..Default::default() },
        spec: AzureIdentityBindingSpec {
            azure_identity: identity.into(),
            selector: selector.into(),
            ..Default::default()
        },
        status: None,
    }
}

async fn pod(client: &kube::Client, ns: &str, node: &str, slot: usize) -> anyhow::Result<()> {
    let label = if kind(slot) == Kind::Toggle { "toggle" } else { "app" };
    PodBuilder::new(ns, format!("slot-{slot}"))
        .node(node)
        .label("aadpodidbinding", label)
        .ip(slot_ip(slot))
        .create(client)
        .await?;
    Ok(())
}

async fn churn(
    client: kube::Client,
    ns: String,
    node: String,
    world: Arc<World>,
    outcome: Arc<Mutex<Outcome>>,
    every: u64,
    deadline: Instant,
) {
    while Instant::now() + Duration::from_secs(every) < deadline {
        tokio::time::sleep(Duration::from_secs(every)).await;
        for slot in 4..8 {
            world.set(slot, false);
            let deleted = podid_testkit::kubelet::delete_pod(&client, &ns, &format!("slot-{slot}")).await;
            let created = match deleted {
                Ok(()) => pod(&client, &ns, &node, slot).await,
                Err(e) => Err(e.into()),
            };
            match created {
                Ok(()) => world.set(slot, true),
                Err(e) => outcome.lock().await.unexpected(format!("churn slot {slot}: {e}")),
            }
        }
        outcome.lock().await.churn_cycles += 1;
    }
}

async fn toggle(
    bindings: Api<AzureIdentityBinding>,
    ns: String,
    world: Arc<World>,
    outcome: Arc<Mutex<Outcome>>,
    every: u64,
    deadline: Instant,
) {
    let mut bound = true;
    while Instant::now() + Duration::from_secs(every) < deadline {
        tokio::time::sleep(Duration::from_secs(every)).await;
        let result = if bound {
            // The grace starts when the API server has accepted the deletion (as for the
            // creation below): under load the DELETE itself can take seconds, and requests
            // decided before it committed are rightly served.
            let r = bindings.delete("bind-b", &DeleteParams::default()).await.map(|_| ());
            for slot in 8..SLOTS {
                world.set(slot, false);
            }
            r
        } else {
            let r = bindings
                .create(&PostParams::default(), &binding(&ns, "bind-b", "id-b", "toggle"))
                .await
                .map(|_| ());
            for slot in 8..SLOTS {
                world.set(slot, true);
            }
            r
        };
        bound = !bound;
        let mut o = outcome.lock().await;
        match result {
            Ok(()) => o.toggles += 1,
            Err(e) => o.unexpected(format!("toggle binding: {e}")),
        }
    }
}
