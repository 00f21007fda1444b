//! Why no token is served, in words that name what was asked, what the pod has and what to do,
//! and as a bounded [`Reason`] for metrics (never a caller-supplied value).
use podid_api::{AzureIdentity, Resource};

use crate::redact;

/// Maps a refusal to HTTP (see [`Refusal::status`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefusalKind {
    /// 400: the request itself is wrong.
    BadRequest,
    /// 403: the caller may not have a token this way.
    Forbidden,
    /// 404 (400 with `--identity-not-found-status=400`, 503 + `Retry-After` with
    /// `--set-retry-after-header`): no identity for this request.
    NotFound,
    /// 500: the caller could not be identified.
    Internal,
}

/// What kind of refusal this is: a fixed set, safe as a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// No live pod on this node has the caller's address.
    UnknownCaller,
    /// Several pods have the caller's address.
    AmbiguousCaller,
    /// `/host/token` named a pod this node does not run.
    PodNotOnNode,
    /// A hostNetwork pod, or the node itself.
    HostNetwork,
    /// `object_id` selection, which pod identity cannot honour.
    ObjectId,
    /// The pod is terminating and `--release-terminating-pods` is set.
    Terminating,
    /// The pod has finished (Succeeded, Failed or Unknown phase).
    Finished,
    /// The pod has no `aadpodidbinding` label.
    NoLabel,
    /// No binding has the pod's selector.
    NoBinding,
    /// Bindings select the pod but none gives it an identity (missing, invalid, namespace rule).
    NoUsableBinding,
    /// The pod has identities, but not the one asked for.
    NotBound,
    /// The selected identity cannot be used (e.g. a federated service principal).
    InvalidIdentity,
    /// Standard mode: the controller did not create the assignment in time.
    NotAssigned,
    /// Standard mode: the assignment stayed `Created` (not on the scale set) too long.
    StillCreated,
    /// The agent lacks a setting the identity needs (e.g. a federated identity's tenant).
    AgentConfig,
    /// Verified callers: the calling socket is not in the network namespace of the pod its
    /// address names (a spoofed or reused address), or it could not be checked (fail closed).
    UnverifiedCaller,
    /// Verified callers: a process on the node's network that belongs to no pod and is not
    /// excepted.
    NodeProcess,
}

impl Reason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownCaller => "unknown_caller",
            Self::AmbiguousCaller => "ambiguous_caller",
            Self::PodNotOnNode => "pod_not_on_node",
            Self::HostNetwork => "host_network",
            Self::ObjectId => "object_id",
            Self::Terminating => "terminating",
            Self::Finished => "finished",
            Self::NoLabel => "no_label",
            Self::NoBinding => "no_binding",
            Self::NoUsableBinding => "no_usable_binding",
            Self::NotBound => "not_bound",
            Self::InvalidIdentity => "invalid_identity",
            Self::NotAssigned => "not_assigned",
            Self::StillCreated => "still_created",
            Self::AgentConfig => "agent_config",
            Self::UnverifiedCaller => "unverified_caller",
            Self::NodeProcess => "node_process",
        }
    }
}

/// A refusal with the plain-text message sent to the caller (no secrets; client ids redacted).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(kind: RefusalKind, reason: Reason, message: impl Into<String>) -> Self {
        Self { kind, reason, message: message.into() }
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

    /// The status the agent answers with: [`Refusal::status`], except that "not found" is
    /// `not_found` (`--identity-not-found-status`: 404, or 400 as IMDS answers an unknown identity)
    /// unless `set_retry_after` turns it into 503.
    pub fn answer_status(&self, not_found: u16, set_retry_after: bool) -> (u16, bool) {
        match self.kind {
            RefusalKind::NotFound if !set_retry_after => (not_found, false),
            _ => self.status(set_retry_after),
        }
    }
}

/// `ns/name` of an identity with its redacted client id, as refusals show "what the pod has".
pub fn identity_words(identity: &AzureIdentity) -> String {
    format!(
        "{}/{} (clientID {})",
        identity.meta().namespace.as_deref().unwrap_or_default(),
        identity.meta().name.as_deref().unwrap_or_default(),
        redact::client_id(&identity.spec.client_id)
    )
}

/// At most this many identities are listed in one refusal.
const LISTED: usize = 5;

/// A list of identities for a refusal, the first [`LISTED`] and a count of the rest.
pub fn identities_words<'a>(identities: impl IntoIterator<Item = &'a AzureIdentity>) -> String {
    let all: Vec<&AzureIdentity> = identities.into_iter().collect();
    let mut words: Vec<String> = all.iter().take(LISTED).map(|i| identity_words(i)).collect();
    if all.len() > LISTED {
        words.push(format!("and {} more", all.len() - LISTED));
    }
    words.join(", ")
}
