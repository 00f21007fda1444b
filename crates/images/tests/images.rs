//! The images `make images` builds: tarballs skopeo reads as docker archives, that import into
//! a real containerd under the references `podid install` renders, whose layers hold what each
//! component needs, and whose containers start (each in a new network namespace of its own,
//! with loopback only: nothing they do can reach an outside address).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::Duration;

use podid_images::spec;
use support::containerd::{self, Containerd};
use support::{built, contents};

const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The agent's start-up under a loaded machine: generous.
const AGENT_BUDGET: Duration = Duration::from_secs(120);

fn reference(name: &str) -> String {
    spec::find(name).unwrap().reference()
}

#[test]
fn the_index_lists_every_catalog_image_with_its_tarball_size_and_digest() {
    let b = built();
    let names: Vec<&str> = b.index.images.iter().map(|e| e.name.as_str()).collect();
    let catalog: Vec<&str> = spec::catalog().iter().map(|i| i.name).collect();
    assert_eq!(names, catalog);
    for e in &b.index.images {
        assert_eq!(e.reference, reference(&e.name));
        let meta = std::fs::metadata(b.tarball(&e.name)).unwrap();
        assert_eq!(meta.len(), e.size, "{}", e.name);
        let blob =
            podid_images::layer::digest_reader(std::fs::File::open(b.tarball(&e.name)).unwrap()).unwrap();
        assert_eq!(blob.digest, e.file_digest, "{}: tarball digest", e.name);
        assert!(e.digest.starts_with("sha256:") && e.config_digest.starts_with("sha256:"));
    }
    let nmi = b.entry("nmi");
    assert!(nmi.packages.iter().any(|p| p.starts_with("iptables=")), "{:?}", nmi.packages);
}

#[test]
fn every_tarball_is_a_docker_archive_and_an_oci_archive_skopeo_reads() {
    let b = built();
    for e in &b.index.images {
        let file = b.tarball(&e.name).display().to_string();
        for transport in ["docker-archive", "oci-archive"] {
            let out =
                Command::new("skopeo").args(["inspect", &format!("{transport}:{file}")]).output().unwrap();
            assert!(
                out.status.success(),
                "skopeo inspect {transport}:{file}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let layers: Vec<&str> =
                v["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
            let want: Vec<&str> = e.layers.iter().map(|l| l.digest.as_str()).collect();
            assert_eq!(layers, want, "{transport}: {}", e.name);
            assert_eq!((v["Architecture"].as_str(), v["Os"].as_str()), (Some("amd64"), Some("linux")));
        }
        let out = Command::new("skopeo")
            .args(["inspect", "--raw", &format!("oci-archive:{file}")])
            .output()
            .unwrap();
        assert_eq!(podid_images::layer::digest(&out.stdout), e.digest, "{}: manifest digest", e.name);
    }
}

#[test]
fn every_tarball_imports_into_containerd_under_its_reference_with_its_config() {
    let b = built();
    let c = Containerd::start();
    for e in &b.index.images {
        c.import(&b.tarball(&e.name));
    }
    let listed = c.ok(&["images", "ls"]);
    for e in &b.index.images {
        let line = listed.lines().find(|l| l.split_whitespace().next() == Some(e.reference.as_str()));
        let line = line.unwrap_or_else(|| panic!("{} not imported:\n{listed}", e.reference));
        assert!(line.contains(&e.digest), "{}: digest {} not in {line}", e.name, e.digest);
        let config: serde_json::Value =
            serde_json::from_str(&c.ok(&["content", "get", &e.config_digest])).unwrap();
        let image = spec::find(&e.name).unwrap();
        assert_eq!(config["config"]["User"], image.user, "{}", e.name);
        assert_eq!(config["config"]["Entrypoint"], serde_json::json!(image.entrypoint), "{}", e.name);
        assert_eq!(config["config"]["Env"][0], format!("PATH={}", spec::PATH));
    }
    let checked = c.ok(&["images", "check"]);
    for e in &b.index.images {
        let line = checked.lines().find(|l| l.starts_with(&e.reference)).unwrap();
        assert!(line.contains("complete"), "{line}");
    }
}

#[test]
fn the_agent_image_has_iptables_on_nft_conntrack_and_the_ca_bundle_and_runs_as_root() {
    let image = contents(&built().tarball("nmi"), &[CA_BUNDLE]);
    let f = &image.files;
    assert_eq!(image.config["config"]["User"], "0:0");
    assert_eq!(f["/etc/alternatives/iptables"].link.as_deref(), Some("/usr/sbin/iptables-nft"));
    for bin in ["/usr/sbin/xtables-nft-multi", "/usr/sbin/conntrack", "/usr/local/bin/podid-nmi"] {
        assert!(f.get(bin).is_some_and(|n| n.mode & 0o111 != 0), "{bin} missing or not executable");
    }
    let bundle = f[CA_BUNDLE].data.as_ref().unwrap();
    assert!(String::from_utf8_lossy(bundle).matches("BEGIN CERTIFICATE").count() > 100);
    assert!(!f.keys().any(|p| p.starts_with("/dev/")), "device nodes in a layer");
    assert!(!f.keys().any(|p| p.starts_with("/usr/share/man/")), "not slim: man pages");
}

#[test]
fn the_controller_image_holds_the_cli_and_declares_uid_65532() {
    let image = contents(&built().tarball("mic"), &["/etc/passwd"]);
    assert_eq!(image.config["config"]["User"], "65532:65532");
    for bin in ["/usr/local/bin/podid-mic", "/usr/local/bin/podid"] {
        assert!(image.files.get(bin).is_some_and(|n| n.mode == 0o755 && n.uid == 0), "{bin}");
    }
    let passwd = String::from_utf8(image.files["/etc/passwd"].data.clone().unwrap()).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "{passwd}");
    assert!(image.files.contains_key(CA_BUNDLE));
}

#[test]
fn the_test_images_hold_their_programs() {
    let b = built();
    let pause = contents(&b.tarball("pause"), &[]);
    assert_eq!(pause.files.keys().collect::<Vec<_>>(), ["/pause"]);
    let busybox = contents(&b.tarball("busybox"), &[]);
    for applet in ["/bin/sh", "/usr/bin/nc", "/bin/sleep"] {
        assert_eq!(busybox.files[applet].link.as_deref(), Some("/bin/busybox"), "{applet}");
    }
    let python = contents(&b.tarball("sdk-python"), &[]);
    assert!(python.files.contains_key("/usr/bin/python3.11"));
    assert!(python.files.contains_key("/usr/local/lib/python3.11/dist-packages/azure/identity/__init__.py"));
    assert!(
        python
            .files
            .contains_key("/usr/local/lib/python3.11/dist-packages/azure_identity-1.27.0.dist-info/METADATA")
    );
    let rust = contents(&b.tarball("sdk-rust"), &[]);
    assert!(rust.files.contains_key(spec::SDK_PROBE) && rust.files.contains_key(CA_BUNDLE));
}

#[test]
fn the_agent_starts_in_its_container_and_installs_its_nat_rule_in_the_pods_network_namespace() {
    let b = built();
    let c = Containerd::start();
    c.import(&b.tarball("nmi"));
    // A kubeconfig for an API server nobody serves (loopback of the container's own namespace):
    // the agent builds its clients (the CA bundle's test), installs its rules and serves. The
    // namespace has no route to 169.254.169.254, so no node address to DNAT to: upstream's loopback
    // rule is asked for by name (the real-node suites run the default, `auto`).
    let kubeconfig = c.scratch("kubeconfig");
    std::fs::write(&kubeconfig, KUBECONFIG).unwrap();
    let mount = format!("type=bind,src={},dst=/kubeconfig,options=rbind:ro", kubeconfig.display());
    let extra = [
        "--cap-add",
        "CAP_NET_ADMIN",
        "--env",
        "KUBECONFIG=/kubeconfig",
        "--env",
        "NODE_NAME=images-test",
        "--env",
        "PODID_DNAT_ADDRESS=loopback",
        "--mount",
        &mount,
    ];
    let mut agent = c.spawn(&reference("nmi"), "nmi", &extra);
    agent.wait_for("Serving token requests", AGENT_BUDGET);
    let rules =
        c.ok(&["tasks", "exec", "--exec-id", "rules", "nmi", "iptables", "-t", "nat", "-S", "aad-metadata"]);
    assert!(
        rules.contains("-d 169.254.169.254/32") && rules.contains("--to-destination 127.0.0.1:2579"),
        "{rules}"
    );
    let version = c.ok(&["tasks", "exec", "--exec-id", "version", "nmi", "iptables", "--version"]);
    assert!(version.contains("nf_tables"), "{version}");
    c.ok(&["tasks", "kill", "nmi"]);
    agent.wait(Duration::from_secs(60));
    let out = agent.seen.join("\n");
    assert!(!out.contains("builder error"), "{out}");
    drop(c);
    assert_eq!(containerd::leftover_cgroups("nmi"), Vec::<std::path::PathBuf>::new());
}

const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
";

#[test]
fn the_controller_and_demo_containers_run_as_nonroot() {
    let b = built();
    let c = Containerd::start();
    c.import(&b.tarball("mic"));
    c.import(&b.tarball("demo"));
    assert_eq!(
        c.run(&reference("mic"), "mic-id", &[], &["/usr/bin/id"]),
        (0, "uid=65532(nonroot) gid=65532(nonroot) groups=65532(nonroot)\n".into())
    );
    for (image, bin) in [
        ("mic", "/usr/local/bin/podid-mic"),
        ("mic", "/usr/local/bin/podid"),
        ("demo", "/usr/local/bin/podid-demo"),
    ] {
        let (code, out) = c.run(&reference(image), &format!("{image}-help"), &[], &[bin, "--help"]);
        assert_eq!(code, 0, "{bin} --help: {out}");
        assert!(out.contains("Usage"), "{out}");
    }
}

#[test]
fn both_sdk_probes_load_their_sdk_and_report_its_error_when_nothing_answers() {
    let b = built();
    let c = Containerd::start();
    c.import(&b.tarball("sdk-rust"));
    c.import(&b.tarball("sdk-python"));
    // The container's namespace has loopback only: the SDKs' call to 169.254.169.254 fails at once.
    for image in ["sdk-rust", "sdk-python"] {
        let (code, out) = c.run(&reference(image), image, &[], &[spec::SDK_PROBE, "--no-retry"]);
        assert_eq!(code, 1, "{image}: {out}");
        assert!(out.starts_with("error "), "{image}: {out}");
        assert!(!out.contains("ModuleNotFoundError") && !out.contains("ImportError"), "{image}: {out}");
    }
}

#[test]
fn pause_sleeps_until_sigterm_and_busybox_has_a_shell_and_nc() {
    let b = built();
    let c = Containerd::start();
    c.import(&b.tarball("pause"));
    c.import(&b.tarball("busybox"));
    let mut pause = c.spawn(&reference("pause"), "pause", &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert!(pause.child.try_wait().unwrap().is_none(), "pause exited: {:?}", pause.seen);
    let tasks = c.ok(&["tasks", "ls"]);
    assert!(tasks.lines().any(|l| l.starts_with("pause ") && l.contains("RUNNING")), "{tasks}");
    c.ok(&["tasks", "kill", "-s", "SIGTERM", "pause"]);
    assert_eq!(pause.wait(Duration::from_secs(60)), 0);
    let (code, out) =
        c.run(&reference("busybox"), "busybox", &[], &["/bin/sh", "-c", "echo shell; readlink /usr/bin/nc"]);
    assert_eq!((code, out.as_str()), (0, "shell\n/bin/busybox\n"));
}
