//! cgroup paths an operator names (`--node-caller-exception-cgroup`): the node components whose
//! own calls to the metadata address go straight to IMDS under verified callers. A path becomes
//! an iptables argument, so it is checked before anything is rendered or run.

/// An absolute cgroup v2 path (as `/proc/<pid>/cgroup`'s `0::` line shows it), without
/// whitespace or quotes.
pub fn check_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.contains(|c: char| c.is_whitespace() || c == '"' || c.is_control()) {
        return Err(format!(
            "{s:?} is no cgroup path: give the absolute path from /proc/<pid>/cgroup's 0:: line, e.g. /system.slice/kubelet.service"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::check_path;

    #[test]
    fn absolute_paths_pass_and_anything_that_could_split_an_argument_does_not() {
        assert_eq!(
            check_path("/system.slice/kubelet.service").as_deref(),
            Ok("/system.slice/kubelet.service")
        );
        for bad in ["system.slice", "/a b", "/a\"b", "", "/a\nb"] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }
}
