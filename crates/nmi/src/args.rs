//! Command-line flags: upstream NMI's names and defaults (spec §3.1), plus podid's own.
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use clap::Parser;

pub use podid_runtime::LogFormat;

use crate::state::Mode;

/// podid node agent: answers pods' instance-metadata token requests for the identities bound to them.
#[derive(Debug, Parser)]
#[command(name = "podid-nmi", version)]
pub struct Args {
    /// Name of this node (the manifests pass `$(NODE_NAME)` from `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node: String,
    /// Address the token service listens on.
    #[arg(long = "nmi-listen-address", default_value = "127.0.0.1")]
    pub listen_address: IpAddr,
    /// Port the token service listens on (the iptables rule DNATs to 127.0.0.1 on this port).
    #[arg(long = "nmi-port", default_value_t = 2579)]
    pub port: u16,
    /// Intercepted destination address: pods' TCP traffic to it is redirected to the agent. Also
    /// where IMDS is, unless `--imds-endpoint` says otherwise.
    #[arg(long = "metadata-ip", default_value = "169.254.169.254")]
    pub metadata_ip: Ipv4Addr,
    /// Intercepted destination port (and IMDS's, unless `--imds-endpoint` says otherwise).
    #[arg(long = "metadata-port", default_value_t = 80)]
    pub metadata_port: u16,
    /// IMDS base URL (`http://host:port`): where the agent fetches tokens and forwards other
    /// metadata calls (the agent runs on the host network, so its own calls are not
    /// intercepted). Default: `http://<metadata-ip>:<metadata-port>`.
    #[arg(long = "imds-endpoint", env = "PODID_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<url::Url>,
    /// Where intercepted traffic is DNATed to: `auto` (this node's own address towards the
    /// metadata IP, as the kernel's route lookup picks it; the agent also listens there, for this
    /// node's pods only), `loopback` (upstream's 127.0.0.1, which the kernel only routes with
    /// `route_localnet=1` on the pods' interfaces, as kube-proxy in iptables mode sets it), or a
    /// node address such as `$(HOST_IP)`.
    #[arg(long = "dnat-address", env = "PODID_DNAT_ADDRESS", default_value = "auto")]
    pub dnat_address: DnatAddress,
    /// Seconds between checks that the iptables rules are intact.
    #[arg(long = "ipt-update-interval-sec", default_value_t = 60)]
    pub ipt_update_interval_sec: u64,
    /// Require pod, binding and identity to share a namespace.
    #[arg(long = "forceNamespaced", env = "FORCENAMESPACED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub force_namespaced: bool,
    /// Namespace whose `mic-*` ReplicaSet pods (the controller) reach IMDS directly.
    #[arg(long = "MICNamespace", default_value = "default")]
    pub mic_namespace: String,
    /// Port of `/healthz` and `/readyz` (and `/metrics`).
    #[arg(long = "http-probe-port", default_value_t = 8080)]
    pub probe_port: u16,
    /// Port of `/metrics`.
    #[arg(long = "prometheus-port", default_value_t = 9090)]
    pub prometheus_port: u16,
    /// Standard mode: checks while an assigned identity is still to be created (with the interval,
    /// how long a request waits for the controller).
    #[arg(long = "retry-attempts-for-created", default_value_t = 16)]
    pub retry_attempts_for_created: u32,
    /// Standard mode: further checks while an assigned identity is `Created`.
    #[arg(long = "retry-attempts-for-assigned", default_value_t = 4)]
    pub retry_attempts_for_assigned: u32,
    /// Seconds per check (podid is woken by changes; this only sets the total wait).
    #[arg(long = "find-identity-retry-interval", default_value_t = 5)]
    pub find_identity_retry_interval: u64,
    /// Answer `/metadata/instance` with 403.
    #[arg(long = "block-instance-metadata", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub block_instance_metadata: bool,
    /// Require `Metadata: true` on every request.
    #[arg(long = "metadata-header-required", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metadata_header_required: bool,
    /// `standard` (assigned identities), `managed` (bindings only; implies namespaced) or
    /// `federated` (bindings only; every user-assigned identity through workload identity
    /// federation, no controller).
    #[arg(long = "operation-mode", value_enum, default_value = "standard", ignore_case = true)]
    pub operation_mode: Mode,
    /// Start even if the kubelet uses kubenet (see the NET_RAW mitigation in the docs).
    #[arg(long = "allow-network-plugin-kubenet", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub allow_network_plugin_kubenet: bool,
    /// File scanned for `--network-plugin=kubenet`.
    #[arg(long = "kubelet-config", default_value = "/etc/default/kubelet")]
    pub kubelet_config: PathBuf,
    /// Answer "no identity yet" with 503 + `Retry-After: 20` instead of 404.
    #[arg(long = "set-retry-after-header", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub set_retry_after_header: bool,
    /// Status for "no identity for this pod": `400` (as real IMDS answers an unknown identity,
    /// with its JSON error; SDKs fail at once, Python's and Node's showing podid's reason) or
    /// `404` (upstream's; SDKs retry it for 20 s to over a minute). See docs/agent.md.
    #[arg(long = "identity-not-found-status", default_value_t = 400, value_parser = not_found_status)]
    pub identity_not_found_status: u16,
    /// Release a pod's identities as soon as it is deleted (deletionTimestamp set), as upstream
    /// did, instead of when its containers have stopped.
    #[arg(long = "release-terminating-pods", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub release_terminating_pods: bool,
    /// Delete conntrack entries of existing IMDS connections when installing the rules.
    #[arg(long = "enable-conntrack-deletion", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_conntrack_deletion: bool,
    /// Manage the iptables interception (off for runs without NET_ADMIN, e.g. local tests).
    #[arg(long = "iptables", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub iptables: bool,
    /// Remove the iptables rules on exit (only for uninstalling: while the agent is down, pods
    /// would then reach the real IMDS).
    #[arg(long = "cleanup-iptables-on-exit", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cleanup_iptables_on_exit: bool,
    /// Serve `/host/token` (a root process on the node asking for a pod's token by name, e.g. a
    /// CSI driver). Only connections from 127.0.0.1 whose socket belongs to uid 0 are served.
    #[arg(long = "host-token", env = "PODID_HOST_TOKEN", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub host_token: bool,
    /// Confirm every caller through the kernel instead of trusting its source address: a pod's
    /// connection must come from that pod's own network namespace, and calls from the node's own
    /// network (hostNetwork pods, node processes) are redirected to the agent too and attributed
    /// by the calling process's cgroup. Fails closed. Needs the host's PID namespace and
    /// CAP_SYS_PTRACE (`podid install --verified-callers`); docs/security.md.
    #[arg(long = "verified-callers", env = "PODID_VERIFIED_CALLERS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub verified_callers: bool,
    /// The host's `/proc` (the agent runs in the host's PID namespace with --verified-callers).
    #[arg(long = "proc-root", env = "PODID_PROC_ROOT", default_value = "/proc")]
    pub proc_root: PathBuf,
    /// With --verified-callers: cgroup v2 paths (as in `/proc/<pid>/cgroup`'s `0::` line) of node
    /// components whose calls to the metadata address go straight to IMDS, e.g.
    /// `/system.slice/kubelet.service`. Comma-separated or repeated.
    #[arg(long = "node-caller-exception-cgroup", env = "PODID_NODE_CALLER_EXCEPTION_CGROUPS", value_delimiter = ',', value_parser = podid_core::cgroup::check_path)]
    pub node_caller_exception_cgroups: Vec<String>,
    /// Seconds a connection has to send a complete request head, counted from the connection or
    /// from the head's first byte.
    #[arg(long = "header-timeout-sec", env = "PODID_HEADER_TIMEOUT_SEC", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout_sec: u64,
    /// Seconds a keep-alive connection may sit without a request before it is closed.
    #[arg(long = "idle-timeout-sec", env = "PODID_IDLE_TIMEOUT_SEC", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_sec: u64,
    /// Open connections per source address (pod); more are answered 429 and closed.
    #[arg(long = "max-connections-per-source", env = "PODID_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_source: u64,
    /// Open connections in all; more are closed at once. 0: half the file descriptors the
    /// process may open, less 256, at most 8192. Never more than the fd limit less 256.
    #[arg(long = "max-connections", env = "PODID_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: u64,
    /// Requests per second per source address (pod); more are answered 429 with `Retry-After`.
    /// 0: unlimited.
    #[arg(
        long = "max-requests-per-second-per-source",
        env = "PODID_MAX_REQUESTS_PER_SECOND_PER_SOURCE",
        default_value_t = 100
    )]
    pub max_requests_per_second_per_source: u32,
    /// Requests a source may send at once before the per-second rate applies.
    #[arg(long = "request-burst-per-source", env = "PODID_REQUEST_BURST_PER_SOURCE", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub request_burst_per_source: u32,
    /// Tokens the cache holds in all (least recently used evicted first).
    #[arg(long = "token-cache-entries", env = "PODID_TOKEN_CACHE_ENTRIES", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_cache_entries: u64,
    /// Tokens the cache holds per identity (one identity's resources evict each other, never
    /// another identity's tokens).
    #[arg(long = "token-cache-entries-per-identity", env = "PODID_TOKEN_CACHE_ENTRIES_PER_IDENTITY", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub token_cache_entries_per_identity: u64,
    /// Bytes of tokens and keys the cache holds in all.
    #[arg(long = "token-cache-bytes", env = "PODID_TOKEN_CACHE_BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(65536..))]
    pub token_cache_bytes: u64,
    /// Entra ID authority used for service principals whose identity sets no `adEndpoint`.
    #[arg(
        long = "aad-authority",
        env = "PODID_AAD_AUTHORITY",
        default_value = "https://login.microsoftonline.com/"
    )]
    pub aad_authority: String,
    /// Entra tenant of federated identities whose `tenantID` is empty (else azure.json's `tenantId`).
    #[arg(long = "tenant-id", env = "AZURE_TENANT_ID")]
    pub tenant_id: Option<String>,
    /// Cloud config (azure.json) read for the tenant when `--tenant-id` is not given.
    #[arg(long = "cloud-config", env = "AZURE_CLOUD_CONFIG", default_value = "/etc/kubernetes/azure.json")]
    pub cloud_config: PathBuf,
    /// Extra CA certificates (PEM) trusted for Entra ID, e.g. an emulator's.
    #[arg(long = "trusted-ca-file", env = "PODID_TRUSTED_CA_FILE")]
    pub trusted_ca_files: Vec<PathBuf>,
    /// Seconds of life a cached token must have left to be served.
    #[arg(long = "token-min-remaining-sec", default_value_t = 300)]
    pub token_min_remaining_sec: u64,
    /// Seconds in-flight requests get to finish on shutdown.
    #[arg(long = "shutdown-grace-sec", default_value_t = 10)]
    pub shutdown_grace_sec: u64,
    /// `text` or `json`.
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: LogFormat,
    /// Appended to the User-Agent of every outbound call.
    #[arg(long = "custom-user-agent", default_value = "")]
    pub custom_user_agent: String,
    /// Accepted for upstream compatibility: the agent always watches only this node's objects.
    #[arg(long = "enableScaleFeatures", hide = true, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_scale_features: bool,
    /// Accepted for upstream compatibility (no pprof listener is opened).
    #[arg(long = "enableProfile", hide = true, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_profile: bool,
    /// Accepted for upstream compatibility (klog); use RUST_LOG for verbosity.
    #[arg(long = "logtostderr", hide = true, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub logtostderr: bool,
    /// Accepted for upstream compatibility (klog verbosity); use RUST_LOG.
    #[arg(long = "v", hide = true, default_value_t = 0)]
    pub verbosity: u8,
}

/// Where intercepted traffic is DNATed to (`--dnat-address`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnatAddress {
    /// This node's address towards the metadata IP.
    Auto,
    /// 127.0.0.1 (upstream's rule; needs `route_localnet`).
    Loopback,
    /// This address (one of the node's own).
    Address(Ipv4Addr),
}

impl std::str::FromStr for DnatAddress {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "loopback" | "127.0.0.1" => Ok(Self::Loopback),
            other => match other.parse::<Ipv4Addr>() {
                Ok(ip) if ip.is_loopback() => Ok(Self::Loopback),
                Ok(ip) if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() => {
                    Err(format!("{ip} is not a node address"))
                }
                Ok(ip) => Ok(Self::Address(ip)),
                Err(_) => Err(format!("{other:?} is not `auto`, `loopback` or an IPv4 address")),
            },
        }
    }
}

impl Args {
    /// Where IMDS is, for tokens and forwarded calls alike: `--imds-endpoint`, else
    /// `http://<metadata-ip>:<metadata-port>`.
    pub fn imds_base(&self) -> Result<url::Url, url::ParseError> {
        match &self.imds_endpoint {
            Some(u) => Ok(u.clone()),
            None => url::Url::parse(&format!("http://{}:{}/", self.metadata_ip, self.metadata_port)),
        }
    }
}

fn not_found_status(s: &str) -> Result<u16, String> {
    match s {
        "404" => Ok(404),
        "400" => Ok(400),
        other => Err(format!("{other:?} is not 404 or 400")),
    }
}

pub use podid_runtime::go_style;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(go_style(args.iter().map(|s| s.to_string()))).unwrap()
    }

    #[test]
    fn upstream_manifest_flags_parse() {
        let a = parse(&[
            "podid-nmi",
            "--node=aks-0",
            "--http-probe-port=8085",
            "--enableScaleFeatures=true",
            "--metadata-header-required=true",
            "--operation-mode=managed",
            "--forceNamespaced",
        ]);
        assert_eq!(
            (a.node.as_str(), a.probe_port, a.operation_mode, a.force_namespaced),
            ("aks-0", 8085, Mode::Managed, true)
        );
    }

    #[test]
    fn single_dash_go_flags_are_accepted() {
        let a = parse(&["podid-nmi", "-node", "n1", "-nmi-port=3000"]);
        assert_eq!((a.node.as_str(), a.port), ("n1", 3000));
    }

    #[test]
    fn defaults_match_upstream() {
        let a = parse(&["podid-nmi", "--node", "n"]);
        assert_eq!((a.port, a.probe_port, a.prometheus_port, a.metadata_port), (2579, 8080, 9090, 80));
        assert_eq!(
            (a.retry_attempts_for_created, a.retry_attempts_for_assigned, a.find_identity_retry_interval),
            (16, 4, 5)
        );
        assert!(a.metadata_header_required && !a.block_instance_metadata && !a.set_retry_after_header);
    }

    #[test]
    fn one_source_of_truth_for_where_imds_is() {
        let a = parse(&["podid-nmi", "--node", "n"]);
        assert_eq!(a.imds_base().unwrap().as_str(), "http://169.254.169.254/");
        let a = parse(&["podid-nmi", "--node", "n", "--metadata-ip", "127.0.0.1", "--metadata-port", "8080"]);
        assert_eq!(a.imds_base().unwrap().as_str(), "http://127.0.0.1:8080/");
        let a = parse(&[
            "podid-nmi",
            "--node",
            "n",
            "--metadata-ip",
            "10.0.0.1",
            "--imds-endpoint",
            "http://127.0.0.1:9/",
        ]);
        assert_eq!(a.imds_base().unwrap().as_str(), "http://127.0.0.1:9/", "--imds-endpoint wins");
    }

    #[test]
    fn bounds_have_documented_defaults_and_host_token_is_off() {
        let a = parse(&["podid-nmi", "--node", "n"]);
        assert!(!a.host_token);
        assert_eq!((a.header_timeout_sec, a.idle_timeout_sec), (10, 60));
        assert_eq!((a.max_connections_per_source, a.max_connections), (64, 0));
        assert_eq!((a.max_requests_per_second_per_source, a.request_burst_per_source), (100, 200));
        assert_eq!(
            (a.token_cache_entries, a.token_cache_entries_per_identity, a.token_cache_bytes),
            (1024, 64, 4 * 1024 * 1024)
        );
        assert_eq!(a.dnat_address, DnatAddress::Auto);
        assert!(Args::try_parse_from(["podid-nmi", "--node", "n", "--header-timeout-sec", "0"]).is_err());
    }

    #[test]
    fn dnat_address_spellings() {
        let p = |s: &str| s.parse::<DnatAddress>();
        assert_eq!(p("auto"), Ok(DnatAddress::Auto));
        assert_eq!(p("loopback"), Ok(DnatAddress::Loopback));
        assert_eq!(p("127.0.0.1"), Ok(DnatAddress::Loopback));
        assert_eq!(p("10.224.0.4"), Ok(DnatAddress::Address(Ipv4Addr::new(10, 224, 0, 4))));
        assert!(p("0.0.0.0").is_err() && p("node").is_err());
    }
}
