//! A containerd of the test's own: root, state, socket and config in a temporary folder, the CRI
//! plugin disabled, started and stopped by PID. It runs in a private mount namespace with a
//! tmpfs on /run, so the shims' sockets, runc's state and ctr's FIFOs (containerd puts them
//! under /run/containerd whatever its config says) and every overlay mount of an unpack or a
//! container stay inside it and vanish with it. `ctr` enters that namespace (`nsenter -m`).
//!
//! Containers get a new network namespace (ctr's default: loopback only, no route anywhere)
//! and a cgroup named after this process, removed when they are deleted.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long containerd may take to answer after starting (the machine is shared and loaded).
const START_BUDGET: Duration = Duration::from_secs(120);

pub struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
    /// containerd namespace of this test process.
    pub namespace: String,
}

impl Containerd {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("podid-images-containerd-").tempdir().unwrap();
        let d = dir.path();
        let config = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.internal.v1.opt",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount -t tmpfs -o mode=0755 podid-images-run /run && exec containerd --config "$0""#)
            .arg(d.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd (apt-get install containerd)");
        let me = Self { dir, child, namespace: format!("podid-images-{}", std::process::id()) };
        let started = Instant::now();
        while !me.ctr(&["version"]).status.success() {
            assert!(started.elapsed() < START_BUDGET, "containerd did not answer; log:\n{}", me.log());
            std::thread::sleep(Duration::from_millis(200));
        }
        me
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's own log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// A path for the test's own files (bind mounts).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ctr` inside containerd's mount namespace, in this test's containerd namespace.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg("--target")
            .arg(self.child.id().to_string())
            .arg("--mount")
            .arg("--")
            .arg("ctr")
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", &self.namespace])
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// `ctr` that must succeed; its standard output.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ctr(args);
        assert!(
            out.status.success(),
            "ctr {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn import(&self, tarball: &Path) {
        self.ok(&["images", "import", &tarball.display().to_string()]);
    }

    /// The cgroup path of container `id` (unique to this process).
    pub fn cgroup(id: &str) -> String {
        format!("/podid-images-{}-{id}", std::process::id())
    }

    /// `ctr run --rm` to completion: exit code and combined output.
    pub fn run(&self, image: &str, id: &str, extra: &[&str], args: &[&str]) -> (i32, String) {
        let cgroup = Self::cgroup(id);
        let mut all = vec!["run", "--rm", "--cgroup", &cgroup];
        all.extend(extra);
        all.extend([image, id]);
        all.extend(args);
        let out = self.ctr(&all);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `ctr run --rm` in the background, its output lines on a channel.
    pub fn spawn(&self, image: &str, id: &str, extra: &[&str]) -> Running {
        let cgroup = Self::cgroup(id);
        let mut all = vec!["run", "--rm", "--cgroup", &cgroup];
        all.extend(extra);
        all.extend([image, id]);
        let mut child = self.command(&all).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
        }
        Running { child, lines, seen: Vec::new() }
    }

    fn cleanup_tasks(&self) {
        let tasks = String::from_utf8_lossy(&self.ctr(&["tasks", "ls", "-q"]).stdout).into_owned();
        for id in tasks.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "delete", "-f", id]);
        }
        let containers = String::from_utf8_lossy(&self.ctr(&["containers", "ls", "-q"]).stdout).into_owned();
        for id in containers.lines().filter(|l| !l.is_empty()) {
            let _ = self.ctr(&["containers", "delete", id]);
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.cleanup_tasks();
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A container running in the background (`ctr run --rm` without `-d`).
pub struct Running {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Waits for a line containing `needle`; panics with the output after `budget`.
    pub fn wait_for(&mut self, needle: &str, budget: Duration) {
        let deadline = Instant::now() + budget;
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(line) => self.seen.push(line),
                Err(_) if Instant::now() >= deadline => {
                    panic!("no line with {needle:?} within {budget:?}; output:\n{}", self.seen.join("\n"))
                }
                Err(_) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        self.drain();
                        panic!("exited ({status}) before {needle:?}; output:\n{}", self.seen.join("\n"));
                    }
                }
            }
        }
    }

    /// Waits for the process to exit; its exit code.
    pub fn wait(&mut self, budget: Duration) -> i32 {
        let deadline = Instant::now() + budget;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                self.drain();
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "still running after {budget:?}:\n{}", self.seen.join("\n"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn drain(&mut self) {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
            self.seen.push(line);
        }
    }
}

/// cgroup folders left by container `id` of this process (none once it is deleted).
pub fn leftover_cgroups(id: &str) -> Vec<PathBuf> {
    let name = Containerd::cgroup(id);
    let mut out = Vec::new();
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let path = hierarchy.path().join(name.trim_start_matches('/'));
        if path.exists() {
            out.push(path);
        }
    }
    out
}
