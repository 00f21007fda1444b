//! Kubernetes label keys and values, checked as the API server checks them on a pod: a binding's
//! `selector` is matched against the pods' `aadpodidbinding` label, and an exception's pod labels
//! against pod labels, so a value no pod can carry makes an object that can never work.
//!
//! ```text
//!  value: at most 63 characters; empty, or [A-Za-z0-9] at both ends with [A-Za-z0-9._-] between
//!  key:   [prefix/]name; name like a non-empty value; prefix a DNS subdomain of at most 253
//! ```

use crate::names::validate_dns_subdomain;

/// Longest label value (and key name) Kubernetes accepts.
pub const MAX_LABEL_VALUE_LEN: usize = 63;

/// Why a string cannot be a label value or key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLabel {
    #[error("{0:?} is {1} characters long; a label value may have at most 63")]
    TooLong(String, usize),
    #[error(
        "{0:?} is not a valid label value: use letters, digits, '-', '_' and '.', starting and ending with a \
         letter or digit (for example \"my-app\")"
    )]
    Value(String),
    #[error("label key must not be empty")]
    EmptyKey,
    #[error(
        "{0:?} is not a valid label key: a name of at most 63 letters, digits, '-', '_' and '.' (starting and \
         ending with a letter or digit), optionally after a DNS subdomain prefix and '/' (for example \
         \"app\" or \"example.com/tier\")"
    )]
    Key(String),
}

/// Checks `value` as a label value (the empty value is one).
pub fn validate_label_value(value: &str) -> Result<(), InvalidLabel> {
    if value.len() > MAX_LABEL_VALUE_LEN {
        return Err(InvalidLabel::TooLong(value.to_string(), value.len()));
    }
    if value.is_empty() || is_label_name(value) {
        Ok(())
    } else {
        Err(InvalidLabel::Value(value.to_string()))
    }
}

/// Checks `key` as a label key: `[prefix/]name`.
pub fn validate_label_key(key: &str) -> Result<(), InvalidLabel> {
    if key.is_empty() {
        return Err(InvalidLabel::EmptyKey);
    }
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| validate_dns_subdomain(p).is_ok());
    if prefix_ok && name.len() <= MAX_LABEL_VALUE_LEN && is_label_name(name) {
        Ok(())
    } else {
        Err(InvalidLabel::Key(key.to_string()))
    }
}

/// Non-empty, `[A-Za-z0-9]` at both ends, `[A-Za-z0-9._-]` between.
fn is_label_name(s: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            alnum(first) && alnum(last) && bytes.iter().all(|&b| alnum(b) || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn values_pods_can_carry_are_accepted() {
        for ok in ["", "a", "demo", "My_App.v1-2", &"x".repeat(63)] {
            validate_label_value(ok).unwrap();
        }
    }

    #[test]
    fn values_no_pod_can_carry_are_refused_with_the_rule() {
        let err = validate_label_value("bad value!").unwrap_err();
        assert!(
            err.to_string().starts_with("\"bad value!\" is not a valid label value: use letters"),
            "{err}"
        );
        assert_eq!(validate_label_value(&"x".repeat(64)), Err(InvalidLabel::TooLong("x".repeat(64), 64)));
        for bad in ["-a", "a-", ".a", "a_", "a/b", "ä", "a b"] {
            assert!(validate_label_value(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_may_have_a_dns_prefix() {
        for ok in ["app", "kubernetes.azure.com/managedby", "A.b_c-d"] {
            validate_label_key(ok).unwrap();
        }
        for bad in ["", "/app", "Example.com/app", "a/b/c", "app!", &"k".repeat(64), "example.com/"] {
            assert!(validate_label_key(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn accepted_values_match_the_api_servers_pattern(v in "\\PC{0,70}") {
            let pattern = regex::Regex::new(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$").unwrap();
            prop_assert_eq!(validate_label_value(&v).is_ok(), v.len() <= 63 && pattern.is_match(&v));
        }
    }
}
