//! The walkthrough: the seed's AKS guide, step by step, on real nodes. Each step runs what a user
//! types (`podid …`, `kubectl …`, printed as `$ …`), or what `az` would do against the emulator
//! (printed as the `az` command it stands for), and checks its effect before the next.
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use podid_emulator::config::builtin;

use crate::azure::{self, FIRST_IDENTITY, Identity, SECOND_IDENTITY};
use crate::demo;
use crate::report::Report;
use crate::shell;
use crate::world::{Nodes, World, WorldOptions};
use crate::{Args, Mode};

/// Namespace of the pod identities and the demo (the seed's `POD_IDENTITY_NAMESPACE`).
pub const NAMESPACE: &str = "my-app";
/// The first pod identity (the seed's `POD_IDENTITY_NAME`).
pub const POD_IDENTITY: &str = "my-pod-identity";
/// The binding selector of the multi-identity part.
pub const FOO: &str = "foo";
/// How long the demo may take to print its three lines (standard mode waits for ARM).
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);

/// The number of steps the walkthrough reports.
pub fn step_count(args: &Args) -> usize {
    if args.keep { 7 } else { 10 }
}

/// The walkthrough up to (with `--keep`: not including) its clean-up; the world stays up.
pub async fn walk(args: &Args, r: &mut Report, out: &mut impl Write) -> Result<World> {
    r.begin(out, "real nodes: control plane + 2 kubelets (containerd, runc, CNI)")?;
    let opts = WorldOptions { emulator: azure::config(), images: vec!["nmi", "mic", "demo"] };
    let nodes = Nodes::start(opts).await?;
    for node in nodes.cluster.nodes() {
        let proxy = if node.spec.kube_proxy { "kube-proxy" } else { "no kube-proxy" };
        r.note(
            out,
            &format!("node {} at {} ({proxy}), network namespace {}", node.name(), node.ip, node.netns),
        )?;
    }
    r.done(out)?;

    r.begin(out, "Azure emulator behind the nodes")?;
    let world = nodes.connect_azure().await?;
    r.note(
        out,
        &format!(
            "ARM {} and Entra ID {} (nodes and pods: {}, {})",
            world.emulator.arm_url(),
            world.emulator.login_url(),
            world.node_arm,
            world.node_login
        ),
    )?;
    r.note(
        out,
        "every node: 169.254.169.254 is its own IMDS; /etc/kubernetes/azure.json holds the cluster identity",
    )?;
    r.note(out, "to repeat the steps below by hand (with --keep), first:")?;
    for (key, value) in world.user_env()? {
        let value =
            if key == "AZURE_CLIENT_SECRET" { "<the emulator's admin secret>".to_owned() } else { value };
        r.note(out, &format!("  export {key}={value}"))?;
    }
    r.done(out)?;

    r.begin(out, &format!("podid install ({} mode)", args.mode.as_str()))?;
    install(&world, args.mode, r, out).await?;
    r.done(out)?;

    r.begin(out, "identity and role")?;
    let arm = azure::admin_arm(&world.emulator, world.ca_file())?;
    let first = identity_and_role(&world, &arm, FIRST_IDENTITY, false, r, out).await?;
    r.done(out)?;

    r.begin(out, "podid identity add")?;
    let mut create = world.kubectl()?;
    create.args(["create", "namespace", NAMESPACE]);
    shell::run_noted(r, out, create)?;
    world.cluster.wait_service_account(NAMESPACE).await?;
    identity_add(&world, args.mode, &arm, POD_IDENTITY, &first, None, r, out).await?;
    r.done(out)?;

    r.begin(out, "demo.yaml: kubectl apply, kubectl logs demo")?;
    run_demo(&world, POD_IDENTITY, &first, r, out).await?;
    if args.mode == Mode::Standard {
        let ok = azure::wait_scale_set(&world.emulator, Duration::from_secs(30), |ids| {
            ids.contains(&first.id.to_ascii_lowercase())
        })
        .await;
        let ids = ok.map_err(|now| {
            anyhow::anyhow!("the controller did not put {} on the scale set: {now:?}", first.id)
        })?;
        r.note(
            out,
            &format!(
                "the controller assigned {FIRST_IDENTITY} to the scale set ({} identities on it)",
                ids.len()
            ),
        )?;
    }
    r.done(out)?;

    // As the seed does: two identities bound with selector foo, then one demo.yaml (aadpodidbinding:
    // foo), here with the second identity's client id (the first was the demo's above). A second
    // demo would cost one more `kubectl delete pod demo`, which a v1.20 kubelet finishes only at its
    // status manager's next 10 s tick.
    r.begin(out, "multiple identities: --binding-selector foo, the demo with the second")?;
    let second = identity_and_role(&world, &arm, SECOND_IDENTITY, true, r, out).await?;
    for (n, identity) in [(1, &first), (2, &second)] {
        identity_add(&world, args.mode, &arm, &format!("{POD_IDENTITY}-{n}"), identity, Some(FOO), r, out)
            .await?;
    }
    run_demo(&world, FOO, &second, r, out).await?;
    r.done(out)?;
    if args.keep {
        return Ok(world);
    }

    r.begin(out, "clean-up: the demo, the pod identities, the identities")?;
    clean_up(&world, args.mode, &arm, &[&first, &second], r, out).await?;
    r.done(out)?;

    r.begin(out, "podid uninstall")?;
    let mut uninstall = world.podid()?;
    uninstall.args(["uninstall", "--wait"]);
    shell::run_noted(r, out, uninstall)?;
    r.done(out)?;
    Ok(world)
}

async fn install(world: &World, mode: Mode, r: &Report, out: &mut impl Write) -> Result<()> {
    let mut install = world.podid()?;
    install.arg("install").args(world.install_args(mode)).arg("--apply");
    shell::run_noted(r, out, install)?;
    let mut rollouts = vec!["ds/nmi"];
    if mode == Mode::Standard {
        rollouts.push("deployment/mic");
    }
    for what in rollouts {
        let mut status = world.kubectl()?;
        status.args(["--namespace", "kube-system", "rollout", "status", what, "--timeout=180s"]);
        shell::run_noted(r, out, status)?;
    }
    Ok(())
}

async fn identity_and_role(
    world: &World,
    arm: &podid_azure::ArmClient,
    name: &str,
    reader: bool,
    r: &Report,
    out: &mut impl Write,
) -> Result<Identity> {
    let group = builtin::IDENTITY_RESOURCE_GROUP;
    r.note(
        out,
        &format!("az identity create --resource-group {group} --name {name}  (in the emulator's world)"),
    )?;
    let identity = azure::show_identity(arm, &world.emulator, name).await?;
    r.note(out, &format!("IDENTITY_CLIENT_ID={}", identity.client_id))?;
    r.note(out, &format!("IDENTITY_RESOURCE_ID={}", identity.id))?;
    let role = if reader { "Reader" } else { "Virtual Machine Contributor" };
    let scope = azure::grant(arm, &world.emulator, &identity.principal_id, azure::role_id(reader)).await?;
    r.note(
        out,
        &format!(
            "az role assignment create --role \"{role}\" --assignee {} --scope {scope}",
            identity.client_id
        ),
    )?;
    Ok(identity)
}

#[allow(clippy::too_many_arguments)]
async fn identity_add(
    world: &World,
    mode: Mode,
    arm: &podid_azure::ArmClient,
    name: &str,
    identity: &Identity,
    selector: Option<&str>,
    r: &Report,
    out: &mut impl Write,
) -> Result<()> {
    let mut add = world.podid()?;
    add.args([
        "identity",
        "add",
        "--namespace",
        NAMESPACE,
        "--name",
        name,
        "--identity-resource-id",
        &identity.id,
    ]);
    if let Some(selector) = selector {
        add.args(["--binding-selector", selector]);
    }
    match mode {
        Mode::Standard => {
            // The cluster identity must be Managed Identity Operator on the identity (az grants it).
            let info = world.emulator.info();
            let cluster = info.applications.get(builtin::CLUSTER_APP).context("no cluster application")?;
            add.args(["--cluster-identity-object-id", &cluster.object_id]);
        }
        Mode::Federated => {
            add.args(["--federated", "--service-account", "default"]);
        }
        Mode::Managed => {}
    }
    shell::run_noted(r, out, add)?;
    if mode == Mode::Managed {
        // The AKS add-on assigns the identity to the node pool when the pod identity is added.
        azure::set_on_scale_set(arm, &world.emulator, &identity.id, true).await?;
        r.note(
            out,
            &format!(
                "az vmss identity assign --identities {} (AKS does it in managed mode)",
                azure::short(&identity.id)
            ),
        )?;
    }
    Ok(())
}

/// Applies demo.yaml for `selector` and `identity`, and waits for the three success lines.
async fn run_demo(
    world: &World,
    selector: &str,
    identity: &Identity,
    r: &Report,
    out: &mut impl Write,
) -> Result<()> {
    let mut delete = world.kubectl()?;
    delete.args(["delete", "pod", "demo", "--namespace", NAMESPACE, "--ignore-not-found", "--wait=true"]);
    shell::run(r, out, delete)?;
    let vars = demo::Vars {
        selector: selector.to_owned(),
        image: world.catalog.reference("demo")?,
        subscription: world.emulator.subscription_id(),
        client_id: identity.client_id.clone(),
        resource_group: builtin::NODE_RESOURCE_GROUP.to_owned(),
        arm_endpoint: world.node_arm.clone(),
    };
    let file = world.dir().join("demo.yaml");
    std::fs::write(&file, demo::render(&vars))?;
    r.note(
        out,
        &format!(
            "demo.yaml: the walkthrough's pod, aadpodidbinding={selector}, --clientid={}",
            identity.client_id
        ),
    )?;
    let mut apply = world.kubectl()?;
    apply.arg("apply").arg("-f").arg(&file).args(["--namespace", NAMESPACE]);
    shell::run_noted(r, out, apply)?;
    let deadline = tokio::time::Instant::now() + DEMO_TIMEOUT;
    let mut logs = world.kubectl()?;
    logs.args(["logs", "demo", "--namespace", NAMESPACE]);
    r.note(out, &format!("$ {}", shell::shown(&logs)))?;
    loop {
        let output = logs.output()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if demo::succeeded(&text) {
            for line in text.lines().take(3) {
                r.note(out, line)?;
            }
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "the demo printed no three success lines within {} s; its log:\n{text}",
                DEMO_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn clean_up(
    world: &World,
    mode: Mode,
    arm: &podid_azure::ArmClient,
    identities: &[&Identity],
    r: &Report,
    out: &mut impl Write,
) -> Result<()> {
    let mut delete = world.kubectl()?;
    delete.args(["delete", "pod", "demo", "--namespace", NAMESPACE, "--wait=true"]);
    shell::run_noted(r, out, delete)?;
    for name in [POD_IDENTITY.to_owned(), format!("{POD_IDENTITY}-1"), format!("{POD_IDENTITY}-2")] {
        let mut delete = world.podid()?;
        delete.args(["identity", "delete", "--namespace", NAMESPACE, "--name", &name]);
        shell::run_noted(r, out, delete)?;
    }
    let ids: Vec<String> = identities.iter().map(|i| i.id.to_ascii_lowercase()).collect();
    if mode == Mode::Managed {
        for id in &ids {
            azure::set_on_scale_set(arm, &world.emulator, id, false).await?;
        }
        r.note(out, "az vmss identity remove (AKS does it in managed mode)")?;
    }
    let gone = azure::wait_scale_set(&world.emulator, Duration::from_secs(60), |now| {
        ids.iter().all(|id| !now.contains(id))
    })
    .await;
    let now = gone.map_err(|now| anyhow::anyhow!("the identities are still on the scale set: {now:?}"))?;
    let names: Vec<&str> = now.iter().map(|i| azure::short(i)).collect();
    r.note(out, &format!("scale set identities now: {}", names.join(", ")))?;
    ensure!(!names.is_empty(), "the scale set lost its pre-existing identity");
    Ok(())
}
