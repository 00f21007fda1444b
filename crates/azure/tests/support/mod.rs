//! A scripted HTTP server on 127.0.0.1:0: each request takes the next scripted answer and is
//! recorded (method, path, query, headers, body, and the tokio instant it arrived).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use podid_azure::ArmClient;
use podid_azure::arm::ArmOptions;
use podid_azure::credential::StaticToken;
use podid_azure::http::{Backoff, HttpOptions, build_client};
use podid_azure::token::Token;
use url::Url;

/// One scripted answer, optionally checking the request's method and path.
#[derive(Clone, Debug)]
pub struct Step {
    pub method: Option<Method>,
    pub path: Option<String>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Step {
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self { method: None, path: None, status, headers: Vec::new(), body: body.into() }
    }

    pub fn expect(mut self, method: Method, path: &str) -> Self {
        self.method = Some(method);
        self.path = Some(path.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: String,
    pub at: tokio::time::Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Script {
    steps: VecDeque<Step>,
    log: Vec<Recorded>,
    mismatches: Vec<String>,
}

/// The running fake.
#[derive(Clone)]
pub struct Fake {
    pub url: Url,
    script: Arc<Mutex<Script>>,
}

impl Fake {
    pub async fn start(steps: Vec<Step>) -> Self {
        let script = Arc::new(Mutex::new(Script { steps: steps.into(), ..Script::default() }));
        let router = axum::Router::new().fallback(answer).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, script }
    }

    /// Adds answers at the end of the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().steps.extend(steps);
    }

    pub fn log(&self) -> Vec<Recorded> {
        self.script.lock().log.clone()
    }

    /// Panics if a request did not match its step or scripted answers are left over.
    pub fn assert_done(&self) {
        let s = self.script.lock();
        assert!(s.mismatches.is_empty(), "unexpected requests: {:#?}", s.mismatches);
        assert!(s.steps.is_empty(), "unused scripted answers: {:#?}", s.steps);
    }

    /// An absolute URL on this fake.
    pub fn at(&self, path: &str) -> String {
        self.url.join(path.trim_start_matches('/')).unwrap().to_string()
    }
}

async fn answer(
    State(script): State<Arc<Mutex<Script>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut s = script.lock();
    s.log.push(Recorded {
        method: method.clone(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: tokio::time::Instant::now(),
    });
    let Some(step) = s.steps.pop_front() else {
        s.mismatches.push(format!("{method} {uri}: script exhausted"));
        return (StatusCode::IM_A_TEAPOT, "script exhausted").into_response();
    };
    if step.method.as_ref().is_some_and(|m| *m != method)
        || step.path.as_ref().is_some_and(|p| p != uri.path())
    {
        s.mismatches.push(format!("{method} {uri}: expected {:?} {:?}", step.method, step.path));
    }
    let mut resp = (StatusCode::from_u16(step.status).unwrap(), step.body).into_response();
    resp.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    for (k, v) in step.headers {
        resp.headers_mut().insert(HeaderName::try_from(k).unwrap(), HeaderValue::try_from(v).unwrap());
    }
    resp
}

/// A token the fake never checks.
pub fn static_token() -> Arc<StaticToken> {
    let token = Token::from_response(
        br#"{"access_token":"fake-arm-token","expires_in":3600}"#,
        "https://management.azure.com/",
        std::time::SystemTime::now(),
    )
    .unwrap();
    Arc::new(StaticToken(token))
}

/// Options for paused-clock tests: no reqwest timers, deterministic back-off.
pub fn options() -> ArmOptions {
    ArmOptions {
        backoff: Backoff {
            max_retries: 3,
            initial: std::time::Duration::from_secs(1),
            max: std::time::Duration::from_secs(8),
            jitter: false,
        },
        poll_interval: std::time::Duration::from_secs(5),
        ..ArmOptions::default()
    }
}

/// An ARM client of the fake with a static token.
pub fn arm_client(fake: &Fake, options: ArmOptions) -> ArmClient {
    let http = build_client(&test_http()).unwrap();
    ArmClient::new(http, fake.url.clone(), "https://management.azure.com/", static_token(), options)
}

/// HTTP options for tests: loopback only, so never a proxy; no reqwest timers under a paused clock.
pub fn test_http() -> HttpOptions {
    HttpOptions { timeout: None, connect_timeout: None, proxy_from_env: false, ..HttpOptions::default() }
}
