//! Network namespaces, veth links and tiny HTTP helpers for tests that need real packets and real
//! iptables. Everything lives in namespaces the test creates (and deletes on drop); nothing is sent
//! from the host's namespace to anything but loopback or those namespaces.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when the test may run. Network namespaces and iptables need root; CI runs as root. A
/// non-root run fails loudly unless `PODID_SKIP_NETNS=1` asks to skip these tests explicitly.
pub fn root_or_explicit_skip(test: &str) -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var("PODID_SKIP_NETNS").as_deref() == Ok("1") {
        eprintln!("SKIPPED {test}: needs root for network namespaces (PODID_SKIP_NETNS=1)");
        return false;
    }
    panic!(
        "{test} needs root for network namespaces and iptables (CI runs as root); run as root or set PODID_SKIP_NETNS=1 to skip it explicitly"
    );
}

/// A short unique suffix for names (interface names are limited to 15 characters).
pub fn unique() -> String {
    format!("{:x}{}", std::process::id() % 0xfff, COUNTER.fetch_add(1, Ordering::SeqCst))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs a command in the host namespace (only `ip` and `sysctl` plumbing).
pub fn host(args: &[&str]) -> Output {
    run(Command::new(args[0]).args(&args[1..]))
}

/// A network namespace with `lo` up; deleted (and its processes killed) on drop.
pub struct Netns {
    pub name: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    pub fn create(tag: &str) -> Self {
        let name = format!("podid-{tag}-{}", unique());
        host(&["ip", "netns", "add", &name]);
        let ns = Self { name, children: Mutex::new(Vec::new()) };
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A handle on a namespace created elsewhere (not deleted on drop).
    pub fn existing(name: &str) -> std::mem::ManuallyDrop<Self> {
        std::mem::ManuallyDrop::new(Self { name: name.to_string(), children: Mutex::new(Vec::new()) })
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Runs a command inside; returns its output whatever the exit status.
    pub fn exec(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap_or_else(|e| panic!("cannot run {args:?} in {}: {e}", self.name))
    }

    /// Runs a command inside and requires success.
    pub fn ok(&self, args: &[&str]) -> Output {
        run(&mut self.command(args))
    }

    /// Starts a long-running process inside; killed on drop. Returns its index for [`Netns::kill`].
    pub fn spawn(&self, args: &[&str], envs: &[(&str, &str)]) -> usize {
        let mut c = self.command(args);
        c.envs(envs.iter().copied()).stdin(Stdio::null());
        let child = c.spawn().unwrap_or_else(|e| panic!("cannot start {args:?}: {e}"));
        let mut children = self.children.lock();
        children.push(child);
        children.len() - 1
    }

    /// Sends `signal` to a process started with [`Netns::spawn`] and waits for it to exit.
    pub fn kill(&self, index: usize, signal: &str) {
        let mut children = self.children.lock();
        let child = &mut children[index];
        let _ = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
        let _ = child.wait();
    }

    /// An `iptables` that runs inside this namespace (a wrapper script in `dir`).
    pub fn iptables_wrapper(&self, dir: &Path) -> PathBuf {
        let path = dir.join(format!("iptables-{}", self.name));
        std::fs::write(&path, format!("#!/bin/sh\nexec ip netns exec {} iptables \"$@\"\n", self.name))
            .unwrap();
        run(Command::new("chmod").args(["+x", &path.display().to_string()]));
        path
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in self.children.lock().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Links two namespaces with a veth pair: `a_ip` (CIDR) on a's side, `b_ip` on b's.
pub fn link(a: &Netns, a_ip: &str, b: &Netns, b_ip: &str) -> (String, String) {
    let id = unique();
    let (va, vb) = (format!("va{id}"), format!("vb{id}"));
    host(&[
        "ip", "link", "add", &va, "netns", &a.name, "type", "veth", "peer", "name", &vb, "netns", &b.name,
    ]);
    a.ok(&["ip", "addr", "add", a_ip, "dev", &va]);
    a.ok(&["ip", "link", "set", &va, "up"]);
    b.ok(&["ip", "addr", "add", b_ip, "dev", &vb]);
    b.ok(&["ip", "link", "set", &vb, "up"]);
    (va, vb)
}

/// A one-line HTTP server answering every GET with `body` (python3, as a process in `ns`).
pub fn serve(ns: &Netns, dir: &Path, host: &str, port: u16, body: &str) -> usize {
    let script = dir.join("serve.py");
    std::fs::write(
        &script,
        "import http.server, sys\n\
         host, port, body = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()\n\
         class H(http.server.BaseHTTPRequestHandler):\n\
         \x20   def do_GET(self):\n\
         \x20       self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)\n\
         \x20   def log_message(self, *a): pass\n\
         http.server.HTTPServer((host, port), H).serve_forever()\n",
    )
    .unwrap();
    ns.spawn(&["python3", &script.display().to_string(), host, &port.to_string(), body], &[])
}

/// GETs `url` from inside `ns` with `Metadata: true`: `Ok(body)` or `Err(reason)`.
pub fn fetch(ns: &Netns, url: &str) -> Result<String, String> {
    let code = "import sys, urllib.request, urllib.error\n\
                req = urllib.request.Request(sys.argv[1], headers={'Metadata': 'true'})\n\
                try:\n\
                \x20   print(urllib.request.urlopen(req, timeout=3).read().decode(), end='')\n\
                except urllib.error.HTTPError as e:\n\
                \x20   print(e.code, e.read().decode(), end=''); sys.exit(2)\n\
                except Exception as e:\n\
                \x20   print(type(e).__name__, e, end=''); sys.exit(1)\n";
    let out = ns.exec(&["python3", "-c", code, url]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() { Ok(text) } else { Err(text) }
}

/// Retries `fetch` until it returns `want` or 10 s pass.
pub fn fetch_until(ns: &Netns, url: &str, want: &str) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = fetch(ns, url);
        if got.as_deref() == Ok(want) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A bridge in the host namespace carrying `10.253.<n>.0/24` between test pods and the agent
/// (which listens on `10.253.<n>.1`); deleted on drop. Pods are namespaces attached with
/// [`Bridge::attach`], each with a default route via the bridge and an iptables rule sending
/// 169.254.169.254:80 to the agent, as the node's rules would.
pub struct Bridge {
    pub name: String,
    pub subnet: u8,
    next: AtomicU32,
}

impl Bridge {
    pub fn create() -> Self {
        let subnet = ((std::process::id() + COUNTER.fetch_add(1, Ordering::SeqCst)) % 250) as u8 + 1;
        let name = format!("pbr{}", unique());
        host(&["ip", "link", "add", &name, "type", "bridge"]);
        host(&["ip", "addr", "add", &format!("10.253.{subnet}.1/24"), "dev", &name]);
        host(&["ip", "link", "set", &name, "up"]);
        Self { name, subnet, next: AtomicU32::new(2) }
    }

    /// The agent's address on this bridge.
    pub fn agent_ip(&self) -> String {
        format!("10.253.{}.1", self.subnet)
    }

    /// A new pod namespace on the bridge; returns it and its IP. Its IMDS traffic goes to
    /// `agent_port` on the bridge address.
    pub fn attach(&self, agent_port: u16) -> (Netns, String) {
        let pod = Netns::create("pod");
        let ip = format!("10.253.{}.{}", self.subnet, self.next.fetch_add(1, Ordering::SeqCst));
        let id = unique();
        let (hv, pv) = (format!("vh{id}"), format!("vp{id}"));
        host(&["ip", "link", "add", &hv, "type", "veth", "peer", "name", &pv, "netns", &pod.name]);
        host(&["ip", "link", "set", &hv, "master", &self.name, "up"]);
        pod.ok(&["ip", "addr", "add", &format!("{ip}/24"), "dev", &pv]);
        pod.ok(&["ip", "link", "set", &pv, "up"]);
        pod.ok(&["ip", "route", "add", "default", "via", &self.agent_ip()]);
        let to = format!("{}:{agent_port}", self.agent_ip());
        pod.ok(&[
            "iptables",
            "-t",
            "nat",
            "-A",
            "OUTPUT",
            "-d",
            "169.254.169.254/32",
            "-p",
            "tcp",
            "--dport",
            "80",
            "-j",
            "DNAT",
            "--to-destination",
            &to,
        ]);
        (pod, ip)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.name]).status();
    }
}
