//! Object names: RFC 1123 validation and assigned-identity naming.
use sha2::{Digest, Sha256};

/// Longest object name Kubernetes accepts (a DNS subdomain).
pub const MAX_NAME_LEN: usize = 253;
/// Hex characters of the hash suffix used when a name has to be shortened.
const HASH_LEN: usize = 10;

/// Why a string is not a valid RFC 1123 DNS subdomain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("name must not be empty")]
    Empty,
    #[error("name {0:?} is {1} characters long; at most 253 are allowed")]
    TooLong(String, usize),
    #[error(
        "name {0:?} is not a valid RFC 1123 subdomain: use lower-case letters, digits, '-' and '.', \
         starting and ending with a letter or digit (for example \"my-identity\")"
    )]
    Invalid(String),
}

/// Checks that `name` is an RFC 1123 DNS subdomain, as Kubernetes requires of most object names.
pub fn validate_dns_subdomain(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(InvalidName::TooLong(name.to_string(), name.len()));
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if name.split('.').all(label_ok) { Ok(()) } else { Err(InvalidName::Invalid(name.to_string())) }
}

/// Name of the assigned identity for `pod` in `pod_namespace` and identity `identity`:
/// upstream's `<pod>-<podns>-<identity>` when it fits in 253 characters; otherwise a deterministic
/// prefix of it followed by `-` and 10 hex characters of the SHA-256 of the full name (upstream
/// fails to create such objects).
pub fn assigned_identity_name(pod: &str, pod_namespace: &str, identity: &str) -> String {
    let full = format!("{pod}-{pod_namespace}-{identity}");
    if full.len() <= MAX_NAME_LEN {
        return full;
    }
    let digest = Sha256::digest(full.as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..HASH_LEN].to_string();
    let mut cut = MAX_NAME_LEN - HASH_LEN - 1;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    let prefix = full[..cut].trim_end_matches(['-', '.']);
    format!("{prefix}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_names_follow_upstream_pattern() {
        assert_eq!(assigned_identity_name("web-1", "app", "demo-id"), "web-1-app-demo-id");
    }

    #[test]
    fn long_names_are_shortened_to_253_and_stay_valid() {
        let pod = "p".repeat(200);
        let name = assigned_identity_name(&pod, "namespace", &"i".repeat(100));
        assert_eq!(name.len(), MAX_NAME_LEN);
        validate_dns_subdomain(&name).unwrap();
    }

    #[test]
    fn different_long_inputs_with_same_prefix_get_different_names() {
        let pod = "p".repeat(250);
        assert_ne!(assigned_identity_name(&pod, "a", "x"), assigned_identity_name(&pod, "a", "y"));
    }

    #[test]
    fn rejects_upper_case_and_bad_edges() {
        for bad in ["Demo", "-demo", "demo-", "de_mo", "a..b", ""] {
            assert!(validate_dns_subdomain(bad).is_err(), "{bad:?}");
        }
        validate_dns_subdomain("demo.id-1").unwrap();
    }

    fn dns_label() -> impl Strategy<Value = String> {
        "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    }

    proptest! {
        #[test]
        fn assigned_names_are_always_valid_subdomains(pod in dns_label(), ns in dns_label(), id in "[a-z0-9]([a-z0-9.-]{0,200}[a-z0-9])?") {
            prop_assume!(validate_dns_subdomain(&id).is_ok());
            let name = assigned_identity_name(&pod, &ns, &id);
            prop_assert!(name.len() <= MAX_NAME_LEN);
            prop_assert!(validate_dns_subdomain(&name).is_ok(), "{}", name);
            prop_assert_eq!(name.clone(), assigned_identity_name(&pod, &ns, &id));
        }
    }
}
