//! `podid sandbox --keep`: what is running and how to use it, printed once the walkthrough's
//! checks have passed (its clean-up is skipped so that there is something to look at).
use std::io::Write;

use podid_emulator::config::builtin;

use super::Network;
use super::components::demo_pod;
use super::state::World;
use super::walk::{DEMO, DEMO_NAMESPACE};

/// Prints how to use the kept sandbox.
pub fn print(w: &World, out: &mut impl Write) -> crate::Result<()> {
    let cluster = w.test_cluster()?;
    let emu = w.emulator()?;
    let kubeconfig = cluster.kubeconfig_path().display().to_string();
    let mode = w.mode.as_str();
    writeln!(out, "\nThe sandbox keeps running; Ctrl-C stops everything (processes, namespaces, rules).\n")?;
    writeln!(out, "Kubernetes  {}", cluster.server_url())?;
    writeln!(out, "  export KUBECONFIG={kubeconfig}")?;
    writeln!(out, "  kubectl --kubeconfig {kubeconfig} get azureidentities,azureidentitybindings -A")?;
    writeln!(out, "  kubectl --kubeconfig {kubeconfig} get azureassignedidentities -A -o wide")?;
    writeln!(out, "Azure emulator (CA {})", emu.ca_pem_path().display())?;
    writeln!(out, "  ARM       {}", emu.arm_url())?;
    writeln!(out, "  Entra ID  {}", emu.login_url())?;
    writeln!(
        out,
        "  admin     curl {0}/admin/info   (request log: curl {0}/admin/requests)",
        emu.admin_url()
    )?;
    for n in &w.nodes {
        writeln!(out, "  IMDS of {}  {}", n.name, n.imds)?;
    }
    writeln!(out, "  scale set {}/{} (two nodes)", builtin::NODE_RESOURCE_GROUP, builtin::SCALE_SET)?;
    writeln!(out, "Agents")?;
    for n in &w.nodes {
        writeln!(out, "  {}  {}  (ready: {})", n.name, n.agent, n.probe)?;
    }
    writeln!(
        out,
        "Demo pod {} on {} (IP {})",
        demo_pod(),
        w.nodes.first().map(|n| n.name.as_str()).unwrap_or(""),
        w.pod_ip.map(|i| i.to_string()).unwrap_or_default()
    )?;
    let url = "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https://management.azure.com/";
    match (&w.network, &w.pod_netns) {
        (Network::Netns, Some(ns)) => {
            writeln!(out, "  ip netns exec {ns} curl -s -H Metadata:true '{url}'")?;
        }
        _ => {
            let agent = w.nodes.first().map(|n| n.agent.clone()).unwrap_or_default();
            let ip = w.pod_ip.map(|i| i.to_string()).unwrap_or_default();
            let local = url.replace("169.254.169.254", &agent);
            writeln!(out, "  curl -s --interface {ip} -H Metadata:true '{local}'")?;
        }
    }
    writeln!(out, "Explain")?;
    writeln!(out, "  podid --kubeconfig {kubeconfig} explain pod {DEMO_NAMESPACE}/{DEMO} --mode {mode}")?;
    writeln!(out, "  podid --kubeconfig {kubeconfig} explain identity {DEMO_NAMESPACE}/{DEMO}")?;
    writeln!(out, "Logs: {}", w.dir().display())?;
    for (name, pid) in w.processes() {
        writeln!(out, "  {name:<20} pid {pid}")?;
    }
    out.flush()?;
    Ok(())
}
