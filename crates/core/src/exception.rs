//! AzurePodIdentityException matching (upstream §1.5, §3.11).
use podid_api::AzurePodIdentityException;

use crate::PodView;

/// Why a pod may reach IMDS directly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExceptReason {
    /// An exception in the pod's namespace matched one of its labels.
    Exception { name: String },
    /// The pod is the controller's own (namespace `--MICNamespace`, ReplicaSet `mic-*`).
    Controller,
}

/// The first exception (by name) in the pod's namespace with any one `podLabels` pair equal to one
/// of the pod's labels: key exact, value case-insensitive.
pub fn matching_exception<'a>(
    pod: &PodView,
    exceptions: impl IntoIterator<Item = &'a AzurePodIdentityException>,
) -> Option<&'a AzurePodIdentityException> {
    let mut found: Vec<&AzurePodIdentityException> = exceptions
        .into_iter()
        .filter(|e| e.metadata.namespace.as_deref() == Some(pod.key.namespace.as_str()))
        .filter(|e| {
            e.spec
                .pod_labels
                .iter()
                .any(|(k, v)| pod.labels.get(k).is_some_and(|pv| pv.eq_ignore_ascii_case(v)))
        })
        .collect();
    found.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    found.into_iter().next()
}

/// Whether `pod` is the controller's own pod. Upstream matched the ReplicaSet name with the
/// regex `^mic-*`, which also excepts any `micro…` ReplicaSet; podid requires the `mic-` prefix.
pub fn is_controller_pod(pod: &PodView, mic_namespace: &str) -> bool {
    pod.key.namespace.eq_ignore_ascii_case(mic_namespace)
        && pod.replica_set.as_deref().is_some_and(|rs| rs.starts_with("mic-"))
}

/// Why `pod` is excepted, if it is.
pub fn except_reason<'a>(
    pod: &PodView,
    exceptions: impl IntoIterator<Item = &'a AzurePodIdentityException>,
    mic_namespace: &str,
) -> Option<ExceptReason> {
    if is_controller_pod(pod, mic_namespace) {
        return Some(ExceptReason::Controller);
    }
    matching_exception(pod, exceptions)
        .map(|e| ExceptReason::Exception { name: e.metadata.name.clone().unwrap_or_default() })
}
