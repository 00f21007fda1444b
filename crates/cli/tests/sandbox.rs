//! The real `podid sandbox`, end to end: the whole walkthrough in standard and managed mode must
//! exit 0 with the demo's success lines for both identities, report every step, write its
//! timings, leave nothing behind, and `--keep` must stop cleanly on Ctrl-C.
//!
//! The sandbox runs `podid-mic`, `podid-nmi` and `podid-demo` from the folder of `podid`; `cargo
//! test` builds only `podid` for this crate, so `make test-rust` builds the workspace first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One sandbox at a time: each starts its own API server, and the machine has two cores.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const APP_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";
const APP_2_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99201";

fn podid() -> PathBuf {
    let podid = PathBuf::from(env!("CARGO_BIN_EXE_podid"));
    let dir = podid.parent().unwrap();
    for program in ["podid-mic", "podid-nmi", "podid-demo"] {
        assert!(
            dir.join(program).is_file(),
            "{} is missing: build every program first (`cargo build --workspace`; `make test-rust` does)",
            dir.join(program).display()
        );
    }
    podid
}

fn sandbox(args: &[&str]) -> Output {
    Command::new(podid()).arg("sandbox").args(args).stdin(Stdio::null()).output().unwrap()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Namespaces and links this run created (none may be left).
fn leftovers(pid: u32) -> Vec<String> {
    let tag = format!("podid-sbx-{:x}-", pid % 0xffff);
    let netns =
        String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    let links = String::from_utf8(Command::new("ip").args(["-br", "link"]).output().unwrap().stdout).unwrap();
    let link_tag = format!("psb{:x}n", pid % 0xffff);
    netns
        .lines()
        .chain(links.lines())
        .filter(|l| l.contains(&tag) || l.contains(&link_tag))
        .map(str::to_owned)
        .collect()
}

/// The walkthrough's checks on a finished run's stdout.
fn assert_walkthrough(mode: &str, out: &Output, timings: &Path) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{mode}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for client in [APP_CLIENT, APP_2_CLIENT] {
        assert!(
            stdout.contains("successfully acquired a token using the MSI, msiEndpoint(")
                && stdout.contains(&format!("clientID({client})")),
            "{mode}: no token line for {client}: {stdout}"
        );
    }
    assert!(stdout.matches("successfully doARMOperations vm count 1").count() >= 3, "{stdout}");
    assert!(stdout.matches("successfully made GET on instance metadata, {").count() >= 3, "{stdout}");
    assert!(stdout.contains("[11/11] podid uninstall"), "{stdout}");
    assert!(stdout.contains("scale set identities now: podid-agentpool\n"), "{stdout}");
    assert!(stdout.contains("sandbox: every step verified"), "{stdout}");
    assert_eq!(stdout.matches("BENCH-JSON {\"mode\":\"").count(), 12, "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(timings).unwrap()).unwrap();
    assert_eq!(
        (json["suite"].as_str(), json["mode"].as_str(), json["ok"].as_bool()),
        (Some("sandbox"), Some(mode), Some(true))
    );
    assert_eq!(json["steps"].as_array().unwrap().len(), 11);
}

fn run_mode(mode: &str) {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let timings = dir.path().join("timings.json");
    let child = Command::new(podid())
        .args(["sandbox", "--mode", mode, "--timings-json"])
        .arg(&timings)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert_walkthrough(mode, &out, &timings);
    let stdout = String::from_utf8_lossy(&out.stdout);
    if mode == "federated" {
        assert_eq!(stdout.matches("the scale set's identity list never changed").count(), 2, "{stdout}");
    }
    if is_root() {
        assert!(
            stdout.contains("msiEndpoint(http://169.254.169.254/metadata/identity/oauth2/token)"),
            "{stdout}"
        );
        assert!(stdout.contains("real iptables interception"), "{stdout}");
    }
    assert_eq!(leftovers(pid), Vec::<String>::new(), "namespaces or links left behind");
}

#[test]
fn standard_mode_walkthrough_succeeds_end_to_end() {
    run_mode("standard");
}

#[test]
fn managed_mode_walkthrough_succeeds_end_to_end() {
    run_mode("managed");
}

#[test]
fn federated_mode_walkthrough_succeeds_and_never_touches_the_scale_set() {
    run_mode("federated");
}

#[test]
fn keep_leaves_it_running_until_ctrl_c_then_removes_everything() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(podid())
        .args(["sandbox", "--keep"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Vec::new();
    let kubeconfig = loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the sandbox is ready");
        seen.push(line.clone());
        if let Some(path) = line.trim().strip_prefix("export KUBECONFIG=") {
            break PathBuf::from(path);
        }
    };
    assert!(seen.iter().any(|l| l == "sandbox: every step verified"), "{seen:?}");
    assert!(!seen.iter().any(|l| l.contains("podid uninstall")), "--keep skips the clean-up: {seen:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(kubeconfig.is_file(), "the cluster keeps running");
    let identities = Command::new(podid())
        .args(["--kubeconfig"])
        .arg(&kubeconfig)
        .args(["identity", "list", "-n", "default"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&identities.stdout);
    assert!(listed.contains("demo-2") && listed.contains(APP_CLIENT), "{listed}");
    if is_root() {
        assert!(!leftovers(pid).is_empty(), "the namespaces exist while kept");
    }

    Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(stopped.elapsed() < Duration::from_secs(15), "the sandbox did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(0));
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
        rest.push(line);
    }
    assert!(rest.iter().any(|l| l == "stopping everything"), "{rest:?}");
    assert!(!kubeconfig.exists(), "the cluster's folder is removed");
    assert_eq!(leftovers(pid), Vec::<String>::new(), "namespaces or links left behind");
}

#[test]
fn a_missing_program_fails_with_a_clear_message() {
    // A copy of podid alone in a folder: the sandbox must say how to build the others.
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("podid");
    std::fs::copy(env!("CARGO_BIN_EXE_podid"), &lonely).unwrap();
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(&lonely).args(["sandbox", "--network", "loopback"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("podid-mic is missing") && stdout.contains("cargo build --workspace"),
        "{stdout}"
    );
}

#[test]
fn help_lists_the_sandbox_flags() {
    let out = sandbox(&["--help"]);
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--mode", "--keep", "--timings-json", "--network"] {
        assert!(help.contains(flag), "{flag} missing from: {help}");
    }
}
