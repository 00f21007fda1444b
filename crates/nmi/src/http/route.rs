//! Which handler a request path goes to (upstream §3.4), decided by allowlist.
//!
//! Upstream routed `/metadata/Identity/oauth2/token` (capital I) and other near-misses to the
//! transparent proxy, which is how CVE-2022-23551 (backslashes) leaked node identities to pods, and
//! forwarded everything it did not recognise. podid forwards **only** the IMDS endpoints in
//! [`Endpoint`], spelled exactly (lower case, no percent-escapes, no `\`, `;`, `.` or `..`
//! segments, no `//`, ASCII only): a path that is not literally one of them is never forwarded,
//! however a liberal server would decode it.
//!
//! The other answers only choose the status code:
//! - the exact token path (with "metadata" in any case, optional trailing slash) is the token
//!   handler;
//! - anything whose *normalised* form (percent- and `%uXXXX`-decoded to a fixpoint, `\` read as `/`,
//!   `;` parameters dropped, repeated `/` collapsed, `.` and `..` resolved, Unicode case-folded) is
//!   under `/metadata/identity`, and anything malformed (escapes, non-ASCII, `\`, dot segments),
//!   is 400 `Invalid request`;
//! - a well-formed path that is not an IMDS endpoint podid knows is 404.
use std::borrow::Cow;
use std::sync::LazyLock;

use http::Method;
use percent_encoding::percent_decode_str;
use regex::Regex;

/// The handler for a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metadata/identity/oauth2/token`: the pod-facing token endpoint.
    Token,
    /// A disguised identity path, or a malformed one (escapes, non-ASCII, `\`, dot segments):
    /// 400 `Invalid request`.
    InvalidTokenPath,
    /// `/host/token`: node-local callers asking on behalf of a pod.
    HostToken,
    /// `/metadata/instance` with `--block-instance-metadata`: 403.
    BlockedInstance,
    /// An allowlisted IMDS endpoint: forwarded to IMDS (for the methods it allows).
    Proxy(Endpoint),
    /// A well-formed path that is no IMDS endpoint podid forwards: 404.
    NotForwarded,
}

/// The IMDS endpoints podid forwards (besides identity, which it answers itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/metadata/instance` and its leaves (`/metadata/instance/compute/vmId`, ...).
    Instance,
    /// `/metadata/attested/document`.
    Attested,
    /// `/metadata/scheduledevents` (GET lists, POST acknowledges).
    ScheduledEvents,
    /// `/metadata/loadbalancer`.
    LoadBalancer,
    /// `/metadata/versions`.
    Versions,
}

impl Endpoint {
    /// Whether IMDS serves `method` on this endpoint (everything else is answered 405 here).
    pub fn allows(self, method: &Method) -> bool {
        *method == Method::GET || (self == Self::ScheduledEvents && *method == Method::POST)
    }

    /// The `Allow` header of a 405.
    pub fn allowed(self) -> &'static str {
        if self == Self::ScheduledEvents { "GET, POST" } else { "GET" }
    }
}

static TOKEN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^/(?i:metadata)/identity/oauth2/token/?$").ok());
static IDENTITY_ANY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)/metadata/identity|identity.*oauth2.*token").ok());
static HOST_TOKEN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^/host/token(/.*)?$").ok());
static INSTANCE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)^/metadata/instance(/.*)?$").ok());
/// The forwarded endpoints, exactly as IMDS documents them. Leaf names under `instance` are
/// letters, digits, `_` and `-` (`compute`, `tagsList`, `0`, `ipv4`, `userData`).
static ALLOWED: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"^/metadata/(?:(instance)(?:/[A-Za-z0-9_-]+)*|(attested)/document|(scheduledevents)|(loadbalancer)|(versions))/?$",
    )
    .ok()
});

fn is(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// How many rounds of decoding [`normalise`] applies before giving up on a path that still
/// decodes further (each round shrinks it, so this only bounds the work).
const MAX_DECODE_ROUNDS: usize = 16;

/// IIS-style `%uXXXX` escapes (one UTF-16 code unit each; a lone surrogate becomes U+FFFD).
fn decode_percent_u(s: &str) -> Cow<'_, str> {
    if !s.contains("%u") && !s.contains("%U") {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find(['%']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let hex = tail.get(2..6).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match (tail.as_bytes().get(1), hex) {
            (Some(b'u' | b'U'), Some(hex)) => {
                let unit = u32::from_str_radix(hex, 16).unwrap_or(0xFFFD);
                out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                rest = &tail[6..];
            }
            _ => {
                out.push('%');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Percent-decodes (`%XX` lossily, and `%uXXXX`) until nothing changes, so `%252F` is read as
/// `/` as a server that decodes twice would; a path still encoded after [`MAX_DECODE_ROUNDS`]
/// keeps its last form.
fn decode_fully(raw: &str) -> Cow<'_, str> {
    let mut current: Cow<'_, str> = Cow::Borrowed(raw);
    for _ in 0..MAX_DECODE_ROUNDS {
        let once = decode_percent_u(&current).into_owned();
        let next = percent_decode_str(&once).decode_utf8_lossy().into_owned();
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

/// Decodes to a fixpoint ([`decode_fully`]), reads `\` as `/`, drops `;` parameters from each
/// segment (as servlet-style servers do), collapses `//`, resolves `.` and `..`.
pub fn normalise(raw: &str) -> String {
    let decoded = decode_fully(raw);
    let slashed = decoded.replace('\\', "/");
    let mut parts: Vec<&str> = Vec::new();
    for seg in slashed.split('/') {
        match seg.split(';').next().unwrap_or_default() {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = format!("/{}", parts.join("/"));
    if slashed.ends_with('/') && out.len() > 1 {
        out.push('/');
    }
    out
}

/// Unicode case folding the way a liberal server might compare names: `ı` (dotless i) and `ſ`
/// (long s) upper-case to ASCII `I` and `S`, the Kelvin sign lower-cases to `k`.
fn folded(s: &str) -> Cow<'_, str> {
    if s.is_ascii() { Cow::Borrowed(s) } else { Cow::Owned(s.to_uppercase().to_lowercase()) }
}

/// A path no IMDS endpoint is spelled like: escapes, non-ASCII, `\`, `;`, empty, `.` or `..`
/// segments.
fn malformed(raw: &str, normalised: &str) -> bool {
    !raw.is_ascii()
        || !normalised.is_ascii()
        || raw.contains(['%', '\\', ';'])
        || raw.split('/').skip(1).any(|seg| seg == "." || seg == "..")
        || raw.contains("//")
}

/// Classifies a request path (the raw path, as received).
pub fn classify(raw_path: &str, block_instance_metadata: bool) -> Route {
    if is(&TOKEN, raw_path) {
        return Route::Token;
    }
    let norm = normalise(raw_path);
    if is(&IDENTITY_ANY, &norm) || is(&IDENTITY_ANY, &folded(&norm)) || is(&IDENTITY_ANY, raw_path) {
        return Route::InvalidTokenPath;
    }
    if is(&HOST_TOKEN, raw_path) {
        return Route::HostToken;
    }
    if block_instance_metadata && (is(&INSTANCE, &norm) || is(&INSTANCE, raw_path)) {
        return Route::BlockedInstance;
    }
    if malformed(raw_path, &norm) {
        return Route::InvalidTokenPath;
    }
    allowlisted(raw_path).map_or(Route::NotForwarded, Route::Proxy)
}

/// The endpoint `raw_path` is, spelled exactly.
pub fn allowlisted(raw_path: &str) -> Option<Endpoint> {
    let caps = ALLOWED.as_ref()?.captures(raw_path)?;
    let endpoints = [
        Endpoint::Instance,
        Endpoint::Attested,
        Endpoint::ScheduledEvents,
        Endpoint::LoadBalancer,
        Endpoint::Versions,
    ];
    endpoints.into_iter().enumerate().find(|(i, _)| caps.get(i + 1).is_some()).map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_path_with_any_case_of_metadata_and_optional_slash() {
        for p in [
            "/metadata/identity/oauth2/token",
            "/metadata/identity/oauth2/token/",
            "/METADATA/identity/oauth2/token",
            "/MetaData/identity/oauth2/token/",
        ] {
            assert_eq!(classify(p, false), Route::Token, "{p}");
        }
    }

    #[test]
    fn every_confusable_spelling_of_the_token_path_is_refused_never_proxied() {
        for p in [
            r"/metadata/identity\oauth2\token/",
            r"/metadata\identity\oauth2\token",
            "/metadata/identity%5Coauth2%5Ctoken",
            "/metadata/identity%2Foauth2%2Ftoken",
            "/metadata/Identity/oauth2/token",
            "/metadata/IDENTITY/OAUTH2/TOKEN",
            "//metadata/identity/oauth2/token",
            "/metadata//identity/oauth2/token",
            "/./metadata/identity/oauth2/token",
            "/metadata/./identity/oauth2/token",
            "/x/../metadata/identity/oauth2/token",
            "/metadata/identity/oauth2/token/..",
            "/metadata/identity/oauth2/tokenx",
            "/metadata/identity/oauth2/token/extra",
            "/metadata/identity/info",
            "/%6Detadata/identity/oauth2/token",
            "/metadata/identity/oauth2/token%00",
            // Were proxied before the guard decoded to a fixpoint and dropped `;` parameters
            // (issue #9's security table; the agent_request fuzz target checks the whole class).
            "/metadata%252Fidentity%252Finfo",
            "/metadata/identit%2579/info",
            "/metadata%25252Fidentity%25252Finfo",
            "/metadata;x=y/identity/info",
            "/metadata;/identity",
            // Were proxied before the allowlist (issue #15): IIS-style `%u` escapes and a
            // dotless i that upper-cases to `I`.
            "/metadata/%u0069dentity/oauth2/token",
            "/metadata/identit%u0079/oauth2/token",
            "/%u006detadata/%u0069dentity/oauth2/token",
            "/metadata/%c4%b1dentity/oauth2/token",
            "/metadata/%U0069dentity/info",
            "/metadata/%u0025%u0036%u0039dentity/info",
        ] {
            assert_eq!(classify(p, false), Route::InvalidTokenPath, "{p}");
        }
    }

    #[test]
    fn only_exactly_spelled_imds_endpoints_are_forwarded() {
        for (p, e) in [
            ("/metadata/instance", Endpoint::Instance),
            ("/metadata/instance/", Endpoint::Instance),
            ("/metadata/instance/compute/tagsList", Endpoint::Instance),
            ("/metadata/instance/network/interface/0/ipv4/ipAddress/0/privateIpAddress", Endpoint::Instance),
            ("/metadata/attested/document", Endpoint::Attested),
            ("/metadata/scheduledevents", Endpoint::ScheduledEvents),
            ("/metadata/loadbalancer", Endpoint::LoadBalancer),
            ("/metadata/versions", Endpoint::Versions),
        ] {
            assert_eq!(classify(p, false), Route::Proxy(e), "{p}");
        }
        for p in [
            "/",
            "",
            "*",
            "/doesnotexist",
            "/metadata",
            "/metadata/",
            "/Metadata/instance",
            "/metadata/Instance",
            "/metadata/attested",
            "/metadata/instancex",
            "/metadata/instance/compute.json",
            "/latest/meta-data/iam/security-credentials/",
            "/computeMetadata/v1/instance/service-accounts/default/token",
        ] {
            assert_eq!(classify(p, false), Route::NotForwarded, "{p:?}");
        }
    }

    #[test]
    fn escapes_non_ascii_and_dot_segments_are_refused_even_outside_identity() {
        for p in [
            "/metadata/%69nstance",
            "/metadata/%u0069nstance",
            "/metadata/instance%2Fcompute",
            "/metadata/instance/./compute",
            "/metadata/instance/../versions",
            r"/metadata\instance",
            "/metadata;x/instance",
            "/metadata/instance/comput\u{e9}",
            "/metadata/\u{131}nstance",
            "/metadata//instance",
        ] {
            assert_eq!(classify(p, false), Route::InvalidTokenPath, "{p}");
        }
    }

    #[test]
    fn methods_allowed_per_endpoint() {
        assert!(Endpoint::Instance.allows(&Method::GET));
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::CONNECT, Method::OPTIONS, Method::TRACE]
        {
            assert!(!Endpoint::Instance.allows(&m), "{m}");
        }
        assert!(Endpoint::ScheduledEvents.allows(&Method::POST));
        assert!(!Endpoint::ScheduledEvents.allows(&Method::PATCH));
    }

    #[test]
    fn host_token_paths() {
        assert_eq!(classify("/host/token", false), Route::HostToken);
        assert_eq!(classify("/host/token/", false), Route::HostToken);
    }

    #[test]
    fn instance_metadata_is_blocked_only_when_asked_in_every_spelling() {
        assert_eq!(classify("/metadata/instance", true), Route::BlockedInstance);
        assert_eq!(classify("/Metadata/Instance/compute", true), Route::BlockedInstance);
        assert_eq!(classify("//metadata/%69nstance", true), Route::BlockedInstance);
        assert_eq!(classify("/metadata/scheduledevents", true), Route::Proxy(Endpoint::ScheduledEvents));
    }

    #[test]
    fn normalise_resolves_dots_slashes_and_escapes() {
        assert_eq!(normalise(r"/a//b\c/./d/../e%2Ff/"), "/a/b/c/e/f/");
        assert_eq!(normalise("/.."), "/");
        assert_eq!(normalise("/a%252Fb;p=1/c"), "/a/b/c");
        assert_eq!(normalise("/%u0061%u002fb"), "/a/b");
        assert_eq!(normalise("/%u00"), "/%u00");
        assert_eq!(normalise("/%uD800x"), "/\u{FFFD}x");
    }
}
