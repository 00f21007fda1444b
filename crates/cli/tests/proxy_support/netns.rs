//! A network namespace whose only way out is one veth link to the host, where the test's proxy
//! listens. Programs run inside it see no default route and no DNS server, so anything that
//! does not go through the proxy fails on the spot instead of leaving the machine.
//!
//! ```text
//!  host: 10.251.N.1/30 (proxy, IMDS forwarder) ◀─veth─▶ 10.251.N.2/30 in netns podid-pxy-…
//! ```
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// True when the test may run: network namespaces need root (CI runs as root). A non-root run
/// fails loudly unless `PODID_SKIP_NETNS=1` asks to skip explicitly.
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
        "{test} needs root for a network namespace (CI runs as root); run as root or set PODID_SKIP_NETNS=1 to skip it explicitly"
    );
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The namespace, its link, and the programs started in it (killed on drop).
pub struct Netns {
    pub name: String,
    /// The host side of the link (where the proxy listens).
    pub host_ip: String,
    /// The namespace's side.
    pub ns_ip: String,
    host_link: String,
    children: Mutex<Vec<Child>>,
}

impl Netns {
    pub fn create() -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let tag = format!("{:x}{n}", std::process::id() % 0xfff);
        let used = String::from_utf8_lossy(&run(&["ip", "-br", "addr"]).stdout).into_owned();
        let third = (0..250u32)
            .map(|i| ((std::process::id() + n * 37 + i) % 250 + 1) as u8)
            .find(|b| !used.contains(&format!("10.251.{b}.")))
            .expect("a free 10.251.N.0/30");
        let name = format!("podid-pxy-{tag}");
        let (host_link, ns_link) = (format!("pxh{tag}"), format!("pxn{tag}"));
        run(&["ip", "netns", "add", &name]);
        let ns = Self {
            name,
            host_ip: format!("10.251.{third}.1"),
            ns_ip: format!("10.251.{third}.2"),
            host_link,
            children: Mutex::new(Vec::new()),
        };
        run(&[
            "ip",
            "link",
            "add",
            &ns.host_link,
            "type",
            "veth",
            "peer",
            "name",
            &ns_link,
            "netns",
            &ns.name,
        ]);
        run(&["ip", "addr", "add", &format!("{}/30", ns.host_ip), "dev", &ns.host_link]);
        run(&["ip", "link", "set", &ns.host_link, "up"]);
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns.ok(&["ip", "addr", "add", &format!("{}/30", ns.ns_ip), "dev", &ns_link]);
        ns.ok(&["ip", "link", "set", &ns_link, "up"]);
        ns
    }

    /// `program args…` inside the namespace.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program).stdin(Stdio::null());
        c
    }

    fn ok(&self, args: &[&str]) {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        run(&all);
    }

    /// Starts `command` with its output in `log`; killed and reaped on drop.
    pub fn spawn(&self, mut command: Command, log: &Path) {
        let out = std::fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = command
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        self.children.lock().unwrap().push(child);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for child in self.children.lock().unwrap().iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip").args(["link", "del", &self.host_link]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
