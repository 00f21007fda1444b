//! Which outbound connections go through an HTTP proxy, decided per destination the same way for
//! every podid program and every client in it (ARM, Entra ID, the Kubernetes API server).
//!
//! ```text
//!  destination ─▶ loopback / link-local / unspecified? ─yes─▶ direct (always: IMDS, 169.254.0.0/16,
//!       │                                                      127.0.0.0/8, ::1, localhost, fe80::/10)
//!       no
//!       ▼
//!  matches NO_PROXY? ─yes─▶ direct
//!       no
//!       ▼
//!  https ─▶ HTTPS_PROXY / https_proxy      http ─▶ HTTP_PROXY / http_proxy      (unset ─▶ direct)
//! ```
//!
//! `NO_PROXY` (or `no_proxy`) is a comma-separated list as curl reads it: `*` (everything), host
//! names (`example.com`, `.example.com` and `*.example.com` all match the name and its
//! subdomains), IP addresses and CIDR ranges (`10.0.0.0/8`, `fd00::/8`), each optionally with a
//! `:port`. Names are never resolved to decide. Upper-case variables win over lower-case ones; a
//! proxy URL without a scheme means `http://`. `ALL_PROXY` is not read.
//!
//! Settings come from an [`Env`] ([`ProcessEnv`] in the programs), so tests decide with explicit
//! variables and never touch the process environment.
use std::net::IpAddr;

use url::Url;

use crate::env::{Env, ProcessEnv};

/// The proxies of one process, read once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxySettings {
    /// Proxy for `http://` destinations.
    http: Option<Url>,
    /// Proxy for `https://` destinations.
    https: Option<Url>,
    /// `NO_PROXY` entries.
    no_proxy: Vec<NoProxy>,
    /// The proxy variables' values as set, usable or not (to recognise what kube took from them).
    raw: Vec<String>,
}

/// One `NO_PROXY` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
enum NoProxy {
    /// `*`.
    Everything,
    /// A host name, lower-case, without leading `*.`/`.` or trailing `.`; matches subdomains too.
    Name { name: String, port: Option<u16> },
    /// An address or range.
    Net { net: ipnet::IpNet, port: Option<u16> },
}

/// A proxy variable that could not be used (reported, then ignored).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ignoring {variable}={value:?}: {reason}")]
pub struct BadProxy {
    pub variable: &'static str,
    pub value: String,
    pub reason: String,
}

impl ProxySettings {
    /// No proxy for anything.
    pub fn none() -> Self {
        Self::default()
    }

    /// The settings of this process's environment; unusable values are logged and ignored.
    pub fn from_env() -> Self {
        let (settings, problems) = Self::from_vars(&ProcessEnv);
        for problem in problems {
            tracing::warn!(%problem, "Proxy setting ignored");
        }
        settings
    }

    /// The settings `env` describes, and what had to be ignored.
    pub fn from_vars(env: &impl Env) -> (Self, Vec<BadProxy>) {
        let first = |names: [&'static str; 2]| {
            names.into_iter().find_map(|n| env.var(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let mut problems = Vec::new();
        let mut proxy = |names| {
            let (variable, value) = first(names)?;
            proxy_url(&value).map_err(|reason| problems.push(BadProxy { variable, value, reason })).ok()
        };
        let https = proxy(["HTTPS_PROXY", "https_proxy"]);
        let http = proxy(["HTTP_PROXY", "http_proxy"]);
        let no_proxy = first(["NO_PROXY", "no_proxy"]).map(|(_, v)| parse_no_proxy(&v)).unwrap_or_default();
        let raw = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"]
            .into_iter()
            .filter_map(|n| env.var(n))
            .map(|v| v.trim().trim_end_matches('/').to_string())
            .filter(|v| !v.is_empty())
            .collect();
        (Self { http, https, no_proxy, raw }, problems)
    }

    /// Settings with these proxies and `NO_PROXY` list (tests and explicit configuration).
    pub fn new(http: Option<Url>, https: Option<Url>, no_proxy: &str) -> Self {
        let raw = [&http, &https]
            .into_iter()
            .flatten()
            .map(|u| u.as_str().trim_end_matches('/').to_string())
            .collect();
        Self { http, https, no_proxy: parse_no_proxy(no_proxy), raw }
    }

    /// Whether any proxy is configured at all.
    pub fn is_configured(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }

    /// The proxy to reach `url` through, or `None` to connect directly.
    pub fn proxy_for(&self, url: &Url) -> Option<&Url> {
        let proxy = match url.scheme() {
            "https" | "wss" => self.https.as_ref(),
            "http" | "ws" => self.http.as_ref(),
            _ => None,
        }?;
        let host = match url.host()? {
            url::Host::Domain(d) => Host::Name(d.trim_end_matches('.').to_ascii_lowercase()),
            url::Host::Ipv4(ip) => Host::Ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Host::Ip(IpAddr::V6(ip)),
        };
        if host.is_local() {
            return None;
        }
        let port = url.port_or_known_default();
        if self.no_proxy.iter().any(|entry| entry.matches(&host, port)) {
            return None;
        }
        Some(proxy)
    }

    /// [`proxy_for`](Self::proxy_for) for an `http::Uri` (the Kubernetes client's cluster URL), as
    /// an `http::Uri`.
    pub fn proxy_uri_for(&self, uri: &http::Uri) -> Option<http::Uri> {
        let url = Url::parse(&uri.to_string()).ok()?;
        let proxy = self.proxy_for(&url)?;
        proxy.as_str().trim_end_matches('/').parse().ok()
    }

    /// The proxy a Kubernetes client for `cluster` should use. `loaded` is what kube's config
    /// loader chose: a kubeconfig's own `proxy-url` is kept; what kube took from `HTTPS_PROXY`
    /// (which it checks against `NO_PROXY` by the proxy's address, not the server's, and only
    /// outside the cluster) is replaced by this decision.
    pub fn for_kube(&self, cluster: &http::Uri, loaded: Option<&http::Uri>) -> Option<http::Uri> {
        let from_env = |p: &http::Uri| {
            let p = p.to_string();
            let p = p.trim_end_matches('/');
            self.raw.iter().any(|r| r == p)
                || [&self.https, &self.http]
                    .into_iter()
                    .flatten()
                    .any(|e| e.as_str().trim_end_matches('/') == p)
        };
        match loaded {
            Some(p) if !from_env(p) => Some(p.clone()),
            _ => self.proxy_uri_for(cluster),
        }
    }

    /// One line for logs: the proxies (without credentials) and the `NO_PROXY` entries.
    pub fn describe(&self) -> String {
        let show = |u: &Option<Url>| u.as_ref().map_or_else(|| "none".to_string(), redacted);
        format!(
            "https via {}, http via {}, {} NO_PROXY entries; loopback and link-local always direct",
            show(&self.https),
            show(&self.http),
            self.no_proxy.len()
        )
    }
}

/// A proxy URI (as kube holds it) without user and password, for logs and messages.
pub fn redacted_uri(uri: &http::Uri) -> String {
    match Url::parse(&uri.to_string()) {
        Ok(url) => redacted(&url).trim_end_matches('/').to_string(),
        Err(_) => uri.authority().map_or_else(String::new, |a| a.host().to_string()),
    }
}

/// The URL without user and password.
fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    let _ = u.set_username("");
    let _ = u.set_password(None);
    u.to_string()
}

fn proxy_url(value: &str) -> Result<Url, String> {
    let value = value.trim();
    let with_scheme = if value.contains("://") { value.to_string() } else { format!("http://{value}") };
    let url = Url::parse(&with_scheme).map_err(|e| format!("not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        "http" | "https" => Err("no host".into()),
        other => Err(format!("proxy scheme {other:?} is not supported (use http:// or https://)")),
    }
}

enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// Loopback, link-local (IMDS) or unspecified: never through a proxy.
    fn is_local(&self) -> bool {
        match self {
            Host::Name(n) => n == "localhost" || n.ends_with(".localhost"),
            Host::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
                IpAddr::V6(v6) => v6.is_loopback() || v6.is_unicast_link_local() || v6.is_unspecified(),
            },
        }
    }
}

impl NoProxy {
    fn matches(&self, host: &Host, port: Option<u16>) -> bool {
        let port_ok = |want: &Option<u16>| want.is_none() || *want == port;
        match (self, host) {
            (NoProxy::Everything, _) => true,
            (NoProxy::Name { name, port: p }, Host::Name(h)) => {
                port_ok(p)
                    && (h == name || h.strip_suffix(name.as_str()).is_some_and(|rest| rest.ends_with('.')))
            }
            (NoProxy::Net { net, port: p }, Host::Ip(ip)) => port_ok(p) && net.contains(&ip.to_canonical()),
            _ => false,
        }
    }
}

fn parse_no_proxy(list: &str) -> Vec<NoProxy> {
    list.split(',').map(str::trim).filter(|e| !e.is_empty()).filter_map(parse_entry).collect()
}

fn parse_entry(entry: &str) -> Option<NoProxy> {
    if entry == "*" {
        return Some(NoProxy::Everything);
    }
    if let Some(net) = parse_net(entry) {
        return Some(NoProxy::Net { net, port: None });
    }
    // `[v6]:port`, `v4:port`, `name:port`.
    let (host, port) = match entry.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(':') && p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => {
            (h.trim_start_matches('[').trim_end_matches(']'), p.parse().ok())
        }
        _ => (entry, None),
    };
    if let Some(net) = parse_net(host) {
        return Some(NoProxy::Net { net, port });
    }
    let name =
        host.trim_start_matches('*').trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(NoProxy::Name { name, port })
}

fn parse_net(s: &str) -> Option<ipnet::IpNet> {
    let s = s.trim_start_matches('[').trim_end_matches(']');
    s.parse::<ipnet::IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(ipnet::IpNet::from))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> ProxySettings {
        let vars: BTreeMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (s, problems) = ProxySettings::from_vars(&vars);
        assert!(problems.is_empty(), "{problems:?}");
        s
    }

    fn via(s: &ProxySettings, url: &str) -> Option<String> {
        s.proxy_for(&Url::parse(url).unwrap()).map(|u| u.host_str().unwrap_or_default().to_string())
    }

    const CORP: &[(&str, &str)] =
        &[("HTTPS_PROXY", "http://proxy.corp:3128"), ("HTTP_PROXY", "http://plain.corp:8080")];

    #[test]
    fn https_and_http_destinations_use_their_own_variable() {
        let s = settings(CORP);
        assert_eq!(via(&s, "https://management.azure.com/").as_deref(), Some("proxy.corp"));
        assert_eq!(via(&s, "http://example.com/").as_deref(), Some("plain.corp"));
        assert_eq!(via(&settings(&[("HTTPS_PROXY", "http://p:1")]), "http://example.com/"), None);
    }

    #[test]
    fn imds_link_local_and_loopback_are_never_proxied() {
        let s = settings(CORP);
        for url in [
            "http://169.254.169.254/metadata/identity/oauth2/token",
            "http://169.254.0.1/",
            "https://127.0.0.1:6443/",
            "https://127.9.8.7/",
            "https://[::1]:6443/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fe80::1]/",
            "https://localhost:8443/",
            "https://api.localhost/",
            "https://LOCALHOST./",
            "https://0.0.0.0/",
        ] {
            assert_eq!(via(&s, url), None, "{url}");
        }
    }

    #[test]
    fn no_proxy_names_addresses_ranges_and_ports() {
        let mut vars = CORP.to_vec();
        vars.push(("NO_PROXY", "kubernetes.default.svc, .corp.example, *.svc.cluster.local,10.0.0.0/16,192.168.1.7,login.example:8443,[fd00::1]"));
        let s = settings(&vars);
        for direct in [
            "https://kubernetes.default.svc/",
            "https://Kubernetes.Default.Svc:443/",
            "https://corp.example/",
            "https://a.b.corp.example/",
            "https://api.svc.cluster.local/",
            "https://10.0.255.1/",
            "https://192.168.1.7/",
            "https://login.example:8443/",
            "https://[fd00::1]/",
        ] {
            assert_eq!(via(&s, direct), None, "{direct}");
        }
        for proxied in [
            "https://management.azure.com/",
            "https://notcorp.example/",
            "https://10.1.0.1/",
            "https://192.168.1.8/",
            "https://login.example/",
            "https://kubernetes.default.svc.evil.com/",
        ] {
            assert_eq!(via(&s, proxied).as_deref(), Some("proxy.corp"), "{proxied}");
        }
    }

    #[test]
    fn a_star_disables_every_proxy() {
        let mut vars = CORP.to_vec();
        vars.push(("no_proxy", "*"));
        assert_eq!(via(&settings(&vars), "https://management.azure.com/"), None);
    }

    #[test]
    fn upper_case_wins_a_missing_scheme_means_http_and_bad_values_are_reported() {
        let s = settings(&[("HTTPS_PROXY", "upper:1"), ("https_proxy", "http://lower:2")]);
        assert_eq!(via(&s, "https://x.example/").as_deref(), Some("upper"));
        let (s, problems) = ProxySettings::from_vars(&[("HTTPS_PROXY", "socks5://s:1")]);
        assert!(!s.is_configured());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].to_string().contains("\"socks5\" is not supported"), "{}", problems[0]);
    }

    #[test]
    fn kube_cluster_urls_get_an_http_uri_proxy() {
        let s = settings(CORP);
        let uri: http::Uri = "https://aks-dns.hcp.eastus.azmk8s.io:443".parse().unwrap();
        assert_eq!(s.proxy_uri_for(&uri).map(|u| u.to_string()).as_deref(), Some("http://proxy.corp:3128/"));
        let local: http::Uri = "https://127.0.0.1:6443".parse().unwrap();
        assert_eq!(s.proxy_uri_for(&local), None);
    }

    #[test]
    fn kube_keeps_a_kubeconfig_proxy_and_replaces_one_from_the_environment() {
        let s = settings(&[("HTTPS_PROXY", "http://proxy.corp:3128"), ("NO_PROXY", "10.0.0.1")]);
        let api: http::Uri = "https://10.0.0.1:443".parse().unwrap();
        let from_env: http::Uri = "http://proxy.corp:3128".parse().unwrap();
        assert_eq!(s.for_kube(&api, Some(&from_env)), None, "NO_PROXY names the API server");
        let own: http::Uri = "http://kubeconfig-proxy:8080".parse().unwrap();
        assert_eq!(
            s.for_kube(&api, Some(&own)),
            Some(own),
            "the kubeconfig's proxy-url is the user's choice"
        );
        let remote: http::Uri = "https://aks.example:443".parse().unwrap();
        assert_eq!(
            s.for_kube(&remote, None).map(|u| u.to_string()).as_deref(),
            Some("http://proxy.corp:3128/"),
            "in-cluster too"
        );
        let (socks, _) = ProxySettings::from_vars(&[("HTTPS_PROXY", "socks5://s:1080")]);
        let taken: http::Uri = "socks5://s:1080".parse().unwrap();
        assert_eq!(
            socks.for_kube(&remote, Some(&taken)),
            None,
            "an unusable HTTPS_PROXY is not used for kube either"
        );
    }

    #[test]
    fn descriptions_leave_credentials_out() {
        let s = settings(&[("HTTPS_PROXY", "http://user:secret@proxy.corp:3128")]);
        let d = s.describe();
        assert!(d.contains("proxy.corp:3128") && !d.contains("secret") && !d.contains("user"), "{d}");
        let uri: http::Uri = "http://user:secret@proxy.corp:3128".parse().unwrap();
        assert_eq!(redacted_uri(&uri), "http://proxy.corp:3128");
    }
}
