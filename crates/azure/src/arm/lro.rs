//! Long-running operations (PATCH/PUT), the way go-autorest and azure-mgmt-core follow them:
//!
//! ```text
//!  initial response has                     then
//!  a terminal body.properties.provisioningState   nothing: the operation is over (no poll)
//!  Azure-AsyncOperation: U                  GET U until body.status ∈ {Succeeded, Failed, Canceled};
//!                                           the result is the initial body (the resource as
//!                                           updated), or a GET of the resource when it had none
//!  202 + Location: U                        GET U while it answers 202; the first other 2xx is the
//!                                           result (an empty body → GET the resource)
//!  neither                                  body.properties.provisioningState; while not terminal,
//!                                           GET the resource
//! ```
//!
//! The first poll goes out at once; later ones wait the last response's `Retry-After`, or
//! `poll_interval` when it sent none (or 0). Everything ends by `max_poll_duration`.
use std::time::SystemTime;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::time::Instant;
use url::Url;

use super::{ArmClient, Error, Mode, Response};
use crate::http::retry_after;

/// Whether a provisioning or operation state ends the operation.
pub(crate) fn is_terminal(state: &str) -> bool {
    ["Succeeded", "Failed", "Canceled"].iter().any(|t| t.eq_ignore_ascii_case(state))
}

fn is_success(state: &str) -> bool {
    state.eq_ignore_ascii_case("Succeeded")
}

/// `properties.provisioningState` of a resource body.
pub(crate) fn provisioning_state(body: &Value) -> Option<&str> {
    body.pointer("/properties/provisioningState").and_then(Value::as_str)
}

/// The state of one running operation.
struct Poller<'a> {
    client: &'a ArmClient,
    resource_url: &'a Url,
    resource: &'a str,
    subscription: &'a str,
    request_id: &'a str,
    started: Instant,
    deadline: Instant,
    /// Wait before the next poll (zero for the first).
    next_wait: std::time::Duration,
}

impl ArmClient {
    /// Follows the operation `initial` started until it ends; returns the resource body.
    pub(crate) async fn complete(
        &self,
        initial: Response,
        resource_url: &Url,
        resource: &str,
        subscription: &str,
        request_id: &str,
    ) -> Result<Value, Error> {
        let started = Instant::now();
        let mut p = Poller {
            client: self,
            resource_url,
            resource,
            subscription,
            request_id,
            started,
            deadline: started + self.options().max_poll_duration,
            next_wait: std::time::Duration::ZERO,
        };
        // What the initial response says about the resource (nothing for a 202 or a non-JSON body).
        let body = if initial.status == StatusCode::ACCEPTED {
            Value::Null
        } else {
            initial.json().unwrap_or_default()
        };
        if provisioning_state(&body).is_some_and(is_terminal) {
            return p.provisioning_state(body).await;
        }
        if let Some(op) = initial.header("azure-asyncoperation") {
            let op = self.follow(op, &initial.url)?;
            return p.async_operation(&op, body).await;
        }
        if initial.status == StatusCode::ACCEPTED
            && let Some(location) = initial.header("location")
        {
            let location = self.follow(location, &initial.url)?;
            return p.location(&location).await;
        }
        p.provisioning_state(initial.json()?).await
    }
}

impl Poller<'_> {
    async fn poll(&mut self, url: &Url) -> Result<Response, Error> {
        if Instant::now() + self.next_wait > self.deadline {
            return Err(Error::PollTimeout {
                resource: self.resource.to_string(),
                waited: self.started.elapsed(),
            });
        }
        tokio::time::sleep(self.next_wait).await;
        let mode = Mode::Poll { deadline: self.deadline };
        let r = self.client.send(Method::GET, url, None, self.subscription, self.request_id, mode).await?;
        let interval = self.client.options().poll_interval;
        self.next_wait =
            retry_after(&r.headers, SystemTime::now()).filter(|d| !d.is_zero()).unwrap_or(interval);
        Ok(r)
    }

    async fn async_operation(&mut self, op: &Url, mut initial: Value) -> Result<Value, Error> {
        loop {
            let r = self.poll(op).await?;
            let body = r.json()?;
            let Some(status) = body.get("status").and_then(Value::as_str) else {
                return Err(Error::InvalidResponse {
                    url: op.to_string(),
                    message: "no status in the operation body".into(),
                });
            };
            tracing::debug!(status, "ARM operation polled");
            if !is_terminal(status) {
                continue;
            }
            if !is_success(status) {
                return Err(self.failed(status, &body));
            }
            if let Some(state) = initial.pointer_mut("/properties/provisioningState") {
                *state = Value::from(status);
                return Ok(initial);
            }
            if initial.is_object() && initial.get("id").is_some() {
                return Ok(initial);
            }
            self.next_wait = std::time::Duration::ZERO;
            let resource_url = self.resource_url.clone();
            return self.poll(&resource_url).await?.json();
        }
    }

    async fn location(&mut self, location: &Url) -> Result<Value, Error> {
        loop {
            let r = self.poll(location).await?;
            if r.status == StatusCode::ACCEPTED {
                continue;
            }
            let body = r.json()?;
            if body.is_null() {
                self.next_wait = std::time::Duration::ZERO;
                let resource_url = self.resource_url.clone();
                return self.poll(&resource_url).await?.json();
            }
            return match provisioning_state(&body) {
                Some(state) if is_terminal(state) && !is_success(state) => Err(self.failed(state, &body)),
                _ => Ok(body),
            };
        }
    }

    async fn provisioning_state(&mut self, mut body: Value) -> Result<Value, Error> {
        loop {
            match provisioning_state(&body) {
                None => return Ok(body),
                Some(s) if is_success(s) => return Ok(body),
                Some(s) if is_terminal(s) => return Err(self.failed(s, &body)),
                Some(s) => tracing::debug!(state = s, "ARM resource still provisioning"),
            }
            let resource_url = self.resource_url.clone();
            body = self.poll(&resource_url).await?.json()?;
        }
    }

    fn failed(&self, state: &str, body: &Value) -> Error {
        let error = body.get("error").or_else(|| body.pointer("/properties/error"));
        let text =
            |k: &str| error.and_then(|e| e.get(k)).and_then(Value::as_str).unwrap_or_default().to_string();
        Error::OperationFailed {
            resource: self.resource.to_string(),
            state: state.to_string(),
            code: text("code"),
            message: text("message"),
        }
    }
}
