//! The install manifests on disk: the kustomize tree under `deploy/` is what `podid install`
//! prints (through the real `kubectl kustomize`), it is up to date, the printing needs no
//! cluster, and the Dockerfile builds the workspace's real binaries.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

mod install_support;

use install_support::{kubectl, parse_yaml, sorted};
use podid_cli::install::{InstallOptions, kustomize, render};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn kustomize(overlay: &Path) -> Vec<Value> {
    let out = Command::new(kubectl()).arg("kustomize").arg(overlay).output().unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {}: {}",
        overlay.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_yaml(&String::from_utf8(out.stdout).unwrap())
}

#[test]
fn every_overlay_renders_exactly_what_install_prints() {
    for (name, opts) in kustomize::overlays() {
        let want = sorted(render(&opts).unwrap());
        let have = sorted(kustomize(&repo().join("deploy/overlays").join(name)));
        assert_eq!(have.len(), want.len(), "overlay {name}: object count");
        for (h, w) in have.iter().zip(&want) {
            assert_eq!(h, w, "overlay {name}: {} {}", w["kind"], w["metadata"]["name"]);
        }
    }
}

#[test]
fn the_committed_tree_is_up_to_date() {
    let deploy = repo().join("deploy");
    for (rel, text) in kustomize::tree().unwrap() {
        let path = deploy.join(&rel);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(on_disk == text, "{} is stale or missing: run `make deploy`", path.display());
    }
    let generated: BTreeSet<String> = kustomize::tree().unwrap().into_keys().collect();
    for dir in ["base", "overlays"] {
        for entry in walk(&deploy.join(dir)) {
            let rel = entry.strip_prefix(&deploy).unwrap().display().to_string();
            assert!(generated.contains(&rel), "{rel} is not generated any more: run `make deploy`");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn install_prints_yaml_without_any_cluster_configuration() {
    let home = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_podid"))
        .args(["install", "--mode", "federated", "--namespace", "podid-system", "--tag", "v9"])
        .env("KUBECONFIG", home.path().join("missing"))
        .env("HOME", home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objs = parse_yaml(&String::from_utf8(out.stdout).unwrap());
    let want = render(&InstallOptions {
        mode: podid_cli::install::Mode::Federated,
        namespace: "podid-system".into(),
        tag: "v9".into(),
        ..InstallOptions::default()
    })
    .unwrap();
    assert_eq!(objs, want);
    assert!(!objs.iter().any(|o| o["kind"] == "Deployment"), "federated mode renders no controller");
}

#[test]
fn install_offers_upstreams_404_for_identity_not_found_and_renders_400_as_the_agents_default() {
    let agent_args = |status: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_podid"))
            .args(["install", "--identity-not-found-status", status])
            .env("KUBECONFIG", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let objs = parse_yaml(&String::from_utf8(out.stdout).unwrap());
        let agent = objs.iter().find(|o| o["kind"] == "DaemonSet").unwrap().clone();
        agent["spec"]["template"]["spec"]["containers"][0]["args"].clone()
    };
    let upstream = agent_args("404");
    assert!(
        upstream.as_array().unwrap().iter().any(|a| a == "--identity-not-found-status=404"),
        "{upstream}"
    );
    let default = agent_args("400");
    assert!(
        !default.to_string().contains("identity-not-found-status"),
        "the agent's default is not rendered: {default}"
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_podid"))
        .args(["install", "--identity-not-found-status", "500"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

fn agent_pod(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_podid"))
        .arg("install")
        .args(args)
        .env("KUBECONFIG", "/nonexistent")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let objs = parse_yaml(&String::from_utf8(out.stdout).unwrap());
    objs.iter().find(|o| o["kind"] == "DaemonSet").unwrap()["spec"]["template"]["spec"].clone()
}

#[test]
fn verified_callers_add_host_pid_and_sys_ptrace_to_the_agent_and_nothing_without_it() {
    let plain = agent_pod(&[]);
    assert!(plain.get("hostPID").is_none(), "{plain}");
    assert_eq!(
        plain["containers"][0]["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN"])
    );
    assert!(!plain["containers"][0]["args"].to_string().contains("verified"));

    let verified =
        agent_pod(&["--verified-callers", "--node-caller-exception-cgroup", "/system.slice/kubelet.service"]);
    assert_eq!(verified["hostPID"], true);
    assert_eq!(
        verified["containers"][0]["securityContext"]["capabilities"]["add"],
        serde_json::json!(["NET_ADMIN", "SYS_PTRACE"])
    );
    let args = verified["containers"][0]["args"].to_string();
    assert!(args.contains("--verified-callers=true"), "{args}");
    assert!(args.contains("--node-caller-exception-cgroup=/system.slice/kubelet.service"), "{args}");

    for bad in [
        &["--node-caller-exception-cgroup", "/x"][..],
        &["--verified-callers", "--node-caller-exception-cgroup", "rel ative"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_podid")).arg("install").args(bad).output().unwrap();
        assert!(!out.status.success(), "{bad:?} was accepted");
    }
}

/// Binary names from every crate's `[[bin]]` sections.
fn workspace_bins() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    for krate in std::fs::read_dir(repo().join("crates")).unwrap() {
        let manifest = krate.unwrap().path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        let mut in_bin = false;
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin && let Some(v) = line.strip_prefix("name = ") {
                bins.insert(v.trim_matches('"').to_string());
            }
        }
    }
    bins
}

#[test]
fn the_dockerfile_builds_real_binaries_for_the_images_install_renders() {
    let dockerfile = std::fs::read_to_string(repo().join("docker/Dockerfile")).unwrap();
    let bins = workspace_bins();
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    let built: BTreeSet<String> =
        words.windows(2).filter(|w| w[0] == "--bin").map(|w| w[1].to_string()).collect();
    assert!(!built.is_empty());
    for b in &built {
        assert!(bins.contains(b), "Dockerfile builds --bin {b}, which no crate declares ({bins:?})");
    }
    for b in ["podid-mic", "podid-nmi", "podid"] {
        assert!(built.contains(b), "Dockerfile does not build {b}");
    }
    // Every entrypoint and every binary copied out of the builder is a built binary; the stages
    // are the images install renders (crates/images/tests/dockerfile.rs compares the rest).
    for line in dockerfile.lines().filter(|l| l.starts_with("ENTRYPOINT")) {
        let bin = line.rsplit('/').next().unwrap().trim_end_matches(['"', ']']);
        assert!(built.contains(bin), "{line}");
    }
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY --from=builder")) {
        let src = line.split_whitespace().nth(2).unwrap();
        let bin = src.strip_prefix("/out/").unwrap_or_else(|| panic!("{line}: not a builder output"));
        assert!(built.contains(bin), "{line}");
    }
    let stages: BTreeSet<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .filter_map(|l| l.split(" AS ").nth(1))
        .map(str::trim)
        .collect();
    let objs = render(&InstallOptions::default()).unwrap();
    let text = serde_json::to_string(&objs).unwrap();
    for stage in ["mic", "nmi"] {
        assert!(stages.contains(stage), "Dockerfile has no stage {stage}: {stages:?}");
        assert!(text.contains(&format!("/podid-{stage}:")), "install renders no podid-{stage} image");
    }
}
