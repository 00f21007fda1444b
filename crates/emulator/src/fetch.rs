//! Outbound HTTPS GET of JSON documents (a federated issuer's OIDC discovery document and JWKS), as
//! Entra ID does for federated identity credentials. Only loopback hosts are contacted: anything else is
//! refused before a socket is opened. Trusted CAs are the configured ones only.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};

const MAX_BODY: usize = 1 << 20;
/// What Entra ID accepts: discovery documents are `application/json`, JWKS documents are
/// `application/jwk-set+json` (the Kubernetes API server answers 406 to a JWKS request that
/// accepts only `application/json`).
const ACCEPT: &str = "application/json, application/jwk-set+json, */*;q=0.5";

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("'{0}' is not a valid https URL")]
    BadUrl(String),
    #[error("refusing to contact non-loopback host '{0}'")]
    NotLoopback(String),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(u16),
    #[error("response is not JSON: {0}")]
    NotJson(String),
}

/// The socket address to use for a loopback URL, or why it may not be contacted.
pub fn loopback_target(url: &url::Url) -> Result<(IpAddr, u16, String), FetchError> {
    if url.scheme() != "https" {
        return Err(FetchError::BadUrl(url.to_string()));
    }
    let port = url.port_or_known_default().unwrap_or(443);
    match url.host() {
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Ok((IpAddr::V4(Ipv4Addr::LOCALHOST), port, d.to_string()))
        }
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok((IpAddr::V4(ip), port, ip.to_string())),
        Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok((IpAddr::V6(ip), port, ip.to_string())),
        Some(other) => Err(FetchError::NotLoopback(other.to_string())),
        None => Err(FetchError::BadUrl(url.to_string())),
    }
}

/// GETs `url` and parses the body as JSON.
pub async fn get_json(url: &str, roots: &[CertificateDer<'static>]) -> Result<serde_json::Value, FetchError> {
    let parsed = url::Url::parse(url).map_err(|_| FetchError::BadUrl(url.to_string()))?;
    let (ip, port, host) = loopback_target(&parsed)?;
    let config = crate::tls::client_config(roots).map_err(|e| FetchError::Transport(e.to_string()))?;
    let fut = async {
        let tcp = tokio::net::TcpStream::connect((ip, port))
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| FetchError::Transport(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or(&host)),
            None => parsed.host_str().unwrap_or(&host).to_string(),
        };
        let path = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let req = http::Request::get(path)
            .header(http::header::HOST, authority)
            .header(http::header::ACCEPT, ACCEPT)
            .header(http::header::USER_AGENT, "podid-emulator")
            .body(Empty::<bytes::Bytes>::new())
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| FetchError::Transport(e.to_string()))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        serde_json::from_slice(&body).map_err(|e| FetchError::NotJson(e.to_string()))
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| FetchError::Transport("timed out".into()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_https_is_allowed() {
        let ok = |u: &str| loopback_target(&url::Url::parse(u).unwrap());
        assert!(ok("https://127.0.0.1:6443/x").is_ok());
        assert!(ok("https://127.5.6.7/x").is_ok());
        assert!(ok("https://localhost:1/x").is_ok());
        assert!(ok("https://[::1]:1/x").is_ok());
        assert!(matches!(ok("https://169.254.169.254/x"), Err(FetchError::NotLoopback(_))));
        assert!(matches!(ok("https://example.com/x"), Err(FetchError::NotLoopback(_))));
        assert!(matches!(ok("http://127.0.0.1/x"), Err(FetchError::BadUrl(_))));
    }
}
