//! `/metadata/identity/oauth2/token` (pod-facing) and `/host/token` (node-local), upstream §3.5–3.6.
//!
//! Request → caller pod (by source IP) → decision (`podid_core::federation` for federated
//! identities, else `podid_core::agent`, re-evaluated on every index change while a standard-mode
//! assignment is pending) → token source → cache → answer.
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, StatusCode};
use podid_api::{AzureIdentity, IdentityKind, ResourceExt};
use podid_core::agent::{self, Outcome, Pending, Refusal, RefusalKind};
use podid_core::federation;
use podid_core::{PodKey, PodView};
use tokio::time::Instant;
use tracing::info;

use super::{has_metadata_header, json, metadata_header_missing, plain};
use crate::cache::CacheStatus;
use crate::state::{AgentState, Config, Mode};
use crate::token::{BoundPod, TokenError, TokenSet, TokenSource};

/// How long a request waits for its pod to show up in the index (watch lag after pod start).
const POD_WAIT: Duration = Duration::from_millis(1200);

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
    Direct {
        client_id: Option<String>,
    },
    /// A bound identity.
    Serve {
        source: TokenSource,
        identity: String,
        client_id: String,
    },
    Refuse(Refusal),
}

/// Reads the caller's address; IPv4-mapped IPv6 counts as IPv4.
fn caller_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

pub(super) async fn pod_token(state: AgentState, peer: SocketAddr, req: Request) -> Response {
    let started = Instant::now();
    if state.config.metadata_header_required && !has_metadata_header(&req) {
        return metadata_header_missing();
    }
    let params = Params::parse(req.uri().query());
    drop(req);
    let Some(resource) = params.resource.clone() else {
        return plain(StatusCode::BAD_REQUEST, "parameter resource cannot be empty");
    };
    let ip = caller_ip(peer);
    let pod = match find_pod_by_ip(&state, ip).await {
        Ok(pod) => pod,
        Err(refusal) => return finish(&state, started, None, &resource, Answer::Refused(&refusal, true)),
    };
    let resolved = resolve(&state, &pod, &params).await;
    answer(&state, started, &pod, &resource, resolved, true).await
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
    answer(&state, started, &pod, &resource, resolved, false).await
}

fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).filter(|v| !v.is_empty()).map(str::to_string)
}

/// The calling pod, waiting briefly for the index to catch up with a just-started pod.
async fn find_pod_by_ip(state: &AgentState, ip: IpAddr) -> Result<PodKey, Refusal> {
    let deadline = Instant::now() + POD_WAIT;
    let mut changes = state.shared.subscribe();
    loop {
        changes.borrow_and_update();
        let found = {
            let idx = state.shared.read();
            agent::find_caller(ip, idx.pods_with_ip(ip)).map(|p| p.key.clone())
        };
        match found {
            Err(r) if r.kind == RefusalKind::Internal && Instant::now() < deadline => {
                let _ = tokio::time::timeout_at(deadline, changes.changed()).await;
            }
            other => return other,
        }
    }
}

/// Decides, waiting on index changes while a standard-mode assignment is pending.
async fn resolve(state: &AgentState, pod: &PodKey, params: &Params) -> Resolved {
    let started = Instant::now();
    let mut changes = state.shared.subscribe();
    loop {
        changes.borrow_and_update();
        let (pending, view) = match decide_once(state, pod, params) {
            Step::Done(resolved) => return resolved,
            Step::Wait(pending, view) => (pending, view),
        };
        let limit = match pending {
            Pending::NotCreated => state.config.wait_created,
            Pending::Created => state.config.wait_assigned,
        };
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return Resolved::Refuse(agent::pending_refusal(
                &view,
                &params.request(),
                pending,
                elapsed.as_secs(),
            ));
        }
        let _ = tokio::time::timeout(limit - elapsed, changes.changed()).await;
    }
}

/// One look at the index.
// Returned once per look at the index and matched at once: boxing `Resolved` would only add an
// allocation on the hot path.
#[allow(clippy::large_enum_variant)]
enum Step {
    Done(Resolved),
    /// Standard mode: still pending (with the pod, for the eventual message).
    Wait(Pending, Box<PodView>),
}

fn decide_once(state: &AgentState, pod: &PodKey, params: &Params) -> Step {
    let idx = state.shared.read();
    let Some(view) = idx.pod(pod) else {
        let msg = format!("pod {pod} doesn't exist on node {}", state.config.node);
        return Step::Done(Resolved::Refuse(Refusal { kind: RefusalKind::Internal, message: msg }));
    };
    let req = params.request();
    let opts = agent::Options {
        force_namespaced: state.config.force_namespaced,
        mic_namespace: &state.config.mic_namespace,
    };
    let federation = state.config.mode.federation();
    // The federated path scans every binding: only where an identity can be federated (cluster
    // mode, or some identity annotated), not on every standard/managed-mode request.
    let federated = (federation == federation::Federation::Cluster || idx.has_federated_identities())
        .then(|| {
            let bound =
                federation::bound_identities(view, idx.all_bindings(), |ns, n| idx.identity(ns, n), opts);
            let exceptions = idx.exceptions_in(&pod.namespace);
            federation::decide_federated(view, &req, &bound, exceptions, opts, federation)
        })
        .flatten();
    let exceptions = idx.exceptions_in(&pod.namespace);
    let outcome = match (federated, state.config.mode) {
        (Some(outcome), _) => outcome,
        (None, Mode::Standard) => agent::decide_standard(view, &req, idx.assigned_for(pod), exceptions, opts),
        (None, Mode::Managed) => {
            let ns = &pod.namespace;
            agent::decide_managed(view, &req, idx.bindings_in(ns), idx.identities_in(ns), exceptions, opts)
        }
        (None, Mode::Federated) => Outcome::Refuse(agent::not_bound(view, &req)),
    };
    match outcome {
        Outcome::Direct(_) => Step::Done(Resolved::Direct { client_id: params.client_id.clone() }),
        Outcome::Serve(identity) => Step::Done(serve(identity, &state.config, view, idx.pod_uid(pod))),
        Outcome::Refuse(r) => Step::Done(Resolved::Refuse(r)),
        Outcome::Pending(p) => Step::Wait(p, Box::new(view.clone())),
    }
}

/// Where the token of a chosen identity comes from, for `pod` (whose `uid` federated tokens are
/// bound to, when known).
pub fn source_for(
    identity: &AzureIdentity,
    config: &Config,
    pod: &PodView,
    uid: Option<&str>,
) -> Result<TokenSource, Refusal> {
    let spec = &identity.spec;
    let kind = spec.kind().map_err(|e| Refusal { kind: RefusalKind::Forbidden, message: e.to_string() })?;
    if config.mode.federation().covers(identity) {
        federation::validate_federated(identity)
            .map_err(|message| Refusal { kind: RefusalKind::Forbidden, message })?;
        let tenant_id = if spec.tenant_id.is_empty() { &config.tenant_id } else { &spec.tenant_id };
        if tenant_id.is_empty() {
            return Err(Refusal {
                kind: RefusalKind::Internal,
                message: format!(
                    "federated identity {}/{} has no tenantID and the agent has none (--tenant-id)",
                    identity.namespace().unwrap_or_default(),
                    identity.name_any()
                ),
            });
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

fn serve(identity: &AzureIdentity, config: &Config, pod: &PodView, uid: Option<&str>) -> Resolved {
    match source_for(identity, config, pod, uid) {
        Ok(source) => Resolved::Serve {
            source,
            identity: format!("{}/{}", identity.namespace().unwrap_or_default(), identity.name_any()),
            client_id: identity.spec.client_id.clone(),
        },
        Err(r) => Resolved::Refuse(r),
    }
}

/// Turns a resolution into a response: fetch (or reuse) the token, or refuse.
async fn answer(
    state: &AgentState,
    started: Instant,
    pod: &PodKey,
    resource: &str,
    resolved: Resolved,
    pod_facing: bool,
) -> Response {
    let (source, identity, client_id, direct) = match resolved {
        Resolved::Refuse(r) => {
            return finish(state, started, Some(pod), resource, Answer::Refused(&r, pod_facing));
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
                Answer::Failed { identity: &identity, code, message: &msg },
            )
        }
    }
}

enum Answer<'a> {
    Token { identity: &'a str, status: CacheStatus, body: &'a serde_json::Value },
    Refused(&'a Refusal, bool),
    Failed { identity: &'a str, code: StatusCode, message: &'a str },
}

/// Writes the response, the audit record and the metrics.
fn finish(
    state: &AgentState,
    started: Instant,
    pod: Option<&PodKey>,
    resource: &str,
    answer: Answer<'_>,
) -> Response {
    let pod_s = pod.map(|p| p.to_string()).unwrap_or_default();
    let ns = pod.map(|p| p.namespace.as_str()).unwrap_or_default();
    let (resp, decision, identity, cache) = match answer {
        Answer::Token { identity, status, body } => (json(body), "token", identity, status.as_str()),
        Answer::Refused(r, pod_facing)
            if r.kind == RefusalKind::NotFound
                && state.config.not_found_as_bad_request
                && !(pod_facing && state.config.set_retry_after_header) =>
        {
            (super::imds_error(StatusCode::BAD_REQUEST, &r.message), "refused", "", "none")
        }
        Answer::Refused(r, pod_facing) => {
            let (code, retry) = r.status(pod_facing && state.config.set_retry_after_header);
            let mut resp =
                plain(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &r.message);
            if retry {
                resp.headers_mut().insert("retry-after", HeaderValue::from_static("20"));
            }
            (resp, "refused", "", "none")
        }
        Answer::Failed { identity, code, message } => {
            (plain(code, message), "upstream_error", identity, "none")
        }
    };
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    info!(target: "podid::audit", pod = %pod_s, namespace = ns, identity, resource, decision, cache, status,
          latency_us = latency.as_micros() as u64, "token request");
    state.metrics.request(status, ns, resource, decision, cache, latency);
    resp
}
