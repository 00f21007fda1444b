//! Removing what a cluster's nodes leave behind, whether the cluster is dropped or its test
//! process dies: one shell script, rewritten as resources are made, run by `Drop` and by the
//! watchdog (see `process`).
//!
//! Order: every node's process 1 is killed (the kernel then kills the rest of the node), the
//! nodes' cgroups are emptied and removed deepest first, their network namespaces deleted, and
//! once the kernel has destroyed their links (asynchronously), the host's bridge. Only names that
//! carry the cluster's tag are touched, and a pid is killed only if it still is `podid-node-init`.
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The resources of one cluster and the script that removes them.
#[derive(Debug)]
pub(crate) struct Teardown {
    path: PathBuf,
    bridge: Option<String>,
    netns: Vec<String>,
    links: Vec<String>,
    cgroups: Vec<String>,
    inits: Vec<u32>,
}

impl Teardown {
    /// A teardown for cluster `tag` (its script lives next to, not inside, the cluster's folder,
    /// which another watchdog may be removing at the same moment).
    pub(crate) fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!("podid-real-{tag}.teardown.sh"));
        Self {
            path,
            bridge: None,
            netns: Vec::new(),
            links: Vec::new(),
            cgroups: Vec::new(),
            inits: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn bridge(&mut self, name: &str) -> Result<()> {
        self.bridge = Some(name.to_owned());
        self.write()
    }

    /// Records a node's namespace, host link and cgroup root, before they are made.
    pub(crate) fn node(&mut self, netns: &str, link: &str, cgroup_root: &str) -> Result<()> {
        self.netns.push(netns.to_owned());
        self.links.push(link.to_owned());
        self.cgroups.push(cgroup_root.trim_start_matches('/').to_owned());
        self.write()
    }

    /// Records a node's process 1.
    pub(crate) fn init(&mut self, pid: u32) -> Result<()> {
        self.inits.push(pid);
        self.write()
    }

    fn script(&self) -> String {
        let words = |items: &[String]| items.join(" ");
        let inits = self.inits.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        let mut s =
            String::from("# Written by podid-testkit: removes what a real cluster's nodes leave behind.\n");
        let _ = writeln!(
            s,
            "inits='{inits}'; netns='{}'; links='{}'; cgroups='{}'",
            words(&self.netns),
            words(&self.links),
            words(&self.cgroups)
        );
        s.push_str(
            r#"for p in $inits; do
  [ "$(cat /proc/$p/comm 2>/dev/null)" = podid-node-init ] && kill -KILL "$p" 2>/dev/null
done
for p in $inits; do
  i=0; while [ "$(cat /proc/$p/comm 2>/dev/null)" = podid-node-init ] && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.05; done
done
for c in $cgroups; do
  for h in /sys/fs/cgroup/*/; do
    d="$h$c"; [ -d "$d" ] || continue
    i=0; while [ -n "$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null)" ] && [ $i -lt 200 ]; do i=$((i+1)); sleep 0.05; done
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
  done
done
for n in $netns; do ip netns del "$n" 2>/dev/null; done
for l in $links; do
  i=0; while ip link show "$l" >/dev/null 2>&1 && [ $i -lt 400 ]; do i=$((i+1)); sleep 0.05; done
done
"#,
        );
        if let Some(bridge) = &self.bridge {
            let _ = writeln!(s, "ip link del '{bridge}' 2>/dev/null");
        }
        // Whoever runs it (Drop, the watchdog, a person), the script goes once it has run.
        s.push_str("rm -f \"$0\"\n");
        s
    }

    fn write(&self) -> Result<()> {
        std::fs::write(&self.path, self.script()).map_err(|source| Error::Io {
            action: "write",
            path: self.path.clone(),
            source,
        })
    }

    /// Runs the script now and removes it.
    pub(crate) fn run(&self) {
        let status = std::process::Command::new("sh")
            .arg(&self.path)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !status.is_ok_and(|s| s.success()) {
            tracing::warn!(script = %self.path.display(), "Teardown script failed");
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What of cluster `tag` still exists: links, network namespaces, cgroups, mounts, processes.
pub(crate) fn leftovers(tag: &str) -> Vec<String> {
    let mut found = Vec::new();
    let link = format!("pk{tag}");
    let ip = |args: &[&str]| super::net::run(args).unwrap_or_default();
    for line in ip(&["ip", "-o", "link", "show"]).lines() {
        if line.contains(&link) {
            found.push(format!("link: {}", line.split(':').nth(1).unwrap_or(line).trim()));
        }
    }
    for line in ip(&["ip", "netns", "list"]).lines() {
        if line.starts_with(&link) {
            found.push(format!("network namespace: {line}"));
        }
    }
    let cgroup = format!("podid-{tag}-");
    for hierarchy in super::cgroup_hierarchies() {
        let Ok(entries) = std::fs::read_dir(&hierarchy) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_name().to_string_lossy().starts_with(&cgroup) {
                found.push(format!("cgroup: {}", entry.path().display()));
            }
        }
    }
    let dir = format!("podid-real-{tag}-");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    found.extend(mounts.lines().filter(|l| l.contains(&dir)).map(|l| format!("mount: {l}")));
    found.extend(processes_mentioning(&dir).into_iter().map(|p| format!("process: {p}")));
    found
}

/// Processes whose command line mentions `needle` (as `pid: command line`).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter_map(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            text.contains(needle).then(|| format!("{pid}: {}", text.trim()))
        })
        .collect()
}
