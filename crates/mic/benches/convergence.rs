//! Controller benchmark: the `podid-mic` binary as its own process against the test kube-apiserver
//! and an in-process Azure emulator.
//!
//! 1. latency: with every ARM identity PATCH delayed by L, pod Running → `Assigned` (one pod at a
//!    time, each with its own identity so every assignment needs a PATCH), seen by polling every
//!    10 ms (as earlier runs measured) and by a watch (no polling granularity);
//! 2. cold convergence: PODS pods / IDENTITIES identities / NODES nodes / SCALE_SETS scale sets
//!    created first, then the controller started: time to all `Assigned`, ARM PATCHes;
//! 3. idle: ARM calls during IDLE_SECS with nothing changing (default flags: the drift check runs
//!    every hour, so an hour-long idle phase shows its cost);
//! 4. removal: all pods deleted: time until no assigned identity is left, ARM PATCHes;
//! 5. controller RSS (peak and at the end).
//!
//! Sizes from the environment: `PODID_BENCH_PODS` (2000), `PODID_BENCH_IDENTITIES` (200),
//! `PODID_BENCH_NODES` (50), `PODID_BENCH_SCALE_SETS` (5), `PODID_BENCH_LATENCIES_MS` (`0,250,1000`),
//! `PODID_BENCH_SAMPLES` (7), `PODID_BENCH_IDLE_SECS` (10), `PODID_BENCH_MIC_WRAPPER` (a command
//! prefix such as `heaptrack -o /tmp/mic`, empty), `PODID_BENCH_MIC_ARGS` (extra controller flags such
//! as `--worker-threads 2`, empty). An empty `PODID_BENCH_LATENCIES_MS`
//! skips part 1 (`podid-bench` does that for the smaller points of its convergence curve).
//!
//! Results are also printed as `BENCH-JSON {…}` lines (suite `convergence`: one `latency` record
//! per L, one `converge` record per run) for `podid-bench`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::WatchStreamExt;
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec,
};
use podid_emulator::config::builtin::{CLUSTER_APP, IDENTITY_RESOURCE_GROUP, NODE_RESOURCE_GROUP};
use podid_emulator::config::{IdentityConfig, ScaleSetConfig};
use podid_emulator::{Emulator, EmulatorConfig, FaultAction, FaultSpec, RunningEmulator, Surface};
use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Bench {
    client: kube::Client,
    emu: RunningEmulator,
}

impl Bench {
    fn id(&self, i: usize) -> (String, String) {
        let info = &self.emu.info().identities[&format!("bench-{i}")];
        (info.id.clone(), info.client_id.clone())
    }

    async fn identity(&self, ns: &str, i: usize) {
        let (rid, cid) = self.id(i);
        let mut id = AzureIdentity::new(
            &format!("id-{i}"),
            AzureIdentitySpec {
                identity_type: 0,
                resource_id: rid,
                client_id: cid,
                ..AzureIdentitySpec::default()
            },
        );
        id.metadata.namespace = Some(ns.into());
        Api::<AzureIdentity>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &id)
            .await
            .unwrap();
        let b = AzureIdentityBinding {
            metadata: ObjectMeta {
                name: Some(format!("b-{i}")),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: AzureIdentityBindingSpec {
                azure_identity: format!("id-{i}"),
                selector: format!("sel-{i}"),
                ..AzureIdentityBindingSpec::default()
            },
            status: None,
        };
        Api::<AzureIdentityBinding>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &b)
            .await
            .unwrap();
    }

    async fn pod(&self, ns: &str, name: &str, node: &str, identity: usize) {
        PodBuilder::new(ns, name)
            .node(node)
            .label("aadpodidbinding", format!("sel-{identity}"))
            .ip("10.244.0.10".parse().unwrap())
            .create(&self.client)
            .await
            .unwrap();
    }

    async fn aais(&self, ns: &str) -> Vec<AzureAssignedIdentity> {
        let all = Api::<AzureAssignedIdentity>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        all.items.into_iter().filter(|a| a.spec.pod_namespace == ns).collect()
    }

    /// One pod needing one new identity: creation → Running → `Assigned`, seen by polling every
    /// 10 ms (the figure kept from earlier runs) and by a watch (no polling granularity).
    async fn latency_sample(&self, ns: &str, pod: &str, node: &str, identity: usize) -> Sample {
        let aai = format!("{pod}-{ns}-id-{identity}");
        let api = Api::<AzureAssignedIdentity>::namespaced(self.client.clone(), "default");
        let cfg = kube::runtime::watcher::Config::default().fields(&format!("metadata.name={aai}"));
        let mut stream = kube::runtime::watcher(api.clone(), cfg).applied_objects().boxed();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let watch = tokio::spawn(async move {
            while let Some(Ok(a)) = stream.next().await {
                if a.state() == AssignedState::Assigned {
                    let _ = tx.send(Instant::now());
                    return;
                }
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await; // the watch is established
        let created = Instant::now();
        self.pod(ns, pod, node, identity).await;
        let running = Instant::now();
        loop {
            if let Ok(Some(a)) = api.get_opt(&aai).await
                && a.state() == AssignedState::Assigned
            {
                break;
            }
            assert!(running.elapsed() < Duration::from_secs(60), "{aai} not Assigned");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let polled = running.elapsed();
        let seen = tokio::time::timeout(Duration::from_secs(10), rx).await.ok().and_then(Result::ok);
        watch.abort();
        let seen = seen.expect("the watch saw it Assigned");
        Sample {
            polled,
            watched: seen.saturating_duration_since(running),
            from_create: seen.saturating_duration_since(created),
        }
    }

    fn patches(&self) -> usize {
        self.emu.requests().iter().filter(|r| r.method == "PATCH" && r.surface == Surface::Arm).count()
    }
}

/// One latency sample.
struct Sample {
    /// Running (status written) → seen `Assigned` by polling every 10 ms.
    polled: Duration,
    /// Running → `Assigned`, by a watch (0 when it was Assigned before the status write returned).
    watched: Duration,
    /// Pod created → `Assigned`, by a watch.
    from_create: Duration,
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let pods = env_num("PODID_BENCH_PODS", 2000);
    let identities = env_num("PODID_BENCH_IDENTITIES", 200);
    let nodes = env_num("PODID_BENCH_NODES", 50);
    let scale_sets = env_num("PODID_BENCH_SCALE_SETS", 5);
    let samples = env_num("PODID_BENCH_SAMPLES", 7);
    let idle_secs = env_num("PODID_BENCH_IDLE_SECS", 10);
    let latencies: Vec<u64> = std::env::var("PODID_BENCH_LATENCIES_MS")
        .unwrap_or_else(|_| "0,250,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let latency_ids = samples * latencies.len();

    podid_azure::install_crypto_provider();
    let cluster = TestCluster::shared().await.expect("cluster");
    let client = cluster.client().unwrap();
    let mut config = EmulatorConfig::default();
    for i in 0..identities.max(latency_ids) {
        config.identities.push(IdentityConfig {
            name: format!("bench-{i}"),
            resource_group: IDENTITY_RESOURCE_GROUP.into(),
            client_id: None,
            principal_id: None,
            federated_credentials: vec![],
        });
    }
    for s in 0..scale_sets {
        config.scale_sets.push(ScaleSetConfig {
            name: format!("bench-vmss{s}"),
            resource_group: NODE_RESOURCE_GROUP.into(),
            instances: 1,
            system_assigned: false,
            identities: vec![],
        });
    }
    let emu = Emulator::start(config).await.expect("emulator");
    let bench = Bench { client: client.clone(), emu };
    let lat_ns = cluster.namespace("bench-latency").await.unwrap();
    let ns = cluster.namespace("bench-scale").await.unwrap();
    let sub = bench.emu.subscription_id();
    let mut node_names = Vec::new();
    for n in 0..nodes {
        let name = format!("{ns}-n{n}");
        let vmss = format!("bench-vmss{}", n % scale_sets);
        NodeBuilder::new(&name)
            .vmss(&sub, NODE_RESOURCE_GROUP, &vmss, u32::try_from(n).unwrap())
            .create(&client)
            .await
            .unwrap();
        node_names.push(name);
    }

    // The controller, as its own process.
    let dir = tempfile::tempdir().unwrap();
    let app = &bench.emu.info().applications[CLUSTER_APP];
    let azure_json = serde_json::json!({
        "cloud": "AzurePublicCloud", "tenantId": bench.emu.tenant_id(), "aadClientId": app.client_id,
        "aadClientSecret": app.secrets[0], "subscriptionId": sub, "resourceGroup": NODE_RESOURCE_GROUP,
    });
    let azure_path = dir.path().join("azure.json");
    std::fs::write(&azure_path, azure_json.to_string()).unwrap();
    let mut mic = respawn(
        &mic_args(cluster, &azure_path, &bench, &ns, &lat_ns, "bench-1"),
        &ns,
        &dir.path().join("mic1.log"),
    );
    let pid = mic.id().unwrap();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p = peak.clone();
    tokio::spawn(async move {
        loop {
            if let Some(kb) = rss_kb(pid) {
                p.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });

    // 1. Latency vs ARM update latency.
    println!("== pod Running -> Assigned vs ARM PATCH latency L ({samples} pods each, each needing a PATCH)");
    let node0 = node_names[0].clone();
    let mut next_id = 0;
    for l in &latencies {
        bench.emu.clear_faults();
        if *l > 0 {
            bench
                .emu
                .add_fault(FaultSpec {
                    method: Some("PATCH".into()),
                    ..FaultSpec::new(Surface::Arm, FaultAction::Latency { ms: *l })
                })
                .unwrap();
        }
        let (mut took, mut watched, mut from_create) = (Vec::new(), Vec::new(), Vec::new());
        for s in 0..samples {
            let i = next_id;
            next_id += 1;
            bench.identity(&lat_ns, i).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let pod = format!("lat-{l}-{s}");
            let sample = bench.latency_sample(&lat_ns, &pod, &node0, i).await;
            took.push(sample.polled);
            watched.push(sample.watched);
            from_create.push(sample.from_create);
        }
        let min = took.iter().min().copied().unwrap_or_default();
        let max = took.iter().max().copied().unwrap_or_default();
        println!(
            "L = {l:>5} ms: median {:>7.1} ms, min {:>7.1} ms, max {:>7.1} ms, median - L {:>7.1} ms (polled every 10 ms)",
            ms(median(took.clone())),
            ms(min),
            ms(max),
            ms(median(took.clone())) - *l as f64
        );
        println!(
            "            watched: Running -> Assigned median {:>7.1} ms; pod created -> Assigned median {:>7.1} ms",
            ms(median(watched.clone())),
            ms(median(from_create.clone())),
        );
        let line = serde_json::json!({"suite": "convergence", "name": "latency", "arm_latency_ms": l, "samples": samples,
            "median_ms": ms(median(took)), "min_ms": ms(min), "max_ms": ms(max),
            "watched_median_ms": ms(median(watched)), "from_create_median_ms": ms(median(from_create))});
        println!("BENCH-JSON {line}");
    }
    bench.emu.clear_faults();

    // 2. Cold convergence.
    println!(
        "== convergence: {pods} pods / {identities} identities / {nodes} nodes / {scale_sets} scale sets"
    );
    mic.kill().await.unwrap();
    let t = Instant::now();
    futures::stream::iter(0..identities)
        .for_each_concurrent(16, |i| {
            let (b, ns) = (&bench, &ns);
            async move { b.identity(ns, i).await }
        })
        .await;
    futures::stream::iter(0..pods)
        .for_each_concurrent(32, |p| {
            let (b, ns, nodes) = (&bench, &ns, &node_names);
            async move { b.pod(ns, &format!("p{p}"), &nodes[p % nodes.len()], p % identities).await }
        })
        .await;
    println!("objects created in {:.1} s (controller stopped)", t.elapsed().as_secs_f64());
    bench.emu.clear_requests();
    let mut mic = respawn(
        &mic_args(cluster, &azure_path, &bench, &ns, &lat_ns, "bench-2"),
        &ns,
        &dir.path().join("mic2.log"),
    );
    let pid = mic.id().unwrap();
    let peak2 = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let p2 = peak2.clone();
    tokio::spawn(async move {
        loop {
            if let Some(kb) = rss_kb(pid) {
                p2.fetch_max(kb, std::sync::atomic::Ordering::Relaxed);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    loop {
        let aais = bench.aais(&ns).await;
        let assigned = aais.iter().filter(|a| a.state() == AssignedState::Assigned).count();
        if assigned == pods {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "only {assigned}/{pods} Assigned");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let conv = started.elapsed();
    let patches = bench.patches();
    let minimum: usize = (0..scale_sets)
        .map(|s| {
            let ids: BTreeSet<usize> =
                (0..pods).filter(|p| (p % nodes) % scale_sets == s).map(|p| p % identities).collect();
            ids.len().div_ceil(150)
        })
        .sum();
    let arm = bench.emu.requests();
    let arm: Vec<_> = arm.iter().filter(|r| r.surface == Surface::Arm).collect();
    let arm_requests = arm.len();
    let polls = arm.iter().filter(|r| r.method == "GET" && r.path.contains("/operations/")).count();
    let gets = arm.iter().filter(|r| r.method == "GET").count() - polls;
    println!(
        "all {pods} Assigned {:.1} s after controller start; ARM PATCHes {patches} (minimum {minimum}: per scale set, its distinct identities / 150); ARM requests {arm_requests} ({gets} GET, {patches} PATCH, {polls} operation polls)",
        conv.as_secs_f64(),
    );
    let rss_conv = rss_kb(pid);

    // 3. Idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    bench.emu.clear_requests();
    tokio::time::sleep(Duration::from_secs(u64::try_from(idle_secs).unwrap())).await;
    let idle = bench.emu.requests().iter().filter(|r| r.surface == Surface::Arm).count();
    println!(
        "idle {idle_secs} s with the default drift interval: {idle} ARM calls ({:.1} per hour)",
        idle as f64 * 3600.0 / idle_secs.max(1) as f64
    );

    // 4. Removal.
    bench.emu.clear_requests();
    let t = Instant::now();
    futures::stream::iter(0..pods)
        .for_each_concurrent(32, |p| {
            let (c, ns) = (&client, &ns);
            async move { podid_testkit::kubelet::delete_pod(c, ns, &format!("p{p}")).await.unwrap() }
        })
        .await;
    loop {
        if bench.aais(&ns).await.is_empty() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(900), "assigned identities left");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (removal, removal_patches) = (t.elapsed(), bench.patches());
    println!(
        "all pods deleted and assignments gone in {:.1} s; ARM PATCHes {removal_patches}",
        removal.as_secs_f64(),
    );

    // 5. Memory.
    println!(
        "controller RSS: after convergence {} MiB, at end {} MiB (first run's peak {} MiB)",
        rss_conv.unwrap_or(0) / 1024,
        rss_kb(pid).unwrap_or(0) / 1024,
        peak.load(std::sync::atomic::Ordering::Relaxed) / 1024
    );
    let line = serde_json::json!({"suite": "convergence", "name": "converge", "pods": pods, "identities": identities,
        "nodes": nodes, "scale_sets": scale_sets, "seconds": conv.as_secs_f64(), "arm_patches": patches,
        "minimum_patches": minimum, "arm_requests": arm_requests, "arm_gets": gets, "arm_polls": polls, "idle_secs": idle_secs, "idle_arm_calls": idle,
        "removal_seconds": removal.as_secs_f64(), "removal_patches": removal_patches,
        "rss_kib": rss_conv.unwrap_or(0), "end_rss_kib": rss_kb(pid).unwrap_or(0),
        "peak_rss_kib": peak2.load(std::sync::atomic::Ordering::Relaxed)});
    println!("BENCH-JSON {line}");
    mic.kill().await.unwrap();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mic_args(
    cluster: &TestCluster,
    azure: &std::path::Path,
    bench: &Bench,
    ns: &str,
    lat_ns: &str,
    lease: &str,
) -> Vec<String> {
    [
        "--kubeconfig",
        &cluster.kubeconfig_path().display().to_string(),
        "--cloudconfig",
        &azure.display().to_string(),
        "--arm-endpoint",
        &bench.emu.arm_url(),
        "--aad-authority",
        &bench.emu.login_url(),
        "--trusted-ca-file",
        &bench.emu.ca_pem_path().display().to_string(),
        "--watch-namespace",
        ns,
        "--watch-namespace",
        lat_ns,
        "--leader-election-namespace",
        ns,
        "--leader-election-name",
        lease,
        "--http-probe-port",
        "0",
        "--prometheus-port",
        "0",
        "--arm-poll-interval",
        "50ms",
        "--log-format",
        "json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn respawn(args: &[String], ns: &str, log: &std::path::Path) -> tokio::process::Child {
    let log = std::fs::File::create(log).unwrap();
    // `PODID_BENCH_MIC_WRAPPER="heaptrack -o /tmp/mic"` runs the controller under a profiler (the RSS
    // figures are then the wrapper's, not the controller's).
    let wrapper = std::env::var("PODID_BENCH_MIC_WRAPPER").unwrap_or_default();
    let mut command: Vec<String> = wrapper.split_whitespace().map(str::to_string).collect();
    command.push(env!("CARGO_BIN_EXE_podid-mic").to_string());
    command.extend(args.iter().cloned());
    // `PODID_BENCH_MIC_ARGS="--worker-threads 2"`: extra controller flags.
    let extra = std::env::var("PODID_BENCH_MIC_ARGS").unwrap_or_default();
    command.extend(extra.split_whitespace().map(str::to_string));
    tokio::process::Command::new(&command[0])
        .args(&command[1..])
        .env("MIC_POD_NAMESPACE", ns)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}
