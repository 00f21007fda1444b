//! Prometheus metrics of the agent, served on the admin port.
//!
//! Upstream's names, labels and buckets (spec §4) are kept so dashboards keep working:
//! `aadpodidentity_nmi_operations_duration_seconds`, `aadpodidentity_imds_operations_duration_seconds`
//! and `aadpodidentity_imds_operations_errors_count`, `aadpodidentity_kubernetes_api_operations_errors_count`.
//! podid adds `podid_nmi_requests` (by decision and cache outcome) and `podid_nmi_token_cache_entries`.
//! prometheus-client renders counters with a `_total` suffix (OpenMetrics), so the upstream
//! counters appear as `..._count_total`.
use std::time::Duration;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NmiLabels {
    operation_type: String,
    status_code: String,
    namespace: String,
    resource: String,
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
    pub cache_entries: Gauge,
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
        podid.register("refusals", "Refused token requests by reason", m.refusals.clone());
        m
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
                operation_type: "/metadata/identity/oauth2/token".into(),
                status_code: status.to_string(),
                namespace: namespace.into(),
                resource: resource.into(),
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

    /// Records a failed Kubernetes API call (`get_pod_list`, `get_secret`, watch errors).
    pub fn k8s_error(&self, operation: &str) {
        self.k8s_errors.get_or_create(&OperationLabels { operation_type: operation.into() }).inc();
    }
}
