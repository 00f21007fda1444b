//! Real iptables in network namespaces, laid out as a node is: a "pod" namespace routed through a
//! "node" namespace, which reaches a stand-in for the real IMDS (169.254.169.254:80 in an "imds"
//! namespace) over its own link. Nothing sets `route_localnet`: it stays 0 everywhere, as on a
//! node without kube-proxy in iptables mode (IPVS, Cilium, no kube-proxy).
//!
//! The agent's rules must send the pod's IMDS traffic to the agent — DNATed to the node's own
//! address, which needs no sysctl (upstream's DNAT to 127.0.0.1 is dropped as martian here) —,
//! repair themselves, and stay in place when the agent stops, so that pods fail closed instead of
//! reaching the node's identities.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::time::Duration;

use podid_nmi::iptables::{CHAIN, Interception, Iptables, NODE_CHAIN, NodeCallers, Rules};
use support::netns::{Netns, fetch, fetch_until, link, root_or_explicit_skip, serve};

const IMDS: &str = "http://169.254.169.254/metadata/instance";
/// The node's address on its link towards IMDS: what `--dnat-address=auto` finds.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 252, 1, 1);

struct Node {
    node: Netns,
    pod: Netns,
    _imds: Netns,
    /// The node's interface facing the pod.
    pod_if: String,
    dir: tempfile::TempDir,
}

/// pod (10.252.0.2) ─veth─ (10.252.0.1) node (10.252.1.1) ─veth─ (10.252.1.2) imds, which holds
/// 169.254.169.254 on its lo and serves `real-imds` there. The node forwards; route_localnet is 0.
fn topology() -> Node {
    let node = Netns::create("node");
    let pod = Netns::create("pod");
    let imds = Netns::create("imds");
    let (pod_if, _) = link(&node, "10.252.0.1/24", &pod, "10.252.0.2/24");
    link(&node, &format!("{NODE_IP}/30"), &imds, "10.252.1.2/30");
    pod.ok(&["ip", "route", "add", "default", "via", "10.252.0.1"]);
    node.ok(&["ip", "route", "add", "169.254.169.254/32", "via", "10.252.1.2"]);
    node.ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
    imds.ok(&["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]);
    imds.ok(&["ip", "route", "add", "10.252.0.0/24", "via", &NODE_IP.to_string()]);
    let dir = tempfile::tempdir().unwrap();
    serve(&imds, dir.path(), "169.254.169.254", 80, "real-imds");
    for interface in ["all", "default", "lo", pod_if.as_str()] {
        assert_eq!(
            route_localnet(&node, interface),
            "0",
            "{interface}: the test must start without route_localnet"
        );
    }
    assert_eq!(
        fetch_until(&pod, IMDS, "real-imds"),
        Ok("real-imds".into()),
        "the unintercepted path must work"
    );
    Node { node, pod, _imds: imds, pod_if, dir }
}

fn route_localnet(ns: &Netns, interface: &str) -> String {
    let key = format!("net.ipv4.conf.{interface}.route_localnet");
    String::from_utf8(ns.ok(&["sysctl", "-n", &key]).stdout).unwrap().trim().to_string()
}

fn node_rules() -> Rules {
    Rules { agent_ip: NODE_IP, ..Rules::upstream(Ipv4Addr::new(169, 254, 169, 254), 80, 2579) }
}

fn chain(ns: &Netns) -> Vec<String> {
    String::from_utf8(ns.exec(&["iptables", "-t", "nat", "-S", CHAIN]).stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn rules_are_idempotent_self_repairing_and_redirect_pod_traffic_without_route_localnet() {
    if !root_or_explicit_skip(
        "rules_are_idempotent_self_repairing_and_redirect_pod_traffic_without_route_localnet",
    ) {
        return;
    }
    let t = topology();
    let agent = serve(&t.node, t.dir.path(), &NODE_IP.to_string(), 2579, "agent");
    let ipt = Iptables { binary: t.node.iptables_wrapper(t.dir.path()), rules: node_rules() };

    assert!(ipt.ensure().unwrap(), "first install changes the table");
    assert!(!ipt.ensure().unwrap(), "a second install changes nothing");
    assert_eq!(chain(&t.node), node_rules().expected());
    let prerouting =
        String::from_utf8(t.node.ok(&["iptables", "-t", "nat", "-S", "PREROUTING"]).stdout).unwrap();
    assert_eq!(prerouting.lines().nth(1), Some("-A PREROUTING -j aad-metadata"), "{prerouting}");
    assert_eq!(fetch_until(&t.pod, IMDS, "agent"), Ok("agent".into()));
    assert_eq!(route_localnet(&t.node, &t.pod_if), "0", "and no sysctl was needed");

    t.node.ok(&["iptables", "-t", "nat", "-F", CHAIN]);
    t.node.ok(&["iptables", "-t", "nat", "-A", CHAIN, "-j", "RETURN"]);
    assert_eq!(fetch(&t.pod, IMDS), Ok("real-imds".into()), "tampered rules let the pod through");
    assert!(ipt.ensure().unwrap(), "repair reports a change");
    assert_eq!(chain(&t.node), node_rules().expected());
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
fn upstreams_loopback_dnat_needs_route_localnet_the_node_address_dnat_does_not() {
    if !root_or_explicit_skip("upstreams_loopback_dnat_needs_route_localnet_the_node_address_dnat_does_not") {
        return;
    }
    let t = topology();
    serve(&t.node, t.dir.path(), "0.0.0.0", 2579, "agent");
    let upstream = Rules::upstream(Ipv4Addr::new(169, 254, 169, 254), 80, 2579);
    let ipt = Iptables { binary: t.node.iptables_wrapper(t.dir.path()), rules: upstream.clone() };
    ipt.ensure().unwrap();
    assert_eq!(chain(&t.node), upstream.expected(), "upstream's rule, byte for byte");
    let dropped = fetch(&t.pod, IMDS);
    assert!(
        dropped.as_ref().is_err_and(|e| !e.contains("agent") && !e.contains("real-imds")),
        "DNAT to 127.0.0.1 without route_localnet: the kernel drops it, the pod times out: {dropped:?}"
    );
    t.node.ok(&["sysctl", "-qw", &format!("net.ipv4.conf.{}.route_localnet=1", t.pod_if)]);
    assert_eq!(
        fetch_until(&t.pod, IMDS, "agent"),
        Ok("agent".into()),
        "as kube-proxy in iptables mode makes it work"
    );
    t.node.ok(&["sysctl", "-qw", &format!("net.ipv4.conf.{}.route_localnet=0", t.pod_if)]);

    let node = Iptables { binary: ipt.binary.clone(), rules: node_rules() };
    assert!(node.ensure().unwrap(), "the node-address rule replaces upstream's");
    assert_eq!(fetch_until(&t.pod, IMDS, "agent"), Ok("agent".into()), "no sysctl needed");
    node.remove().unwrap();
}

#[test]
fn agent_dnats_to_the_node_address_and_keeps_interception_when_it_stops_so_pods_fail_closed() {
    if !root_or_explicit_skip(
        "agent_dnats_to_the_node_address_and_keeps_interception_when_it_stops_so_pods_fail_closed",
    ) {
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
    // `--dnat-address` is left at its default (`auto`).
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
    assert_eq!(chain(&t.node), node_rules().expected(), "DNAT to the node's address towards IMDS");
    assert_eq!(route_localnet(&t.node, "all"), "0");
    assert_eq!(route_localnet(&t.node, &t.pod_if), "0");
    let proxied = fetch(&t.pod, "http://169.254.169.254/metadata/versions");
    assert!(
        proxied.as_ref().is_err_and(|e| e.starts_with("403") && e.contains("not a pod on node n1")),
        "on the node address only this node's pods are served (the agent knows none here): {proxied:?}"
    );

    t.node.kill(first, "TERM");
    assert_eq!(chain(&t.node), node_rules().expected(), "rules survive the agent");
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
        node_rules().expected(),
        "a restarted agent adopts the rules without duplicating them"
    );
    t.node.kill(second, "TERM");
    std::thread::sleep(Duration::from_millis(200));
    assert!(chain(&t.node).is_empty(), "--cleanup-iptables-on-exit removes the rules");
    assert_eq!(fetch(&t.pod, IMDS), Ok("real-imds".into()));
}

/// A cgroup v2 directory for one test (removed on drop).
struct Cgroup {
    dir: std::path::PathBuf,
    /// The path iptables and `/proc/<pid>/cgroup` name it by.
    path: String,
}

impl Cgroup {
    fn create(name: &str) -> Self {
        let root = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.join("cgroup.controllers").is_file())
            .expect("a cgroup v2 hierarchy (unified) is mounted");
        let path = format!("/podid-it-{}-{name}", support::netns::unique());
        let dir = root.join(path.trim_start_matches('/'));
        std::fs::create_dir(&dir).unwrap();
        Self { dir, path }
    }

    /// `fetch` from `ns`, by a process in this cgroup.
    fn fetch(&self, ns: &Netns, url: &str) -> String {
        let procs = self.dir.join("cgroup.procs");
        let script = format!(
            "echo $$ > {} && exec ip netns exec {} python3 -c \"import urllib.request as u; print(u.urlopen(u.Request('{url}', headers={{'Metadata': 'true'}}), timeout=3).read().decode(), end='')\"",
            procs.display(),
            ns.name
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The fetches have exited; an empty cgroup can be removed.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn with_verified_callers_the_nodes_own_calls_come_to_the_agent_except_its_own_and_the_excepted() {
    let name = "with_verified_callers_the_nodes_own_calls_come_to_the_agent_except_its_own_and_the_excepted";
    if !root_or_explicit_skip(name) {
        return;
    }
    let t = topology();
    let (agent_cg, kubelet_cg) = (Cgroup::create("agent"), Cgroup::create("kubelet"));
    serve(&t.node, t.dir.path(), &NODE_IP.to_string(), 2579, "agent");
    let rules = Rules {
        node_callers: Some(NodeCallers {
            own_cgroup: agent_cg.path.clone(),
            exceptions: vec![kubelet_cg.path.clone()],
        }),
        ..node_rules()
    };
    let ipt = Iptables { binary: t.node.iptables_wrapper(t.dir.path()), rules: rules.clone() };
    assert!(ipt.ensure().unwrap());
    assert!(!ipt.ensure().unwrap(), "idempotent, cgroup paths included");
    let listed = String::from_utf8(t.node.ok(&["iptables", "-t", "nat", "-S", NODE_CHAIN]).stdout).unwrap();
    assert_eq!(listed.lines().collect::<Vec<_>>(), rules.expected_node().unwrap(), "{listed}");
    let output = String::from_utf8(t.node.ok(&["iptables", "-t", "nat", "-S", "OUTPUT"]).stdout).unwrap();
    assert_eq!(output.lines().nth(1), Some("-A OUTPUT -j podid-node-callers"), "{output}");

    let other = Cgroup::create("node-process");
    assert_eq!(other.fetch(&t.node, IMDS), "agent", "a node process is sent to the agent");
    assert_eq!(agent_cg.fetch(&t.node, IMDS), "real-imds", "the agent's own calls reach IMDS");
    assert_eq!(kubelet_cg.fetch(&t.node, IMDS), "real-imds", "an excepted component reaches IMDS");
    assert_eq!(fetch_until(&t.pod, IMDS, "agent"), Ok("agent".into()), "pods are still intercepted");

    ipt.remove().unwrap();
    assert_eq!(other.fetch(&t.node, IMDS), "real-imds");
}
