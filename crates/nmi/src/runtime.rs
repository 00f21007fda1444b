//! Wiring: flags → kube client, watches, cache, interception, servers; graceful shutdown.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use kube::Api;
use kube::core::DeserializeGuard;
use kube::runtime::watcher;
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, NODENAME_LABEL,
    Pod,
};
use podid_azure::{HttpOptions, ImdsClient, ImdsOptions, build_client};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use crate::args::{Args, DnatAddress, LogFormat};
use crate::cache::{CacheLimits, TokenCache};
use crate::http::limits::{self, Limits};
use crate::http::proxy::Proxy;
use crate::http::serve::{ServeOptions, serve};
use crate::iptables::{self, Interception, Iptables, Rules};
use crate::metrics::Metrics;
use crate::provider::AzureProvider;
use crate::state::{AgentState, Config, Mode, Shared};
use crate::token::SystemClock;
use crate::{prefetch, watch};
use podid_runtime::admin::{self, Readiness};
use podid_runtime::watch::{Watch, drive_with, lean, prompt_backoff};

/// Sets up logging as the flags say (`RUST_LOG` overrides the default).
pub fn init_logging(format: LogFormat) {
    podid_runtime::init_logging(format, "podid=info,podid_nmi=info,podid_runtime=info,warn");
}

/// Runs the agent until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let imds_base = args.imds_base().context("--metadata-ip/--metadata-port do not form a URL")?;
    let Args {
        node,
        listen_address,
        port,
        metadata_ip,
        metadata_port,
        imds_endpoint: _,
        dnat_address,
        ipt_update_interval_sec,
        force_namespaced,
        mic_namespace,
        probe_port,
        prometheus_port,
        retry_attempts_for_created,
        retry_attempts_for_assigned,
        find_identity_retry_interval,
        block_instance_metadata,
        metadata_header_required,
        operation_mode,
        allow_network_plugin_kubenet,
        kubelet_config,
        set_retry_after_header,
        identity_not_found_status,
        release_terminating_pods,
        enable_conntrack_deletion,
        iptables: manage_iptables,
        cleanup_iptables_on_exit,
        host_token,
        verified_callers,
        proc_root,
        node_caller_exception_cgroups,
        header_timeout_sec,
        idle_timeout_sec,
        max_connections_per_source,
        max_connections,
        max_requests_per_second_per_source,
        request_burst_per_source,
        token_cache_entries,
        token_cache_entries_per_identity,
        token_cache_bytes,
        aad_authority,
        tenant_id,
        cloud_config,
        trusted_ca_files,
        token_min_remaining_sec,
        shutdown_grace_sec,
        log_format: _,
        custom_user_agent,
        enable_scale_features: _,
        enable_profile: _,
        logtostderr: _,
        verbosity: _,
    } = args;
    anyhow::ensure!(!node.is_empty(), "--node is empty: pass the node name (NODE_NAME from spec.nodeName)");
    if operation_mode == Mode::Managed && !force_namespaced {
        anyhow::bail!(
            "managed mode needs namespaced mode: add --forceNamespaced (pods may only use identities of their own namespace)"
        );
    }
    if !allow_network_plugin_kubenet {
        iptables::check_not_kubenet(&kubelet_config)?;
    }
    let user_agent = format!(
        "podid/NMI/{}{}",
        env!("CARGO_PKG_VERSION"),
        if custom_user_agent.is_empty() { String::new() } else { format!(" {custom_user_agent}") }
    );

    let mut kube_config = kube::Config::infer()
        .await
        .context("cannot configure a Kubernetes client (KUBECONFIG or in-cluster)")?;
    let proxy = podid_azure::ProxySettings::from_env();
    kube_config.proxy_url = proxy.for_kube(&kube_config.cluster_url, kube_config.proxy_url.as_ref());
    let api_server_via = kube_config.proxy_url.as_ref().map(podid_azure::proxy::redacted_uri);
    tracing::info!(proxy = proxy.describe(), ?api_server_via, "Outbound proxies");
    let kube = kube::Client::try_from(kube_config).context("cannot build a Kubernetes client")?;
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let registry = Arc::new(registry);
    let http = build_client(&HttpOptions {
        extra_ca_files: trusted_ca_files,
        user_agent: user_agent.clone(),
        ..HttpOptions::default()
    })?;
    let proxy = Proxy::new(imds_base.as_str().trim_end_matches('/'))?;
    let imds = ImdsClient::new(ImdsOptions { user_agent, ..ImdsOptions::at(imds_base.clone()) })?;
    info!(imds = %imds_base, "IMDS endpoint (tokens and forwarded metadata calls)");
    let provider = Arc::new(AzureProvider { imds, http, kube: Some(kube.clone()), metrics: metrics.clone() });

    let interval = Duration::from_secs(find_identity_retry_interval);
    let config = Config {
        mode: operation_mode,
        node: node.clone(),
        force_namespaced,
        mic_namespace,
        metadata_header_required,
        block_instance_metadata,
        set_retry_after_header,
        wait_created: interval * retry_attempts_for_created,
        wait_assigned: interval * (retry_attempts_for_created + retry_attempts_for_assigned),
        default_authority: aad_authority,
        tenant_id: agent_tenant(tenant_id, &cloud_config),
        host_token,
        not_found_as_bad_request: identity_not_found_status == 400,
        release_terminating: release_terminating_pods,
        verified_callers: verified_callers.then(|| {
            Arc::new(crate::verify::Verifier::new(&proc_root, SocketAddr::from((metadata_ip, metadata_port))))
        }),
    };
    let cache_limits = CacheLimits {
        max_entries: usize::try_from(token_cache_entries).unwrap_or(usize::MAX),
        max_entries_per_source: usize::try_from(token_cache_entries_per_identity).unwrap_or(usize::MAX),
        max_bytes: usize::try_from(token_cache_bytes).unwrap_or(usize::MAX),
    };
    let cache = TokenCache::bounded(
        provider,
        Arc::new(SystemClock),
        token_min_remaining_sec,
        cache_limits,
        Some(metrics.clone()),
    );
    let state = AgentState {
        shared: Arc::new(Shared::default()),
        cache,
        config: Arc::new(config),
        metrics: metrics.clone(),
        proxy,
        drift: crate::drift::Reporter::new(kube.clone(), &node),
    };
    let fd_limit = limits::fd_limit().unwrap_or(1024);
    let limits = Limits {
        header_timeout: Duration::from_secs(header_timeout_sec),
        idle_timeout: Duration::from_secs(idle_timeout_sec),
        max_connections_per_source: usize::try_from(max_connections_per_source).unwrap_or(usize::MAX),
        max_connections: limits::connection_budget(
            usize::try_from(max_connections).unwrap_or(usize::MAX),
            fd_limit,
        ),
        requests_per_second: max_requests_per_second_per_source,
        request_burst: request_burst_per_source,
    };
    if max_connections > 0 && limits.max_connections < usize::try_from(max_connections).unwrap_or(usize::MAX)
    {
        warn!(
            requested = max_connections,
            fd_limit,
            allowed = limits.max_connections,
            "--max-connections is above the file-descriptor limit less 256; using the lower budget"
        );
    }
    info!(?limits, ?cache_limits, fd_limit, "Bounds on callers");

    let readiness = Arc::new(Readiness::default());
    spawn_watches(&kube, &state, &readiness, &node, operation_mode);
    tokio::spawn(prefetch::run(state.clone()));

    let intercepting = readiness.part("iptables");
    let agent_ip =
        if manage_iptables { dnat_target(dnat_address, metadata_ip)? } else { Ipv4Addr::LOCALHOST };
    let intercepted = (!agent_ip.is_loopback()).then_some(IpAddr::V4(agent_ip));
    let listeners = bind_listeners(listen_address, intercepted, port).await?;
    let node_callers = if verified_callers && manage_iptables {
        let own_cgroup = crate::verify::own_cgroup(&proc_root).context("--verified-callers")?;
        info!(%own_cgroup, exceptions = ?node_caller_exception_cgroups, "Verified callers: the node's own calls to IMDS come to the agent too");
        Some(iptables::NodeCallers { own_cgroup, exceptions: node_caller_exception_cgroups })
    } else {
        None
    };
    let rules = Rules { metadata_ip, metadata_port, agent_ip, agent_port: port, node_callers };
    let ipt = Arc::new(Iptables { binary: "iptables".into(), rules: rules.clone() });
    if manage_iptables {
        ipt.ensure().context("cannot install the iptables interception rules")?;
        if enable_conntrack_deletion {
            iptables::flush_conntrack(&rules)?;
        }
        intercepting.store(true, Ordering::SeqCst);
        tokio::spawn(keep_rules(ipt.clone(), Duration::from_secs(ipt_update_interval_sec.max(1))));
    } else {
        warn!("iptables management is off: pods reach this agent only if something else redirects them");
        intercepting.store(true, Ordering::SeqCst);
    }

    let active = intercepting.clone();
    let health: admin::Health =
        Arc::new(move || if active.load(Ordering::SeqCst) { "Active" } else { "Not Active" });
    admin::serve(admin::app(readiness.clone(), health, registry), &[probe_port, prometheus_port])
        .await
        .context("cannot listen on the admin ports (--http-probe-port, --prometheus-port)")?;

    let addrs: Vec<String> =
        listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
    info!(addresses = ?addrs, node = %node, mode = ?operation_mode, dnat_to = %agent_ip, "Serving token requests");
    let options = ServeOptions { limits, intercepted };
    let server = serve(listeners, crate::app(state), options, metrics, shutdown_signal());
    let grace = Duration::from_secs(shutdown_grace_sec);
    tokio::select! {
        r = server => r.context("token server failed")?,
        () = async { shutdown_signal().await; tokio::time::sleep(grace).await } => warn!("shutdown grace period over; dropping in-flight requests"),
    }
    if manage_iptables && cleanup_iptables_on_exit {
        ipt.remove().context("cannot remove the iptables rules")?;
        info!("Removed iptables rules");
    } else if manage_iptables {
        info!("Leaving iptables rules in place: pods cannot reach IMDS until an agent serves again");
    }
    Ok(())
}

/// The address intercepted traffic is DNATed to (`--dnat-address`).
fn dnat_target(wanted: DnatAddress, metadata_ip: Ipv4Addr) -> anyhow::Result<Ipv4Addr> {
    Ok(match wanted {
        DnatAddress::Auto => iptables::node_address_towards(metadata_ip)?,
        DnatAddress::Address(ip) => ip,
        DnatAddress::Loopback => {
            if iptables::route_localnet_all(std::path::Path::new("/proc/sys")) == Some(false) {
                warn!(
                    "--dnat-address=loopback but net.ipv4.conf.all.route_localnet=0: unless route_localnet=1 on \
                     the interfaces pods' traffic arrives on (kube-proxy in iptables mode sets it), the kernel drops \
                     pods' redirected IMDS requests and they time out; --dnat-address=auto needs no sysctl"
                );
            }
            Ipv4Addr::LOCALHOST
        }
    })
}

/// The token service's sockets: `--nmi-listen-address`, and the DNAT address if that is a node
/// address the first does not cover.
async fn bind_listeners(
    listen: IpAddr,
    intercepted: Option<IpAddr>,
    port: u16,
) -> anyhow::Result<Vec<TcpListener>> {
    let mut addrs = vec![SocketAddr::new(listen, port)];
    if let Some(ip) = intercepted.filter(|ip| *ip != listen && !listen.is_unspecified()) {
        addrs.push(SocketAddr::new(ip, port));
    }
    let mut listeners = Vec::new();
    for addr in addrs {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (is another agent running?)"))?;
        listeners.push(l);
    }
    Ok(listeners)
}

/// Starts one watch whose changes land in the index through `sink`.
fn spawn_watch<K>(
    api: Api<DeserializeGuard<K>>,
    cfg: watcher::Config,
    kind: &'static str,
    state: &AgentState,
    readiness: &Readiness,
    sink: fn(&mut crate::index::NodeIndex, podid_runtime::watch::Change<K>),
) where
    K: kube::Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let shared = state.shared.clone();
    let metrics = state.metrics.clone();
    let on_change = move |c| shared.update(|idx| sink(idx, c));
    let on_error = move || metrics.k8s_error(&format!("watch_{kind}"));
    // The agent re-watches within a second of an API-server restart (new pods are served at once).
    let watch = Watch { api, config: cfg, kind, slim: lean::<K> };
    tokio::spawn(drive_with(watch, prompt_backoff(), on_change, readiness.part(kind), on_error));
}

fn spawn_watches(kube: &kube::Client, state: &AgentState, readiness: &Readiness, node: &str, mode: Mode) {
    let all = watcher::Config::default;
    let pods = all().fields(&format!("spec.nodeName={node}"));
    spawn_watch::<Pod>(Api::all(kube.clone()), pods, "pods", state, readiness, watch::pods);
    spawn_watch::<AzurePodIdentityException>(
        Api::all(kube.clone()),
        all(),
        "exceptions",
        state,
        readiness,
        watch::exceptions,
    );
    if mode == Mode::Standard {
        let mine = all().labels(&format!("{NODENAME_LABEL}={node}"));
        spawn_watch::<AzureAssignedIdentity>(
            Api::all(kube.clone()),
            mine,
            "assignedidentities",
            state,
            readiness,
            watch::assigned,
        );
    }
    // Every mode: managed mode decides from them, the others for federated identities.
    spawn_watch::<AzureIdentityBinding>(
        Api::all(kube.clone()),
        all(),
        "bindings",
        state,
        readiness,
        watch::bindings,
    );
    spawn_watch::<AzureIdentity>(
        Api::all(kube.clone()),
        all(),
        "identities",
        state,
        readiness,
        watch::identities,
    );
}

/// The tenant of federated identities without `tenantID`: `--tenant-id`, else azure.json's
/// `tenantId` (read best-effort; a missing file just leaves it empty).
fn agent_tenant(flag: Option<String>, cloud_config: &std::path::Path) -> String {
    if let Some(t) = flag.filter(|t| !t.trim().is_empty()) {
        return t.trim().to_string();
    }
    match podid_azure::CloudConfig::from_file(cloud_config) {
        Ok(c) => c.tenant_id.trim().to_string(),
        Err(e) => {
            tracing::debug!(path = %cloud_config.display(), error = %e, "No tenant from the cloud config");
            String::new()
        }
    }
}

async fn keep_rules(ipt: Arc<Iptables>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let ipt = ipt.clone();
        match tokio::task::spawn_blocking(move || ipt.ensure()).await {
            Ok(Ok(true)) => warn!("iptables rules were changed by someone else; restored"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => error!(error = %e, "Cannot check the iptables rules"),
            Err(e) => error!(error = %e, "iptables check panicked"),
        }
    }
}

pub use podid_runtime::shutdown_signal;
