//! The configuration files of a real node: containerd, the CNI network, the kubelet.
//!
//! Everything a node writes goes under its folder (`<cluster>/nodes/<name>/`); the settings that
//! this kind of machine requires are explained in `shared/reference/real-node.md` and repeated at
//! each setting.
use std::net::Ipv4Addr;
use std::path::Path;

use super::net;

/// containerd's configuration: its own root, state and socket under `dir`, the CRI plugin with
/// cgroupfs, overlayfs and the node's CNI network, pods' sandboxes running `pause` (imported, never
/// pulled).
pub(crate) fn containerd(dir: &Path, pause: &str) -> String {
    let d = dir.display();
    format!(
        r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # These VMs lack CAP_SYS_RESOURCE: a negative oom_score_adj is refused and every pod would fail.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#
    )
}

/// The node's pod network: the bridge plugin on `cbr0` (address set by hand, `isGateway: false`
/// so that it never writes `net.ipv4.ip_forward`, no masquerade), host-local addresses from
/// 10.244.<index>.0/24, a default route via the bridge (it leads nowhere: the node has none).
pub(crate) fn cni(dir: &Path, index: u8) -> String {
    let gateway = net::pod_gateway(index);
    let subnet = Ipv4Addr::new(10, 244, index, 0);
    serde_json::json!({
        "cniVersion": "0.4.0",
        "name": "podid",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cbr0",
                "isGateway": false,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.join("cni-ipam"),
                    "ranges": [[{ "subnet": format!("{subnet}/24"), "gateway": gateway.to_string() }]],
                    "routes": [{ "dst": "0.0.0.0/0" }]
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true } }
        ]
    })
    .to_string()
}

/// What differs between the kubelets of one machine.
#[derive(Debug, Clone)]
pub(crate) struct Kubelet<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) node_ip: Ipv4Addr,
    pub(crate) port: u16,
    pub(crate) healthz_port: u16,
    /// The node's own cgroup root, `/<cluster tag>-<index>`, under every hierarchy.
    pub(crate) cgroup_root: &'a str,
    pub(crate) ca_file: &'a Path,
    pub(crate) provider_id: Option<&'a str>,
}

/// The kubelet's configuration file.
pub(crate) fn kubelet(k: &Kubelet<'_>) -> String {
    let d = k.dir.display();
    let provider = k.provider_id.map(|p| format!("providerID: \"{p}\"\n")).unwrap_or_default();
    format!(
        r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz}
cgroupDriver: cgroupfs
cgroupRoot: {cgroup_root}
cgroupsPerQOS: true
enforceNodeAllocatable: []
failSwapOn: false
resolvConf: {d}/resolv.conf
clusterDomain: cluster.local
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
evictionHard: {{memory.available: "0%", nodefs.available: "0%", imagefs.available: "0%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
volumePluginDir: {d}/volume-plugins
serializeImagePulls: false
nodeStatusUpdateFrequency: 1s
{provider}"#,
        ip = k.node_ip,
        port = k.port,
        healthz = k.healthz_port,
        cgroup_root = k.cgroup_root,
        ca = k.ca_file.display(),
    )
}
