//! `/metadata/identity/oauth2/token` (pod-facing) and `/host/token` (node-local), upstream §3.5–3.6.
//!
//! Request → caller pod (by source IP) → decision (`podid_core::decision::decide`, re-evaluated
//! on every index change while a standard-mode assignment is pending, refused at once when nothing
//! can arrive) → token source → cache → answer, audit record and metrics.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use podid_api::{AzureIdentity, IdentityKind, ResourceExt};
use podid_core::agent::{self, Reason, Refusal, RefusalKind};
use podid_core::decision::{self, Outcome, Pending, Served};
use podid_core::{PodKey, PodView, federation};
use tokio::time::Instant;
use tracing::info;

use super::serve::{Connection, VerifiedPod};
use super::{POD_WAIT, has_metadata_header, json, metadata_header_missing, plain};
use crate::cache::CacheStatus;
use crate::index::NodeIndex;
use crate::state::{AgentState, Config};
use crate::token::{BoundPod, TokenError, TokenSet, TokenSource};

/// Query parameters of a token request; the first occurrence of each wins.
#[derive(Debug, Default)]
struct Params {
    resource: Option<String>,
    client_id: Option<String>,
    resource_id: Option<String>,
    object_id: Option<String>,
}

impl Params {
    fn parse(query: Option<&str>) -> Self {
        let mut p = Self::default();
        let mut mi_res_id = None;
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            let slot = match k.as_ref() {
                "resource" => &mut p.resource,
                "client_id" => &mut p.client_id,
                "msi_res_id" => &mut p.resource_id,
                "mi_res_id" => &mut mi_res_id,
                "object_id" => &mut p.object_id,
                _ => continue,
            };
            if slot.is_none() && !v.is_empty() {
                *slot = Some(v.into_owned());
            }
        }
        p.resource_id = p.resource_id.or(mi_res_id);
        p
    }

    fn request(&self) -> agent::Request<'_> {
        agent::Request {
            client_id: self.client_id.as_deref(),
            resource_id: self.resource_id.as_deref(),
            object_id: self.object_id.as_deref(),
        }
    }
}

/// What a request resolved to.
enum Resolved {
    /// Excepted pod: the node's IMDS with the request's client id.
    Direct { client_id: Option<String> },
    /// A bound identity.
    Serve { source: TokenSource, identity: String, client_id: String },
    /// A refusal, with the identities the pod has (for the audit record).
    Refuse { refusal: Refusal, has: String },
}

impl Resolved {
    fn refuse(refusal: Refusal) -> Self {
        Self::Refuse { refusal, has: String::new() }
    }
}

/// Reads the caller's address; IPv4-mapped IPv6 counts as IPv4.
fn caller_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

pub(super) async fn pod_token(state: AgentState, peer: SocketAddr, req: Request) -> Response {
    let started = Instant::now();
    let conn = req.extensions().get::<Connection>().copied();
    let verified = req.extensions().get::<VerifiedPod>().cloned();
    if state.config.metadata_header_required && !has_metadata_header(&req) {
        return metadata_header_missing();
    }
    let params = Params::parse(req.uri().query());
    drop(req);
    let Some(resource) = params.resource.clone() else {
        return plain(StatusCode::BAD_REQUEST, "parameter resource cannot be empty");
    };
    let pod = match calling_pod(&state, peer, conn, verified).await {
        Ok(pod) => pod,
        Err(refusal) => {
            let asked = params.request().asked();
            return finish(&state, started, None, &resource, &asked, Answer::Refused(&refusal, true, ""));
        }
    };
    let resolved = resolve(&state, &pod, &params).await;
    answer(&state, started, &pod, (&resource, &params), resolved, true).await
}

pub(super) async fn host_token(state: AgentState, peer: SocketAddr, req: Request) -> Response {
    let started = Instant::now();
    let (Some(ns), Some(name)) = (header(&req, "podns"), header(&req, "podname")) else {
        return plain(StatusCode::BAD_REQUEST, "missing 'podname' and 'podns' from request header");
    };
    if caller_ip(peer) != IpAddr::from([127, 0, 0, 1]) {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "request remote address is not from a host");
    }
    let params = Params::parse(req.uri().query());
    drop(req);
    let Some(resource) = params.resource.clone() else {
        return plain(StatusCode::BAD_REQUEST, "parameter resource cannot be empty");
    };
    let pod = PodKey::new(ns, name);
    let resolved = resolve(&state, &pod, &params).await;
    answer(&state, started, &pod, (&resource, &params), resolved, false).await
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The calling pod: by source address, or (`--verified-callers`) as the kernel confirms it.
async fn calling_pod(
    state: &AgentState,
    peer: SocketAddr,
    conn: Option<Connection>,
    verified: Option<VerifiedPod>,
) -> Result<PodKey, Refusal> {
    let ip = caller_ip(peer);
    let Some(verifier) = state.config.verified_callers.clone() else {
        return find_pod_by_ip(state, ip).await;
    };
    super::verified::verified_pod(state, &verifier, conn, verified, || candidates_by_ip(state, ip)).await
}

/// The live pods (not hostNetwork) with address `ip`, waiting briefly for a just-started pod;
/// several when an address was reused before the index saw the old pod go.
async fn candidates_by_ip(state: &AgentState, ip: IpAddr) -> Result<Vec<PodKey>, Refusal> {
    let live = |idx: &NodeIndex| {
        let found: Vec<PodKey> = idx
            .pods_with_ip(ip)
            .filter(|p| p.ip == Some(ip) && p.phase.is_live() && !p.host_network)
            .map(|p| p.key.clone())
            .collect();
        (!found.is_empty()).then_some(found)
    };
    state.shared.wait_for(POD_WAIT, live).await.ok_or_else(|| agent::unknown_caller(ip))
}

/// The calling pod, waiting briefly for the index to catch up with a just-started pod (while
/// the answer is "unknown", never longer).
async fn find_pod_by_ip(state: &AgentState, ip: IpAddr) -> Result<PodKey, Refusal> {
    let find = |idx: &NodeIndex| agent::find_caller(ip, idx.pods_with_ip(ip)).map(|p| p.key.clone());
    let settled = |idx: &NodeIndex| {
        Some(find(idx)).filter(|r| !r.as_ref().is_err_and(|e| e.kind == RefusalKind::Internal))
    };
    match state.shared.wait_for(POD_WAIT, settled).await {
        Some(found) => found,
        None => find(&state.shared.read()),
    }
}

/// Decides, waiting on index changes while a standard-mode assignment is pending (and only
/// then: a request nothing can become assigned for is refused at once).
async fn resolve(state: &AgentState, pod: &PodKey, params: &Params) -> Resolved {
    let started = Instant::now();
    let mut changes = state.shared.subscribe();
    loop {
        changes.borrow_and_update();
        let pending = match decide_once(state, pod, params, None) {
            Step::Done(resolved) => return resolved,
            Step::Wait(pending) => pending,
        };
        let limit = match pending {
            Pending::NotCreated => state.config.wait_created,
            Pending::Created => state.config.wait_assigned,
        };
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return match decide_once(state, pod, params, Some(elapsed)) {
                Step::Done(resolved) => resolved,
                Step::Wait(_) => unreachable_wait(pod),
            };
        }
        let _ = tokio::time::timeout(limit - elapsed, changes.changed()).await;
    }
}

/// `decide_once` with a deadline never returns `Wait`; should it, the caller gets a 500.
fn unreachable_wait(pod: &PodKey) -> Resolved {
    Resolved::refuse(Refusal::new(
        RefusalKind::Internal,
        Reason::StillCreated,
        format!("pod {pod}: still pending"),
    ))
}

/// One look at the index.
// Returned once per look at the index and matched at once: boxing `Resolved` would only add an
// allocation on the hot path.
#[allow(clippy::large_enum_variant)]
enum Step {
    Done(Resolved),
    /// Standard mode: still pending.
    Wait(Pending),
}

/// Decides once; after `waited` (the end of the budget) a pending decision becomes its refusal.
fn decide_once(state: &AgentState, pod: &PodKey, params: &Params, waited: Option<Duration>) -> Step {
    let idx = state.shared.read();
    let Some(view) = idx.pod(pod) else {
        let msg = format!("pod {pod} doesn't exist on node {}", state.config.node);
        return Step::Done(Resolved::refuse(Refusal::new(RefusalKind::Internal, Reason::PodNotOnNode, msg)));
    };
    let req = params.request();
    let d = decision::decide(view, &req, &*idx, &state.config.settings());
    let refuse = |refusal| Step::Done(Resolved::Refuse { refusal, has: has(&d.has()) });
    match &d.outcome {
        Outcome::Direct(_) => Step::Done(Resolved::Direct { client_id: params.client_id.clone() }),
        Outcome::Serve(served) => Step::Done(serve(served, &state.config, view, idx.pod_uid(pod))),
        Outcome::Pending(wait) => match waited {
            None => Step::Wait(wait.state),
            Some(w) => refuse(decision::timed_out(view, &req, wait, w.as_secs())),
        },
        Outcome::Refuse(refusal) => refuse(refusal.clone()),
    }
}

/// `ns/name` of each identity the pod has, for the audit record.
fn has(identities: &[&AzureIdentity]) -> String {
    let keys: Vec<String> = identities
        .iter()
        .map(|i| format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any()))
        .collect();
    keys.join(",")
}

/// Where the token of a chosen identity comes from, for `pod` (whose `uid` federated tokens are
/// bound to, when known).
pub fn source_for(
    served: &Served<'_>,
    config: &Config,
    pod: &PodView,
    uid: Option<&str>,
) -> Result<TokenSource, Refusal> {
    let identity = served.identity;
    let spec = &identity.spec;
    let invalid = |message: String| Refusal::new(RefusalKind::Forbidden, Reason::InvalidIdentity, message);
    let kind = spec.kind().map_err(|e| invalid(e.to_string()))?;
    if served.federated {
        federation::validate_federated(identity).map_err(invalid)?;
        let tenant_id = if spec.tenant_id.is_empty() { &config.tenant_id } else { &spec.tenant_id };
        if tenant_id.is_empty() {
            return Err(Refusal::new(
                RefusalKind::Internal,
                Reason::AgentConfig,
                format!(
                    "federated identity {}/{} has no tenantID and the agent has none: set spec.tenantID or the \
                     agent's --tenant-id",
                    identity.namespace().unwrap_or_default(),
                    identity.name_any()
                ),
            ));
        }
        return Ok(TokenSource::Federated {
            authority: config.default_authority.clone(),
            tenant_id: tenant_id.clone(),
            client_id: spec.client_id.clone(),
            namespace: pod.key.namespace.clone(),
            service_account: pod.service_account.clone(),
            pod: BoundPod { name: pod.key.name.clone(), uid: uid.unwrap_or_default().to_string() },
        });
    }
    Ok(match kind {
        IdentityKind::UserAssigned => TokenSource::Imds { client_id: Some(spec.client_id.clone()) },
        IdentityKind::ServicePrincipal | IdentityKind::ServicePrincipalCertificate => {
            TokenSource::ServicePrincipal {
                authority: if spec.ad_endpoint.is_empty() {
                    config.default_authority.clone()
                } else {
                    spec.ad_endpoint.clone()
                },
                tenant_id: spec.tenant_id.clone(),
                auxiliary_tenants: spec.auxiliary_tenant_ids.clone().unwrap_or_default(),
                client_id: spec.client_id.clone(),
                secret_namespace: if spec.client_password.namespace.is_empty() {
                    identity.namespace().unwrap_or_default()
                } else {
                    spec.client_password.namespace.clone()
                },
                secret_name: spec.client_password.name.clone(),
                certificate: kind == IdentityKind::ServicePrincipalCertificate,
            }
        }
    })
}

fn serve(served: &Served<'_>, config: &Config, pod: &PodView, uid: Option<&str>) -> Resolved {
    let identity = served.identity;
    match source_for(served, config, pod, uid) {
        Ok(source) => Resolved::Serve {
            source,
            identity: format!("{}/{}", identity.namespace().unwrap_or_default(), identity.name_any()),
            client_id: identity.spec.client_id.clone(),
        },
        Err(r) => Resolved::refuse(r),
    }
}

/// Turns a resolution into a response: fetch (or reuse) the token, or refuse.
async fn answer(
    state: &AgentState,
    started: Instant,
    pod: &PodKey,
    (resource, params): (&str, &Params),
    resolved: Resolved,
    pod_facing: bool,
) -> Response {
    let asked = params.request().asked();
    let (source, identity, client_id, direct) = match resolved {
        Resolved::Refuse { refusal, has } => {
            let answer = Answer::Refused(&refusal, pod_facing, &has);
            return finish(state, started, Some(pod), resource, &asked, answer);
        }
        Resolved::Direct { client_id } => {
            (TokenSource::Imds { client_id }, "(excepted: node identity)".to_string(), String::new(), true)
        }
        Resolved::Serve { source, identity, client_id } => (source, identity, client_id, false),
    };
    let fetched = state.cache.get(&source, resource).await;
    match fetched {
        Ok((tokens, status)) => {
            let now = state.cache.now();
            let body = if pod_facing {
                tokens.to_json(now)
            } else {
                let first = TokenSet::single_of(&tokens).to_json(now);
                serde_json::json!({ "token": first, "clientid": client_id })
            };
            finish(
                state,
                started,
                Some(pod),
                resource,
                &asked,
                Answer::Token { identity: &identity, status, body: &body },
            )
        }
        Err(e) => {
            state.drift.observe(state, pod, &source, &e);
            let (code, msg) = match (&e, direct) {
                (_, true) => {
                    (StatusCode::FORBIDDEN, format!("failed to get service principal token, error: {e}"))
                }
                (TokenError::Refused(m), false) => (StatusCode::FORBIDDEN, m.clone()),
                (TokenError::Unavailable(m), false) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
            };
            finish(
                state,
                started,
                Some(pod),
                resource,
                &asked,
                Answer::Failed { identity: &identity, code, message: &msg },
            )
        }
    }
}

enum Answer<'a> {
    Token {
        identity: &'a str,
        status: CacheStatus,
        body: &'a serde_json::Value,
    },
    /// A refusal, whether the caller is a pod (not `/host/token`), and what the pod has.
    Refused(&'a Refusal, bool, &'a str),
    Failed {
        identity: &'a str,
        code: StatusCode,
        message: &'a str,
    },
}

/// Writes the response, the audit record and the metrics. A refusal's record names what was
/// asked (`asked`), what the pod has (`has`), why (`reason`, also counted in
/// `podid_nmi_refusals_total`) and the words the caller got (`message`).
fn finish(
    state: &AgentState,
    started: Instant,
    pod: Option<&PodKey>,
    resource: &str,
    asked: &str,
    answer: Answer<'_>,
) -> Response {
    let pod_s = pod.map(|p| p.to_string()).unwrap_or_default();
    let ns = pod.map(|p| p.namespace.as_str()).unwrap_or_default();
    let (resp, decision, identity, cache, refused) = match answer {
        Answer::Token { identity, status, body } => (json(body), "token", identity, status.as_str(), None),
        Answer::Refused(r, pod_facing, has) => {
            state.metrics.refusal(r.reason.as_str());
            (refusal_response(state, r, pod_facing), "refused", "", "none", Some((r, has)))
        }
        Answer::Failed { identity, code, message } => {
            (plain(code, message), "upstream_error", identity, "none", None)
        }
    };
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    let (reason, has, message) =
        refused.map_or(("", "", ""), |(r, has)| (r.reason.as_str(), has, r.message.as_str()));
    info!(target: "podid::audit", pod = %pod_s, namespace = ns, identity, asked, resource, decision, cache, status,
          reason, has, message, latency_us = latency.as_micros() as u64, "token request");
    state.metrics.request(status, ns, resource, decision, cache, latency);
    resp
}

/// A refusal as HTTP: 404 (400 in IMDS's JSON shape with `--identity-not-found-status=400`, 503
/// with `Retry-After` with `--set-retry-after-header`) for "not found", else its own status.
fn refusal_response(state: &AgentState, r: &Refusal, pod_facing: bool) -> Response {
    let not_found = if state.config.not_found_as_bad_request { 400 } else { 404 };
    let (code, retry) = r.answer_status(not_found, pod_facing && state.config.set_retry_after_header);
    if r.kind == RefusalKind::NotFound && code == 400 {
        return super::imds_error(StatusCode::BAD_REQUEST, &r.message);
    }
    let mut resp = plain(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &r.message);
    if retry {
        resp.headers_mut().insert("retry-after", HeaderValue::from_static("20"));
    }
    resp
}
