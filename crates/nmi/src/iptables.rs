//! Interception of pods' IMDS traffic (upstream §3.3): nat chain `aad-metadata`, jumped to from
//! the first rule of `PREROUTING`, DNATs TCP to 169.254.169.254:80 (from anything but 127.0.0.1)
//! to the agent.
//!
//! Where to: upstream DNATs to 127.0.0.1, which the kernel treats as a martian destination for a
//! packet arriving on a pod's interface unless `route_localnet=1` on that interface — set as a
//! side effect by kube-proxy in iptables mode, and by nothing else (IPVS, Cilium, no kube-proxy:
//! pods' requests time out). podid DNATs by default to an address of the node itself
//! ([`node_address_towards`] the metadata IP), which the kernel delivers locally with no sysctl,
//! whatever the CNI and whether or not kube-proxy runs — and which an agent with only
//! `NET_ADMIN` can use (`/proc/sys` is read-only in its container, so it could not set
//! `route_localnet` itself). `--dnat-address=loopback` keeps upstream's byte-for-byte rule.
//!
//! Unlike upstream, the rules are **kept** when the agent stops (unless asked otherwise): while
//! the agent restarts, redirected connections are refused instead of reaching the real IMDS and
//! the node's identities (fail closed).
use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Name of the nat chain.
pub const CHAIN: &str = "aad-metadata";
/// Name of the nat chain for the node's own network (`--verified-callers`), jumped to from the
/// first rule of `OUTPUT`.
pub const NODE_CHAIN: &str = "podid-node-callers";

/// Something that can put interception in place and take it away.
pub trait Interception: Send + Sync + 'static {
    /// Installs or repairs the rules; returns true if anything had to change.
    fn ensure(&self) -> Result<bool, IptablesError>;
    /// Removes the rules (uninstall).
    fn remove(&self) -> Result<(), IptablesError>;
}

/// An iptables command failed.
#[derive(Debug, thiserror::Error)]
pub enum IptablesError {
    #[error("cannot run {binary} (is iptables installed and does the agent have NET_ADMIN?): {source}")]
    Spawn { binary: String, source: std::io::Error },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
}

/// Where intercepted traffic comes from and goes to.
#[derive(Clone, Debug)]
pub struct Rules {
    pub metadata_ip: Ipv4Addr,
    pub metadata_port: u16,
    /// The agent's address for intercepted traffic: 127.0.0.1 (upstream's rule) or one of the
    /// node's own addresses.
    pub agent_ip: Ipv4Addr,
    pub agent_port: u16,
    /// `--verified-callers`: also redirect the node network's own calls (`OUTPUT`), except
    /// those of these cgroups.
    pub node_callers: Option<NodeCallers>,
}

/// Whose calls from the node's own network go straight to IMDS; every other process's are
/// DNATed to the agent, which serves a hostNetwork pod its own identities and refuses the rest.
/// Matched by cgroup (v2) path, which no pod can choose (a hostNetwork pod can pick its uid and
/// groups, and one with `NET_ADMIN` could rewrite the rules anyway).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCallers {
    /// The agent's own cgroup: its calls to IMDS must not come back to it.
    pub own_cgroup: String,
    /// `--node-caller-exception-cgroup`: node components that must reach IMDS themselves.
    pub exceptions: Vec<String>,
}

impl Rules {
    /// Upstream's rules: intercepted traffic to 127.0.0.1.
    pub fn upstream(metadata_ip: Ipv4Addr, metadata_port: u16, agent_port: u16) -> Self {
        Self { metadata_ip, metadata_port, agent_ip: Ipv4Addr::LOCALHOST, agent_port, node_callers: None }
    }

    /// `-d <metadata>/32 -p tcp -m tcp --dport <port>`, as `iptables -S` prints it.
    fn to_metadata(&self) -> String {
        format!("-d {}/32 -p tcp -m tcp --dport {}", self.metadata_ip, self.metadata_port)
    }

    /// The node chain exactly as `iptables -t nat -S podid-node-callers` lists it, when node
    /// callers are redirected.
    pub fn expected_node(&self) -> Option<Vec<String>> {
        let node = self.node_callers.as_ref()?;
        let mut lines = vec![format!("-N {NODE_CHAIN}")];
        for cgroup in std::iter::once(&node.own_cgroup).chain(&node.exceptions) {
            // `iptables -S` quotes the path.
            lines.push(format!(
                "-A {NODE_CHAIN} {} -m cgroup --path \"{cgroup}\" -j RETURN",
                self.to_metadata()
            ));
        }
        lines.push(format!(
            "-A {NODE_CHAIN} {} -j DNAT --to-destination {}:{}",
            self.to_metadata(),
            self.agent_ip,
            self.agent_port
        ));
        lines.push(format!("-A {NODE_CHAIN} -j RETURN"));
        Some(lines)
    }

    /// The chain exactly as `iptables -t nat -S aad-metadata` lists it.
    pub fn expected(&self) -> Vec<String> {
        vec![
            format!("-N {CHAIN}"),
            format!(
                "-A {CHAIN} ! -s 127.0.0.1/32 -d {}/32 -p tcp -m tcp --dport {} -j DNAT --to-destination {}:{}",
                self.metadata_ip, self.metadata_port, self.agent_ip, self.agent_port
            ),
            format!("-A {CHAIN} -j RETURN"),
        ]
    }
}

/// This node's own address on the route towards `destination`: the source address the kernel
/// picks for it (a UDP `connect` only looks the route up; nothing is sent).
pub fn node_address_towards(destination: Ipv4Addr) -> Result<Ipv4Addr, NodeAddressError> {
    let err = |source| NodeAddressError { destination, source };
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(err)?;
    socket.connect((destination, 80)).map_err(err)?;
    match socket.local_addr().map_err(err)?.ip() {
        IpAddr::V4(ip) if !ip.is_loopback() && !ip.is_unspecified() => Ok(ip),
        other => Err(err(std::io::Error::other(format!("the route gives {other}, not a node address")))),
    }
}

/// No node address to DNAT to.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot find this node's address towards {destination} (for --dnat-address=auto): {source}; \
     pass --dnat-address=<node IP> (e.g. $(HOST_IP) from status.hostIP), or --dnat-address=loopback \
     if route_localnet=1 on the pods' interfaces"
)]
pub struct NodeAddressError {
    destination: Ipv4Addr,
    source: std::io::Error,
}

/// `net.ipv4.conf.all.route_localnet` under `proc_sys` (`/proc/sys`), if readable. The kernel ORs
/// `all` with the interface's own value.
pub fn route_localnet_all(proc_sys: &Path) -> Option<bool> {
    let v = std::fs::read_to_string(proc_sys.join("net/ipv4/conf/all/route_localnet")).ok()?;
    Some(v.trim() != "0")
}

/// The real thing: shells out to `iptables` (as upstream's go-iptables does).
#[derive(Clone, Debug)]
pub struct Iptables {
    pub binary: PathBuf,
    pub rules: Rules,
}

impl Iptables {
    fn run(&self, args: &[&str]) -> Result<String, IptablesError> {
        let binary = self.binary.display().to_string();
        let out = Command::new(&self.binary)
            .args(["-w", "5"])
            .args(args)
            .output()
            .map_err(|source| IptablesError::Spawn { binary: binary.clone(), source })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(IptablesError::Failed {
                command: format!("{binary} {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    fn chain_lines(&self, chain: &str) -> Option<Vec<String>> {
        self.run(&["-t", "nat", "-S", chain]).ok().map(|s| s.lines().map(str::to_string).collect())
    }

    /// Makes `chain` list exactly `expected` (`-S` form; the first line is `-N chain`) and the
    /// first rule of `hook` jump to it.
    fn ensure_chain(&self, chain: &str, hook: &str, expected: &[String]) -> Result<bool, IptablesError> {
        let mut changed = false;
        match self.chain_lines(chain) {
            Some(lines) if lines == expected => {}
            found => {
                if found.is_some() {
                    tracing::info!(chain, "flushing iptables to add aad-metadata custom chains");
                    self.run(&["-t", "nat", "-F", chain])?;
                } else {
                    self.run(&["-t", "nat", "-N", chain])?;
                }
                for line in &expected[1..] {
                    let args: Vec<&str> = line.split_whitespace().map(|a| a.trim_matches('"')).collect();
                    self.run(&[&["-t", "nat"], &args[..]].concat())?;
                }
                changed = true;
            }
        }
        if self.run(&["-t", "nat", "-C", hook, "-j", chain]).is_err() {
            self.run(&["-t", "nat", "-I", hook, "1", "-j", chain])?;
            changed = true;
        }
        Ok(changed)
    }

    fn remove_chain(&self, chain: &str, hook: &str) -> Result<(), IptablesError> {
        while self.run(&["-t", "nat", "-D", hook, "-j", chain]).is_ok() {}
        if self.chain_lines(chain).is_some() {
            self.run(&["-t", "nat", "-F", chain])?;
            self.run(&["-t", "nat", "-X", chain])?;
        }
        Ok(())
    }
}

impl Interception for Iptables {
    fn ensure(&self) -> Result<bool, IptablesError> {
        let mut changed = self.ensure_chain(CHAIN, "PREROUTING", &self.rules.expected())?;
        match self.rules.expected_node() {
            Some(node) => changed |= self.ensure_chain(NODE_CHAIN, "OUTPUT", &node)?,
            None => self.remove_chain(NODE_CHAIN, "OUTPUT")?,
        }
        Ok(changed)
    }

    fn remove(&self) -> Result<(), IptablesError> {
        self.remove_chain(CHAIN, "PREROUTING")?;
        self.remove_chain(NODE_CHAIN, "OUTPUT")
    }
}

/// Deletes conntrack entries of connections already established to IMDS, so they cannot keep
/// bypassing the agent (`--enable-conntrack-deletion`).
pub fn flush_conntrack(rules: &Rules) -> Result<(), IptablesError> {
    let out = Command::new("conntrack")
        .args([
            "-D",
            "-p",
            "tcp",
            "--orig-dst",
            &rules.metadata_ip.to_string(),
            "--orig-port-dst",
            &rules.metadata_port.to_string(),
        ])
        .output()
        .map_err(|source| IptablesError::Spawn { binary: "conntrack".into(), source })?;
    // conntrack exits 1 when there was nothing to delete.
    if out.status.success() || out.status.code() == Some(1) {
        Ok(())
    } else {
        Err(IptablesError::Failed {
            command: "conntrack -D".into(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Refusal to start on kubenet (CVE-2021-1677).
#[derive(Debug, thiserror::Error)]
pub enum KubenetError {
    #[error(
        "AAD Pod Identity is not supported for Kubenet. Review \
         https://azure.github.io/aad-pod-identity/docs/configure/aad_pod_identity_on_kubenet/ for more details. \
         With kubenet a pod holding CAP_NET_RAW can spoof another pod's IP and obtain its tokens: drop NET_RAW \
         from every pod (`podid install --allow-kubenet` renders such a policy), then start the agent with \
         --allow-network-plugin-kubenet"
    )]
    Kubenet,
    #[error(
        "cannot read kubelet config {path}: {source} (pass --allow-network-plugin-kubenet to skip this check)"
    )]
    Unreadable { path: String, source: std::io::Error },
}

/// Checks the kubelet config for `--network-plugin=kubenet`. A missing file is not evidence of
/// kubenet (the manifests mount it with `FileOrCreate`).
pub fn check_not_kubenet(path: &Path) -> Result<(), KubenetError> {
    match std::fs::read_to_string(path) {
        Ok(text) if text.contains("--network-plugin=kubenet") => Err(KubenetError::Kubenet),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(KubenetError::Unreadable { path: path.display().to_string(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_text_is_upstreams() {
        let rules = Rules::upstream(Ipv4Addr::new(169, 254, 169, 254), 80, 2579);
        assert_eq!(
            rules.expected(),
            [
                "-N aad-metadata",
                "-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:2579",
                "-A aad-metadata -j RETURN",
            ]
        );
    }

    #[test]
    fn node_address_rule_dnats_to_the_node_address() {
        let rules = Rules {
            agent_ip: Ipv4Addr::new(10, 224, 0, 4),
            ..Rules::upstream(Ipv4Addr::new(169, 254, 169, 254), 80, 2579)
        };
        assert_eq!(
            rules.expected()[1],
            "-A aad-metadata ! -s 127.0.0.1/32 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.224.0.4:2579"
        );
    }

    #[test]
    fn node_callers_are_redirected_but_the_agent_and_exceptions_return_first() {
        let rules = Rules {
            agent_ip: Ipv4Addr::new(10, 224, 0, 4),
            node_callers: Some(NodeCallers {
                own_cgroup: "/kubepods/besteffort/podabc/nmi".into(),
                exceptions: vec!["/system.slice/kubelet.service".into()],
            }),
            ..Rules::upstream(Ipv4Addr::new(169, 254, 169, 254), 80, 2579)
        };
        let m = "-d 169.254.169.254/32 -p tcp -m tcp --dport 80";
        assert_eq!(
            rules.expected_node().unwrap(),
            [
                "-N podid-node-callers".to_string(),
                format!(
                    "-A podid-node-callers {m} -m cgroup --path \"/kubepods/besteffort/podabc/nmi\" -j RETURN"
                ),
                format!(
                    "-A podid-node-callers {m} -m cgroup --path \"/system.slice/kubelet.service\" -j RETURN"
                ),
                format!("-A podid-node-callers {m} -j DNAT --to-destination 10.224.0.4:2579"),
                "-A podid-node-callers -j RETURN".to_string(),
            ]
        );
        assert_eq!(Rules { node_callers: None, ..rules }.expected_node(), None);
    }

    #[test]
    fn kubenet_config_is_refused_with_the_mitigation() {
        let dir = std::env::temp_dir().join(format!("podid-kubenet-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("kubelet");
        std::fs::write(&f, "KUBELET_FLAGS=--network-plugin=kubenet --max-pods=30").unwrap();
        let err = check_not_kubenet(&f).unwrap_err().to_string();
        assert!(err.contains("not supported for Kubenet") && err.contains("NET_RAW"), "{err}");
        std::fs::write(&f, "KUBELET_FLAGS=--network-plugin=cni").unwrap();
        check_not_kubenet(&f).unwrap();
        check_not_kubenet(&dir.join("missing")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
