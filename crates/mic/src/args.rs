//! Command-line flags: upstream MIC's names and defaults (spec §2.1), plus podid's own.
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use podid_runtime::LogFormat;

/// podid controller: assigns the identities bound to pods to their nodes' scale sets and VMs.
#[derive(Debug, Parser)]
#[command(name = "podid-mic", version)]
pub struct Args {
    /// Path to a kubeconfig; in-cluster configuration (or KUBECONFIG) when empty.
    #[arg(long = "kubeconfig", default_value = "")]
    pub kubeconfig: String,
    /// Path to azure.json; when empty, the environment (CLOUD, TENANT_ID, CLIENT_ID, ...) is used.
    #[arg(long = "cloudconfig", default_value = "")]
    pub cloudconfig: String,
    /// Require pod, binding and identity to share a namespace; assigned identities then live in
    /// the identity's namespace.
    #[arg(long = "forceNamespaced", env = "FORCENAMESPACED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub force_namespaced: bool,
    /// Release a pod's identities as soon as it is deleted (deletionTimestamp set), as upstream
    /// did, instead of when its containers have stopped (phase Succeeded/Failed, or pod gone).
    #[arg(long = "release-terminating-pods", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub release_terminating_pods: bool,
    /// Namespace of the controller (required, from the downward API).
    #[arg(long = "mic-namespace", env = "MIC_POD_NAMESPACE", hide = true)]
    pub mic_namespace: Option<String>,
    /// Accepted for upstream compatibility: podid is event-driven; see --identity-assignment-reconcile-interval.
    #[arg(long = "syncRetryDuration", default_value = "1h", value_parser = parse_duration)]
    pub sync_retry_duration: Duration,
    /// Identity of this replica in the leader election (default: the host name).
    #[arg(long = "leader-election-instance", default_value = "")]
    pub leader_election_instance: String,
    /// Namespace of the leader-election Lease.
    #[arg(long = "leader-election-namespace", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long = "leader-election-name", default_value = "aad-pod-identity-mic")]
    pub leader_election_name: String,
    /// Lease duration; a dead leader is replaced within it.
    #[arg(long = "leader-election-duration", default_value = "15s", value_parser = parse_duration)]
    pub leader_election_duration: Duration,
    /// Port of `/healthz` (`Active` on the leader), `/readyz` and `/metrics`.
    #[arg(long = "http-probe-port", default_value_t = 8080)]
    pub probe_port: u16,
    /// Port of `/metrics`.
    #[arg(long = "prometheus-port", default_value_t = 8888)]
    pub prometheus_port: u16,
    /// Comma-separated client ids of identities never removed from scale sets and VMs.
    #[arg(long = "immutable-user-msis", default_value = "")]
    pub immutable_user_msis: String,
    /// Safety net: read every scale set or VM with needed identities this often and re-add what was
    /// removed behind podid's back. Drift of an identity in use is found sooner without it: the
    /// agents report IMDS refusing it. `0` turns it off. Upstream's default was 3m.
    #[arg(long = "identity-assignment-reconcile-interval", default_value = "1h", value_parser = parse_duration)]
    pub reconcile_interval: Duration,
    /// Retries of an identity update after dropping identities ARM refused.
    #[arg(long = "update-user-msi-max-retry", default_value_t = 2)]
    pub update_user_msi_max_retry: u32,
    /// Accepted for upstream compatibility (podid backs off with jitter instead).
    #[arg(long = "update-user-msi-retry-interval", default_value = "1s", value_parser = parse_duration)]
    pub update_user_msi_retry_interval: Duration,
    /// `text` or `json`.
    #[arg(long = "log-format", default_value = "text")]
    pub log_format: LogFormat,
    /// Appended to the User-Agent of every outbound call.
    #[arg(long = "custom-user-agent", default_value = "")]
    pub custom_user_agent: String,
    /// After acting on a change, how long to gather further changes before acting again (a change
    /// after a quiet spell is acted on at once).
    #[arg(long = "batch-window", default_value = "100ms", value_parser = parse_duration)]
    pub batch_window: Duration,
    /// First back-off after a failed scale set update or a refused identity (doubles up to 5 min).
    #[arg(long = "retry-backoff", default_value = "5s", value_parser = parse_duration)]
    pub retry_backoff: Duration,
    /// Only these namespaces' pods, identities and bindings (repeatable; default all).
    #[arg(long = "watch-namespace")]
    pub watch_namespaces: Vec<String>,
    /// ARM endpoint override (e.g. an emulator's).
    #[arg(long = "arm-endpoint", env = "PODID_ARM_ENDPOINT")]
    pub arm_endpoint: Option<url::Url>,
    /// Entra ID authority override (e.g. an emulator's).
    #[arg(long = "aad-authority", env = "PODID_AAD_AUTHORITY")]
    pub aad_authority: Option<url::Url>,
    /// Extra CA certificates (PEM) trusted for ARM and Entra ID.
    #[arg(long = "trusted-ca-file", env = "PODID_TRUSTED_CA_FILE")]
    pub trusted_ca_files: Vec<PathBuf>,
    /// Seconds between polls of a long-running ARM operation without Retry-After.
    #[arg(long = "arm-poll-interval", default_value = "5s", value_parser = parse_duration)]
    pub arm_poll_interval: Duration,
    /// Accepted for upstream compatibility (no-op).
    #[arg(long = "enableScaleFeatures", hide = true, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_scale_features: bool,
    /// Accepted for upstream compatibility (no pprof listener is opened).
    #[arg(long = "enableProfile", hide = true, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_profile: bool,
    /// Runtime threads. `1` (the default) runs everything on one thread: the controller waits on
    /// the API server and ARM rather than computing, and each extra thread costs arena memory
    /// (29–37 MiB more RSS at 2,000 pods with 2 threads, measured). Raise it only if profiles show the
    /// thread saturated.
    #[arg(long = "worker-threads", env = "MIC_WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,
    /// Kubernetes writes in flight at once for one scale set or VM.
    #[arg(long = "createDeleteBatch", default_value_t = 20)]
    pub create_delete_batch: u32,
    /// Accepted for upstream compatibility (no-op).
    #[arg(long = "clientQps", hide = true, default_value_t = 5.0)]
    pub client_qps: f64,
    /// Accepted for upstream compatibility: podid does no type upgrade.
    #[arg(long = "enable-type-upgrade", hide = true, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub enable_type_upgrade: bool,
    /// Accepted for upstream compatibility (no-op).
    #[arg(long = "config-map-name", hide = true, default_value = "aad-pod-identity-config")]
    pub config_map_name: String,
    /// Accepted for upstream compatibility (no-op).
    #[arg(long = "type-upgrade-status-key", hide = true, default_value = "type-upgrade-status")]
    pub type_upgrade_status_key: String,
    /// Accepted for upstream compatibility (klog); use RUST_LOG for verbosity.
    #[arg(long = "logtostderr", hide = true, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub logtostderr: bool,
    /// Accepted for upstream compatibility (klog verbosity); use RUST_LOG.
    #[arg(long = "v", hide = true, default_value_t = 0)]
    pub verbosity: u8,
}

impl Args {
    /// The drift-check interval, `None` when off.
    pub fn drift_interval(&self) -> Option<Duration> {
        (!self.reconcile_interval.is_zero()).then_some(self.reconcile_interval)
    }

    /// Immutable client ids, lower-cased.
    pub fn immutable(&self) -> Vec<String> {
        self.immutable_user_msis
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// Go-style durations: `1h0m0s`, `15s`, `100ms`, `2m30s`, `0`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|e| e.to_string());
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, tail) = rest.split_at(n);
        let u = tail.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u);
        let value: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let scale = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(format!("invalid duration {s:?}: unknown unit {unit:?}")),
        };
        total += Duration::try_from_secs_f64(value * scale).map_err(|e| e.to_string())?;
        rest = next;
    }
    Ok(total)
}

pub use podid_runtime::go_style;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(args: &[&str]) -> Args {
        Args::try_parse_from(go_style(args.iter().map(|s| s.to_string()))).unwrap()
    }

    #[test]
    fn upstream_manifest_flags_parse() {
        let a = parse(&[
            "podid-mic",
            "--cloudconfig=/etc/kubernetes/azure.json",
            "--logtostderr",
            "--http-probe-port=8085",
            "--immutable-user-msis=AAA,bbb",
            "-syncRetryDuration=1h0m0s",
            "-forceNamespaced",
            "--identity-assignment-reconcile-interval=0",
        ]);
        assert_eq!(a.cloudconfig, "/etc/kubernetes/azure.json");
        assert_eq!((a.probe_port, a.force_namespaced), (8085, true));
        assert_eq!(a.immutable(), vec!["aaa", "bbb"]);
        assert_eq!(a.sync_retry_duration, Duration::from_secs(3600));
        assert_eq!(a.drift_interval(), None);
    }

    #[test]
    fn defaults_match_upstream_except_the_drift_safety_net() {
        let a = parse(&["podid-mic"]);
        assert_eq!((a.probe_port, a.prometheus_port), (8080, 8888));
        assert_eq!(a.leader_election_duration, Duration::from_secs(15));
        assert_eq!(a.drift_interval(), Some(Duration::from_secs(3600)), "a slow safety net (upstream: 3m)");
        assert_eq!(
            (a.leader_election_namespace.as_str(), a.leader_election_name.as_str()),
            ("default", "aad-pod-identity-mic")
        );
    }

    #[test]
    fn one_runtime_thread_by_default_and_zero_threads_is_refused() {
        assert_eq!(parse(&["podid-mic"]).worker_threads, 1);
        assert_eq!(parse(&["podid-mic", "--worker-threads=4"]).worker_threads, 4);
        let err = Args::try_parse_from(["podid-mic", "--worker-threads", "0"]).unwrap_err().to_string();
        assert!(err.contains("--worker-threads") && err.contains("1..=256"), "{err}");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("2m30s").unwrap(), Duration::from_secs(150));
        assert_eq!(parse_duration("150ms").unwrap(), Duration::from_millis(150));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("5 parsecs").is_err());
    }
}
