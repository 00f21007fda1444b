//! The node agent's first questions about a token request: which pod is calling, and which of
//! its identities the request names. The decision itself is [`crate::decision::decide`].
//!
//! ```text
//!  caller IP ─▶ find_caller ─▶ PodView ─▶ decision::decide(pod, Request, objects, settings)
//!  query     ─▶ Request { client_id, resource_id, object_id } ─▶ wanted(identity, request)
//! ```
use std::net::IpAddr;

use podid_api::AzureIdentity;
use podid_api::resource_id::UserAssignedIdentityId;

pub use crate::refusal::{Reason, Refusal, RefusalKind};
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

/// Longest resource id quoted back in a refusal or an audit record (a caller chooses it).
const QUOTED_RESOURCE_ID: usize = 300;

impl Request<'_> {
    /// Whether the request names an identity (by client id or resource id).
    pub fn names_identity(&self) -> bool {
        self.client_id.is_some() || self.resource_id.is_some()
    }

    /// What was asked, for refusals and audit records: `clientID abcd##### REDACTED #####wxyz`,
    /// `resourceID /subscriptions/…` (cut at 300 characters) or `any identity`.
    pub fn asked(&self) -> String {
        match (self.client_id, self.resource_id) {
            (Some(c), _) => format!("clientID {}", redact::client_id(c)),
            (None, Some(r)) if r.chars().count() > QUOTED_RESOURCE_ID => {
                format!("resourceID {}…", r.chars().take(QUOTED_RESOURCE_ID).collect::<String>())
            }
            (None, Some(r)) => format!("resourceID {r}"),
            (None, None) => "any identity".to_string(),
        }
    }
}

/// Finds the calling pod among this node's pods by source address: exactly one live pod must
/// have that IP.
pub fn find_caller<'a>(
    ip: IpAddr,
    pods: impl IntoIterator<Item = &'a PodView>,
) -> Result<&'a PodView, Refusal> {
    let found: Vec<&PodView> = pods.into_iter().filter(|p| p.ip == Some(ip) && p.phase.is_live()).collect();
    match found.as_slice() {
        [] => Err(unknown_caller(ip)),
        [one] => Ok(one),
        many if many.iter().all(|p| p.host_network) => Err(host_network_refusal(ip)),
        many => {
            let names: Vec<String> = many.iter().map(|p| p.key.to_string()).collect();
            Err(Refusal::new(
                RefusalKind::Internal,
                Reason::AmbiguousCaller,
                format!("failed to match pod IP {ip} with [{}]", names.join(" ")),
            ))
        }
    }
}

/// The refusal when no live pod of this node has the caller's address.
pub fn unknown_caller(ip: IpAddr) -> Refusal {
    Refusal::new(
        RefusalKind::Internal,
        Reason::UnknownCaller,
        format!(
            "pod list is empty: no Pending or Running pod on this node has IP {ip}. A pod that has just started \
             is known to the agent within a second or two: retry; otherwise check the agent's /readyz and that \
             the caller runs on this node"
        ),
    )
}

/// The refusal for a caller on the node's own address.
pub fn host_network_refusal(ip: IpAddr) -> Refusal {
    Refusal::new(
        RefusalKind::Forbidden,
        Reason::HostNetwork,
        format!(
            "request from {ip}, an address shared by hostNetwork pods and the node itself: pod identity cannot tell \
             such callers apart and serves them no token (an AzurePodIdentityException can let a single hostNetwork \
             pod reach IMDS)"
        ),
    )
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
pub fn allowed_namespace(identity: &AzureIdentity, pod: &PodView, force_namespaced: bool) -> bool {
    !(force_namespaced || identity.is_namespaced())
        || identity.metadata.namespace.as_deref() == Some(pod.key.namespace.as_str())
}
