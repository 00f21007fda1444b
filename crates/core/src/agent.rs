//! The node agent's decision: which pod is calling, and which identity (if any) it gets
//! (upstream §3.5, §3.9–3.12).
//!
//! ```text
//!  caller IP ─▶ find_caller ─▶ PodView ─┬─ excepted (exception or controller pod) ─▶ Direct
//!                                       ├─ hostNetwork, not excepted              ─▶ Refuse 403
//!                                       ├─ standard: decide_standard(assigned identities)
//!                                       └─ managed:  decide_managed(bindings, identities)
//! ```
//!
//! Where several identities qualify and the request names none, upstream served an arbitrary one.
//! podid serves the first by (identity namespace, identity name, binding namespace, binding name),
//! so the same request always gets the same identity.
use std::net::IpAddr;

use podid_api::resource_id::UserAssignedIdentityId;
use podid_api::{
    AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException, Resource,
};

use crate::exception::{ExceptReason, except_reason};
use crate::matching::validate_identity;
use crate::{PodView, redact};

/// The identity selectors of a token request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Request<'a> {
    /// `client_id`.
    pub client_id: Option<&'a str>,
    /// `msi_res_id`, or `mi_res_id` when that is absent.
    pub resource_id: Option<&'a str>,
    /// `object_id`.
    pub object_id: Option<&'a str>,
}

/// Agent settings that change decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options<'a> {
    /// `--forceNamespaced`.
    pub force_namespaced: bool,
    /// `--MICNamespace`: where the controller's own pods run.
    pub mic_namespace: &'a str,
}

/// Why no token is served, mapped to HTTP by [`Refusal::status`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: the request itself is wrong.
    BadRequest,
    /// 403: the caller may not have a token this way.
    Forbidden,
    /// 404 (or 503 + `Retry-After` when configured): no identity for this request.
    NotFound,
    /// 500: the caller could not be identified.
    Internal,
}

/// A refusal with the plain-text message sent to the caller (no secrets; client ids redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    fn new(kind: RefusalKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// HTTP status, and whether to add `Retry-After` (`--set-retry-after-header` turns "not
    /// found" into 503 + `Retry-After`, which SDKs retry).
    pub fn status(&self, set_retry_after: bool) -> (u16, bool) {
        match self.kind {
            RefusalKind::BadRequest => (400, false),
            RefusalKind::Forbidden => (403, false),
            RefusalKind::NotFound if set_retry_after => (503, true),
            RefusalKind::NotFound => (404, false),
            RefusalKind::Internal => (500, false),
        }
    }
}

/// In standard mode: what the agent is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// No assigned identity for this pod (and request) exists yet.
    NotCreated,
    /// One exists but is still `Created`: the controller has not finished the ARM assignment.
    Created,
}

/// The decision for one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<'a> {
    /// Excepted pod: fetch from IMDS directly with the request's `client_id`.
    Direct(ExceptReason),
    /// Serve a token for this identity.
    Serve(&'a AzureIdentity),
    /// Standard mode: wait for the next change of this pod's assigned identities, then decide
    /// again; after the deadline answer [`pending_refusal`].
    Pending(Pending),
    /// Refuse.
    Refuse(Refusal),
}

/// Finds the calling pod among this node's pods by source address: exactly one live pod must
/// have that IP.
pub fn find_caller<'a>(
    ip: IpAddr,
    pods: impl IntoIterator<Item = &'a PodView>,
) -> Result<&'a PodView, Refusal> {
    let found: Vec<&PodView> = pods.into_iter().filter(|p| p.ip == Some(ip) && p.phase.is_live()).collect();
    match found.as_slice() {
        [] => Err(Refusal::new(
            RefusalKind::Internal,
            format!("pod list is empty: no Pending or Running pod on this node has IP {ip}"),
        )),
        [one] => Ok(one),
        many if many.iter().all(|p| p.host_network) => Err(host_network_refusal(ip)),
        many => {
            let names: Vec<String> = many.iter().map(|p| p.key.to_string()).collect();
            Err(Refusal::new(
                RefusalKind::Internal,
                format!("failed to match pod IP {ip} with [{}]", names.join(" ")),
            ))
        }
    }
}

fn host_network_refusal(ip: IpAddr) -> Refusal {
    Refusal::new(
        RefusalKind::Forbidden,
        format!(
            "request from {ip}, an address shared by hostNetwork pods and the node itself: pod identity cannot tell \
             such callers apart and serves them no token (an AzurePodIdentityException can let a single hostNetwork \
             pod reach IMDS)"
        ),
    )
}

/// Checks that apply in every mode before any identity is looked at.
pub(crate) fn preflight<'a, 'e>(
    pod: &PodView,
    req: &Request<'_>,
    exceptions: impl IntoIterator<Item = &'e AzurePodIdentityException>,
    opts: Options<'_>,
) -> Option<Outcome<'a>> {
    if let Some(reason) = except_reason(pod, exceptions, opts.mic_namespace) {
        return Some(Outcome::Direct(reason));
    }
    if pod.host_network {
        return pod.ip.map(|ip| Outcome::Refuse(host_network_refusal(ip)));
    }
    if req.object_id.is_some() {
        return Some(Outcome::Refuse(Refusal::new(
            RefusalKind::BadRequest,
            "object_id is not supported by pod identity: select the identity with client_id or msi_res_id",
        )));
    }
    None
}

/// Whether `identity` is the one the request names (any, when it names none). Client ids and
/// resource ids are compared case-insensitively (upstream compared case-sensitively after a
/// case-insensitive wait, so a differently-cased id waited 80 s and then failed).
pub fn wanted(identity: &AzureIdentity, req: &Request<'_>) -> bool {
    match (req.client_id, req.resource_id) {
        (None, None) => true,
        (client, resource) => {
            client.is_some_and(|c| c.eq_ignore_ascii_case(&identity.spec.client_id))
                || resource.is_some_and(|r| same_resource_id(r, &identity.spec.resource_id))
        }
    }
}

fn same_resource_id(a: &str, b: &str) -> bool {
    match (UserAssignedIdentityId::parse(a), UserAssignedIdentityId::parse(b)) {
        (Ok(a), Ok(b)) => a.key() == b.key(),
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// Whether `pod` may use `identity` as far as namespaces go.
pub(crate) fn allowed_namespace(identity: &AzureIdentity, pod: &PodView, opts: Options<'_>) -> bool {
    !(opts.force_namespaced || identity.is_namespaced())
        || identity.metadata.namespace.as_deref() == Some(pod.key.namespace.as_str())
}

fn order_key<K: Resource>(o: &K) -> (Option<&String>, Option<&String>) {
    (o.meta().namespace.as_ref(), o.meta().name.as_ref())
}

/// Standard mode: serve from this pod's assigned identities once one is usable.
pub fn decide_standard<'a, 'e>(
    pod: &PodView,
    req: &Request<'_>,
    assigned: impl IntoIterator<Item = &'a AzureAssignedIdentity>,
    exceptions: impl IntoIterator<Item = &'e AzurePodIdentityException>,
    opts: Options<'_>,
) -> Outcome<'a> {
    if let Some(outcome) = preflight(pod, req, exceptions, opts) {
        return outcome;
    }
    let mut candidates: Vec<(&'a AzureAssignedIdentity, &'a AzureIdentity)> = assigned
        .into_iter()
        .filter(|a| a.spec.pod == pod.key.name && a.spec.pod_namespace == pod.key.namespace)
        .filter_map(|a| a.spec.azure_identity_ref.as_deref().map(|i| (a, i)))
        .filter(|(_, i)| wanted(i, req) && allowed_namespace(i, pod, opts))
        .collect();
    candidates.sort_by(|(a1, i1), (a2, i2)| {
        (order_key(*i1), a1.spec.azure_binding_ref.as_deref().map(order_key))
            .cmp(&(order_key(*i2), a2.spec.azure_binding_ref.as_deref().map(order_key)))
    });
    if let Some((_, identity)) = candidates.iter().find(|(a, _)| a.state().is_usable()) {
        return Outcome::Serve(identity);
    }
    if candidates.iter().any(|(a, _)| a.state() == podid_api::AssignedState::Created) {
        Outcome::Pending(Pending::Created)
    } else {
        Outcome::Pending(Pending::NotCreated)
    }
}

/// The refusal after waiting `waited_secs` for a standard-mode assignment.
pub fn pending_refusal(pod: &PodView, req: &Request<'_>, pending: Pending, waited_secs: u64) -> Refusal {
    let state = match pending {
        Pending::NotCreated => "CREATED",
        Pending::Created => "ASSIGNED",
    };
    let prefix =
        req.client_id.map(|c| format!("clientID in request: {}, ", redact::client_id(c))).unwrap_or_default();
    let why = match pending {
        Pending::NotCreated => {
            "no AzureAssignedIdentity exists for it (is an AzureIdentityBinding selecting its aadpodidbinding label?)"
        }
        Pending::Created => {
            "its AzureAssignedIdentity is still Created (the identity is not yet on the node's scale set or VM)"
        }
    };
    Refusal::new(
        RefusalKind::NotFound,
        format!(
            "{prefix}getting assigned identities for pod {} in {state} state failed after {waited_secs}s: {why}. \
             Check MIC pod logs for identity assignment errors",
            pod.key
        ),
    )
}

/// Managed mode: bindings and identities of the pod's own namespace, no assignment objects.
pub fn decide_managed<'a, 'e>(
    pod: &PodView,
    req: &Request<'_>,
    bindings: impl IntoIterator<Item = &'a AzureIdentityBinding>,
    identities: impl IntoIterator<Item = &'a AzureIdentity> + Clone,
    exceptions: impl IntoIterator<Item = &'e AzurePodIdentityException>,
    opts: Options<'_>,
) -> Outcome<'a> {
    if let Some(outcome) = preflight(pod, req, exceptions, opts) {
        return outcome;
    }
    let ns = Some(pod.key.namespace.as_str());
    let selector = pod.binding_selector();
    let mut bound: Vec<(&'a AzureIdentity, &'a AzureIdentityBinding)> = bindings
        .into_iter()
        .filter(|b| b.metadata.namespace.as_deref() == ns && Some(b.spec.selector.as_str()) == selector)
        .filter_map(|b| {
            identities
                .clone()
                .into_iter()
                .find(|i| {
                    i.metadata.namespace.as_deref() == ns
                        && i.metadata.name.as_deref() == Some(&b.spec.azure_identity)
                })
                .map(|i| (i, b))
        })
        .filter(|(i, _)| validate_identity(i).is_ok() && wanted(i, req))
        .collect();
    bound.sort_by(|(i1, b1), (i2, b2)| {
        (order_key(*i1), order_key(*b1)).cmp(&(order_key(*i2), order_key(*b2)))
    });
    match bound.first() {
        Some((identity, _)) => Outcome::Serve(identity),
        None => Outcome::Refuse(not_bound(pod, req)),
    }
}

/// The refusal for a request naming no identity bound to the pod.
pub fn not_bound(pod: &PodView, req: &Request<'_>) -> Refusal {
    let what = match (req.client_id, req.resource_id) {
        (Some(c), _) => format!("clientID {}", redact::client_id(c)),
        (None, Some(r)) => format!("resourceID {r}"),
        (None, None) => "any identity".to_string(),
    };
    Refusal::new(
        RefusalKind::NotFound,
        format!("no azure identity found for request {what} (pod {})", pod.key),
    )
}
