//! Transparent forwarding of non-identity metadata calls to IMDS (upstream §3.7): same method,
//! path, query, headers and body; the answer comes back verbatim; transport errors become 500.
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{StatusCode, Uri, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::plain;

/// Forwards requests to one IMDS base URL (`http://<metadata-ip>:<metadata-port>`).
#[derive(Clone, Debug)]
pub struct Proxy {
    base: Uri,
    client: Client<HttpConnector, Body>,
}

/// The IMDS address is not a usable `http://host:port` URL.
#[derive(Debug, thiserror::Error)]
#[error("invalid metadata endpoint {0:?}: expected http://<ip>:<port>")]
pub struct InvalidEndpoint(String);

impl Proxy {
    pub fn new(base: &str) -> Result<Self, InvalidEndpoint> {
        let uri: Uri = base.parse().map_err(|_| InvalidEndpoint(base.to_string()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(InvalidEndpoint(base.to_string()));
        }
        Ok(Self { base: uri, client: Client::builder(TokioExecutor::new()).build_http() })
    }

    /// Forwards `req` and returns IMDS's answer unchanged.
    pub async fn forward(&self, mut req: Request) -> Response {
        let pq = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = format!("{}{pq}", self.base.to_string().trim_end_matches('/'));
        let Ok(uri) = target.parse::<Uri>() else {
            return plain(StatusCode::BAD_REQUEST, "Invalid request");
        };
        if let Some(authority) = uri.authority().and_then(|a| a.as_str().parse().ok()) {
            req.headers_mut().insert(header::HOST, authority);
        }
        *req.uri_mut() = uri;
        match self.client.request(req).await {
            Ok(resp) => resp.map(Body::new).into_response(),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("failed to reach the metadata endpoint: {e}"),
            ),
        }
    }
}
