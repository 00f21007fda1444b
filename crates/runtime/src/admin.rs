//! The admin listener, separate from any serving port: `/healthz` (200 with a body the component
//! chooses — upstream's `Active`/`Not Active`), `/readyz` (200 once every named condition holds,
//! else 503 naming what is missing) and `/metrics` (Prometheus text).
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{StatusCode, header};
use prometheus_client::registry::Registry;

/// Named readiness conditions; ready when all are true.
#[derive(Debug, Default)]
pub struct Readiness {
    parts: parking_lot::Mutex<Vec<(&'static str, Arc<AtomicBool>)>>,
}

impl Readiness {
    /// A new condition, initially false.
    pub fn part(&self, name: &'static str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.parts.lock().push((name, flag.clone()));
        flag
    }

    /// Names of the conditions not yet met.
    pub fn missing(&self) -> Vec<&'static str> {
        self.parts.lock().iter().filter(|(_, f)| !f.load(Ordering::SeqCst)).map(|(n, _)| *n).collect()
    }
}

/// Body of `/healthz`.
pub type Health = Arc<dyn Fn() -> &'static str + Send + Sync>;

#[derive(Clone)]
struct AdminState {
    readiness: Arc<Readiness>,
    health: Health,
    registry: Arc<Registry>,
}

/// The admin router.
pub fn app(readiness: Arc<Readiness>, health: Health, registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { readiness, health, registry })
}

/// Serves the admin router on `0.0.0.0:<port>` for each distinct port given.
pub async fn serve(router: Router, ports: &[u16]) -> std::io::Result<()> {
    let mut seen = Vec::new();
    for &port in ports.iter().filter(|p| **p != 0) {
        if seen.contains(&port) {
            continue;
        }
        seen.push(port);
        let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
        let app = router.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    Ok(())
}

async fn healthz(State(s): State<AdminState>) -> &'static str {
    (s.health)()
}

async fn readyz(State(s): State<AdminState>) -> Response {
    let missing = s.readiness.missing();
    if missing.is_empty() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("waiting for: {}\n", missing.join(", "))).into_response()
    }
}

async fn metrics(State(s): State<AdminState>) -> Response {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => {
            ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                .into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn get(router: &Router, path: &str) -> (StatusCode, String) {
        let resp = router
            .clone()
            .oneshot(http::Request::get(path).body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        (status, String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ready_only_when_every_condition_holds_and_says_what_is_missing() {
        let readiness = Arc::new(Readiness::default());
        let pods = readiness.part("pods");
        let ipt = readiness.part("iptables");
        let router = app(readiness, Arc::new(|| "Active"), Arc::new(Registry::default()));
        assert_eq!(
            get(&router, "/readyz").await,
            (StatusCode::SERVICE_UNAVAILABLE, "waiting for: pods, iptables\n".into())
        );
        pods.store(true, Ordering::SeqCst);
        ipt.store(true, Ordering::SeqCst);
        assert_eq!(get(&router, "/readyz").await, (StatusCode::OK, "ready\n".into()));
        assert_eq!(get(&router, "/healthz").await, (StatusCode::OK, "Active".into()));
    }
}
