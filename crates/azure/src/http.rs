//! The HTTP plumbing every client shares: the rustls crypto provider, a reqwest client that also
//! trusts extra CA files (the emulator has its own CA), `Retry-After` parsing and back-off.
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use reqwest::header::HeaderMap;

use crate::proxy::ProxySettings;

/// Installs rustls' `ring` provider as the process default. Safe to call any number of times;
/// a provider installed earlier (by anyone) is kept.
pub fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another installer is fine: a provider is installed either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Settings for building a [`reqwest::Client`].
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// PEM files whose certificates are trusted in addition to the system roots.
    pub extra_ca_files: Vec<PathBuf>,
    /// Time limit for one request attempt (connect, send, receive). `None` disables it.
    pub timeout: Option<Duration>,
    /// Time limit for establishing a connection. `None` disables it.
    pub connect_timeout: Option<Duration>,
    /// `User-Agent` header.
    pub user_agent: String,
    /// Honour `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (see [`crate::proxy`]; never for loopback,
    /// link-local or IMDS). `false`: no proxy at all.
    pub proxy_from_env: bool,
    /// Explicit proxy settings instead of the environment's (when `proxy_from_env`).
    pub proxy: Option<ProxySettings>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            extra_ca_files: Vec::new(),
            timeout: Some(Duration::from_secs(30)),
            connect_timeout: Some(Duration::from_secs(10)),
            user_agent: default_user_agent(),
            proxy_from_env: true,
            proxy: None,
        }
    }
}

/// `podid/<version>`.
pub fn default_user_agent() -> String {
    format!("podid/{}", env!("CARGO_PKG_VERSION"))
}

/// A client that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A CA file could not be read.
    #[error("reading CA file {path}: {source}")]
    ReadCa { path: PathBuf, source: std::io::Error },
    /// A CA file holds no usable PEM certificate.
    #[error("CA file {path} holds no PEM certificate: {message}")]
    BadCa { path: PathBuf, message: String },
    /// reqwest refused the configuration.
    #[error("building the HTTP client: {0}")]
    Build(String),
}

/// Builds a reqwest client for ARM and Entra ID (installs the crypto provider first).
pub fn build_client(options: &HttpOptions) -> Result<reqwest::Client, HttpError> {
    install_crypto_provider();
    let mut builder = reqwest::Client::builder()
        .user_agent(options.user_agent.clone())
        .redirect(reqwest::redirect::Policy::none());
    if let Some(t) = options.timeout {
        builder = builder.timeout(t);
    }
    if let Some(t) = options.connect_timeout {
        builder = builder.connect_timeout(t);
    }
    builder = match (&options.proxy, options.proxy_from_env) {
        (_, false) => builder.no_proxy(),
        (Some(settings), true) => with_proxy(builder, settings.clone()),
        (None, true) => with_proxy(builder, ProxySettings::from_env()),
    };
    let mut certs = Vec::new();
    for path in &options.extra_ca_files {
        let pem = std::fs::read(path).map_err(|source| HttpError::ReadCa { path: path.clone(), source })?;
        let bundle = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| HttpError::BadCa { path: path.clone(), message: e.to_string() })?;
        if bundle.is_empty() {
            return Err(HttpError::BadCa { path: path.clone(), message: "no certificates found".into() });
        }
        certs.extend(bundle);
    }
    if !certs.is_empty() {
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(|e| HttpError::Build(e.to_string()))
}

/// Routes each request as `settings` decide (reqwest's own environment handling is replaced: it
/// would proxy loopback, and reads `ALL_PROXY`).
fn with_proxy(builder: reqwest::ClientBuilder, settings: ProxySettings) -> reqwest::ClientBuilder {
    if !settings.is_configured() {
        return builder.no_proxy();
    }
    tracing::debug!(proxy = settings.describe(), "HTTP client uses a proxy");
    builder.proxy(reqwest::Proxy::custom(move |url| settings.proxy_for(url).cloned()))
}

/// How long a response asks the caller to wait: `retry-after-ms` / `x-ms-retry-after-ms`
/// (milliseconds), else `Retry-After` (seconds or an HTTP date, relative to `now`).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    parse_retry_after(header_str(headers, "retry-after")?, now)
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP date (a date in the past means 0).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Exponential back-off with jitter for transient failures: the settings of one
/// [`backon::ExponentialBuilder`], the back-off every podid component uses (the controller's
/// per-key retries and the watches' reconnects too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Retries after the first attempt (0 disables retrying).
    pub max_retries: u32,
    /// Delay before the first retry.
    pub initial: Duration,
    /// Upper bound of any one delay before jitter.
    pub max: Duration,
    /// Add a random 0–100 % to each delay so clients do not retry in lockstep (backon's jitter).
    pub jitter: bool,
}

impl Default for Backoff {
    /// 3 retries after 1–2 s, 2–4 s, 4–8 s.
    fn default() -> Self {
        Self { max_retries: 3, initial: Duration::from_secs(1), max: Duration::from_secs(16), jitter: true }
    }
}

impl Backoff {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_retries: 0, ..Self::default() }
    }

    /// The delay before retry number `retry` (0-based): `initial`·2^retry capped at `max`, plus
    /// jitter. Past `max_retries` the delay stays at the cap.
    pub fn delay(&self, retry: u32) -> Duration {
        let mut policy = ExponentialBuilder::new()
            .with_min_delay(self.initial)
            .with_max_delay(self.max)
            .with_factor(2.0)
            .without_max_times();
        if self.jitter {
            policy = policy.with_jitter();
        }
        // Doubling reaches any cap within 64 steps of a non-zero start; stop walking there.
        policy.build().nth(retry.min(64) as usize).unwrap_or(self.max)
    }
}

/// Cuts a response body for error messages (at a character boundary).
pub(crate) fn truncate_body(body: &[u8]) -> String {
    const LIMIT: usize = 4096;
    let text = String::from_utf8_lossy(body);
    if text.len() <= LIMIT {
        return text.into_owned();
    }
    let mut end = LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn millisecond_headers_win() {
        let now = SystemTime::UNIX_EPOCH;
        let h = headers(&[("retry-after", "10"), ("x-ms-retry-after-ms", "1500")]);
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
        assert_eq!(retry_after(&headers(&[("Retry-After", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            max_retries: 5,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(5),
            jitter: false,
        };
        let delays: Vec<u64> = (0..5).map(|i| b.delay(i).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        let j = Backoff { jitter: true, ..b };
        for i in 0..5 {
            let d = j.delay(i);
            assert!(d >= b.delay(i) && d <= b.delay(i) * 2, "{d:?}");
        }
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn provider_install_is_idempotent() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn missing_ca_file_is_reported() {
        let options = HttpOptions {
            extra_ca_files: vec![PathBuf::from("/nonexistent/ca.pem")],
            ..HttpOptions::default()
        };
        assert!(matches!(build_client(&options), Err(HttpError::ReadCa { .. })));
    }

    #[test]
    fn bodies_are_truncated_on_char_boundaries() {
        assert_eq!(truncate_body(b"short"), "short");
        let long = "é".repeat(3000);
        let cut = truncate_body(long.as_bytes());
        assert!(cut.ends_with('…') && cut.len() <= 4096 + '…'.len_utf8());
    }
}
