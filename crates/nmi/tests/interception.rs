//! Real iptables in network namespaces: a "node" namespace with a stand-in for the real IMDS on
//! 169.254.169.254:80, and a "pod" namespace routed through it. The agent's rules must send the
//! pod's IMDS traffic to the agent, be exactly upstream's, repair themselves, and stay in place
//! when the agent stops, so that pods fail closed instead of reaching the node's identities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use podid_nmi::iptables::{CHAIN, Interception, Iptables, Rules};
use support::netns::{Netns, fetch, fetch_until, link, root_or_explicit_skip, serve};

const IMDS: &str = "http://169.254.169.254/metadata/instance";

struct Node {
    node: Netns,
    pod: Netns,
    dir: tempfile::TempDir,
}

/// node (10.252.0.1, real IMDS stand-in on 169.254.169.254 on its lo) <─veth─> pod (10.252.0.2).
fn topology() -> Node {
    let node = Netns::create("node");
    let pod = Netns::create("pod");
    let (node_if, _) = link(&node, "10.252.0.1/24", &pod, "10.252.0.2/24");
    pod.ok(&["ip", "route", "add", "default", "via", "10.252.0.1"]);
    node.ok(&["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]);
    node.ok(&["sysctl", "-qw", &format!("net.ipv4.conf.{node_if}.route_localnet=1")]);
    node.ok(&["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    let dir = tempfile::tempdir().unwrap();
    serve(&node, dir.path(), "169.254.169.254", 80, "real-imds");
    assert_eq!(
        fetch_until(&pod, IMDS, "real-imds"),
        Ok("real-imds".into()),
        "the unintercepted path must work"
    );
    Node { node, pod, dir }
}

fn rules() -> Rules {
    Rules { metadata_ip: Ipv4Addr::new(169, 254, 169, 254), metadata_port: 80, agent_port: 2579 }
}

fn chain(ns: &Netns) -> Vec<String> {
    String::from_utf8(ns.exec(&["iptables", "-t", "nat", "-S", CHAIN]).stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_are_upstreams_idempotent_self_repairing_and_redirect_pod_traffic() {
    if !root_or_explicit_skip("rules_are_upstreams_idempotent_self_repairing_and_redirect_pod_traffic") {
        return;
    }
    let t = topology();
    let agent = serve(&t.node, t.dir.path(), "127.0.0.1", 2579, "agent");
    let ipt = Iptables { binary: t.node.iptables_wrapper(t.dir.path()), rules: rules() };

    assert!(ipt.ensure().unwrap(), "first install changes the table");
    assert!(!ipt.ensure().unwrap(), "a second install changes nothing");
    assert_eq!(chain(&t.node), rules().expected());
    let prerouting =
        String::from_utf8(t.node.ok(&["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout).unwrap();
    assert_eq!(prerouting.lines().nth(1), Some("-A PREROUTING -j aad-metadata"), "{prerouting}");
    assert_eq!(fetch_until(&t.pod, IMDS, "agent"), Ok("agent".into()));

    t.node.ok(&["iptables", "-t", "nat", "-F", CHAIN]);
    t.node.ok(&["iptables", "-t", "nat", "-A", CHAIN, "-j", "RETURN"]);
    assert_eq!(fetch(&t.pod, IMDS), Ok("real-imds".into()), "tampered rules let the pod through");
    assert!(ipt.ensure().unwrap(), "repair reports a change");
    assert_eq!(chain(&t.node), rules().expected());
    assert_eq!(fetch(&t.pod, IMDS), Ok("agent".into()));

    t.node.kill(agent, "KILL");
    let down = fetch(&t.pod, IMDS);
    assert!(
        down.as_ref().is_err_and(|e| e.contains("Connection refused") || e.contains("URLError")),
        "{down:?}"
    );

    ipt.remove().unwrap();
    assert!(chain(&t.node).is_empty());
    assert_eq!(fetch(&t.pod, IMDS), Ok("real-imds".into()));
}

#[test]
fn agent_keeps_interception_when_it_stops_so_pods_fail_closed() {
    if !root_or_explicit_skip("agent_keeps_interception_when_it_stops_so_pods_fail_closed") {
        return;
    }
    let t = topology();
    // The agent's Kubernetes API is unreachable here on purpose: interception must not depend on it.
    let kubeconfig = t.dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
        users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let nmi = env!("CARGO_BIN_EXE_podid-nmi");
    // Blocking /metadata/instance makes the agent's answer (403) distinguishable from IMDS's.
    let args = [
        "--node",
        "n1",
        "--http-probe-port",
        "0",
        "--prometheus-port",
        "0",
        "--kubelet-config",
        "/nonexistent",
        "--block-instance-metadata",
    ];
    let env = [("KUBECONFIG", kubeconfig.as_str()), ("RUST_LOG", "warn")];
    let agent_answers = |pod: &Netns| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let got = fetch(pod, IMDS);
            if got.as_ref().is_err_and(|e| e.contains("Request blocked by AAD Pod Identity NMI"))
                || std::time::Instant::now() > deadline
            {
                return got;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };

    let first = t.node.spawn(&[&[nmi][..], &args[..]].concat(), &env);
    let up = agent_answers(&t.pod);
    assert!(up.as_ref().is_err_and(|e| e.starts_with("403")), "the agent answers the pod: {up:?}");
    assert_eq!(chain(&t.node), rules().expected());

    t.node.kill(first, "TERM");
    assert_eq!(chain(&t.node), rules().expected(), "rules survive the agent");
    let down = fetch(&t.pod, IMDS);
    assert!(
        down.as_ref().is_err_and(|e| !e.contains("real-imds") && !e.starts_with("403")),
        "with the agent down the pod reaches nothing: {down:?}"
    );

    let second = t.node.spawn(&[&[nmi][..], &args[..], &["--cleanup-iptables-on-exit"][..]].concat(), &env);
    let again = agent_answers(&t.pod);
    assert!(again.as_ref().is_err_and(|e| e.starts_with("403")), "a restarted agent serves again: {again:?}");
    assert_eq!(
        chain(&t.node),
        rules().expected(),
        "a restarted agent adopts the rules without duplicating them"
    );
    t.node.kill(second, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(chain(&t.node).is_empty(), "--cleanup-iptables-on-exit removes the rules");
    assert_eq!(fetch(&t.pod, IMDS), Ok("real-imds".into()));
}
