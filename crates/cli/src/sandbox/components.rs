//! Starting podid's real programs for the sandbox: the controller on the host, one agent per node
//! (in the node's namespace with its own iptables rules, or on a loopback address), the demo pod.
//!
//! Both components authenticate with tokens of the service accounts `podid install` created, so
//! they run with exactly the RBAC the install grants.
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::ListParams;
use podid_api::AzureAssignedIdentity;
use podid_emulator::config::builtin;
use serde_json::json;

use super::net::{self, AGENT_PORT, NodeNet, addr};
use super::state::{World, component_kubeconfigs, free_port, port_of};
use super::walk::{self, DEMO, SYSTEM_NAMESPACE};
use super::{Network, SandboxError};
use crate::install::Mode;

/// How long a component may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The controller's poll interval for ARM operations without `Retry-After` (real ARM: 5 s).
pub const ARM_POLL: &str = "100ms";

/// Starts the controller (standard mode) and one agent per node, and waits until all are ready.
pub async fn start_components(w: &mut World) -> Result<(), SandboxError> {
    let (mic_kubeconfig, nmi_kubeconfig) = component_kubeconfigs(w.test_cluster()?).await?;
    let programs = w.programs.clone().ok_or_else(|| SandboxError::new("programs not located".into()))?;
    let emu = w.emulator()?;
    let (arm_url, login_url, ca) = (emu.arm_url(), emu.login_url(), emu.ca_pem_path().display().to_string());
    let tenant = emu.tenant_id();
    let api_port = port_of(w.test_cluster()?.server_url())?;
    let arm_port = port_of(&arm_url)?;
    let mut probes = Vec::new();
    // Federated mode: the agent exchanges service-account tokens at the emulator's Entra ID.
    let login_port = port_of(&login_url)?;
    let federation: Vec<&str> = if w.mode == Mode::Federated {
        vec!["--tenant-id", &tenant, "--aad-authority", &login_url, "--trusted-ca-file", &ca]
    } else {
        vec![]
    };

    if w.mode == Mode::Standard {
        let info = emu.info();
        let app = info
            .applications
            .get(builtin::CLUSTER_APP)
            .ok_or_else(|| SandboxError::new("the emulator has no cluster application".into()))?;
        let azure_json = w.dir().join("azure.json");
        let config = json!({
            "cloud": "AzurePublicCloud",
            "tenantId": emu.tenant_id(),
            "subscriptionId": emu.subscription_id(),
            "resourceGroup": builtin::NODE_RESOURCE_GROUP,
            "vmType": "vmss",
            "aadClientId": app.client_id,
            "aadClientSecret": app.secrets.first().cloned().unwrap_or_default(),
        });
        std::fs::write(&azure_json, config.to_string())
            .map_err(|e| SandboxError::new(format!("cannot write {}: {e}", azure_json.display())))?;
        let probe = free_port()?;
        let mut mic = Command::new(&programs.mic);
        mic.arg("--kubeconfig")
            .arg(&mic_kubeconfig)
            .arg("--cloudconfig")
            .arg(&azure_json)
            .args(["--arm-endpoint", &arm_url, "--aad-authority", &login_url, "--trusted-ca-file", &ca])
            .args(["--http-probe-port", &probe.to_string(), "--prometheus-port", &probe.to_string()])
            .args(["--leader-election-namespace", SYSTEM_NAMESPACE, "--leader-election-instance", "sandbox"])
            .args(["--arm-poll-interval", ARM_POLL])
            .env("MIC_POD_NAMESPACE", SYSTEM_NAMESPACE)
            .env("RUST_LOG", "info");
        w.parts().children.spawn("controller", mic)?;
        probes.push(("controller".to_string(), format!("http://127.0.0.1:{probe}/healthz"), Some("Active")));
    }

    let mode_args: Vec<&str> = match w.mode {
        Mode::Standard => vec![],
        Mode::Managed => vec!["--operation-mode", "managed", "--forceNamespaced"],
        Mode::Federated => vec!["--operation-mode", "federated"],
    };
    let nodes = w.nodes.clone();
    for (i, node) in (0u8..).zip(nodes.iter()) {
        let imds_port = port_of(&node.imds)?;
        let name = format!("agent-{i}");
        let (agent, probe, netns) = match w.network {
            Network::Netns => {
                let mut parts = w.parts();
                let nn = NodeNet::create(parts.tag, i, parts.subnet)?;
                let host = IpAddr::V4(nn.host_ip);
                for port in [api_port, imds_port, arm_port, login_port] {
                    parts.host_forward(addr(host, port), addr(Ipv4Addr::LOCALHOST, port)).await?;
                }
                let pairs = [
                    (addr(Ipv4Addr::LOCALHOST, api_port), addr(host, api_port)),
                    (addr(Ipv4Addr::new(169, 254, 169, 254), 80), addr(host, imds_port)),
                    (addr(Ipv4Addr::UNSPECIFIED, arm_port), addr(host, arm_port)),
                    (addr(Ipv4Addr::LOCALHOST, login_port), addr(host, login_port)),
                ];
                net::spawn_forwarder(parts.children, &nn.ns, &format!("node-{i}-forwarder"), &pairs).await?;
                let mut nmi = nn.ns.command(&programs.nmi);
                nmi.args(["--node", &node.name, "--kubelet-config", "/nonexistent"])
                    .args(&mode_args)
                    .args(&federation);
                nmi.env("KUBECONFIG", &nmi_kubeconfig).env("RUST_LOG", "info");
                parts.children.spawn(&name, nmi)?;
                let probe = format!("http://{}:8080/readyz", nn.node_ip);
                let ns = nn.ns.name.clone();
                parts.node_nets.push(nn);
                (format!("127.0.0.1:{AGENT_PORT} in netns {ns}"), probe, ns)
            }
            _ => {
                let ip = Ipv4Addr::new(127, 0, w.parts().subnet, i + 1);
                let (port, probe) = (free_port()?, free_port()?);
                let mut nmi = Command::new(&programs.nmi);
                nmi.args(["--node", &node.name, "--kubelet-config", "/nonexistent", "--iptables=false"])
                    .args(["--nmi-listen-address", &ip.to_string(), "--nmi-port", &port.to_string()])
                    .args(["--imds-endpoint", &node.imds, "--metadata-ip", "127.0.0.1"])
                    .args(["--metadata-port", &imds_port.to_string()])
                    .args(["--http-probe-port", &probe.to_string(), "--prometheus-port", &probe.to_string()])
                    .args(&mode_args)
                    .args(&federation)
                    .env("KUBECONFIG", &nmi_kubeconfig)
                    .env("RUST_LOG", "info");
                w.parts().children.spawn(&name, nmi)?;
                (format!("{ip}:{port}"), format!("http://127.0.0.1:{probe}/readyz"), String::new())
            }
        };
        probes.push((name, probe.clone(), None));
        if let Some(n) = w.nodes.get_mut(usize::from(i)) {
            n.agent = agent;
            n.probe = probe;
            n.netns = netns;
        }
    }
    wait_ready(w, &probes).await
}

/// Polls every probe until it answers 200 (with `body`, if given).
async fn wait_ready(w: &mut World, probes: &[(String, String, Option<&str>)]) -> Result<(), SandboxError> {
    let http = podid_azure::build_client(&podid_azure::HttpOptions {
        proxy_from_env: false,
        timeout: Some(Duration::from_secs(2)),
        ..Default::default()
    })
    .map_err(|e| SandboxError::new(e.to_string()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    for (name, url, body) in probes {
        loop {
            w.parts().children.check_alive()?;
            let answer = match http.get(url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                _ => None,
            };
            if answer.is_some_and(|text| body.is_none_or(|want| text.trim() == want)) {
                break;
            }
            if Instant::now() > deadline {
                let log = w.parts().children.log_path(name);
                return Err(SandboxError::new(format!(
                    "{name} not ready within {} s ({url}); last log lines:\n{}",
                    READY_TIMEOUT.as_secs(),
                    super::procs::log_tail(&log, 10)
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

/// Creates the demo pod on node 0 (Running, with its IP) and its network.
pub async fn start_pod(w: &mut World, client: &kube::Client) -> Result<(), SandboxError> {
    let ip = match w.network {
        Network::Netns => {
            let arm_port = port_of(&w.emulator()?.arm_url())?;
            let parts = w.parts();
            let node =
                parts.node_nets.first().ok_or_else(|| SandboxError::new("no node namespace".into()))?;
            let (pod, ip, gateway) = node.attach_pod(parts.tag, parts.subnet)?;
            let pairs = [(addr(Ipv4Addr::LOCALHOST, arm_port), addr(gateway, arm_port))];
            net::spawn_forwarder(parts.children, &pod, "pod-forwarder", &pairs).await?;
            let name = pod.name.clone();
            parts.pods.push(pod);
            w.pod_netns = Some(name);
            IpAddr::V4(ip)
        }
        _ => IpAddr::V4(Ipv4Addr::new(127, 0, w.parts().subnet, 100)),
    };
    w.pod_ip = Some(ip);
    let node = w.nodes.first().map(|n| n.name.clone()).unwrap_or_default();
    walk::pod_running(client, &node, ip).await
}

/// The demo's command in the pod for `client_id` (without `--period`).
pub fn demo_command(w: &World, client_id: &str) -> Result<Command, SandboxError> {
    let programs = w.programs.as_ref().ok_or_else(|| SandboxError::new("programs not located".into()))?;
    let emu = w.emulator()?;
    let mut command = walk::in_pod(w, &programs.demo);
    match w.network {
        Network::Netns => {
            // ARM through the pod's forwarder; IMDS at its real address, intercepted by the agent.
            let arm = format!("https://127.0.0.1:{}", port_of(&emu.arm_url())?);
            command.args(walk::demo_args(w, client_id, &arm)?);
        }
        _ => {
            let agent = w.nodes.first().map(|n| n.agent.clone()).unwrap_or_default();
            let ip = w.pod_ip.map(|ip| ip.to_string()).unwrap_or_default();
            command.args(walk::demo_args(w, client_id, &emu.arm_url())?);
            command.args(["--imds-endpoint", &format!("http://{agent}"), "--bind-address", &ip]);
        }
    }
    Ok(command)
}

/// After `podid uninstall`: no podid CRD is left (waits up to 10 s for their deletion).
pub async fn verify_uninstalled(client: &kube::Client) -> Result<(), SandboxError> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<String> = crds
            .list(&ListParams::default())
            .await
            .map_err(|e| SandboxError::new(format!("cannot list CRDs: {e}")))?
            .items
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .filter(|n| n.ends_with("aadpodidentity.k8s.io"))
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::new(format!("CRDs left after podid uninstall: {}", left.join(", "))));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits (20 s at most) until the controller has removed every AzureAssignedIdentity.
pub async fn wait_no_assignments(client: &kube::Client) -> Result<(), SandboxError> {
    let api: Api<AzureAssignedIdentity> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = api
            .list(&ListParams::default())
            .await
            .map_err(|e| SandboxError::new(format!("cannot list assigned identities: {e}")))?
            .items
            .len();
        if left == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(SandboxError::new(format!(
                "{left} AzureAssignedIdentities left 20 s after the identities were deleted"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The demo pod's name, for messages.
pub fn demo_pod() -> String {
    format!("{}/{DEMO}", walk::DEMO_NAMESPACE)
}
