//! One ARM request, end to end: the throttle gate, the bearer token, the attempt, and the verdict
//! on its outcome (done, retry after a delay, or wait for the gate).
//!
//! ```text
//!   no answer            ─▶ retry after back-off, then Error::Transport
//!   2xx                  ─▶ Response
//!   429 | Retry-After    ─▶ close the subscription's gate (Retry-After, else default_throttle)
//!   429                  ─▶ Error::Arm at once (a poll waits for the gate instead)
//!   408 | 5xx           ─▶ retry after max(back-off, Retry-After) unless Retry-After > max_retry_after
//!   other               ─▶ Error::Arm
//! ```
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::{ArmClient, ArmError, Error};
use crate::http::retry_after;
use crate::token_error::error_chain;

/// How [`ArmClient::send`] treats a closed throttle gate.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// Fail with [`Error::Throttled`].
    Call,
    /// Wait for the gate (polls of an operation already running), up to the deadline.
    Poll { deadline: Instant },
}

/// A successful response.
#[derive(Debug)]
pub(crate) struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub url: Url,
}

impl Response {
    /// The body as JSON (`Null` when empty).
    pub fn json(&self) -> Result<Value, Error> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| Error::InvalidResponse {
            url: self.url.to_string(),
            message: format!("not JSON: {e}"),
        })
    }

    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What to do after one attempt.
enum Verdict {
    Done(Result<Response, Error>),
    Retry(Duration),
    /// Send again once the gate opens (a throttled poll).
    AfterGate,
}

/// One request as the operations describe it.
struct Request<'a> {
    method: Method,
    url: &'a Url,
    body: Option<&'a Value>,
    subscription: &'a str,
    request_id: &'a str,
}

impl ArmClient {
    /// Sends one request with the throttle gate, a bearer token and transient retries.
    pub(crate) async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        subscription: &str,
        request_id: &str,
        mode: Mode,
    ) -> Result<Response, Error> {
        let req = Request { method, url, body, subscription, request_id };
        let mut retry = 0;
        loop {
            self.pass_gate(subscription, mode).await?;
            let outcome = self.attempt(&req).await?;
            match self.judge(&req, mode, outcome, retry) {
                Verdict::Done(result) => return result,
                Verdict::Retry(delay) => {
                    tokio::time::sleep(delay).await;
                    retry += 1;
                }
                Verdict::AfterGate => {}
            }
        }
    }

    /// Returns once the subscription's gate is open; fails while it is closed, unless polling.
    async fn pass_gate(&self, subscription: &str, mode: Mode) -> Result<(), Error> {
        while let Err(until) = self.inner.throttle.check(subscription) {
            match mode {
                Mode::Poll { deadline } if until <= deadline => tokio::time::sleep_until(until).await,
                _ => {
                    let remaining = until.saturating_duration_since(Instant::now());
                    return Err(Error::Throttled {
                        subscription: subscription.to_string(),
                        until,
                        remaining,
                    });
                }
            }
        }
        Ok(())
    }

    /// Sends once; `Ok(Err(_))` when no answer came.
    async fn attempt(
        &self,
        req: &Request<'_>,
    ) -> Result<Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error>, Error> {
        let token = self.inner.credential.token(&self.inner.resource).await?;
        let mut request = self
            .inner
            .http
            .request(req.method.clone(), req.url.clone())
            .bearer_auth(token.access_token.expose())
            .header("x-ms-client-request-id", req.request_id)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = req.body {
            request = request.json(b);
        }
        let sent = Instant::now();
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (status, headers) = (response.status(), response.headers().clone());
        tracing::debug!(
            method = %req.method, url = req.url.path(), status = status.as_u16(), elapsed = ?sent.elapsed(),
            arm_request_id = headers.get("x-ms-request-id").and_then(|v| v.to_str().ok()),
            "ARM request answered"
        );
        Ok(response.bytes().await.map(|b| (status, headers, b.to_vec())))
    }

    fn judge(
        &self,
        req: &Request<'_>,
        mode: Mode,
        outcome: Result<(StatusCode, HeaderMap, Vec<u8>), reqwest::Error>,
        retry: u32,
    ) -> Verdict {
        let options = &self.inner.options;
        let (status, headers, body) = match outcome {
            Ok(answer) => answer,
            Err(e) => {
                let message = error_chain(&e);
                tracing::debug!(method = %req.method, url = req.url.path(), retry, error = message, "ARM request got no answer");
                if retry < options.backoff.max_retries {
                    return Verdict::Retry(options.backoff.delay(retry));
                }
                let (method, url) = (req.method.to_string(), req.url.to_string());
                return Verdict::Done(Err(Error::Transport { method, url, message }));
            }
        };
        if status.is_success() {
            return Verdict::Done(Ok(Response { status, headers, body, url: req.url.clone() }));
        }
        let wait = retry_after(&headers, SystemTime::now());
        let request_id = headers.get("x-ms-request-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let error = ArmError::from_body(status.as_u16(), &body, wait, request_id);
        let throttled = status == StatusCode::TOO_MANY_REQUESTS;
        if throttled || wait.is_some() {
            let pause = wait.unwrap_or(options.default_throttle);
            tracing::info!(
                subscription = req.subscription,
                ?pause,
                status = status.as_u16(),
                "ARM asked to back off"
            );
            self.inner.throttle.block(req.subscription, Instant::now() + pause);
        }
        if throttled && matches!(mode, Mode::Poll { .. }) {
            return Verdict::AfterGate;
        }
        let transient = status == StatusCode::REQUEST_TIMEOUT || status.is_server_error();
        let too_long = wait.is_some_and(|w| w > options.max_retry_after);
        if !transient || too_long || retry >= options.backoff.max_retries {
            return Verdict::Done(Err(error.into()));
        }
        Verdict::Retry(options.backoff.delay(retry).max(wait.unwrap_or_default()))
    }
}
