//! Prometheus metrics of the agent, served on the admin port.
//!
//! Upstream's names, labels and buckets (spec §4) are kept so dashboards keep working:
//! `aadpodidentity_nmi_operations_duration_seconds`, `aadpodidentity_imds_operations_duration_seconds`
//! and `aadpodidentity_imds_operations_errors_count`, `aadpodidentity_kubernetes_api_operations_errors_count`.
//! podid adds `podid_nmi_requests` (by decision and cache outcome), the token cache's size and
//! evictions, and the listener's connections, refusals, timeouts and throttled requests.
//! prometheus-client renders counters with a `_total` suffix (OpenMetrics), so the upstream
//! counters appear as `..._count_total`.
//!
//! Every label takes values from a fixed set, never from what a caller sends: the caller-chosen
//! `resource` of upstream's `resource` label is recorded as one of [`KNOWN_RESOURCES`] or as
//! `other` (one pod with 100,000 distinct resources adds no series), `namespace` is the calling
//! pod's (from the agent's index; empty when the caller is no pod), `status_code` one of the few
//! statuses the agent sends.
use std::time::Duration;

use crate::http::limits::Refused;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const NMI_BUCKETS: [f64; 18] =
    [0.5, 1., 2., 3., 4., 5., 10., 15., 20., 25., 30., 40., 50., 60., 70., 80., 90., 100.];
const IMDS_BUCKETS: [f64; 18] =
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1., 2., 3., 4., 5., 10.];
/// podid's own latency histogram resolves the sub-millisecond cache path.
const FAST_BUCKETS: [f64; 12] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1., 10.];

/// Azure resources (audiences) recorded by name in the `resource` label, in their canonical
/// form (lower case, no trailing `/` or `/.default`); every other value is recorded as `other`.
pub const KNOWN_RESOURCES: &[&str] = &[
    "https://management.azure.com",
    "https://management.core.windows.net",
    "https://management.usgovcloudapi.net",
    "https://management.core.usgovcloudapi.net",
    "https://management.chinacloudapi.cn",
    "https://management.core.chinacloudapi.cn",
    "https://vault.azure.net",
    "https://vault.usgovcloudapi.net",
    "https://vault.azure.cn",
    "https://managedhsm.azure.net",
    "https://storage.azure.com",
    "https://graph.microsoft.com",
    "https://graph.microsoft.us",
    "https://microsoftgraph.chinacloudapi.cn",
    "https://graph.windows.net",
    "https://database.windows.net",
    "https://database.usgovcloudapi.net",
    "https://database.chinacloudapi.cn",
    "https://ossrdbms-aad.database.windows.net",
    "https://servicebus.azure.net",
    "https://eventhubs.azure.net",
    "https://eventgrid.azure.net",
    "https://monitor.azure.com",
    "https://api.loganalytics.io",
    "https://cognitiveservices.azure.com",
    "https://redis.azure.com",
    "https://dev.azuresynapse.net",
    "https://digitaltwins.azure.net",
    "https://batch.core.windows.net",
    "https://datalake.azure.net",
    "https://kusto.kusto.windows.net",
    "https://containerregistry.azure.net",
    "https://appconfig.azure.com",
    "https://search.azure.com",
    "https://cosmos.azure.com",
    "api://azureadtokenexchange",
];

/// The `resource` label for a caller-chosen resource: its canonical form if it is one of
/// [`KNOWN_RESOURCES`], else `other`.
pub fn resource_label(resource: &str) -> &'static str {
    if resource.len() > 64 {
        return "other";
    }
    let lower = resource.trim().to_ascii_lowercase();
    let canonical = lower.trim_end_matches("/.default").trim_end_matches('/');
    KNOWN_RESOURCES.iter().find(|k| **k == canonical).copied().unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NmiLabels {
    operation_type: &'static str,
    status_code: u16,
    namespace: String,
    resource: &'static str,
}

/// Why the listener closed a connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// No complete request head within `--header-timeout-sec` of the connection or of the head's
    /// first byte.
    HeaderTimeout,
    /// No request for `--idle-timeout-sec` after the last response.
    IdleTimeout,
}

/// Why the cache dropped a token before its source stopped being usable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Evicted {
    /// The source had `--token-cache-entries-per-identity` tokens.
    PerSource,
    /// The cache had `--token-cache-entries` tokens.
    Entries,
    /// The cache held `--token-cache-bytes`.
    Bytes,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation_type: String,
}

/// `reason` is one of `podid_core::refusal::Reason`'s fixed values, never a caller's.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    decision: String,
    cache: String,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    nmi_duration: Family<NmiLabels, Histogram>,
    imds_duration: Family<OperationLabels, Histogram>,
    imds_errors: Family<OperationLabels, Counter>,
    k8s_errors: Family<OperationLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    refusals: Family<RefusalLabels, Counter>,
    /// Tokens in the cache (kept by the cache itself on every change).
    pub cache_entries: Gauge,
    /// Bytes the cache accounts for its tokens and keys.
    pub cache_bytes: Gauge,
    evictions: Family<ReasonLabels, Counter>,
    /// Open connections to the token service.
    pub connections: Gauge,
    refused: Family<ReasonLabels, Counter>,
    closed: Family<ReasonLabels, Counter>,
    /// Requests answered 429 by the per-source rate limit.
    pub throttled: Counter,
    verifications: Family<ReasonLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            nmi_duration: Family::new_with_constructor(|| Histogram::new(NMI_BUCKETS)),
            imds_duration: Family::new_with_constructor(|| Histogram::new(IMDS_BUCKETS)),
            imds_errors: Family::default(),
            k8s_errors: Family::default(),
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(FAST_BUCKETS)),
            refusals: Family::default(),
            cache_entries: Gauge::default(),
            cache_bytes: Gauge::default(),
            evictions: Family::default(),
            connections: Gauge::default(),
            refused: Family::default(),
            closed: Family::default(),
            throttled: Counter::default(),
            verifications: Family::default(),
        };
        let aad = registry.sub_registry_with_prefix("aadpodidentity");
        aad.register(
            "nmi_operations_duration_seconds",
            "Token request handling time",
            m.nmi_duration.clone(),
        );
        aad.register("imds_operations_duration_seconds", "Upstream token call time", m.imds_duration.clone());
        aad.register("imds_operations_errors_count", "Failed upstream token calls", m.imds_errors.clone());
        aad.register(
            "kubernetes_api_operations_errors_count",
            "Failed Kubernetes API calls",
            m.k8s_errors.clone(),
        );
        let podid = registry.sub_registry_with_prefix("podid_nmi");
        podid.register("requests", "Token requests by decision and cache outcome", m.requests.clone());
        podid.register(
            "request_latency_seconds",
            "Token request latency by decision and cache outcome",
            m.latency.clone(),
        );
        podid.register("token_cache_entries", "Tokens in the cache", m.cache_entries.clone());
        podid.register(
            "token_cache_bytes",
            "Bytes held by cached tokens and their keys",
            m.cache_bytes.clone(),
        );
        podid.register(
            "token_cache_evictions",
            "Tokens dropped to keep the cache within its bounds, by bound",
            m.evictions.clone(),
        );
        podid.register("connections", "Open connections to the token service", m.connections.clone());
        podid.register(
            "connections_refused",
            "Connections refused: per_source (answered 429) or global (closed at once)",
            m.refused.clone(),
        );
        podid.register(
            "connections_closed",
            "Connections closed by the agent: header_timeout or idle_timeout",
            m.closed.clone(),
        );
        podid.register(
            "requests_throttled",
            "Requests answered 429 by the per-source rate limit",
            m.throttled.clone(),
        );
        podid.register("refusals", "Refused token requests by reason", m.refusals.clone());
        podid.register(
            "caller_verifications",
            "Connections checked against the kernel (--verified-callers), by outcome: pod_network, \
             node_network_pod, node_process, not_in_pod, no_process or error",
            m.verifications.clone(),
        );
        m
    }

    /// Counts one connection checked against the kernel (`outcome`: a fixed word).
    pub fn verification(&self, outcome: &'static str) {
        self.verifications.get_or_create(&ReasonLabels { reason: outcome }).inc();
    }

    /// Records one token request (the audit record's metric side).
    pub fn request(
        &self,
        status: u16,
        namespace: &str,
        resource: &str,
        decision: &str,
        cache: &str,
        took: Duration,
    ) {
        let secs = took.as_secs_f64();
        self.nmi_duration
            .get_or_create(&NmiLabels {
                operation_type: "/metadata/identity/oauth2/token",
                status_code: status,
                namespace: namespace.into(),
                resource: resource_label(resource),
            })
            .observe(secs);
        let labels = RequestLabels { decision: decision.into(), cache: cache.into() };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(secs);
    }

    /// Counts one refusal (`reason`: a `Reason::as_str` value).
    pub fn refusal(&self, reason: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { reason }).inc();
    }

    /// Records one upstream token call.
    pub fn upstream(&self, operation: &str, took: Duration, ok: bool) {
        let labels = OperationLabels { operation_type: operation.into() };
        self.imds_duration.get_or_create(&labels).observe(took.as_secs_f64());
        if !ok {
            self.imds_errors.get_or_create(&labels).inc();
        }
    }

    /// Records a connection the listener would not serve.
    pub fn connection_refused(&self, why: Refused) {
        let reason = match why {
            Refused::PerSource => "per_source",
            Refused::Global => "global",
        };
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records a connection the listener closed for a timeout.
    pub fn connection_closed(&self, why: Closed) {
        let reason = match why {
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
        };
        self.closed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Records tokens the cache dropped to stay within a bound.
    pub fn evicted(&self, why: Evicted, n: u64) {
        let reason = match why {
            Evicted::PerSource => "per_identity",
            Evicted::Entries => "entries",
            Evicted::Bytes => "bytes",
        };
        self.evictions.get_or_create(&ReasonLabels { reason }).inc_by(n);
    }

    /// Records a failed Kubernetes API call (`get_pod_list`, `get_secret`, watch errors).
    pub fn k8s_error(&self, operation: &str) {
        self.k8s_errors.get_or_create(&OperationLabels { operation_type: operation.into() }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_resources_keep_their_name_everything_else_is_other() {
        assert_eq!(resource_label("https://vault.azure.net"), "https://vault.azure.net");
        assert_eq!(resource_label("https://vault.azure.net/"), "https://vault.azure.net");
        assert_eq!(resource_label("https://Management.Azure.com/.default"), "https://management.azure.com");
        assert_eq!(resource_label("api://AzureADTokenExchange"), "api://azureadtokenexchange");
        assert_eq!(resource_label("https://attacker-1.example"), "other");
        assert_eq!(resource_label(&"x".repeat(8192)), "other");
        assert_eq!(resource_label(""), "other");
    }

    #[test]
    fn ten_thousand_distinct_resources_add_no_series() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        let text = |r: &Registry| {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, r).unwrap();
            s
        };
        m.request(200, "app", "https://vault.azure.net", "token", "hit", Duration::from_millis(1));
        m.request(404, "app", "https://r-0.example", "refused", "none", Duration::from_millis(1));
        let before = text(&registry);
        for i in 0..10_000 {
            let resource = format!("https://r-{i}.example/{}", "p".repeat(i % 100));
            m.request(404, "app", &resource, "refused", "none", Duration::from_millis(1));
        }
        let after = text(&registry);
        assert_eq!(after.lines().count(), before.lines().count(), "no new series: {after}");
        assert!(after.len() < before.len() + 512, "only counts and sums grew");
        assert!(!after.contains("r-1.example"));
    }
}
