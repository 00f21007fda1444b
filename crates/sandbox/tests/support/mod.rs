//! The end-to-end suite's world: real nodes, the emulator, podid installed with `podid install
//! --apply` in one mode, shared by the tests of one binary.
//!
//! The world is started once per test binary on a runtime of its own (the emulator's tasks must
//! outlive each test's runtime) and never dropped: when the test process exits, the test kit's
//! watchdog stops the nodes and removes what they made. Tests that disturb the world (kill an
//! agent, roll the DaemonSet, delete the controller's leader) hold [`exclusive`]; the others hold
//! [`shared`], so they never overlap.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};
use podid_emulator::config::builtin;
use podid_sandbox::world::{World, WorldOptions};
use podid_sandbox::{Mode, azure};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The client id of the emulator's `podid-app` identity.
pub const APP_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99001";
/// The client id of `podid-app-2`.
pub const APP_2_CLIENT: &str = "a99c11e0-0000-4000-8000-000000a99201";

struct Shared {
    _runtime: tokio::runtime::Runtime,
    world: World,
    mode: Mode,
}

static WORLD: OnceLock<Shared> = OnceLock::new();
static LOCK: RwLock<()> = RwLock::const_new(());

/// The world of this test binary, podid installed in `mode` (the first caller's mode wins).
pub fn world(mode: Mode) -> &'static World {
    world_with(mode, &[])
}

/// How the world's podid is installed.
#[derive(Clone, Copy, Debug)]
pub enum Install {
    /// `podid install --apply` with the world's endpoints and these options as well.
    Podid(&'static [&'static str]),
    /// `kubectl apply -k deploy/overlays/<mode>`: the committed kustomize tree, unpatched.
    Kustomize,
}

/// [`world`], installed with `podid install` options `extra` as well (the first caller's win).
pub fn world_with(mode: Mode, extra: &'static [&'static str]) -> &'static World {
    world_installed(mode, Install::Podid(extra))
}

/// [`world`], podid installed as `install` says (the first caller's way wins).
pub fn world_installed(mode: Mode, install: Install) -> &'static World {
    let shared = WORLD.get_or_init(|| {
        std::thread::spawn(move || {
            podid_testkit::init_tracing();
            let runtime =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let world = runtime.block_on(start(mode, install));
            Shared { _runtime: runtime, world, mode }
        })
        .join()
        .unwrap()
    });
    assert_eq!(shared.mode, mode, "one mode per test binary");
    &shared.world
}

async fn start(mode: Mode, install: Install) -> World {
    let opts = WorldOptions {
        emulator: azure::config(),
        images: vec!["nmi", "mic", "demo", "sdk-python", "sdk-rust", "busybox"],
    };
    let world = World::start(opts).await.unwrap();
    match install {
        Install::Podid(extra) => run(world
            .podid()
            .unwrap()
            .arg("install")
            .args(world.install_args(mode))
            .args(extra)
            .arg("--apply")),
        Install::Kustomize => {
            // As docs/install.md says: the CRDs first (kubectl maps every object of one apply
            // before sending any, so a custom resource in the same apply as its CRD fails on a
            // fresh cluster), then the overlay.
            let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
            run(world.kubectl().unwrap().arg("apply").arg("-k").arg(deploy.join("crds")));
            run(world
                .kubectl()
                .unwrap()
                .args(["wait", "--for=condition=Established", "--timeout=60s", "-f"])
                .arg(deploy.join("crds/aadpodidentity.k8s.io.yaml")));
            run(world
                .kubectl()
                .unwrap()
                .arg("apply")
                .arg("-k")
                .arg(deploy.join("overlays").join(mode.as_str())))
        }
    };
    let mut rollouts = vec!["ds/nmi"];
    if mode == Mode::Standard {
        rollouts.push("deployment/mic");
    }
    for what in rollouts {
        run(world.kubectl().unwrap().args([
            "-n",
            "kube-system",
            "rollout",
            "status",
            what,
            "--timeout=180s",
        ]));
    }
    let arm = azure::admin_arm(&world.emulator, world.ca_file()).unwrap();
    for (name, reader) in [(azure::FIRST_IDENTITY, false), (azure::SECOND_IDENTITY, true)] {
        let identity = azure::show_identity(&arm, &world.emulator, name).await.unwrap();
        azure::grant(&arm, &world.emulator, &identity.principal_id, azure::role_id(reader)).await.unwrap();
    }
    world
}

/// A test that only reads the world.
pub async fn shared() -> RwLockReadGuard<'static, ()> {
    LOCK.read().await
}

/// A test that disturbs the world (no other test runs meanwhile).
pub async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    LOCK.write().await
}

/// Runs `command`, which must succeed; returns its stdout.
pub fn run(command: &mut std::process::Command) -> String {
    let out = command.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{command:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
    text
}

/// A fresh namespace with its default service account.
pub async fn namespace(world: &World, prefix: &str) -> String {
    world.cluster.namespace(prefix).await.unwrap()
}

/// `podid identity add` of the emulator's identity `identity` as `name` in `ns`, selected by
/// `selector` (federated in federated mode, with the cluster identity as operator in standard).
pub fn add_identity(world: &World, mode: Mode, ns: &str, name: &str, identity: &str, selector: &str) {
    let sub = world.emulator.subscription_id();
    let id = format!(
        "/subscriptions/{sub}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{identity}",
        builtin::IDENTITY_RESOURCE_GROUP
    );
    let mut add = world.podid().unwrap();
    add.args(["identity", "add", "--namespace", ns, "--name", name, "--identity-resource-id", &id]);
    add.args(["--binding-selector", selector]);
    match mode {
        Mode::Standard => {
            let info = world.emulator.info();
            add.args(["--cluster-identity-object-id", &info.applications[builtin::CLUSTER_APP].object_id]);
        }
        Mode::Federated => {
            add.args(["--federated", "--service-account", "default"]);
        }
        Mode::Managed => {}
    }
    run(&mut add);
}

/// A fresh namespace whose pods labelled `app` are bound to the emulator's first identity (the
/// app's, [`APP_CLIENT`]), assigned to the scale set out of band in managed mode.
pub async fn app_namespace(world: &World, mode: Mode, prefix: &str) -> String {
    let ns = namespace(world, prefix).await;
    add_identity(world, mode, &ns, "app", azure::FIRST_IDENTITY, "app");
    assign_out_of_band(world, mode).await;
    ns
}

/// A pod of the real Python SDK labelled `app` on every node gets the app's token.
pub async fn python_sdk_gets_the_app_token_on_every_node(world: &World, ns: &str) {
    for (i, node) in nodes(world).iter().enumerate() {
        let pod = PodSpec::new(&format!("sdk-{i}"), "sdk-python", "app")
            .on(node)
            .args(&["--client-id", APP_CLIENT]);
        let (ok, logs) = run_pod(world, ns, &pod.build(world), Duration::from_secs(150)).await;
        assert!(ok && logs.starts_with("token "), "{node}: {logs}");
    }
}

/// A pod `name` labelled `app` on `node` asks IMDS (raw HTTP, no SDK) for the app's token until
/// it is served: the token it gets is the app's, never another identity's.
pub async fn app_token_served(world: &World, ns: &str, name: &str, node: &str) {
    let check =
        PodSpec::new(name, "sdk-python", "app").on(node).python(&token_until_served(APP_CLIENT, 30.0));
    let (_, logs) = run_pod(world, ns, &check.build(world), Duration::from_secs(150)).await;
    let tally = tally(&logs, APP_CLIENT);
    assert!(tally.right == 1 && tally.wrong.is_empty(), "{name} on {node}: {logs}");
}

/// Managed mode: AKS assigns the walkthrough's identities to the scale set out of band (here: as
/// `az vmss identity assign` would). Other modes: nothing to do.
pub async fn assign_out_of_band(world: &World, mode: Mode) {
    if mode != Mode::Managed {
        return;
    }
    let arm = azure::admin_arm(&world.emulator, world.ca_file()).unwrap();
    for name in [azure::FIRST_IDENTITY, azure::SECOND_IDENTITY] {
        let identity = azure::show_identity(&arm, &world.emulator, name).await.unwrap();
        azure::set_on_scale_set(&arm, &world.emulator, &identity.id, true).await.unwrap();
    }
}

/// A pod to create: image, label, node, command.
#[derive(Debug, Clone)]
pub struct PodSpec {
    name: String,
    image: String,
    selector: String,
    node: Option<String>,
    command: Option<Vec<String>>,
    args: Vec<String>,
    host_network: bool,
    capabilities: Vec<String>,
}

impl PodSpec {
    /// Pod `name` of catalog image `image`, labelled `aadpodidbinding=<selector>`.
    pub fn new(name: &str, image: &str, selector: &str) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            selector: selector.into(),
            node: None,
            command: None,
            args: vec![],
            host_network: false,
            capabilities: vec![],
        }
    }

    /// On the node's network (`hostNetwork: true`).
    pub fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }

    /// With these capabilities added (`NET_ADMIN`, `NET_RAW`).
    pub fn capabilities(mut self, caps: &[&str]) -> Self {
        self.capabilities = caps.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Runs on node `node`.
    pub fn on(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    /// The image's arguments.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.args = args.iter().map(|a| (*a).to_owned()).collect();
        self
    }

    /// A Python program instead of the image's entry point (`sdk-python`).
    pub fn python(mut self, program: &str) -> Self {
        self.command = Some(vec!["python3".into(), "-c".into(), program.into()]);
        self
    }

    /// A shell script instead of the image's entry point (`busybox`).
    pub fn shell(mut self, script: &str) -> Self {
        self.command = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
        self
    }

    /// The Pod object.
    pub fn build(&self, world: &World) -> Pod {
        let image = world.catalog.reference(&self.image).unwrap();
        let mut container = serde_json::json!({ "name": "main", "image": image, "imagePullPolicy": "IfNotPresent", "args": self.args });
        if let Some(command) = &self.command {
            container["command"] = serde_json::json!(command);
        }
        if !self.capabilities.is_empty() {
            container["securityContext"] =
                serde_json::json!({ "capabilities": { "add": self.capabilities } });
        }
        let mut spec = serde_json::json!({ "restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [container] });
        if self.host_network {
            spec["hostNetwork"] = serde_json::json!(true);
        }
        if let Some(node) = &self.node {
            spec["nodeName"] = serde_json::json!(node);
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": { "name": self.name, "labels": { "aadpodidbinding": self.selector } },
            "spec": spec
        }))
        .unwrap()
    }
}

/// The names of the nodes.
pub fn nodes(world: &World) -> Vec<String> {
    world.cluster.nodes().iter().map(|n| n.name().to_owned()).collect()
}

/// Kills the agent's container on node `node` (SIGKILL to its task, as a crash would).
pub fn kill_agent(world: &World, node: &str) {
    let node = world.cluster.node(node).unwrap();
    let ids = agent_containers(node);
    assert!(!ids.is_empty(), "no agent container on {}", node.name());
    for id in &ids {
        // Exited containers of earlier restarts have no task: ignore those.
        let _ = node.ctr().args(["tasks", "kill", "--signal", "SIGKILL", id]).output();
    }
}

/// Creates `pod` and returns its logs once it has finished (Succeeded or Failed).
pub async fn run_pod(world: &World, ns: &str, pod: &Pod, timeout: Duration) -> (bool, String) {
    let pods = Api::<Pod>::namespaced(world.cluster.api().client().unwrap(), ns);
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), pod).await.unwrap();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = pods.get(&name).await.unwrap();
        let phase = now.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            let logs = pods.logs(&name, &LogParams::default()).await.unwrap();
            return (phase == "Succeeded", logs);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod {ns}/{name} still {phase} after {timeout:?}: {:?}",
            now.status
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Creates `pod` and waits until it is Running.
pub async fn start_pod(world: &World, ns: &str, pod: &Pod) -> Pod {
    let pods = Api::<Pod>::namespaced(world.cluster.api().client().unwrap(), ns);
    let name = pod.metadata.name.clone().unwrap();
    pods.create(&PostParams::default(), pod).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let now = pods.get(&name).await.unwrap();
        if now.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
            return now;
        }
        assert!(tokio::time::Instant::now() < deadline, "pod {ns}/{name} not Running: {:?}", now.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes pod `name` and waits until it is gone.
pub async fn delete_pod(world: &World, ns: &str, name: &str) {
    let pods = Api::<Pod>::namespaced(world.cluster.api().client().unwrap(), ns);
    let _ = pods.delete(name, &DeleteParams::default()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while pods.get_opt(name).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "pod {ns}/{name} not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `kubectl exec` in `ns/pod`, returning stdout (and whether it succeeded).
pub fn exec(world: &World, ns: &str, pod: &str, command: &[&str]) -> (bool, String) {
    let out =
        world.kubectl().unwrap().args(["exec", "--namespace", ns, pod, "--"]).args(command).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// A Python program for the `sdk-python` image that asks IMDS (raw HTTP, no SDK cache) for a
/// token every `period` seconds for `seconds`, and prints one line per answer:
/// `ok <client id of the token>`, `http <status> <body>`, or `refused|timeout|error <detail>`.
pub fn token_loop(client_id: &str, seconds: f64, period: f64) -> String {
    token_program(client_id, seconds, period, false)
}

/// [`token_loop`] that stops at the first token: one `ok` line at most, after any failures.
pub fn token_until_served(client_id: &str, seconds: f64) -> String {
    token_program(client_id, seconds, 0.2, true)
}

fn token_program(client_id: &str, seconds: f64, period: f64, until_served: bool) -> String {
    let until_served = if until_served { "True" } else { "False" };
    format!(
        r#"
import base64, json, socket, time, urllib.error, urllib.request
url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&client_id={client_id}"
end = time.time() + {seconds}
while time.time() < end:
    try:
        body = json.load(urllib.request.urlopen(urllib.request.Request(url, headers={{"Metadata": "true"}}), timeout=10))
        part = body["access_token"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        print("ok", claims.get("appid") or claims.get("azp"), flush=True)
        if {until_served}:
            break
    except urllib.error.HTTPError as e:
        print("http", e.code, e.read()[:200].decode(errors="replace").replace("\n", " "), flush=True)
    except urllib.error.URLError as e:
        kind = "refused" if isinstance(e.reason, ConnectionRefusedError) else "timeout" if isinstance(e.reason, socket.timeout) else "error"
        print(kind, e.reason, flush=True)
    except (ConnectionError, socket.timeout) as e:
        print("error", type(e).__name__, e, flush=True)
    time.sleep({period})
"#
    )
}

/// Counts of the lines [`token_loop`] printed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Tokens for the expected identity.
    pub right: usize,
    /// Tokens for any other identity: must never happen.
    pub wrong: Vec<String>,
    /// Refused connections (no agent listening).
    pub refused: usize,
    /// Anything else (HTTP errors, timeouts).
    pub other: Vec<String>,
}

/// Tallies `logs` of a [`token_loop`] for `client_id`.
pub fn tally(logs: &str, client_id: &str) -> Tally {
    let mut t = Tally::default();
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        match line.split_once(' ') {
            Some(("ok", id)) if id.trim() == client_id => t.right += 1,
            Some(("ok", _)) => t.wrong.push(line.to_owned()),
            Some(("refused", _)) => t.refused += 1,
            _ => t.other.push(line.to_owned()),
        }
    }
    t
}

/// A pod whose label no binding selects asks the real Python SDK for the app's identity: the
/// agent refuses at once and the SDK's error carries podid's reason (which label, what to do).
pub async fn unbound_pod_is_refused_with_the_reason(world: &World) {
    let ns = namespace(world, "unbound").await;
    let pod = PodSpec::new("unbound", "sdk-python", "nobody-binds-this").args(&[
        "--client-id",
        APP_CLIENT,
        "--no-retry",
    ]);
    let (ok, logs) = run_pod(world, &ns, &pod.build(world), Duration::from_secs(150)).await;
    // The SDK logs its own warnings first; the probe's verdict is a line of its own.
    assert!(!ok && logs.lines().any(|l| l.starts_with("error ")), "{logs}");
    assert!(
        logs.contains("no AzureIdentityBinding has selector \"nobody-binds-this\""),
        "the SDK's error does not carry podid's reason: {logs}"
    );
}

/// The assignments of the pods of namespace `ns`. They live in the controller's namespace for
/// assignments (`default`) unless their identity is namespaced, so every namespace is listed.
pub async fn assignments_of(world: &World, ns: &str) -> Vec<podid_api::AzureAssignedIdentity> {
    let client = world.cluster.api().client().unwrap();
    let all = Api::<podid_api::AzureAssignedIdentity>::all(client);
    let list = all.list(&Default::default()).await.unwrap();
    list.items.into_iter().filter(|a| a.spec.pod_namespace == ns).collect()
}

/// A busybox shell line that asks the metadata address for `client_id`'s token over raw HTTP and
/// prints the answer's status line and body (`-w 5`: at most five seconds).
pub fn raw_token_request(client_id: &str) -> String {
    format!(
        "(printf 'GET /metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/&client_id={client_id} HTTP/1.0\\r\\nMetadata: true\\r\\nHost: 169.254.169.254\\r\\n\\r\\n'; sleep 3) | busybox nc -w 5 169.254.169.254 80"
    )
}

/// A pod bound to the app's identity (`app`) on `node`, which has asked for its token once (so the
/// node's neighbour table knows its address); returns its IP.
pub async fn victim(world: &World, ns: &str, node: &str) -> String {
    let pod = PodSpec::new("victim", "busybox", "app").on(node).shell("sleep 3600").build(world);
    let running = start_pod(world, ns, &pod).await;
    let ip = running.status.and_then(|s| s.pod_ip).unwrap();
    let (ok, out) = exec(world, ns, "victim", &["/bin/sh", "-c", &raw_token_request(APP_CLIENT)]);
    assert!(ok && out.contains("200 OK") && out.contains("access_token"), "the victim's own request: {out}");
    ip
}

/// On the first node, a bound victim and an attacker that takes its address ([`spoof`]); returns
/// what the attacker got.
pub async fn spoof_a_victim(world: &World, mode: Mode) -> String {
    let ns = app_namespace(world, mode, "spoof").await;
    let node = nodes(world)[0].clone();
    let victim_ip = victim(world, &ns, &node).await;
    spoof(world, &ns, &node, &victim_ip).await
}

/// An unbound pod with NET_ADMIN and NET_RAW on `node` takes `victim_ip` as a second address,
/// announces it with gratuitous ARP (so the node's replies for that address come to it), makes
/// it the source of its route to the metadata address, and asks for the app's token. Returns what
/// it got.
pub async fn spoof(world: &World, ns: &str, node: &str, victim_ip: &str) -> String {
    // The node's pod bridge holds the first address of the victim's /24 (the test kit's CNI).
    let gw = victim_ip.rsplit_once('.').map(|(net, _)| format!("{net}.1")).unwrap();
    let script = format!(
        "busybox ip addr add {victim_ip}/32 dev eth0 && \
         busybox ip route replace default via {gw} dev eth0 src {victim_ip} && \
         busybox arping -U -c 3 -w 3 -I eth0 -s {victim_ip} {gw} >/dev/null 2>&1; \
         {}",
        raw_token_request(APP_CLIENT)
    );
    let pod = PodSpec::new("attacker", "busybox", "nobody-binds-this")
        .on(node)
        .capabilities(&["NET_ADMIN", "NET_RAW"])
        .shell(&script);
    let (_, logs) = run_pod(world, ns, &pod.build(world), Duration::from_secs(120)).await;
    logs
}

/// On the first node, a bound victim is deleted while its agent cannot hear the API server, and
/// an unbound pod is given the victim's address at once (host-local hands out the next address
/// after the last one it reserved). The agent's index still says the address is the victim's
/// when the new pod asks for the app's token. Returns what the new pod got, once a bound pod is
/// served again (the agent hears the API server again).
pub async fn reuse_a_victims_address(world: &World, mode: Mode) -> String {
    let ns = app_namespace(world, mode, "reuse").await;
    let node = world.cluster.node(&nodes(world)[0]).unwrap();
    let victim_ip: Ipv4Addr = victim(world, &ns, node.name()).await.parse().unwrap();
    let deaf = AgentDeaf::on(world, node);
    delete_pod(world, &ns, "victim").await;
    let ipam = node.dir.join("cni-ipam").join("podid");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while ipam.join(victim_ip.to_string()).exists() {
        assert!(tokio::time::Instant::now() < deadline, "the CNI never released {victim_ip}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = Ipv4Addr::from(u32::from(victim_ip) - 1);
    std::fs::write(ipam.join("last_reserved_ip.0"), before.to_string()).unwrap();
    let pod = PodSpec::new("reuser", "busybox", "nobody-binds-this")
        .on(node.name())
        .shell(&raw_token_request(APP_CLIENT))
        .build(world);
    let (_, logs) = run_pod(world, &ns, &pod, Duration::from_secs(120)).await;
    drop(deaf);
    let pods = Api::<Pod>::namespaced(world.cluster.api().client().unwrap(), &ns);
    let ip = pods.get("reuser").await.unwrap().status.and_then(|s| s.pod_ip);
    assert_eq!(ip, Some(victim_ip.to_string()), "the new pod did not get the victim's address");
    // Hearing the API server again, the agent serves a new bound pod (and the next test a fresh view).
    app_token_served(world, &ns, "after-reuse", node.name()).await;
    logs
}

/// While it lives, the agent of one node sends nothing to the API server (its watches hear
/// nothing; the kubelet and everything else on the node are untouched): in the node's own
/// iptables, a DROP for the source port of each connection the agent holds to the API server.
struct AgentDeaf {
    netns: String,
    ports: Vec<u16>,
}

impl AgentDeaf {
    fn on(world: &World, node: &podid_testkit::real::RealNode) -> Self {
        let ports = agent_connections(node, &[443, world.cluster.api_port().unwrap()]);
        assert!(!ports.is_empty(), "the agent on {} holds no connection to the API server", node.name());
        let deaf = Self { netns: node.netns.clone(), ports };
        deaf.iptables("-I");
        deaf
    }

    fn iptables(&self, op: &str) {
        for port in &self.ports {
            let mut command = std::process::Command::new("ip");
            command.args(["netns", "exec", &self.netns, "iptables", "-w", op, "OUTPUT", "-p", "tcp"]);
            command.args(["--sport", &port.to_string(), "-j", "DROP"]);
            run(&mut command);
        }
    }
}

impl Drop for AgentDeaf {
    fn drop(&mut self) {
        self.iptables("-D");
    }
}

/// The local ports of the agent's established connections on `node` to any of `remote_ports`.
fn agent_connections(node: &podid_testkit::real::RealNode, remote_ports: &[u16]) -> Vec<u16> {
    let proc = std::path::PathBuf::from(format!("/proc/{}", agent_pid(node)));
    let sockets: Vec<std::path::PathBuf> = std::fs::read_dir(proc.join("fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .collect();
    let rows = podid_nmi::http::caller::tcp_rows(&proc.join("net")).unwrap();
    rows.iter()
        .filter(|r| r.state == 1 && remote_ports.contains(&r.remote.port()))
        .filter(|r| sockets.iter().any(|l| l.as_os_str() == format!("socket:[{}]", r.inode).as_str()))
        .map(|r| r.local.port())
        .collect()
}

/// The host pid of the running agent on `node`, found by its container's id in its cgroup lines
/// (the node's containerd counts pids in the node's own PID namespace).
fn agent_pid(node: &podid_testkit::real::RealNode) -> u32 {
    let ids = agent_containers(node);
    let tasks = run(node.ctr().args(["tasks", "ls"]));
    let running: Vec<&str> = tasks
        .lines()
        .filter_map(|l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
            [id, _, "RUNNING"] if ids.iter().any(|c| c == id) => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(running.len(), 1, "one running agent on {}: {tasks}", node.name());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cgroup = std::fs::read_to_string(e.path().join("cgroup")).ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            (cgroup.contains(running[0]) && comm.trim() == "podid-nmi").then_some(pid)
        })
        .next()
        .unwrap_or_else(|| panic!("no podid-nmi process of the agent's container on {}", node.name()))
}

/// The ids of the agent's containers on `node`, earlier restarts' included.
fn agent_containers(node: &podid_testkit::real::RealNode) -> Vec<String> {
    let out =
        run(node.ctr().args(["containers", "ls", "--quiet", "labels.\"io.kubernetes.container.name\"==nmi"]));
    out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}
