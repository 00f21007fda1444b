//! Real-node figures: cluster start (first and second in one run), pod start → first token in
//! each mode (and managed with `--verified-callers`), the agent's and the controller's memory in
//! their containers, image sizes.
//!
//! ```text
//! cargo bench -p podid-sandbox --bench real_nodes     # root; PODID_BENCH_SAMPLES (default 5)
//! PODID_BENCH_SETUPS=managed,managed-verified cargo bench -p podid-sandbox --bench real_nodes
//! ```
//!
//! Prints a table and one `BENCH-JSON {"suite":"real_nodes",...}` line per figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;
use podid_sandbox::world::{World, WorldOptions};
use podid_sandbox::{Mode, azure};
use podid_testkit::NodeSpec;
use support::{APP_CLIENT, PodSpec};

fn line(name: &str, fields: serde_json::Value) {
    let mut object = serde_json::json!({ "suite": "real_nodes", "name": name });
    if let (Some(o), Some(f)) = (object.as_object_mut(), fields.as_object()) {
        o.extend(f.clone());
    }
    println!("BENCH-JSON {object}");
}

/// A program that prints its start time and the time of its first token for `client`.
fn first_token(client: &str) -> String {
    format!(
        r#"
import json, time, urllib.request
start = time.time()
print("start", start, flush=True)
url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&client_id={client}"
while True:
    try:
        json.load(urllib.request.urlopen(urllib.request.Request(url, headers={{"Metadata": "true"}}), timeout=90))
        print("first", time.time(), flush=True)
        break
    except Exception as e:
        time.sleep(0.02)
"#
    )
}

fn field(logs: &str, key: &str) -> f64 {
    logs.lines().find_map(|l| l.strip_prefix(key).and_then(|v| v.trim().parse().ok())).unwrap_or(f64::NAN)
}

async fn cluster_starts() {
    for attempt in ["first", "second"] {
        let catalog = podid_testkit::images::Catalog::load().unwrap();
        let began = Instant::now();
        let cluster = podid_testkit::RealCluster::builder()
            .node(NodeSpec::new("bench-node-0"))
            .node(NodeSpec::new("bench-node-1").kube_proxy(false))
            .catalog(&catalog, &["nmi", "mic", "demo"])
            .unwrap()
            .start()
            .await
            .unwrap();
        let started = began.elapsed().as_secs_f64();
        let began = Instant::now();
        drop(cluster);
        let stopped = began.elapsed().as_secs_f64();
        println!("cluster start ({attempt} in this run): {started:.2} s, teardown {stopped:.2} s");
        line(
            "cluster start, 2 nodes, 4 images",
            serde_json::json!({ "attempt": attempt, "seconds": started, "teardown_seconds": stopped }),
        );
    }
}

/// What one run installs: a mode, and extra `podid install` options.
struct Setup {
    label: &'static str,
    mode: Mode,
    extra: &'static [&'static str],
}

const SETUPS: [Setup; 4] = [
    Setup { label: "standard", mode: Mode::Standard, extra: &[] },
    Setup { label: "managed", mode: Mode::Managed, extra: &[] },
    Setup { label: "managed-verified", mode: Mode::Managed, extra: &["--verified-callers"] },
    Setup { label: "federated", mode: Mode::Federated, extra: &[] },
];

async fn first_tokens(setup: &Setup, samples: usize) {
    let (mode, label) = (setup.mode, setup.label);
    let world =
        World::start(WorldOptions { emulator: azure::config(), images: vec!["nmi", "mic", "sdk-python"] })
            .await
            .unwrap();
    let mut install = world.podid().unwrap();
    install.arg("install").args(world.install_args(mode)).args(setup.extra).arg("--apply");
    support::run(&mut install);
    support::run(world.kubectl().unwrap().args([
        "-n",
        "kube-system",
        "rollout",
        "status",
        "ds/nmi",
        "--timeout=180s",
    ]));
    if mode == Mode::Standard {
        support::run(world.kubectl().unwrap().args([
            "-n",
            "kube-system",
            "rollout",
            "status",
            "deployment/mic",
            "--timeout=180s",
        ]));
    }
    let ns = world.cluster.namespace("bench").await.unwrap();
    support::add_identity(&world, mode, &ns, "app", azure::FIRST_IDENTITY, "app");
    support::assign_out_of_band(&world, mode).await;
    let pods = Api::<Pod>::namespaced(world.cluster.api().client().unwrap(), &ns);
    let (mut from_start, mut from_create) = (Vec::new(), Vec::new());
    for i in 0..samples {
        let node = &support::nodes(&world)[i % 2];
        let pod = PodSpec::new(&format!("first-{i}"), "sdk-python", "app")
            .on(node)
            .python(&first_token(APP_CLIENT))
            .build(&world);
        let created =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        pods.create(&PostParams::default(), &pod).await.unwrap();
        let (_, logs) = wait_done(&pods, &format!("first-{i}")).await;
        let (start, first) = (field(&logs, "start"), field(&logs, "first"));
        from_start.push(first - start);
        from_create.push(first - created);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (s, c) = (median(&mut from_start), median(&mut from_create));
    println!(
        "{label}: container start → first token p50 {s:.3} s, pod create → first token p50 {c:.3} s ({samples} pods)"
    );
    line(
        "pod start to first token",
        serde_json::json!({ "mode": label, "samples": samples,
        "container_start_p50_s": s, "pod_create_p50_s": c, "container_start_max_s": from_start.last(), "pod_create_max_s": from_create.last() }),
    );
    memory(&world, label);
}

async fn wait_done(pods: &Api<Pod>, name: &str) -> (bool, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let pod = pods.get(name).await.unwrap();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            return (phase == "Succeeded", pods.logs(name, &Default::default()).await.unwrap());
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} still {phase}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// VmRSS of `program` on each node (MiB), as its container sees it.
fn memory(world: &World, label: &str) {
    for program in ["podid-nmi", "podid-mic"] {
        for node in world.cluster.nodes() {
            let script = format!("for p in $(pidof {program}); do grep VmRSS /proc/$p/status; done");
            let out = node.run(&["sh", "-c", &script]).unwrap_or_default();
            for kib in
                out.lines().filter_map(|l| l.split_whitespace().nth(1)).filter_map(|v| v.parse::<f64>().ok())
            {
                println!("{label}: {program} on {}: {:.1} MiB RSS", node.name(), kib / 1024.0);
                line(
                    "container RSS",
                    serde_json::json!({ "mode": label, "program": program, "node": node.name(), "rss_mib": kib / 1024.0 }),
                );
            }
        }
    }
}

fn image_sizes() {
    let dir = std::env::var_os(podid_testkit::images::IMAGES_DIR_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/images"));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    for image in index["images"].as_array().into_iter().flatten() {
        let mib = |k: &str| image[k].as_f64().unwrap_or(0.0) / 1048576.0;
        println!(
            "image {}: tarball {:.1} MiB, files {:.1} MiB",
            image["reference"],
            mib("size"),
            mib("content_size")
        );
        line(
            "image size",
            serde_json::json!({ "image": image["name"], "reference": image["reference"], "tarball_mib": mib("size"), "content_mib": mib("content_size") }),
        );
    }
}

#[tokio::main]
async fn main() {
    podid_testkit::init_tracing();
    let samples = std::env::var("PODID_BENCH_SAMPLES").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    // PODID_BENCH_SETUPS=managed,managed-verified runs only those (and skips the cluster starts).
    let only = std::env::var("PODID_BENCH_SETUPS").ok();
    let wanted = |label: &str| only.as_deref().is_none_or(|o| o.split(',').any(|l| l == label));
    image_sizes();
    if only.is_none() {
        cluster_starts().await;
    }
    for setup in SETUPS.iter().filter(|s| wanted(s.label)) {
        first_tokens(setup, samples).await;
    }
}
