//! The namespaces of one node: network, mount and pid, held by the node's process 1.
//!
//! ```text
//!  nsenter --net=/run/netns/<ns> unshare --mount --pid --fork --kill-child --mount-proc --propagation slave
//!    └─ sh: overlay /etc and /var/lib (writes land in the node's folder), bind /run and /var/log
//!         └─ exec podid-node-init   (pid 1 of the node: reaps orphans)
//!  nsenter --target <init> --mount --pid --net <program>   containerd, kubelet, kube-proxy, forwarders
//! ```
//!
//! Every process of the node lives in its pid namespace: killing process 1 kills them all (the
//! kernel does it), containers included. Every mount the node makes (the overlays, containerd's
//! snapshots, the kubelet's volumes, pods' network namespace files) lives in its mount namespace,
//! which is a slave of the host's: nothing propagates back, and it all disappears with the last
//! process. What the node writes to `/etc`, `/var/lib`, `/run` or `/var/log` lands in its folder, so
//! two kubelets on one machine never share `/var/lib/kubelet` or `/var/log/pods`, and the host's
//! own files are never touched.
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::process::Processes;
use crate::{Error, Result};

/// How long a node's namespaces may take to be ready.
const HOLDER_TIMEOUT: Duration = Duration::from_secs(20);

/// The held namespaces of a started node.
#[derive(Debug, Clone)]
pub(crate) struct NodeHost {
    /// Process 1 of the node's pid namespace, as the host sees it.
    pub(crate) init_pid: u32,
}

/// The script that sets up the node's mount namespace, then becomes its process 1.
fn holder_script(dir: &Path, init: &Path) -> String {
    let d = dir.display();
    format!(
        "set -e
mkdir -p '{d}/etc-upper' '{d}/etc-work' '{d}/varlib-upper' '{d}/varlib-work' '{d}/run' '{d}/log'
mount -t overlay overlay -o 'lowerdir=/etc,upperdir={d}/etc-upper,workdir={d}/etc-work' /etc
mount -t overlay overlay -o 'lowerdir=/var/lib,upperdir={d}/varlib-upper,workdir={d}/varlib-work' /var/lib
mount --bind '{d}/run' /run
mount --bind '{d}/log' /var/log
mkdir -p /etc/kubernetes /run/containerd
echo ready
exec '{init}'
",
        init = init.display()
    )
}

/// Starts the node's holder as child `name` of `processes`, in network namespace `ns`.
pub(crate) async fn start(
    processes: &mut Processes,
    name: &str,
    ns: &str,
    dir: &Path,
    init: &Path,
) -> Result<NodeHost> {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{ns}"))
        .args([
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "--propagation",
            "slave",
        ])
        .args(["sh", "-c", &holder_script(dir, init)]);
    let log = dir.join("init.log");
    processes.spawn(name, command, log.clone())?;
    let unshare = processes.pid_of(name).ok_or_else(|| Error::Unexpected(format!("{name} did not start")))?;
    let deadline = tokio::time::Instant::now() + HOLDER_TIMEOUT;
    loop {
        processes.check_alive()?;
        let ready = std::fs::read_to_string(&log).is_ok_and(|text| text.contains("ready"));
        if let Some(init_pid) = ready.then(|| children(unshare).into_iter().next()).flatten() {
            // `ready` is printed just before the exec: wait until the exec happened.
            if comm(init_pid).as_deref() == Some(init_name(init).as_str()) {
                return Ok(NodeHost { init_pid });
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!("the namespaces of {name}"),
                seconds: HOLDER_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl NodeHost {
    /// `program` to run inside the node (its network, mount and pid namespaces).
    pub(crate) fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args(["--target", &self.init_pid.to_string(), "--mount", "--pid", "--net", "--"])
            .arg(program);
        command
    }

    /// Runs `args` inside the node and returns its stdout, failing with its stderr.
    pub(crate) fn run(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["nsenter".to_owned(), "--target".into(), self.init_pid.to_string()];
        full.extend(["--mount", "--pid", "--net", "--"].map(String::from));
        full.extend(args.iter().map(|a| (*a).to_owned()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        super::net::run(&refs)
    }

    /// Writes `contents` to `path` as the node sees it (e.g. `/etc/kubernetes/azure.json`).
    pub(crate) fn write_file(&self, path: &str, contents: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let script = "mkdir -p \"$(dirname \"$1\")\" && cat > \"$1\"";
        let mut child = self
            .command("sh")
            .args(["-c", script, "write", path])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn { program: "nsenter".into(), source })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(contents).map_err(|source| Error::Io {
                action: "write",
                path: path.into(),
                source,
            })?;
        }
        let out =
            child.wait_with_output().map_err(|source| Error::Spawn { program: "nsenter".into(), source })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::Command {
                command: format!("write {path} in the node"),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }
}

/// The children of process `pid` (host pids).
pub(crate) fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The command name of process `pid`.
pub(crate) fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|c| c.trim().to_owned())
}

fn init_name(init: &Path) -> String {
    let name = init.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // /proc/<pid>/comm holds at most 15 bytes.
    name.chars().take(15).collect()
}

/// A program the node runs: the program's own pid is the only child of its `nsenter`.
pub(crate) fn inner_pid(nsenter_pid: u32) -> Option<u32> {
    children(nsenter_pid).into_iter().next()
}
