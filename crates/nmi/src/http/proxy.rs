//! Forwarding of allowlisted metadata calls to IMDS (upstream §3.7): same method, path, query,
//! end-to-end headers and body (at most [`MAX_BODY`] bytes); the answer comes back verbatim;
//! transport errors become 500 as upstream's. Whatever HTTP version the pod spoke, IMDS is asked
//! over HTTP/1.1 (it speaks nothing else), and hop-by-hop headers stay on the pod's hop.
use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, StatusCode, Uri, Version, header};
use http_body_util::{BodyExt, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::plain;

/// Largest request body forwarded (IMDS bodies are scheduled-event acknowledgements of a few
/// hundred bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Forwards requests to one IMDS base URL (`http://<host>:<port>`).
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

    /// The base URL requests go to.
    pub fn base(&self) -> &Uri {
        &self.base
    }

    /// Forwards `req` and returns IMDS's answer unchanged.
    pub async fn forward(&self, req: Request) -> Response {
        let too_long = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|n| n > MAX_BODY as u64);
        if too_long {
            return plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large for the metadata endpoint");
        }
        let (mut parts, body) = req.into_parts();
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let target = format!("{}{pq}", self.base.to_string().trim_end_matches('/'));
        let Ok(uri) = target.parse::<Uri>() else {
            return plain(StatusCode::BAD_REQUEST, "Invalid request");
        };
        for name in &HOP_BY_HOP {
            parts.headers.remove(name);
        }
        if let Some(authority) = uri.authority().and_then(|a| a.as_str().parse().ok()) {
            parts.headers.insert(header::HOST, authority);
        }
        parts.uri = uri;
        parts.version = Version::HTTP_11;
        let body = Body::new(Limited::new(body, MAX_BODY).map_err(axum::Error::new));
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => resp.map(Body::new).into_response(),
            Err(e) => plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("failed to reach the metadata endpoint: {e}"),
            ),
        }
    }
}
