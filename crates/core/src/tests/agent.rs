//! Finding the calling pod by its address.
use super::*;
use crate::agent::*;

#[test]
fn caller_is_the_single_live_pod_with_the_source_ip() {
    let pods = [
        mk_pod("a", "p", "n", "demo").ip("10.0.0.5"),
        mk_pod("a", "old", "n", "demo").ip("10.0.0.5").phase(crate::pod::Phase::Succeeded),
    ];
    assert_eq!(find_caller("10.0.0.5".parse().unwrap(), &pods).unwrap().key.name, "p");
}

#[test]
fn unknown_source_ip_is_a_500_with_upstream_wording() {
    let err = find_caller("10.0.0.9".parse().unwrap(), &[mk_pod("a", "p", "n", "demo").ip("10.0.0.5")])
        .unwrap_err();
    assert_eq!(err.status(false), (500, false));
    assert!(err.message.starts_with("pod list is empty"));
}

#[test]
fn two_pods_with_one_ip_are_refused_by_name() {
    let pods = [mk_pod("a", "p", "n", "demo").ip("10.0.0.5"), mk_pod("a", "q", "n", "demo").ip("10.0.0.5")];
    let err = find_caller("10.0.0.5".parse().unwrap(), &pods).unwrap_err();
    assert_eq!(err.message, "failed to match pod IP 10.0.0.5 with [a/p a/q]");
}

#[test]
fn host_network_pods_sharing_the_node_address_are_forbidden() {
    let pods = [
        mk_pod("a", "p", "n", "demo").ip("10.1.0.4").host_network(),
        mk_pod("b", "q", "n", "x").ip("10.1.0.4").host_network(),
    ];
    assert_eq!(find_caller("10.1.0.4".parse().unwrap(), &pods).unwrap_err().status(false).0, 403);
}
