//! What a real node needs from this machine, checked before anything starts: each missing piece
//! is named with the way to get it.
use std::path::Path;

use crate::binaries::{kube_bin, on_path, workspace_bin};
use crate::{Error, Result};

/// Checks every prerequisite of [`RealCluster`](super::RealCluster); the first missing one is
/// the error.
pub fn check() -> Result<()> {
    root()?;
    cgroups()?;
    overlayfs()?;
    for (program, package) in [
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
        ("unshare", "util-linux"),
        ("iptables", "iptables"),
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
    ] {
        on_path(program, package)?;
    }
    for plugin in ["bridge", "host-local", "portmap", "loopback"] {
        if !Path::new("/usr/lib/cni").join(plugin).is_file() {
            return Err(missing(
                format!("no CNI plugin /usr/lib/cni/{plugin}"),
                "apt-get install containernetworking-plugins",
            ));
        }
    }
    for binary in ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"] {
        kube_bin(binary)?;
    }
    for binary in ["podid-forward", "podid-node-init"] {
        workspace_bin(binary)?;
    }
    Ok(())
}

fn missing(what: String, how: &str) -> Error {
    Error::Prerequisite { what, how: how.to_owned() }
}

fn root() -> Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    if uid == Some("0") {
        Ok(())
    } else {
        Err(missing(
            "not running as root".into(),
            "Network namespaces, cgroups, mounts and containers need root: run it as root (sudo).",
        ))
    }
}

fn cgroups() -> Result<()> {
    let memory = Path::new("/sys/fs/cgroup/memory");
    if !memory.join("cgroup.procs").is_file() {
        return Err(missing(
            "no cgroup v1 memory hierarchy at /sys/fs/cgroup/memory".into(),
            "The kubelet here runs with the cgroupfs driver on cgroup v1: boot with cgroup v1 hierarchies mounted \
             (systemd.unified_cgroup_hierarchy=0) or mount them under /sys/fs/cgroup.",
        ));
    }
    let probe = memory.join(format!("podid-probe-{}", std::process::id()));
    match std::fs::create_dir(&probe) {
        Ok(()) => {
            let _ = std::fs::remove_dir(&probe);
            Ok(())
        }
        Err(e) => Err(missing(
            format!("cgroups are not writable ({}: {e})", probe.display()),
            "Run as root on a machine (or VM) whose /sys/fs/cgroup is mounted read-write.",
        )),
    }
}

fn overlayfs() -> Result<()> {
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if filesystems.lines().any(|l| l.trim_end().ends_with("overlay")) {
        Ok(())
    } else {
        Err(missing(
            "the kernel has no overlayfs".into(),
            "Load it (`modprobe overlay`) or use a kernel built with CONFIG_OVERLAY_FS.",
        ))
    }
}
