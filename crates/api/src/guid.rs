//! GUIDs as Entra ID and ARM write them: client ids, object (principal) ids, subscription ids.

/// A string that is not a GUID.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} {value:?} is not a GUID: it must look like 00000000-0000-0000-0000-000000000000 (32 hexadecimal \
     digits in groups of 8-4-4-4-12)"
)]
pub struct InvalidGuid {
    /// What the value is (`client id`, `subscription id`, …).
    pub what: &'static str,
    pub value: String,
}

/// Checks `value` is `8-4-4-4-12` hexadecimal digits (either case, no braces).
pub fn validate_guid(what: &'static str, value: &str) -> Result<(), InvalidGuid> {
    if is_guid(value) { Ok(()) } else { Err(InvalidGuid { what, value: value.to_string() }) }
}

/// Whether `value` is `8-4-4-4-12` hexadecimal digits.
pub fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_in_either_case_are_accepted() {
        assert!(is_guid("00000000-0000-4000-8000-000000000001"));
        assert!(is_guid("1C2D3E4F-5a6b-4c7d-8e9f-0a1b2c3d4e5f"));
    }

    #[test]
    fn anything_else_is_refused_with_the_expected_form() {
        for bad in [
            "",
            "not-a-guid",
            "{00000000-0000-4000-8000-000000000001}",
            "00000000000040008000000000000001",
            "00000000-0000-4000-8000-00000000000g",
            "00000000-0000-4000-8000-0000000000011",
            " 00000000-0000-4000-8000-000000000001",
        ] {
            assert!(!is_guid(bad), "{bad:?}");
        }
        let err = validate_guid("client id", "not-a-guid").unwrap_err();
        assert!(err.to_string().starts_with("client id \"not-a-guid\" is not a GUID"), "{err}");
    }
}
