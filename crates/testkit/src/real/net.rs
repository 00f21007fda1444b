//! The network of a cluster with real nodes: one bridge on the host, one namespace per node.
//!
//! ```text
//!  host netns                              node i netns (no default route, no forwarding)
//!  pk<tag> bridge 10.200.N.1/24 ◀─veth─▶  eth0 10.200.N.(10+i)/24      (kubelet's node IP)
//!    podid-forward on 10.200.N.1:P         lo   10.250.250.1/32          (SERVICES_IP: forwarders
//!      → 127.0.0.1:P (API server,                                          to the host's services)
//!        emulator)                               169.254.169.254/32       (IMDS, forwarded to the
//!                                                                          emulator's node IMDS)
//!                                          cbr0 10.244.i.1/24 ◀─veth─▶ pods (CNI bridge plugin)
//! ```
//!
//! The host side holds one address per cluster, chosen under a lock among the /24s of
//! 10.200.0.0/16 that no address or route of the host uses yet, so concurrent clusters never
//! collide. The host never forwards (its `ip_forward` is left as it is) and no namespace has a
//! default route: a packet for any other address goes nowhere. Every name carries the cluster's
//! tag, so removal touches only what this cluster made.
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{Error, Result};

/// Inside every node: where pods and node processes reach the host's services (the API server,
/// the emulator), through the node's forwarder. Not routed anywhere; local to each node.
pub const SERVICES_IP: Ipv4Addr = Ipv4Addr::new(10, 250, 250, 1);
/// The instance metadata address, on each node's loopback.
pub const IMDS_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
/// The `kubernetes` Service's cluster IP (first address of the service network).
pub const KUBERNETES_SERVICE_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);

/// Runs `args` (program first), failing with its stderr.
pub(crate) fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn { program: args[0].into(), source })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `args` inside network namespace `ns`.
pub(crate) fn run_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["ip", "netns", "exec", ns];
    full.extend_from_slice(args);
    run(&full)
}

/// The host's bridge of one cluster.
#[derive(Debug)]
pub(crate) struct HostBridge {
    /// Link name, `pk<tag>`.
    pub(crate) name: String,
    /// The third octet N of 10.200.N.0/24.
    pub(crate) subnet: u8,
}

impl HostBridge {
    /// Creates the bridge on a free /24, holding `lock` (a file) while choosing.
    pub(crate) fn create(tag: &str, lock: &Path) -> Result<Self> {
        let file = std::fs::File::create(lock).map_err(|source| Error::Io {
            action: "create",
            path: lock.to_owned(),
            source,
        })?;
        file.lock().map_err(|source| Error::Io { action: "lock", path: lock.to_owned(), source })?;
        let used = format!(
            "{}\n{}",
            run(&["ip", "-4", "-o", "addr", "show"])?,
            run(&["ip", "-4", "route", "show"])?
        );
        let subnet = (0..=255u8)
            .find(|n| !used.contains(&format!("10.200.{n}.")))
            .ok_or_else(|| Error::Unexpected("every /24 of 10.200.0.0/16 is in use on this host".into()))?;
        let bridge = Self { name: format!("pk{tag}"), subnet };
        run(&["ip", "link", "add", &bridge.name, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{}/24", bridge.host_ip()), "dev", &bridge.name])?;
        run(&["ip", "link", "set", &bridge.name, "up"])?;
        Ok(bridge)
    }

    /// The host's address on the bridge (forwarders to host services listen here).
    pub(crate) fn host_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.subnet, 1)
    }

    /// Node `index`'s address (its kubelet's node IP).
    pub(crate) fn node_ip(&self, index: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 200, self.subnet, 10 + index)
    }
}

/// The pod network of node `index`: 10.244.index.0/24, the bridge on .1.
pub(crate) fn pod_gateway(index: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, index, 1)
}

/// Creates node `index`'s namespace `ns`, linked to `bridge` by veth `host_if`.
pub(crate) fn create_node(bridge: &HostBridge, index: u8, ns: &str, host_if: &str) -> Result<()> {
    run(&["ip", "netns", "add", ns])?;
    run(&["ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns])?;
    run(&["ip", "link", "set", host_if, "master", &bridge.name, "up"])?;
    let node_ip = format!("{}/24", bridge.node_ip(index));
    let gateway = format!("{}/24", pod_gateway(index));
    for step in [
        vec!["ip", "link", "set", "lo", "up"],
        vec!["ip", "addr", "add", &node_ip, "dev", "eth0"],
        vec!["ip", "link", "set", "eth0", "up"],
        vec!["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"],
        vec!["ip", "addr", "add", "10.250.250.1/32", "dev", "lo"],
        // The service network, on the node's link: without a route for 10.96.0.1 a node process's
        // connect() fails before its packet meets the DNAT (a real node's default route covers it).
        vec!["ip", "route", "add", super::super::cluster::local::SERVICE_CIDR, "dev", "eth0"],
        // The CNI bridge, with its address set by hand: the plugin runs with isGateway=false so
        // that it never writes net.ipv4.ip_forward.
        vec!["ip", "link", "add", "cbr0", "type", "bridge"],
        vec!["ip", "addr", "add", &gateway, "dev", "cbr0"],
        vec!["ip", "link", "set", "cbr0", "up"],
    ] {
        run_in(ns, &step)?;
    }
    Ok(())
}

/// What a cluster without kube-proxy does for the `kubernetes` Service: one DNAT of
/// 10.96.0.1:443 to the node's forwarder of the API server, for pods and for the node itself.
pub(crate) fn kubernetes_service_dnat(ns: &str, api_port: u16) -> Result<()> {
    let to = format!("{SERVICES_IP}:{api_port}");
    let vip = format!("{KUBERNETES_SERVICE_IP}/32");
    for chain in ["PREROUTING", "OUTPUT"] {
        run_in(
            ns,
            &[
                "iptables",
                "-w",
                "-t",
                "nat",
                "-A",
                chain,
                "-d",
                &vip,
                "-p",
                "tcp",
                "--dport",
                "443",
                "-j",
                "DNAT",
                "--to-destination",
                &to,
            ],
        )?;
    }
    Ok(())
}
