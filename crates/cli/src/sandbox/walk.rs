//! The walkthrough itself: each step does one thing of the seed's AKS walkthrough and checks it.
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use podid_emulator::config::builtin;
use podid_testkit::kubelet::{PodBuilder, delete_pod, set_running};
use podid_testkit::{NodeBuilder, TestCluster};

use super::procs::Programs;
use super::report::Report;
use super::state::{NodeInfo, World};
use super::world::{self, FIRST_IDENTITY, SECOND_IDENTITY};
use super::{Network, SandboxArgs, SandboxError};
use crate::install::{InstallOptions, Mode};

/// Namespace of the controller and the agents.
pub const SYSTEM_NAMESPACE: &str = "kube-system";
/// Namespace of the demo, its identities and bindings.
pub const DEMO_NAMESPACE: &str = "default";
/// The demo pod, and the selector of both bindings.
pub const DEMO: &str = "demo";
/// The second identity's AzureIdentity.
pub const DEMO_2: &str = "demo-2";
/// How long the demo may take to print its three lines (standard mode waits for ARM).
const DEMO_TIMEOUT: Duration = Duration::from_secs(60);

/// The number of steps the walkthrough reports.
pub fn step_count(args: &SandboxArgs) -> usize {
    if args.keep { 9 } else { 11 }
}

/// How the network is set up, for the first line.
pub fn network_text(network: Network) -> &'static str {
    match network {
        Network::Netns => "pods and nodes in network namespaces, real iptables interception",
        _ => "pods on loopback addresses, no iptables; run as root for network namespaces",
    }
}

/// A start running in the background; aborted if the walkthrough ends before joining it.
struct Background<T>(Option<tokio::task::JoinHandle<Result<T, SandboxError>>>);

impl<T> Background<T> {
    async fn join(mut self) -> Result<T, SandboxError> {
        let handle = self.0.take().ok_or_else(|| SandboxError::new("joined twice".into()))?;
        handle.await.map_err(|e| SandboxError::new(format!("background start failed: {e}")))?
    }
}

impl<T> Drop for Background<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

/// Runs a `podid` command line through the library, as the CLI does; returns its output.
async fn podid(client: &kube::Client, argv: &[&str]) -> Result<String, SandboxError> {
    let cli = crate::Cli::try_parse_from(std::iter::once("podid").chain(argv.iter().copied()))
        .map_err(|e| SandboxError::new(format!("podid {}: {e}", argv.join(" "))))?;
    let mut buf = Vec::new();
    let code = crate::run(cli, client.clone(), &mut buf)
        .await
        .map_err(|e| SandboxError::new(format!("podid {}: {e}", argv.join(" "))))?;
    let text = String::from_utf8_lossy(&buf).trim_end().to_owned();
    if code != std::process::ExitCode::SUCCESS {
        return Err(SandboxError::new(format!("podid {} did not finish its work:\n{text}", argv.join(" "))));
    }
    Ok(text)
}

/// The walkthrough.
pub async fn walk(
    w: &mut World,
    args: &SandboxArgs,
    r: &mut Report,
    out: &mut impl Write,
) -> Result<(), SandboxError> {
    let mode = w.mode;
    // Before anything starts: a missing program is a build problem, not a sandbox one.
    w.programs = Some(Programs::locate()?);
    // The emulator starts (key and certificate generation) while the API server does.
    let emulator = Background(Some(tokio::spawn(world::start())));
    r.begin(out, "cluster: kube-apiserver + etcd")?;
    if podid_testkit::Binaries::locate().is_err() {
        build_apiserver(r, out).await?;
    }
    let cluster = TestCluster::start()
        .await
        .map_err(|e| SandboxError::new(format!("cannot start the cluster: {e}")))?;
    r.note(out, &format!("API server {}", cluster.server_url()))?;
    w.cluster = Some(cluster);
    r.done(out)?;

    r.begin(out, "Azure emulator + 2 scale-set nodes")?;
    w.emulator = Some(emulator.join().await?);
    if let Some(ca) = w.cluster()?.ca_pem() {
        // Entra ID fetches the cluster's OIDC discovery document (federated mode) over HTTPS.
        w.emu()?.add_trusted_ca_pem(ca).map_err(|e| SandboxError::new(e.to_string()))?;
    }
    let initial = world::scale_set_identities(w.emu()?);
    let client = w.kube()?;
    let (sub, imds_urls) = (w.emu()?.subscription_id(), w.emu()?.imds_urls());
    for (i, name) in (0u32..).zip(imds_urls.keys().filter(|n| n.starts_with(builtin::SCALE_SET))) {
        NodeBuilder::new(name)
            .vmss(&sub, builtin::NODE_RESOURCE_GROUP, builtin::SCALE_SET, i)
            .create(&client)
            .await
            .map_err(|e| SandboxError::new(format!("cannot register node {name}: {e}")))?;
        w.nodes.push(NodeInfo {
            name: name.clone(),
            imds: imds_urls[name].clone(),
            netns: String::new(),
            agent: String::new(),
            probe: String::new(),
        });
    }
    if w.nodes.len() != 2 {
        return Err(SandboxError::new(format!(
            "expected 2 scale set nodes, the emulator has {}",
            w.nodes.len()
        )));
    }
    r.note(out, &format!("ARM {}  Entra ID {}", w.emu()?.arm_url(), w.emu()?.login_url()))?;
    r.note(
        out,
        &format!(
            "scale set {}/{} with nodes {}, {}",
            builtin::NODE_RESOURCE_GROUP,
            builtin::SCALE_SET,
            w.nodes[0].name,
            w.nodes[1].name
        ),
    )?;
    r.done(out)?;

    r.begin(out, "podid install")?;
    r.note(out, &format!("podid install --mode {} --namespace {SYSTEM_NAMESPACE}", mode.as_str()))?;
    let options = InstallOptions { mode, namespace: SYSTEM_NAMESPACE.into(), ..InstallOptions::default() };
    let objects = crate::install::render(&options).map_err(|e| SandboxError::new(e.to_string()))?;
    crate::install::apply(&client, &objects)
        .await
        .map_err(|e| SandboxError::new(format!("podid install: {e}")))?;
    r.note(
        out,
        &format!("applied {} objects to namespace {SYSTEM_NAMESPACE}; CRDs Established", objects.len()),
    )?;
    r.done(out)?;

    let on_scale_set = match mode {
        Mode::Standard => "",
        Mode::Managed => "; az vmss identity assign (no controller)",
        Mode::Federated => "; federated credential for default/demo's service account",
    };
    r.begin(out, "identity + role")?;
    r.note(
        out,
        &format!(
            "{FIRST_IDENTITY}: Virtual Machine Contributor on {}{on_scale_set}",
            builtin::NODE_RESOURCE_GROUP
        ),
    )?;
    let first = grant(w, FIRST_IDENTITY).await?;
    r.note(out, &format!("{} (client id {})", first.id, first.client_id))?;
    r.done(out)?;

    r.begin(out, "podid identity add")?;
    r.note(
        out,
        &format!("podid identity add -n {DEMO_NAMESPACE} --name {DEMO} --binding-selector {DEMO} …"),
    )?;
    let text = identity_add(w, &client, DEMO, &first).await?;
    r.note(out, &text)?;
    r.done(out)?;

    let what = if mode.has_controller() {
        "the controller and one agent per node"
    } else {
        "one agent per node (no controller in this mode)"
    };
    r.begin(out, "controller + agents")?;
    r.note(out, what)?;
    super::components::start_components(w).await?;
    for n in &w.nodes {
        r.note(out, &format!("agent on {} at {}", n.name, n.agent))?;
    }
    r.done(out)?;

    r.begin(out, "demo pod: three success lines")?;
    r.note(out, &format!("pod {DEMO_NAMESPACE}/{DEMO} (aadpodidbinding={DEMO}) on {}", w.nodes[0].name))?;
    super::components::start_pod(w, &client).await?;
    let lines = demo(w, &first.client_id, "demo-1", out).await?;
    r.note(out, &lines)?;
    if mode.has_controller() {
        let on = world::wait_scale_set(w.emu()?, Duration::from_secs(5), |ids| {
            ids.contains(&first.id.to_ascii_lowercase())
        })
        .await;
        on.map_err(|now| {
            SandboxError::new(format!("the controller did not put {} on the scale set: {now:?}", first.id))
        })?;
        r.note(out, &format!("the controller assigned {FIRST_IDENTITY} to the scale set"))?;
    }
    unchanged_if_federated(w, &initial, r, out)?;
    r.done(out)?;

    r.begin(out, "second identity, same selector")?;
    r.note(out, &format!("{SECOND_IDENTITY} as {DEMO_NAMESPACE}/{DEMO_2}, binding selector {DEMO}"))?;
    let second = grant(w, SECOND_IDENTITY).await?;
    let text = identity_add(w, &client, DEMO_2, &second).await?;
    r.note(out, &text)?;
    r.done(out)?;

    r.begin(out, "demo with each client id")?;
    let lines = demo(w, &second.client_id, "demo-2", out).await?;
    r.note(out, &lines)?;
    let lines = demo(w, &first.client_id, "demo-1-again", out).await?;
    r.note(out, &lines)?;
    r.done(out)?;

    if args.keep {
        return Ok(());
    }

    r.begin(out, "clean-up: identities removed")?;
    w.children.stop("demo-1-again");
    delete_pod(&client, DEMO_NAMESPACE, DEMO)
        .await
        .map_err(|e| SandboxError::new(format!("cannot delete the demo pod: {e}")))?;
    for name in [DEMO_2, DEMO] {
        let text = podid(&client, &["identity", "delete", "-n", DEMO_NAMESPACE, "--name", name]).await?;
        r.note(out, &text)?;
    }
    let ids = [first.id.to_ascii_lowercase(), second.id.to_ascii_lowercase()];
    if mode == Mode::Managed {
        let arm = world::admin_arm(w.emu()?)?;
        for id in &ids {
            world::set_on_scale_set(&arm, w.emu()?, id, false).await?;
        }
        r.note(out, "az vmss identity remove (no controller in this mode)")?;
    }
    let gone = world::wait_scale_set(w.emu()?, Duration::from_secs(20), |now| {
        ids.iter().all(|id| !now.contains(id))
    })
    .await;
    let now =
        gone.map_err(|now| SandboxError::new(format!("the identities are still on the scale set: {now:?}")))?;
    r.note(
        out,
        &format!(
            "scale set identities now: {}",
            now.iter().map(|i| world::short(i)).collect::<Vec<_>>().join(", ")
        ),
    )?;
    if mode.has_controller() {
        super::components::wait_no_assignments(&client).await?;
        r.note(out, "the controller removed every AzureAssignedIdentity")?;
    }
    unchanged_if_federated(w, &initial, r, out)?;
    r.done(out)?;

    r.begin(out, "podid uninstall")?;
    let text = podid(&client, &["uninstall", "-n", SYSTEM_NAMESPACE, "--timeout-secs", "20"]).await?;
    r.note(out, &text)?;
    super::components::verify_uninstalled(&client).await?;
    r.note(out, "no podid CRDs left")?;
    r.done(out)?;
    Ok(())
}

/// Federated mode never touches the scale set: its identity list is still `initial`.
fn unchanged_if_federated(
    w: &World,
    initial: &[String],
    r: &Report,
    out: &mut impl Write,
) -> Result<(), SandboxError> {
    if w.mode != Mode::Federated {
        return Ok(());
    }
    let now = world::scale_set_identities(w.emu()?);
    if now != initial {
        return Err(SandboxError::new(format!(
            "federated mode changed the scale set: {initial:?} -> {now:?}"
        )));
    }
    r.note(out, "the scale set's identity list never changed (federated mode)")
}

/// Builds kube-apiserver once with the repository's script, its progress going to stderr.
async fn build_apiserver(r: &Report, out: &mut impl Write) -> Result<(), SandboxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/kubernetes.sh");
    if !script.is_file() {
        // No checkout to build from: the test kit's error says what to install.
        return Ok(());
    }
    r.note(out, "kube-apiserver is not built yet: building it once with scripts/kubernetes.sh (minutes; progress below)")?;
    let status = tokio::process::Command::new(&script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .map_err(|e| SandboxError::new(format!("cannot run {}: {e}", script.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::new(format!("{} failed ({status}); see its messages above", script.display())))
    }
}

/// An emulator identity, granted Virtual Machine Contributor on the node resource group (and,
/// without a controller, put on the scale set by the administrator).
pub struct Granted {
    pub id: String,
    pub client_id: String,
}

async fn grant(w: &World, name: &str) -> Result<Granted, SandboxError> {
    let emu = w.emu()?;
    let info = emu.info();
    let identity = info
        .identities
        .get(name)
        .ok_or_else(|| SandboxError::new(format!("the emulator has no identity {name}")))?;
    let arm = world::admin_arm(emu)?;
    world::grant_vm_contributor(&arm, emu, &identity.principal_id).await?;
    if w.mode == Mode::Federated {
        // az identity federated-credential create: trust the cluster's tokens for the demo's account.
        let issuer = w.cluster()?.issuer().to_owned();
        let subject = format!("system:serviceaccount:{DEMO_NAMESPACE}:{DEMO}");
        world::federate(&arm, emu, name, &issuer, &subject).await?;
    } else if !w.mode.has_controller() {
        world::set_on_scale_set(&arm, emu, &identity.id, true).await?;
    }
    Ok(Granted { id: identity.id.clone(), client_id: identity.client_id.clone() })
}

async fn identity_add(
    w: &World,
    client: &kube::Client,
    name: &str,
    identity: &Granted,
) -> Result<String, SandboxError> {
    let emu = w.emu()?;
    let azure = world::admin_args(emu)?;
    let cluster_app =
        emu.info().applications.get(builtin::CLUSTER_APP).map(|a| a.object_id.clone()).unwrap_or_default();
    let ca = azure.trusted_ca_files.first().map(|p| p.display().to_string()).unwrap_or_default();
    let (arm, login) = (emu.arm_url(), emu.login_url());
    let (tenant, admin, secret) = (
        azure.tenant_id.unwrap_or_default(),
        azure.azure_client_id.unwrap_or_default(),
        azure.azure_client_secret.unwrap_or_default(),
    );
    let mut argv = vec!["identity", "add", "-n", DEMO_NAMESPACE, "--name", name, "--binding-selector", DEMO];
    argv.extend(["--identity-resource-id", &identity.id]);
    if w.mode.has_controller() {
        // The controller's service principal must be Managed Identity Operator on the identity.
        argv.extend(["--cluster-identity-object-id", &cluster_app]);
    }
    argv.extend(["--arm-endpoint", &arm, "--aad-authority", &login, "--trusted-ca-file", &ca]);
    argv.extend(["--tenant-id", &tenant, "--azure-client-id", &admin, "--azure-client-secret", &secret]);
    podid(client, &argv).await
}

/// Runs the demo in the pod with `client_id` until a round prints the three success lines.
async fn demo(
    w: &mut World,
    client_id: &str,
    name: &str,
    out: &mut impl Write,
) -> Result<String, SandboxError> {
    let mut command = super::components::demo_command(w, client_id)?;
    command.args(["--period", "1"]);
    let mut lines = w.children.spawn_lines(name, command)?;
    let deadline = tokio::time::Instant::now() + DEMO_TIMEOUT;
    let mut round: Vec<String> = Vec::new();
    let mut last_failure: Option<String> = None;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv()).await;
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                let log = w.children.log_path(name);
                w.children.stop(name);
                return Err(SandboxError::new(format!(
                    "the demo exited: {}",
                    super::procs::log_tail(&log, 10)
                )));
            }
            Err(_) => {
                w.children.stop(name);
                return Err(SandboxError::new(format!(
                    "the demo printed no three success lines within {} s (last: {round:?})",
                    DEMO_TIMEOUT.as_secs()
                )));
            }
        };
        if line.starts_with("failed") {
            if last_failure.as_deref() != Some(line.as_str()) {
                writeln!(out, "        demo: {line}").map_err(|e| SandboxError::new(e.to_string()))?;
                last_failure = Some(line);
            }
            round.clear();
            continue;
        }
        round.push(line);
        if round.len() == 3 {
            let ok = round[0].starts_with("successfully acquired a token using the MSI")
                && round[0].contains(&format!("clientID({client_id})"))
                && round[1] == "successfully doARMOperations vm count 1"
                && round[2].starts_with("successfully made GET on instance metadata");
            if ok {
                if name != "demo-1-again" {
                    w.children.stop(name);
                }
                return Ok(round.join("\n"));
            }
            return Err(SandboxError::new(format!("unexpected demo output: {round:?}")));
        }
    }
}

/// The demo's command line for the pod (without `--period`).
pub fn demo_args(w: &World, client_id: &str, arm_endpoint: &str) -> Result<Vec<String>, SandboxError> {
    let emu = w.emu()?;
    Ok(vec![
        "--subscriptionid".into(),
        emu.subscription_id(),
        "--clientid".into(),
        client_id.into(),
        "--resourcegroup".into(),
        builtin::NODE_RESOURCE_GROUP.into(),
        "--arm-endpoint".into(),
        arm_endpoint.into(),
        "--ca-file".into(),
        emu.ca_pem_path().display().to_string(),
    ])
}

/// A `Command` for a program in the pod's namespace or on the host.
pub fn in_pod(w: &World, program: &Path) -> Command {
    match (&w.network, &w.pod_netns) {
        (Network::Netns, Some(ns)) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(program);
            c
        }
        _ => Command::new(program),
    }
}

/// Marks the pod Running with its IP, as the kubelet would.
pub async fn pod_running(client: &kube::Client, node: &str, ip: IpAddr) -> Result<(), SandboxError> {
    PodBuilder::new(DEMO_NAMESPACE, DEMO)
        .service_account(DEMO)
        .node(node)
        .label("aadpodidbinding", DEMO)
        .ip(ip)
        .create(client)
        .await
        .map_err(|e| SandboxError::new(format!("cannot create the demo pod: {e}")))?;
    set_running(client, DEMO_NAMESPACE, DEMO, ip)
        .await
        .map_err(|e| SandboxError::new(format!("cannot mark the demo pod Running: {e}")))?;
    Ok(())
}
