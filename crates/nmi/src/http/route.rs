//! Which handler a request path goes to (upstream §3.4), hardened against path confusion.
//!
//! Upstream routed `/metadata/Identity/oauth2/token` (capital I) and other near-misses to the
//! transparent proxy, which is how CVE-2022-23551 (backslashes) leaked node identities to pods.
//! podid decides on the *normalised* path (percent-decoded to a fixpoint, `\` read as `/`, `;`
//! parameters dropped, repeated `/` collapsed, `.` and `..` resolved): the exact token path (with "metadata" in any case, optional
//! trailing slash) is the token handler; any other path under `/metadata/identity` in any spelling
//! is refused with 400; nothing identity-related is ever proxied.
use std::borrow::Cow;
use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use regex::Regex;

/// The handler for a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `/metadata/identity/oauth2/token`: the pod-facing token endpoint.
    Token,
    /// Any other spelling or sub-path of the identity endpoint: 400 `Invalid request`.
    InvalidTokenPath,
    /// `/host/token`: node-local callers asking on behalf of a pod.
    HostToken,
    /// `/metadata/instance` with `--block-instance-metadata`: 403.
    BlockedInstance,
    /// Everything else: forwarded to IMDS.
    Proxy,
}

static TOKEN: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^/(?i:metadata)/identity/oauth2/token/?$").ok());
static IDENTITY_ANY: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)/metadata/identity|identity.*oauth2.*token").ok());
static HOST_TOKEN: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"^/host/token(/.*)?$").ok());
static INSTANCE: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)^/metadata/instance(/.*)?$").ok());

fn is(re: &LazyLock<Option<Regex>>, s: &str) -> bool {
    re.as_ref().is_some_and(|r| r.is_match(s))
}

/// How many rounds of percent-decoding [`normalise`] applies before giving up on a path that
/// still decodes further (each round shrinks it, so this only bounds the work).
const MAX_DECODE_ROUNDS: usize = 16;

/// Percent-decodes (lossily) until nothing changes, so `%252F` is read as `/` as a server that
/// decodes twice would; a path still encoded after [`MAX_DECODE_ROUNDS`] keeps its last form.
fn decode_fully(raw: &str) -> Cow<'_, str> {
    let mut current: Cow<'_, str> = Cow::Borrowed(raw);
    for _ in 0..MAX_DECODE_ROUNDS {
        let next = percent_decode_str(&current).decode_utf8_lossy().into_owned();
        if next == current {
            break;
        }
        current = Cow::Owned(next);
    }
    current
}

/// Percent-decodes to a fixpoint (lossily), reads `\` as `/`, drops `;` parameters from each
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

/// Classifies a request path (the raw path, as received).
pub fn classify(raw_path: &str, block_instance_metadata: bool) -> Route {
    if is(&TOKEN, raw_path) {
        return Route::Token;
    }
    let norm = normalise(raw_path);
    if is(&IDENTITY_ANY, &norm) || is(&IDENTITY_ANY, raw_path) {
        return Route::InvalidTokenPath;
    }
    if is(&HOST_TOKEN, raw_path) {
        return Route::HostToken;
    }
    if block_instance_metadata && (is(&INSTANCE, &norm) || is(&INSTANCE, raw_path)) {
        return Route::BlockedInstance;
    }
    Route::Proxy
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
        ] {
            assert_eq!(classify(p, false), Route::InvalidTokenPath, "{p}");
        }
    }

    #[test]
    fn host_token_and_other_metadata_paths() {
        assert_eq!(classify("/host/token", false), Route::HostToken);
        assert_eq!(classify("/host/token/", false), Route::HostToken);
        assert_eq!(classify("/metadata/instance", false), Route::Proxy);
        assert_eq!(classify("/doesnotexist", false), Route::Proxy);
    }

    #[test]
    fn instance_metadata_is_blocked_only_when_asked_in_every_spelling() {
        assert_eq!(classify("/metadata/instance", true), Route::BlockedInstance);
        assert_eq!(classify("/Metadata/Instance/compute", true), Route::BlockedInstance);
        assert_eq!(classify("//metadata/%69nstance", true), Route::BlockedInstance);
        assert_eq!(classify("/metadata/scheduledevents", true), Route::Proxy);
    }

    #[test]
    fn normalise_resolves_dots_slashes_and_escapes() {
        assert_eq!(normalise(r"/a//b\c/./d/../e%2Ff/"), "/a/b/c/e/f/");
        assert_eq!(normalise("/.."), "/");
        assert_eq!(normalise("/a%252Fb;p=1/c"), "/a/b/c");
    }
}
