//! Verified callers (`--verified-callers`): the kernel, not the packet's source address, says
//! which pod a connection comes from. Checked once per connection; a refusal is never cached.
//!
//! ```text
//!  pod network   pod P's netns ──veth──▶ PREROUTING DNAT ──▶ agent: peer = P's IP:port
//!                the index names P by that IP; the connection is P's only if a process of P
//!                (found by P's UID in /proc/<pid>/cgroup) sees the calling socket in its own
//!                namespace: /proc/<pid>/net/tcp lists local = peer, remote = the metadata address
//!                (or the agent's, for a direct call). A pod that took P's address (NET_RAW, ARP
//!                spoofing, a secondary address) holds the socket in *its* namespace, not P's.
//!  node network  a node process or hostNetwork pod ──OUTPUT DNAT──▶ agent: the calling socket is
//!                in the agent's own (the node's) TCP table; its inode leads to the process holding
//!                it (/proc/<pid>/fd → socket:[inode]) and that process's cgroup to a pod UID
//!                (a hostNetwork pod) or to none (a node process: refused; the node components an
//!                operator excepts never reach the agent, iptables returns them first).
//! ```
//!
//! Needs the host's PID namespace (`hostPID: true`, so `/proc` shows every process of the node)
//! and `CAP_SYS_PTRACE` (reading another process's `/proc/<pid>/fd` and `/proc/<pid>/net` is a
//! ptrace-mode read). Everything here is blocking file I/O under `proc_root`: callers run it on
//! a blocking thread.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::http::caller::{TcpRow, find_socket};

/// `TCP_ESTABLISHED` in the kernel's tables.
const TCP_ESTABLISHED: u8 = 1;

/// A caller on the node's own network: the process holding its socket, and the pod (a
/// hostNetwork one) that process belongs to, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeCaller {
    pub pid: u32,
    pub pod_uid: Option<String>,
    /// The process's cgroup v2 path (what `--node-caller-exception-cgroup` would name).
    pub cgroup: String,
}

impl NodeCaller {
    fn of(pid: u32, cgroup: &str) -> Self {
        Self { pid, pod_uid: pod_uid(cgroup), cgroup: unified_path(cgroup).to_owned() }
    }
}

/// Why a connection could not be verified. Every case is refused (fail closed).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unverified {
    #[error("no process of pod {uid} is running on this node, so its network namespace cannot be checked")]
    NoProcess { uid: String },
    #[error(
        "the calling socket {peer} is not in the network namespace of pod {uid}: the address is spoofed or was reused"
    )]
    NotInPod { peer: SocketAddr, uid: String },
    #[error(
        "the pods with address {ip} have no UID in the agent's index, so their processes cannot be found"
    )]
    NoUid { ip: std::net::IpAddr },
    #[error("the calling socket {peer} on the node's network is held by no process (it closed)")]
    NoHolder { peer: SocketAddr },
    #[error("the calling socket {peer} is shared by processes of different pods")]
    SharedSocket { peer: SocketAddr },
    #[error("cannot read the kernel's process and socket tables under {root}: {message}")]
    Proc { root: String, message: String },
}

/// Checks connections against the kernel's view under `proc_root` (normally `/proc` of the host's
/// PID namespace).
#[derive(Debug)]
pub struct Verifier {
    proc_root: PathBuf,
    /// Where intercepted calls were headed before the DNAT (the metadata address and port).
    metadata: SocketAddr,
    /// Pod UID → processes of the pod, from the last scan of `proc_root`. Bounded by the
    /// processes of the node; rebuilt whenever a pod is missing or its processes are gone.
    pods: Mutex<HashMap<String, Vec<u32>>>,
}

impl Verifier {
    pub fn new(proc_root: impl Into<PathBuf>, metadata: SocketAddr) -> Self {
        Self { proc_root: proc_root.into(), metadata, pods: Mutex::new(HashMap::new()) }
    }

    /// Whether a socket is an open connection to where a caller of the agent was headed. Only
    /// ESTABLISHED sockets count: a TIME_WAIT remnant of an earlier call proves nothing.
    fn headed_here(&self, row: &TcpRow, agent: SocketAddr) -> bool {
        row.state == TCP_ESTABLISHED && self.headed_to(row.remote, agent)
    }

    fn headed_to(&self, remote: SocketAddr, agent: SocketAddr) -> bool {
        let remote = SocketAddr::new(remote.ip().to_canonical(), remote.port());
        remote == self.metadata || remote == SocketAddr::new(agent.ip().to_canonical(), agent.port())
    }

    /// The calling socket of `peer → agent` in the agent's own (the node's) TCP table, if the
    /// caller is on the node's network.
    pub fn node_socket(&self, peer: SocketAddr, agent: SocketAddr) -> Result<Option<TcpRow>, Unverified> {
        let own = self.proc_root.join("self/net");
        find_socket(&own, peer, |r| self.headed_here(r, agent)).map_err(|e| self.io(e))
    }

    /// Who holds the socket of `peer → agent` when the caller is on the node's network;
    /// `Ok(None)` for a pod-network caller.
    pub fn node_caller(&self, peer: SocketAddr, agent: SocketAddr) -> Result<Option<NodeCaller>, Unverified> {
        match self.node_socket(peer, agent)? {
            Some(row) => self.holder(peer, row).map(Some),
            None => Ok(None),
        }
    }

    /// The process holding the node-network socket `row`, and the pod it belongs to: first among
    /// the processes of pods (a hostNetwork pod's call, the case served), then among all.
    fn holder(&self, peer: SocketAddr, row: TcpRow) -> Result<NodeCaller, Unverified> {
        let link = format!("socket:[{}]", row.inode);
        let holds = |pid: u32| holds(&self.proc_root.join(pid.to_string()).join("fd"), &link);
        let known: Vec<(String, u32)> = {
            let mut pods = self.pods.lock();
            if pods.is_empty() {
                *pods = scan_pods(&self.proc_root).map_err(|e| self.io(e))?;
            }
            pods.iter().flat_map(|(uid, pids)| pids.iter().map(move |p| (uid.clone(), *p))).collect()
        };
        for (uid, pid) in known.into_iter().filter(|(_, pid)| holds(*pid)) {
            let caller = NodeCaller::of(pid, &read_cgroup(&self.proc_root, pid).unwrap_or_default());
            // The pid may have been reused since the scan: its cgroup says.
            if caller.pod_uid.as_deref() == Some(uid.as_str()) {
                return Ok(caller);
            }
        }
        let mut found: Option<NodeCaller> = None;
        for pid in pids(&self.proc_root).map_err(|e| self.io(e))?.into_iter().filter(|pid| holds(*pid)) {
            let caller = NodeCaller::of(pid, &read_cgroup(&self.proc_root, pid).unwrap_or_default());
            match &found {
                Some(first) if first.pod_uid != caller.pod_uid => {
                    return Err(Unverified::SharedSocket { peer });
                }
                Some(_) => {}
                None => found = Some(caller),
            }
        }
        found.ok_or(Unverified::NoHolder { peer })
    }

    /// Whether the pod with `uid` holds the calling socket `peer → agent` in its own network
    /// namespace; `Ok` names the process of the pod it was seen through.
    pub fn pod_caller(&self, uid: &str, peer: SocketAddr, agent: SocketAddr) -> Result<u32, Unverified> {
        for rescan in [false, true] {
            let pids = self.pids_of(uid, rescan)?;
            for pid in pids {
                let dir = self.proc_root.join(pid.to_string());
                let Ok(found) = find_socket(&dir.join("net"), peer, |r| self.headed_here(r, agent)) else {
                    continue; // the process has exited
                };
                // Read the cgroup again afterwards: had the pid been reused, the table read was
                // another process's.
                let still =
                    read_cgroup(&self.proc_root, pid).is_some_and(|c| pod_uid(&c).as_deref() == Some(uid));
                if !still {
                    continue;
                }
                if found.is_some() {
                    return Ok(pid);
                }
                // Every process of a pod shares its network namespace: one look is enough.
                return Err(Unverified::NotInPod { peer, uid: uid.to_owned() });
            }
        }
        Err(Unverified::NoProcess { uid: uid.to_owned() })
    }

    /// The processes of pod `uid`, from the last scan or (`rescan`, or none known) a new one.
    fn pids_of(&self, uid: &str, rescan: bool) -> Result<Vec<u32>, Unverified> {
        let mut pods = self.pods.lock();
        if rescan || !pods.contains_key(uid) {
            *pods = scan_pods(&self.proc_root).map_err(|e| self.io(e))?;
        }
        Ok(pods.get(uid).cloned().unwrap_or_default())
    }

    fn io(&self, e: std::io::Error) -> Unverified {
        Unverified::Proc { root: self.proc_root.display().to_string(), message: e.to_string() }
    }
}

/// Numeric entries of `proc_root`: every process of the PID namespace.
fn pids(proc_root: &Path) -> std::io::Result<Vec<u32>> {
    Ok(std::fs::read_dir(proc_root)?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
}

/// Pod UID → its processes, for every process whose cgroup names a pod.
fn scan_pods(proc_root: &Path) -> std::io::Result<HashMap<String, Vec<u32>>> {
    let mut pods: HashMap<String, Vec<u32>> = HashMap::new();
    for pid in pids(proc_root)? {
        if let Some(uid) = read_cgroup(proc_root, pid).as_deref().and_then(pod_uid) {
            pods.entry(uid).or_default().push(pid);
        }
    }
    Ok(pods)
}

/// Whether a link in the fd directory `fd_dir` is `link` (`socket:[inode]`).
fn holds(fd_dir: &Path, link: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(fd_dir) else { return false };
    entries.filter_map(Result::ok).any(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.as_os_str() == link))
}

fn read_cgroup(proc_root: &Path, pid: u32) -> Option<String> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("cgroup")).ok()
}

/// The pod UID a `/proc/<pid>/cgroup` names: the kubelet's cgroupfs driver writes
/// `…/pod<uid>/<container>`, its systemd driver `…/kubepods-<qos>-pod<uid with _>.slice/…`.
pub fn pod_uid(cgroup: &str) -> Option<String> {
    cgroup
        .lines()
        .filter_map(|line| line.splitn(3, ':').nth(2))
        .flat_map(|path| path.split('/'))
        .find_map(uid_in_segment)
}

fn uid_in_segment(segment: &str) -> Option<String> {
    let at = segment.rfind("pod")?;
    let rest = &segment[at + 3..];
    let rest = rest.strip_suffix(".slice").unwrap_or(rest);
    let uid = rest.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// `8-4-4-4-12` lower-case hex digits.
fn is_uid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
}

/// The cgroup v2 path of a `/proc/<pid>/cgroup` (its `0::` line), or the first path listed.
pub fn unified_path(cgroup: &str) -> &str {
    let paths = || cgroup.lines().filter_map(|l| l.strip_prefix("0::"));
    paths().next().or_else(|| cgroup.lines().find_map(|l| l.splitn(3, ':').nth(2))).unwrap_or_default()
}

/// The agent's own cgroup v2 path, as the iptables cgroup match resolves it (from the agent's
/// cgroup namespace): the node chain returns the agent's own calls to IMDS by it.
pub fn own_cgroup(proc_root: &Path) -> Result<String, OwnCgroupError> {
    let text = std::fs::read_to_string(proc_root.join("self/cgroup"))
        .map_err(|e| OwnCgroupError::Unreadable(e.to_string()))?;
    let Some(path) = text.lines().find_map(|l| l.strip_prefix("0::")).filter(|p| !p.is_empty()) else {
        return Err(OwnCgroupError::NoUnified);
    };
    if path != "/" {
        return Ok(path.to_owned());
    }
    // "/" is the agent's own container only inside a cgroup namespace of its own.
    let ns = |pid: &str| std::fs::read_link(proc_root.join(pid).join("ns/cgroup")).ok();
    match (ns("self"), ns("1")) {
        (Some(own), Some(init)) if own != init => Ok("/".to_owned()),
        _ => Err(OwnCgroupError::Root),
    }
}

/// The agent cannot tell its own calls to IMDS from other node processes' (fail closed).
#[derive(Debug, thiserror::Error)]
pub enum OwnCgroupError {
    #[error("cannot read the agent's own cgroup (/proc/self/cgroup): {0}")]
    Unreadable(String),
    #[error(
        "the agent is in no cgroup v2 hierarchy, which --verified-callers needs to tell its own calls to IMDS apart"
    )]
    NoUnified,
    #[error(
        "the agent runs in the root cgroup of the node: --verified-callers would except every node process along with \
         it; run the agent in a container (its own cgroup), or without --verified-callers"
    )]
    Root,
}

#[cfg(test)]
mod tests;
