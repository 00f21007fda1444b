//! Fault injection and the request log.
//!
//! A fault rule matches requests by surface (`arm`, `login`, `imds`, `admin`), optional method, optional
//! path regex (case-insensitive) and, for IMDS, optional node; it fires for the next `count` matching
//! requests and/or for `duration_ms` from its creation (neither: until removed). Its action delays the
//! request, answers with a status and body instead of the real handler, throttles with 429 and
//! `Retry-After`, or drops the connection without any response. The first matching live rule wins.
//!
//! Every request to ARM, Entra ID and IMDS is appended to the log (bounded, oldest dropped first), with
//! the principal when the handler knows it, so tests can count ARM calls.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue, Method, StatusCode};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::server::ConnectionDropper;
use crate::state::SharedState;

const LOG_CAPACITY: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Surface {
    Login,
    Arm,
    Imds,
    Admin,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Arm => "arm",
            Self::Imds => "imds",
            Self::Admin => "admin",
        }
    }
}

/// What a rule does to a matching request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// Wait, then handle the request normally.
    Latency { ms: u64 },
    /// Answer with this status (and body, or the surface's usual error body) instead of the handler.
    Status {
        status: u16,
        #[serde(default)]
        body: Option<Value>,
        #[serde(default)]
        headers: BTreeMap<String, String>,
    },
    /// 429 with `Retry-After` and the surface's throttling body.
    Throttle { retry_after_secs: u64 },
    /// Close the connection without writing a response.
    Drop,
}

/// A rule as submitted (admin `POST /admin/faults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    #[serde(default)]
    pub surface: Option<Surface>,
    #[serde(default)]
    pub method: Option<String>,
    /// A regex matched against the request path, case-insensitively.
    #[serde(default)]
    pub path: Option<String>,
    /// IMDS only: the node whose listener the rule applies to.
    #[serde(default)]
    pub node: Option<String>,
    pub action: FaultAction,
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub duration_ms: Option<u64>,
}

impl FaultSpec {
    pub fn new(surface: Surface, action: FaultAction) -> Self {
        Self {
            surface: Some(surface),
            method: None,
            path: None,
            node: None,
            action,
            count: None,
            duration_ms: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultRuleView {
    pub id: u64,
    #[serde(flatten)]
    pub spec: FaultSpec,
    pub hits: u64,
    pub remaining: Option<u64>,
}

#[derive(Debug)]
struct Rule {
    id: u64,
    spec: FaultSpec,
    regex: Option<regex::Regex>,
    remaining: Option<u64>,
    until: Option<Instant>,
    hits: u64,
}

/// One logged request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LoggedRequest {
    pub seq: u64,
    pub surface: Surface,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
    /// 0 when the connection was dropped.
    pub status: u16,
    pub unix_ms: u64,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub principal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fault: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid path regex: {0}")]
pub struct BadRule(String);

#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<Rule>>,
    next_id: Mutex<u64>,
    log: Mutex<VecDeque<LoggedRequest>>,
    seq: Mutex<u64>,
}

impl Faults {
    pub fn add(&self, spec: FaultSpec) -> Result<u64, BadRule> {
        let regex = match &spec.path {
            Some(p) => Some(
                regex::RegexBuilder::new(p)
                    .case_insensitive(true)
                    .build()
                    .map_err(|e| BadRule(e.to_string()))?,
            ),
            None => None,
        };
        let id = {
            let mut n = self.next_id.lock();
            *n += 1;
            *n
        };
        let until = spec.duration_ms.map(|ms| Instant::now() + Duration::from_millis(ms));
        let remaining = spec.count;
        self.rules.lock().push(Rule { id, spec, regex, remaining, until, hits: 0 });
        Ok(id)
    }

    pub fn remove(&self, id: u64) -> bool {
        let mut rules = self.rules.lock();
        let before = rules.len();
        rules.retain(|r| r.id != id);
        rules.len() != before
    }

    pub fn clear(&self) {
        self.rules.lock().clear();
    }

    pub fn list(&self) -> Vec<FaultRuleView> {
        self.rules
            .lock()
            .iter()
            .map(|r| FaultRuleView { id: r.id, spec: r.spec.clone(), hits: r.hits, remaining: r.remaining })
            .collect()
    }

    /// Finds the first live rule matching the request and consumes one use of it.
    pub fn take(
        &self,
        surface: Surface,
        method: &Method,
        path: &str,
        node: Option<&str>,
    ) -> Option<(u64, FaultAction)> {
        let now = Instant::now();
        let mut rules = self.rules.lock();
        rules.retain(|r| r.remaining != Some(0) && r.until.is_none_or(|u| u > now));
        let rule = rules.iter_mut().find(|r| {
            r.spec.surface.is_none_or(|s| s == surface)
                && r.spec.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
                && r.regex.as_ref().is_none_or(|re| re.is_match(path))
                && r.spec.node.as_deref().is_none_or(|n| node.is_some_and(|x| x.eq_ignore_ascii_case(n)))
        })?;
        rule.hits += 1;
        if let Some(n) = rule.remaining.as_mut() {
            *n -= 1;
        }
        Some((rule.id, rule.spec.action.clone()))
    }

    pub fn record(&self, mut entry: LoggedRequest) {
        let mut seq = self.seq.lock();
        *seq += 1;
        entry.seq = *seq;
        let mut log = self.log.lock();
        if log.len() >= LOG_CAPACITY {
            log.pop_front();
        }
        log.push_back(entry);
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.log.lock().iter().cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.log.lock().clear();
    }
}

/// Set by handlers on their response so the log can name the caller.
#[derive(Debug, Clone)]
pub struct LoggedPrincipal(pub String);

/// Per-listener context of the fault and log middleware.
#[derive(Clone)]
pub struct SurfaceCtx {
    pub shared: SharedState,
    pub surface: Surface,
    pub node: Option<Arc<str>>,
}

fn default_body(surface: Surface, status: StatusCode) -> Value {
    let reason = status.canonical_reason().unwrap_or("Error");
    match surface {
        Surface::Arm => {
            json!({"error": {"code": reason.replace(' ', ""), "message": format!("Injected fault: {reason}.")}})
        }
        Surface::Login => json!({
            "error": "temporarily_unavailable",
            "error_description": format!("AADSTS50196: Injected fault: {reason}."),
            "error_codes": [50196],
        }),
        Surface::Imds | Surface::Admin => json!({"error": "invalid_request", "error_description": reason}),
    }
}

fn throttle_body(surface: Surface) -> Value {
    match surface {
        Surface::Arm => json!({"error": {
            "code": "TooManyRequests",
            "message": "The request is being throttled as the limit has been reached for operation type - Read_ObservationWindow_00:05:00.",
        }}),
        Surface::Login => json!({
            "error": "temporarily_unavailable",
            "error_description": "AADSTS50196: The server terminated an operation because it encountered a client request loop.",
            "error_codes": [50196],
        }),
        Surface::Imds | Surface::Admin => {
            json!({"error": "too_many_requests", "error_description": "Too many requests, please retry later"})
        }
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (status, [(http::header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string())
        .into_response()
}

/// The middleware: applies a matching fault, runs the handler, logs the request.
pub async fn layer(State(ctx): State<SurfaceCtx>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let exempt = ctx.surface == Surface::Admin && (path.starts_with("/admin/faults") || path == "/healthz");
    let fault =
        if exempt { None } else { ctx.shared.faults.take(ctx.surface, &method, &path, ctx.node.as_deref()) };
    let fault_id = fault.as_ref().map(|(id, _)| *id);
    if let Some((id, action)) = &fault {
        tracing::debug!(surface = ctx.surface.as_str(), %method, %path, fault = id, ?action, "Injecting fault");
    }
    let log = |status: u16, principal: Option<String>| {
        if ctx.surface == Surface::Admin {
            return;
        }
        ctx.shared.faults.record(LoggedRequest {
            seq: 0,
            surface: ctx.surface,
            node: ctx.node.as_deref().map(str::to_string),
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            status,
            unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            duration_ms: start.elapsed().as_millis() as u64,
            principal,
            fault: fault_id,
        });
    };
    let response = match fault.map(|(_, a)| a) {
        None => next.run(req).await,
        Some(FaultAction::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        Some(FaultAction::Status { status, body, headers }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = json_response(status, &body.unwrap_or_else(|| default_body(ctx.surface, status)));
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    resp.headers_mut().insert(k, v);
                }
            }
            resp
        }
        Some(FaultAction::Throttle { retry_after_secs }) => {
            let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &throttle_body(ctx.surface));
            resp.headers_mut().insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            resp
        }
        Some(FaultAction::Drop) => {
            log(0, None);
            if let Some(dropper) = req.extensions().get::<ConnectionDropper>().cloned() {
                dropper.drop_connection();
                std::future::pending::<()>().await;
            }
            // Without a connection (in-process `oneshot`), there is nothing to drop.
            return (StatusCode::BAD_GATEWAY, "connection dropped").into_response();
        }
    };
    let principal = response.extensions().get::<LoggedPrincipal>().map(|p| p.0.clone());
    log(response.status().as_u16(), principal);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_expire_by_count() {
        let f = Faults::default();
        let mut spec = FaultSpec::new(Surface::Arm, FaultAction::Drop);
        spec.method = Some("patch".into());
        spec.path = Some("virtualMachineScaleSets/[^/]+$".into());
        spec.count = Some(2);
        let id = f.add(spec).unwrap();
        let p = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualmachinescalesets/x";
        assert!(f.take(Surface::Arm, &Method::GET, p, None).is_none());
        assert!(f.take(Surface::Imds, &Method::PATCH, p, None).is_none());
        assert_eq!(f.take(Surface::Arm, &Method::PATCH, p, None).map(|x| x.0), Some(id));
        assert!(f.take(Surface::Arm, &Method::PATCH, p, None).is_some());
        assert!(f.take(Surface::Arm, &Method::PATCH, p, None).is_none(), "used up");
        assert!(f.list().is_empty());
        assert!(
            f.add(FaultSpec { path: Some("(".into()), ..FaultSpec::new(Surface::Arm, FaultAction::Drop) })
                .is_err()
        );
    }

    #[test]
    fn node_scoped_rules_only_hit_that_node() {
        let f = Faults::default();
        f.add(FaultSpec { node: Some("n1".into()), ..FaultSpec::new(Surface::Imds, FaultAction::Drop) })
            .unwrap();
        assert!(f.take(Surface::Imds, &Method::GET, "/", Some("n0")).is_none());
        assert!(f.take(Surface::Imds, &Method::GET, "/", Some("N1")).is_some());
    }
}
