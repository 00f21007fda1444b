//! Wiring: watches → index; Lease election; the reconcile loop and its executor; admin
//! endpoints. [`start`] is what both the binary and the integration tests run.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
use kube::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, Node, Pod};
use podid_azure::arm::{ArmOptions, CallRecord};
use podid_azure::config::CloudConfig;
use podid_azure::credential::token_source;
use podid_azure::http::{HttpOptions, build_client};
use podid_azure::imds::ImdsOptions;
use podid_azure::{ArmClient, ProcessEnv};
use podid_core::matching::MatchOptions;
use podid_runtime::admin::{self, Health, Readiness};
use podid_runtime::watch::{Change, drive, lean};
use prometheus_client::registry::Registry;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::args::Args;
use crate::controller::{self, Settings};
use crate::events::{self, Events};
use crate::execute::Executor;
use crate::index::{ClusterIndex, DRIFT_REASON, DriftReport, NodeView, SharedIndex, pod_slim, scope};
use crate::leader::{self, Election};
use crate::ledger::{self as ledgers, LedgerStore};
use crate::metrics::Metrics;
use crate::objects::Objects;

/// Everything a controller instance needs besides its clients.
#[derive(Clone, Debug)]
pub struct Config {
    pub settings: Settings,
    /// Namespaces watched (`None`: all).
    pub scope: Option<BTreeSet<String>>,
    /// The Lease; its namespace also holds the ledgers (what podid added to each scale set).
    pub election: Election,
    /// Lower-cased client ids never removed.
    pub immutable: BTreeSet<String>,
    pub max_identity_retries: u32,
    /// Kubernetes writes in flight at once within one unit (`--createDeleteBatch`).
    pub concurrency: usize,
}

/// A running controller. Dropping it stops every task (as if the process died: the Lease is
/// not released).
pub struct Running {
    pub leader: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub registry: Arc<Registry>,
    pub readiness: Arc<Readiness>,
    pub index: Arc<SharedIndex>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// `/healthz` body: `Active` on the leader once caches are synced, else `Not Active`.
    pub fn health(&self) -> Health {
        let (leader, readiness) = (self.leader.clone(), self.readiness.clone());
        Arc::new(
            move || if *leader.borrow() && readiness.missing().is_empty() { "Active" } else { "Not Active" },
        )
    }

    /// Whether this replica leads.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts watches, election and loop on the current runtime.
pub fn start(kube: kube::Client, arm: ArmClient, config: Config) -> Running {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let observer = metrics.clone();
    let arm = arm.with_observer(Arc::new(move |r: &CallRecord<'_>| observer.arm(r)));
    let index = Arc::new(SharedIndex::new(ClusterIndex::new(config.scope.clone())));
    let readiness = Arc::new(Readiness::default());
    let mut tasks = Vec::new();

    let all = watcher::Config::default;
    let w = Watches { index: &index, readiness: &readiness, metrics: &metrics };
    tasks.push(w.spawn::<Pod, _>(Api::all(kube.clone()), all(), "pods", pod_slim, ClusterIndex::pods));
    tasks.push(w.spawn::<Node, _>(
        Api::all(kube.clone()),
        all(),
        "nodes",
        NodeView::from_node,
        ClusterIndex::nodes,
    ));
    tasks.push(w.spawn::<AzureIdentity, _>(
        Api::all(kube.clone()),
        all(),
        "identities",
        lean,
        ClusterIndex::identities,
    ));
    tasks.push(w.spawn::<AzureIdentityBinding, _>(
        Api::all(kube.clone()),
        all(),
        "bindings",
        lean,
        ClusterIndex::bindings,
    ));
    tasks.push(w.spawn::<AzureAssignedIdentity, _>(
        Api::all(kube.clone()),
        all(),
        "assignedidentities",
        lean,
        ClusterIndex::aais,
    ));
    // What podid added to each scale set, next to the Lease.
    let mine = Api::namespaced(kube.clone(), &config.election.namespace);
    let labelled = all().labels(&LedgerStore::selector());
    tasks.push(w.spawn::<ConfigMap, _>(
        mine,
        labelled,
        "ledgers",
        ledgers::from_config_map,
        ClusterIndex::ledgers,
    ));
    // Agents' reports of IMDS refusing an identity the controller has as Assigned.
    let reported = all().fields(&format!("reason={DRIFT_REASON}"));
    let slim = DriftReport::from_event;
    tasks.push(w.spawn::<CoreEvent, _>(
        Api::all(kube.clone()),
        reported,
        "driftreports",
        slim,
        ClusterIndex::drift_reports,
    ));

    let (leader_tx, leader_rx) = watch::channel(false);
    let event_sink = Events::new(kube.clone(), &config.election.identity);
    let (elections, announce, me) = (metrics.clone(), event_sink.clone(), config.election.identity.clone());
    tasks.push(tokio::spawn(leader::run(
        kube.clone(),
        config.election.clone(),
        leader_tx,
        Arc::new(move |lease| {
            elections.leader_elections.inc();
            let (announce, note) = (announce.clone(), format!("{me} became leader"));
            tokio::spawn(
                async move { announce.publish(false, events::LEADER_ELECTION, note, &[lease]).await },
            );
        }),
    )));

    let executor = Executor {
        objects: Objects { client: kube.clone(), metrics: metrics.clone() },
        ledgers: LedgerStore { client: kube.clone(), namespace: config.election.namespace.clone() },
        arm,
        events: event_sink,
        metrics: metrics.clone(),
        index: index.clone(),
        immutable: Arc::new(config.immutable.clone()),
        max_identity_retries: config.max_identity_retries,
        concurrency: config.concurrency,
    };
    let ready = readiness.clone();
    let synced: Arc<dyn Fn() -> bool + Send + Sync> = Arc::new(move || ready.missing().is_empty());
    tasks.push(tokio::spawn(controller::run(
        index.clone(),
        executor,
        config.settings,
        leader_rx.clone(),
        synced,
    )));
    Running { leader: leader_rx, metrics, registry: Arc::new(registry), readiness, index, tasks }
}

/// What every watch shares: the index it feeds, readiness and metrics.
struct Watches<'a> {
    index: &'a Arc<SharedIndex>,
    readiness: &'a Readiness,
    metrics: &'a Arc<Metrics>,
}

impl Watches<'_> {
    /// Watches `K` through `api`, slims each object to `V` as it is decoded, and feeds `sink`.
    fn spawn<K, V>(
        &self,
        api: Api<DeserializeGuard<K>>,
        cfg: watcher::Config,
        kind: &'static str,
        slim: fn(K) -> V,
        sink: fn(&mut ClusterIndex, Change<V>) -> bool,
    ) -> JoinHandle<()>
    where
        K: kube::Resource<DynamicType = ()>
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
        V: Send + 'static,
    {
        let idx = self.index.clone();
        let on_change = move |c| idx.update(|i| sink(i, c));
        let metrics = self.metrics.clone();
        let on_error = move || metrics.k8s_error(&format!("watch_{kind}"));
        tokio::spawn(drive(api, cfg, kind, slim, on_change, self.readiness.part(kind), on_error))
    }
}

/// Sets up logging as the flags say (`RUST_LOG` overrides the default).
pub fn init_logging(format: podid_runtime::LogFormat) {
    podid_runtime::init_logging(format, "podid=info,podid_mic=info,podid_azure=info,podid_runtime=info,warn");
}

/// Runs the controller process until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let Some(_namespace) = args.mic_namespace.clone().filter(|n| !n.is_empty()) else {
        anyhow::bail!("namespace not specified. Please add meta.namespace as env variable MIC_POD_NAMESPACE");
    };
    podid_azure::install_crypto_provider();
    let env = ProcessEnv;
    let path = (!args.cloudconfig.is_empty()).then(|| std::path::PathBuf::from(&args.cloudconfig));
    if path.is_none() {
        tracing::warn!("--cloudconfig not passed: reading the cloud config from environment variables");
    }
    let cloud_config = CloudConfig::load(path.as_deref(), &env).context("cannot load the cloud config")?;
    let (mut cloud, auth) = cloud_config.validate(&env).context("unusable cloud config")?;
    if let Some(url) = &args.arm_endpoint {
        cloud = cloud.with_resource_manager(url.clone());
    }
    if let Some(url) = &args.aad_authority {
        cloud = cloud.with_authority_host(url.clone());
    }
    let user_agent = format!(
        "podid/MIC/{}{}",
        env!("CARGO_PKG_VERSION"),
        if args.custom_user_agent.is_empty() {
            String::new()
        } else {
            format!(" {}", args.custom_user_agent)
        }
    );
    let http =
        HttpOptions { extra_ca_files: args.trusted_ca_files.clone(), user_agent, ..HttpOptions::default() };
    let credential = token_source(&auth, &cloud, &http, ImdsOptions::default())
        .context("cannot set up ARM credentials")?;
    let options = ArmOptions { poll_interval: args.arm_poll_interval, ..ArmOptions::default() };
    let http = build_client(&http).context("cannot set up HTTPS for ARM (--trusted-ca-file?)")?;
    let arm = ArmClient::for_cloud(http, &cloud, credential, options);

    let mut kube_config = if args.kubeconfig.is_empty() {
        kube::Config::infer()
            .await
            .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster)")?
    } else {
        let kubeconfig = kube::config::Kubeconfig::read_from(&args.kubeconfig)
            .with_context(|| format!("cannot read --kubeconfig {}", args.kubeconfig))?;
        kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .with_context(|| format!("unusable --kubeconfig {}", args.kubeconfig))?
    };
    let proxy = podid_azure::ProxySettings::from_env();
    kube_config.proxy_url = proxy.for_kube(&kube_config.cluster_url, kube_config.proxy_url.as_ref());
    let api_server_via = kube_config.proxy_url.as_ref().map(podid_azure::proxy::redacted_uri);
    tracing::info!(proxy = proxy.describe(), ?api_server_via, "Outbound proxies");
    let kube = kube::Client::try_from(kube_config).context("cannot build a Kubernetes client")?;
    let identity = if args.leader_election_instance.is_empty() {
        std::env::var("HOSTNAME")
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("podid-mic-{}", std::process::id()))
    } else {
        args.leader_election_instance.clone()
    };
    let mut immutable: BTreeSet<String> = args.immutable().into_iter().collect();
    if !cloud_config.user_assigned_identity_id.is_empty() {
        immutable.insert(cloud_config.user_assigned_identity_id.to_ascii_lowercase());
    }
    let config = Config {
        settings: Settings {
            match_options: MatchOptions {
                force_namespaced: args.force_namespaced,
                release_terminating: args.release_terminating_pods,
            },
            batch_window: args.batch_window,
            drift_interval: args.drift_interval(),
            base_backoff: args.retry_backoff,
            max_backoff: Duration::from_secs(300),
            ..Settings::default()
        },
        scope: scope(&args.watch_namespaces),
        election: Election {
            namespace: args.leader_election_namespace.clone(),
            name: args.leader_election_name.clone(),
            identity: identity.clone(),
            lease_duration: args.leader_election_duration,
        },
        immutable,
        max_identity_retries: args.update_user_msi_max_retry,
        concurrency: usize::try_from(args.create_delete_batch).unwrap_or(20).max(1),
    };
    info!(identity, force_namespaced = args.force_namespaced, arm = %cloud.resource_manager, "Starting the controller");
    let running = start(kube, arm, config);
    admin::serve(
        admin::app(running.readiness.clone(), running.health(), running.registry.clone()),
        &[args.probe_port, args.prometheus_port],
    )
    .await
    .context("cannot listen on the admin ports (--http-probe-port, --prometheus-port)")?;
    let mut leader = running.leader.clone();
    let mut led = false;
    loop {
        tokio::select! {
            () = podid_runtime::shutdown_signal() => break,
            r = leader.changed() => {
                if r.is_err() { break; }
                let now = *leader.borrow();
                if led && !now {
                    // Upstream exits too: a fresh process starts with clean state.
                    anyhow::bail!("lost leader lease");
                }
                led = now;
            }
        }
    }
    info!("Shutting down");
    Ok(())
}
