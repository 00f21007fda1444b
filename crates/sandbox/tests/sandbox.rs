//! `podid-sandbox` as a user runs it (`make sandbox`): the whole walkthrough on real nodes exits 0
//! with the demo's success lines, reports and times every step, and leaves nothing behind; a
//! missing prerequisite stops it before anything starts, saying what is missing and how to get it.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::process::{Command, Output, Stdio};

fn sandbox(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podid-sandbox"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn the_walkthrough_runs_on_real_nodes_and_leaves_nothing_behind() {
    let timings = tempfile::NamedTempFile::new().unwrap();
    let out = sandbox(&["--timings-json", &timings.path().display().to_string()], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "$ podid install --mode=standard",
        "$ podid identity add --namespace my-app --name my-pod-identity ",
        "$ kubectl apply -f ",
        "$ kubectl logs demo --namespace my-app",
        "successfully acquired a token using the MSI, msiEndpoint(http://169.254.169.254/metadata/identity/oauth2/token), clientID(a99c11e0-0000-4000-8000-000000a99001)",
        "successfully doARMOperations vm count",
        "successfully made GET on instance metadata",
        "clientID(a99c11e0-0000-4000-8000-000000a99201)",
        "--binding-selector foo",
        "the controller assigned podid-app to the scale set",
        "$ podid uninstall --wait",
        "no process, mount, cgroup, network namespace or link of this run is left",
        "sandbox: every step verified",
    ] {
        assert!(stdout.contains(expected), "missing {expected:?} in:\n{stdout}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(timings.path()).unwrap()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["steps"].as_array().unwrap().len(), 10, "{json}");
}

#[test]
fn without_images_the_sandbox_stops_before_anything_starts_and_says_how_to_build_them() {
    let empty = tempfile::tempdir().unwrap();
    let out = sandbox(&[], &[("PODID_IMAGES_DIR", &empty.path().display().to_string())]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(stdout.contains("sandbox cannot start") && stdout.contains("make images"), "{stdout}");
    assert!(!stdout.contains("[ 1/"), "a step started: {stdout}");
}
