//! Prometheus metrics of the controller, served on the admin ports.
//!
//! Upstream's names, labels and buckets (spec §4): `aadpodidentity_assigned_identity_{addition,
//! deletion,update}_{duration_seconds,count}`, `aadpodidentity_mic_cycle_{duration_seconds,count}`,
//! `aadpodidentity_mic_new_leader_election_count`, `aadpodidentity_cloud_provider_operations_
//! {duration_seconds,errors_count}` and `aadpodidentity_kubernetes_api_operations_errors_count`.
//! prometheus-client renders counters with a `_total` suffix (OpenMetrics).
//! podid adds `podid_mic_arm_calls` (by operation and result), `podid_mic_assignment_latency_seconds`
//! (pod seen scheduled and live → `Assigned`), `podid_mic_queue_depth` (units with work waiting),
//! `podid_mic_drift_reports` (agents' reports of IMDS refusing an `Assigned` identity that queued a
//! re-check) and `podid_mic_rechecks` (re-checks started).
use std::time::Duration;

use podid_azure::arm::CallRecord;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

const K8S_BUCKETS: [f64; 18] =
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1., 2., 3., 4., 5., 10.];
const CYCLE_BUCKETS: [f64; 11] = [0.5, 1., 5., 10., 30., 60., 120., 300., 600., 900., 1200.];
const LATENCY_BUCKETS: [f64; 14] = [0.05, 0.1, 0.2, 0.5, 1., 2., 5., 10., 20., 30., 60., 120., 300., 600.];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ArmLabels {
    operation: String,
    result: String,
}

/// The controller's metrics.
#[derive(Debug)]
pub struct Metrics {
    k8s_duration: Family<OperationLabels, Histogram>,
    k8s_count: Family<OperationLabels, Counter>,
    k8s_errors: Family<OperationLabels, Counter>,
    cycle_duration: Histogram,
    cycles: Counter,
    pub leader_elections: Counter,
    cloud_duration: Family<OperationLabels, Histogram>,
    cloud_errors: Family<OperationLabels, Counter>,
    arm_calls: Family<ArmLabels, Counter>,
    assignment_latency: Histogram,
    pub queue_depth: Gauge,
    pub drift_reports: Counter,
    pub rechecks: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            k8s_duration: Family::new_with_constructor(|| Histogram::new(K8S_BUCKETS)),
            k8s_count: Family::default(),
            k8s_errors: Family::default(),
            cycle_duration: Histogram::new(CYCLE_BUCKETS),
            cycles: Counter::default(),
            leader_elections: Counter::default(),
            cloud_duration: Family::new_with_constructor(|| Histogram::new(CYCLE_BUCKETS)),
            cloud_errors: Family::default(),
            arm_calls: Family::default(),
            assignment_latency: Histogram::new(LATENCY_BUCKETS),
            queue_depth: Gauge::default(),
            drift_reports: Counter::default(),
            rechecks: Counter::default(),
        };
        let aad = registry.sub_registry_with_prefix("aadpodidentity");
        for op in ["addition", "deletion", "update"] {
            let labels = OperationLabels { operation_type: op.into() };
            aad.register(
                format!("assigned_identity_{op}_duration_seconds"),
                format!("Time of an assigned identity {op}"),
                m.k8s_duration.get_or_create(&labels).clone(),
            );
            aad.register(
                format!("assigned_identity_{op}_count"),
                format!("Assigned identity {op}s"),
                m.k8s_count.get_or_create(&labels).clone(),
            );
        }
        aad.register(
            "mic_cycle_duration_seconds",
            "Time of reconcile passes that did work",
            m.cycle_duration.clone(),
        );
        aad.register("mic_cycle_count", "Reconcile passes that did work", m.cycles.clone());
        aad.register("mic_new_leader_election_count", "Leadership acquisitions", m.leader_elections.clone());
        aad.register(
            "cloud_provider_operations_duration_seconds",
            "Time of ARM calls",
            m.cloud_duration.clone(),
        );
        aad.register("cloud_provider_operations_errors_count", "Failed ARM calls", m.cloud_errors.clone());
        aad.register(
            "kubernetes_api_operations_errors_count",
            "Failed Kubernetes API calls",
            m.k8s_errors.clone(),
        );
        let podid = registry.sub_registry_with_prefix("podid_mic");
        podid.register("arm_calls", "ARM calls by operation and result", m.arm_calls.clone());
        podid.register(
            "assignment_latency_seconds",
            "From a pod seen scheduled and live to its assigned identity Assigned",
            m.assignment_latency.clone(),
        );
        podid.register("queue_depth", "Units with work waiting or in progress", m.queue_depth.clone());
        podid.register(
            "drift_reports",
            "Agents' reports of IMDS refusing an Assigned identity that queued a re-check",
            m.drift_reports.clone(),
        );
        podid.register(
            "rechecks",
            "Re-checks of a scale set or VM agents asked for, started",
            m.rechecks.clone(),
        );
        m
    }

    /// A Kubernetes write of an assigned identity (`addition`, `deletion`, `update`).
    pub fn k8s_op(&self, op: &str, took: Duration) {
        let labels = OperationLabels { operation_type: op.into() };
        self.k8s_duration.get_or_create(&labels).observe(took.as_secs_f64());
        self.k8s_count.get_or_create(&labels).inc();
    }

    /// A failed Kubernetes call, by upstream's operation names.
    pub fn k8s_error(&self, op: &str) {
        self.k8s_errors.get_or_create(&OperationLabels { operation_type: op.into() }).inc();
    }

    /// A reconcile pass that did work.
    pub fn cycle(&self, took: Duration) {
        self.cycle_duration.observe(took.as_secs_f64());
        self.cycles.inc();
    }

    /// One finished ARM call (the ARM client's observer).
    pub fn arm(&self, record: &CallRecord<'_>) {
        let op = record.operation.as_str().to_string();
        let labels = OperationLabels { operation_type: op.clone() };
        self.cloud_duration.get_or_create(&labels).observe(record.duration.as_secs_f64());
        if record.error.is_some() {
            self.cloud_errors.get_or_create(&labels).inc();
        }
        self.arm_calls.get_or_create(&ArmLabels { operation: op, result: record.result.into() }).inc();
    }

    /// A pod's assignment reached `Assigned` this long after the pod was seen.
    pub fn assigned_after(&self, took: Duration) {
        self.assignment_latency.observe(took.as_secs_f64());
    }

    /// ARM calls so far with this operation and result (for tests and benchmarks).
    pub fn arm_count(&self, operation: &str, result: &str) -> u64 {
        self.arm_calls.get_or_create(&ArmLabels { operation: operation.into(), result: result.into() }).get()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstream_metric_names_are_exported() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.k8s_op("addition", Duration::from_millis(30));
        m.k8s_error("update_azure_assigned_identity_status");
        m.cycle(Duration::from_secs(2));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for name in [
            "aadpodidentity_assigned_identity_addition_duration_seconds_bucket",
            "aadpodidentity_assigned_identity_addition_count_total 1",
            "aadpodidentity_assigned_identity_deletion_count_total 0",
            "aadpodidentity_mic_cycle_duration_seconds_count 1",
            "aadpodidentity_mic_new_leader_election_count_total 0",
            "aadpodidentity_kubernetes_api_operations_errors_count_total{operation_type=\"update_azure_assigned_identity_status\"} 1",
            "podid_mic_queue_depth 0",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
