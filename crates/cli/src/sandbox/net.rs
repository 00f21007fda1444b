//! Where the sandbox's nodes and its pod live on the network.
//!
//! As root, each node is a network namespace in which its agent runs with its **own** iptables
//! interception, and the demo pod is a namespace routed through node 0, as on a real node:
//!
//! ```text
//!  host (loopback: kube-apiserver, emulator)          node-i netns                    pod netns
//!  10.254.S.(4i+1) ◀─veth─▶ 10.254.S.(4i+2)   lo: 169.254.169.254     10.244.S.1 ◀─veth─▶ 10.244.S.2
//!   in-process forwarders    forwarder: 127.0.0.1:<api>, 169.254.169.254:80    podid-demo
//!   to 127.0.0.1:<port>      podid-nmi: 127.0.0.1:2579 + PREROUTING DNAT       (forwarder: ARM)
//! ```
//!
//! The pod's request to 169.254.169.254:80 is DNATed by the agent's rules to the agent; the
//! agent's own IMDS calls (locally generated, so not intercepted) reach a forwarder on the node's
//! 169.254.169.254 that leads to the emulator's IMDS of that node. Nothing is routed to the host's
//! 169.254.169.254: the namespaces have no default route and do not forward.
//!
//! Otherwise (not root) every agent listens on its own loopback address and the demo binds the
//! pod's loopback address (127.0.S.100), so the agent tells the pod by its source address.
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::SandboxError;
use super::procs::{Children, Ready};

/// The port the agent listens on inside a node namespace (upstream's default).
pub const AGENT_PORT: u16 = 2579;

/// Whether this process runs as root (network namespaces and iptables need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A third octet for this run's addresses, from the process id (two sandboxes rarely collide).
pub fn subnet_byte() -> u8 {
    u8::try_from(std::process::id() % 200).unwrap_or(0) + 20
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> Result<(), SandboxError> {
    let out = Command::new(args[0]).args(&args[1..]).stdin(Stdio::null()).output().map_err(|e| {
        SandboxError::new(format!("cannot run `{}`: {e} (is iproute2/iptables installed?)", args[0]))
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(SandboxError::new(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A network namespace, deleted (with everything in it: links, iptables rules) on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates namespace `name` with `lo` up.
    pub fn create(name: &str) -> Result<Self, SandboxError> {
        // A namespace left by a killed earlier run with the same pid: remove it first.
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        sh(&["ip", "netns", "add", name])?;
        let ns = Self { name: name.to_owned() };
        ns.run(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs a command inside.
    pub fn run(&self, args: &[&str]) -> Result<(), SandboxError> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// `ip netns exec <name>` followed by `program`, to spawn.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).stderr(Stdio::null()).status();
    }
}

/// A node namespace linked to the host.
#[derive(Debug)]
pub struct NodeNet {
    pub ns: Netns,
    /// Host side of the link (forwarders listen here).
    pub host_ip: Ipv4Addr,
    /// Node side of the link (the agent's probe port is reachable here).
    pub node_ip: Ipv4Addr,
}

impl NodeNet {
    /// Node `index` of this run: namespace, link to the host, 169.254.169.254 on its `lo`.
    pub fn create(tag: &str, index: u8, subnet: u8) -> Result<Self, SandboxError> {
        let ns = Netns::create(&format!("podid-sbx-{tag}-node{index}"))?;
        let host_ip = Ipv4Addr::new(10, 254, subnet, 4 * index + 1);
        let node_ip = Ipv4Addr::new(10, 254, subnet, 4 * index + 2);
        let host_if = format!("psb{tag}n{index}");
        sh(&["ip", "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name])?;
        sh(&["ip", "addr", "add", &format!("{host_ip}/30"), "dev", &host_if])?;
        sh(&["ip", "link", "set", &host_if, "up"])?;
        ns.run(&["ip", "addr", "add", &format!("{node_ip}/30"), "dev", "eth0"])?;
        ns.run(&["ip", "link", "set", "eth0", "up"])?;
        ns.run(&["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"])?;
        // DNAT to 127.0.0.1 from PREROUTING (the agent's rule) needs route_localnet.
        ns.run(&["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"])?;
        Ok(Self { ns, host_ip, node_ip })
    }

    /// A pod namespace behind this node; returns it with its IP and the node's address facing it.
    pub fn attach_pod(&self, tag: &str, subnet: u8) -> Result<(Netns, Ipv4Addr, Ipv4Addr), SandboxError> {
        let pod = Netns::create(&format!("podid-sbx-{tag}-pod"))?;
        let (gateway, ip) = (Ipv4Addr::new(10, 244, subnet, 1), Ipv4Addr::new(10, 244, subnet, 2));
        self.ns.run(&[
            "ip", "link", "add", "pod0", "type", "veth", "peer", "name", "eth0", "netns", &pod.name,
        ])?;
        self.ns.run(&["ip", "addr", "add", &format!("{gateway}/30"), "dev", "pod0"])?;
        self.ns.run(&["ip", "link", "set", "pod0", "up"])?;
        self.ns.run(&["sysctl", "-qw", "net.ipv4.conf.pod0.route_localnet=1"])?;
        pod.run(&["ip", "addr", "add", &format!("{ip}/30"), "dev", "eth0"])?;
        pod.run(&["ip", "link", "set", "eth0", "up"])?;
        pod.run(&["ip", "route", "add", "default", "via", &gateway.to_string()])?;
        Ok((pod, ip, gateway))
    }
}

/// Forwards TCP connections from `listen` to `target` until the task is aborted.
pub async fn forward(listen: SocketAddr, target: SocketAddr) -> std::io::Result<JoinHandle<()>> {
    let listener = TcpListener::bind(listen).await?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }))
}

/// Parses `LISTEN=TARGET` (two socket addresses).
pub fn parse_pair(text: &str) -> Result<(SocketAddr, SocketAddr), String> {
    let (l, t) = text.split_once('=').ok_or_else(|| format!("{text:?} is not LISTEN=TARGET"))?;
    let parse = |s: &str| s.parse::<SocketAddr>().map_err(|e| format!("{s:?}: {e}"));
    Ok((parse(l)?, parse(t)?))
}

/// `podid sandbox-forward LISTEN=TARGET…` (hidden): the forwarders inside a namespace. Prints
/// `ready` once every listener is bound, then serves until killed.
pub async fn forward_main(pairs: &[String], out: &mut impl std::io::Write) -> Result<(), SandboxError> {
    let mut tasks = Vec::new();
    for pair in pairs {
        let (listen, target) = parse_pair(pair).map_err(SandboxError::new)?;
        let task = forward(listen, target)
            .await
            .map_err(|e| SandboxError::new(format!("cannot listen on {listen}: {e}")))?;
        tasks.push(task);
    }
    writeln!(out, "ready").and_then(|()| out.flush()).map_err(|e| SandboxError::new(e.to_string()))?;
    futures::future::join_all(tasks).await;
    Ok(())
}

/// Starts `podid sandbox-forward` inside `ns` and waits for its `ready`.
pub async fn spawn_forwarder(
    children: &mut Children,
    ns: &Netns,
    name: &str,
    pairs: &[(SocketAddr, SocketAddr)],
) -> Result<(), SandboxError> {
    let exe =
        std::env::current_exe().map_err(|e| SandboxError::new(format!("cannot find this program: {e}")))?;
    let mut command = ns.command(&exe);
    command.arg("sandbox-forward").args(pairs.iter().map(|(l, t)| format!("{l}={t}")));
    children.spawn_ready(name, command, Ready::Line("ready")).await
}

/// `ip:port` as a socket address.
pub fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_two_socket_addresses() {
        let (l, t) = parse_pair("127.0.0.1:80=10.0.0.1:8080").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l.port(), t.to_string().as_str()), (80, "10.0.0.1:8080"));
        assert!(parse_pair("127.0.0.1:80").is_err());
        assert!(parse_pair("x=127.0.0.1:1").is_err());
    }

    #[test]
    fn subnet_byte_stays_in_range() {
        assert!((20..220).contains(&subnet_byte()));
    }

    #[tokio::test]
    async fn forwarder_carries_bytes_both_ways() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let target = echo.local_addr().unwrap_or_else(|e| panic!("{e}"));
        tokio::spawn(async move {
            if let Ok((mut s, _)) = echo.accept().await {
                let mut buf = [0u8; 4];
                if s.read_exact(&mut buf).await.is_ok() {
                    let _ = s.write_all(&buf).await;
                }
            }
        });
        let free = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| panic!("{e}"));
        let task = forward(free, target).await.unwrap_or_else(|e| panic!("{e}"));
        let mut c = TcpStream::connect(free).await.unwrap_or_else(|e| panic!("{e}"));
        c.write_all(b"ping").await.unwrap_or_else(|e| panic!("{e}"));
        let mut back = [0u8; 4];
        c.read_exact(&mut back).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&back, b"ping");
        task.abort();
    }
}
