//! The controller Deployment (+ PodDisruptionBudget) and the agent DaemonSet, as typed objects.
//!
//! The controller is named `mic` (upstream's name) so its ReplicaSet pods `mic-*` in the install
//! namespace are the agent's built-in exception (`--MICNamespace`) as well as the rendered
//! `podid-mic-exception`.
//!
//! Host files: every hostPath tolerates its absence. The agent reads `/etc/default/kubelet` (is
//! the network plugin kubenet?) through the `/etc/default` folder (`DirectoryOrCreate`); a
//! missing file is not kubenet. The controller (and a federated agent without `--tenant-id`) reads
//! the cloud config `/etc/kubernetes/azure.json` through the `/etc/kubernetes` folder
//! (`DirectoryOrCreate`, read-only); without the file it exits saying what it needs, instead of
//! the pod waiting forever in ContainerCreating as with a `File` hostPath.
use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetSpec, DaemonSetUpdateStrategy, Deployment, DeploymentSpec, RollingUpdateDaemonSet,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, ObjectFieldSelector, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Toleration, Volume,
    VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::trust;
use super::{InstallOptions, MIC_SERVICE_ACCOUNT, Mode, NMI_SERVICE_ACCOUNT, Rendered, labels, meta};

/// Name of the controller Deployment.
pub const MIC_DEPLOYMENT: &str = "mic";
/// Name of the agent DaemonSet.
pub const NMI_DAEMONSET: &str = "nmi";
/// The controller's admin port (`/healthz`, `/readyz`).
pub const MIC_PROBE_PORT: u16 = 8080;
/// The agent's admin port (upstream's manifests use 8085: 8080 is often taken on hosts).
pub const NMI_PROBE_PORT: u16 = 8085;
/// Where the node's `/etc/default` appears in the agent's container.
const HOST_DEFAULTS: &str = "/host/etc/default";
/// The cloud config on the node, and where its folder appears in the containers.
const CLOUD_CONFIG_DIR: &str = "/etc/kubernetes";

/// Labels selecting the pods of `component`.
pub(crate) fn selector(component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), "podid".to_owned()),
        ("app.kubernetes.io/component".to_owned(), component.to_owned()),
    ])
}

fn pod_labels(component: &str) -> BTreeMap<String, String> {
    let mut m = selector(component);
    m.extend(labels(Some(component)));
    // Upstream's labels: dashboards and `mic-exception`s written for aad-pod-identity still match.
    m.insert("app".into(), component.into());
    m.insert("component".into(), component.into());
    m
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Readiness is asked every 2 s: a rollout (one node at a time for the agent) waits for it, and
/// the answer is one in-memory check. Liveness keeps Kubernetes' 10 s period.
fn readiness(path: &str, port: u16) -> Probe {
    Probe { period_seconds: Some(2), timeout_seconds: Some(2), ..liveness(path, port) }
}

fn liveness(path: &str, port: u16) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port.into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

fn resources(cpu: (&str, &str), memory: (&str, &str)) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    ResourceRequirements {
        requests: Some(BTreeMap::from([("cpu".into(), q(cpu.0)), ("memory".into(), q(memory.0))])),
        limits: Some(BTreeMap::from([("cpu".into(), q(cpu.1)), ("memory".into(), q(memory.1))])),
        ..Default::default()
    }
}

/// A read-only hostPath volume of folder `path` that is created if missing, and its mount.
fn host_folder(name: &str, path: &str, mount_path: &str) -> (Volume, VolumeMount) {
    let volume = Volume {
        name: name.into(),
        host_path: Some(HostPathVolumeSource { path: path.into(), type_: Some("DirectoryOrCreate".into()) }),
        ..Default::default()
    };
    let mount = VolumeMount {
        name: name.into(),
        mount_path: mount_path.into(),
        read_only: Some(true),
        ..Default::default()
    };
    (volume, mount)
}

fn controller_container(opts: &InstallOptions) -> Container {
    let ns = &opts.namespace;
    let mut args = vec![
        format!("--cloudconfig={CLOUD_CONFIG_DIR}/azure.json"),
        format!("--leader-election-namespace={ns}"),
        "--leader-election-instance=$(POD_NAME)".into(),
        format!("--http-probe-port={MIC_PROBE_PORT}"),
        "--log-format=json".into(),
    ];
    args.extend(trust::controller_args(opts));
    let (_, mounts) = controller_volumes(opts);
    Container {
        name: "mic".into(),
        image: Some(opts.image("mic")),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        env: Some(vec![
            field_env("MIC_POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_NAME", "metadata.name"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("admin".into()),
            container_port: MIC_PROBE_PORT.into(),
            ..Default::default()
        }]),
        readiness_probe: Some(readiness("/readyz", MIC_PROBE_PORT)),
        liveness_probe: Some(liveness("/healthz", MIC_PROBE_PORT)),
        resources: Some(resources(("100m", "200m"), ("256Mi", "1Gi"))),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

fn controller_volumes(opts: &InstallOptions) -> (Vec<Volume>, Vec<VolumeMount>) {
    let (volume, mount) = host_folder("cloud-config", CLOUD_CONFIG_DIR, CLOUD_CONFIG_DIR);
    let (mut volumes, mut mounts) = (vec![volume], vec![mount]);
    if let Some((volume, mount)) = trust::volume(opts) {
        volumes.push(volume);
        mounts.push(mount);
    }
    (volumes, mounts)
}

fn controller(opts: &InstallOptions) -> Deployment {
    let anti_affinity = PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector("mic")),
                    ..Default::default()
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..Default::default()
            },
        }]),
        ..Default::default()
    };
    let (volumes, _) = controller_volumes(opts);
    let spec = PodSpec {
        service_account_name: Some(MIC_SERVICE_ACCOUNT.into()),
        node_selector: Some(BTreeMap::from([("kubernetes.io/os".into(), "linux".into())])),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
            ..Default::default()
        }),
        affinity: Some(Affinity { pod_anti_affinity: Some(anti_affinity), ..Default::default() }),
        containers: vec![controller_container(opts)],
        volumes: Some(volumes),
        ..Default::default()
    };
    Deployment {
        metadata: meta(MIC_DEPLOYMENT, Some(&opts.namespace), Some("mic")),
        spec: DeploymentSpec {
            replicas: Some(2),
            selector: LabelSelector { match_labels: Some(selector("mic")), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels("mic")), ..Default::default() }),
                spec: Some(spec),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

fn disruption_budget(opts: &InstallOptions) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(MIC_DEPLOYMENT, Some(&opts.namespace), Some("mic")),
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector("mic")), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn agent_args(opts: &InstallOptions) -> Vec<String> {
    let mut args = vec![
        "--node=$(NODE_NAME)".to_owned(),
        format!("--operation-mode={}", opts.mode.as_str()),
        format!("--MICNamespace={}", opts.namespace),
        format!("--http-probe-port={NMI_PROBE_PORT}"),
        "--metadata-header-required=true".into(),
        "--log-format=json".into(),
    ];
    if opts.allow_kubenet {
        args.push("--allow-network-plugin-kubenet=true".into());
    } else {
        args.push(format!("--kubelet-config={HOST_DEFAULTS}/kubelet"));
    }
    if opts.mode == Mode::Managed {
        args.push("--forceNamespaced=true".into());
    }
    if opts.identity_not_found_status != 400 {
        args.push(format!("--identity-not-found-status={}", opts.identity_not_found_status));
    }
    match &opts.tenant_id {
        Some(tenant) => args.push(format!("--tenant-id={tenant}")),
        None if opts.mode == Mode::Federated => {
            args.push(format!("--cloud-config={CLOUD_CONFIG_DIR}/azure.json"))
        }
        None => {}
    }
    if opts.verified_callers {
        args.push("--verified-callers=true".into());
        args.extend(
            opts.node_caller_exception_cgroups.iter().map(|c| format!("--node-caller-exception-cgroup={c}")),
        );
    }
    args.extend(trust::agent_args(opts));
    args
}

fn agent_volumes(opts: &InstallOptions) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut volumes = vec![Volume {
        name: "xtables-lock".into(),
        host_path: Some(HostPathVolumeSource {
            path: "/run/xtables.lock".into(),
            type_: Some("FileOrCreate".into()),
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "xtables-lock".into(),
        mount_path: "/run/xtables.lock".into(),
        ..Default::default()
    }];
    let mut add = |(volume, mount): (Volume, VolumeMount)| {
        volumes.push(volume);
        mounts.push(mount);
    };
    if !opts.allow_kubenet {
        add(host_folder("kubelet-defaults", "/etc/default", HOST_DEFAULTS));
    }
    if opts.tenant_id.is_none() && opts.mode == Mode::Federated {
        add(host_folder("cloud-config", CLOUD_CONFIG_DIR, CLOUD_CONFIG_DIR));
    }
    if let Some(pair) = trust::volume(opts) {
        add(pair);
    }
    (volumes, mounts)
}

fn agent_capabilities(opts: &InstallOptions) -> Vec<String> {
    let mut caps = vec!["NET_ADMIN".to_owned()];
    if opts.verified_callers {
        caps.push("SYS_PTRACE".into());
    }
    caps
}

fn agent(opts: &InstallOptions) -> DaemonSet {
    let (volumes, mounts) = agent_volumes(opts);
    let container = Container {
        name: "nmi".into(),
        image: Some(opts.image("nmi")),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(agent_args(opts)),
        env: Some(vec![field_env("NODE_NAME", "spec.nodeName")]),
        readiness_probe: Some(readiness("/readyz", NMI_PROBE_PORT)),
        liveness_probe: Some(liveness("/healthz", NMI_PROBE_PORT)),
        resources: Some(resources(("100m", "200m"), ("256Mi", "512Mi"))),
        // Root for iptables (nft backend: NET_ADMIN suffices); with verified callers SYS_PTRACE
        // too, to read other processes' /proc/<pid>/{fd,net} (docs/security.md).
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            privileged: Some(false),
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: Some(agent_capabilities(opts)),
            }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    let spec = PodSpec {
        service_account_name: Some(NMI_SERVICE_ACCOUNT.into()),
        host_network: Some(true),
        // Verified callers: /proc must show the node's processes (the pods' and the node's).
        host_pid: opts.verified_callers.then_some(true),
        dns_policy: Some("ClusterFirstWithHostNet".into()),
        priority_class_name: Some("system-node-critical".into()),
        node_selector: Some(BTreeMap::from([("kubernetes.io/os".into(), "linux".into())])),
        tolerations: Some(vec![Toleration { operator: Some("Exists".into()), ..Default::default() }]),
        containers: vec![container],
        volumes: Some(volumes),
        ..Default::default()
    };
    DaemonSet {
        metadata: meta(NMI_DAEMONSET, Some(&opts.namespace), Some("nmi")),
        spec: DaemonSetSpec {
            selector: LabelSelector { match_labels: Some(selector("nmi")), ..Default::default() },
            update_strategy: Some(DaemonSetUpdateStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString::Int(1)),
                    ..Default::default()
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta { labels: Some(pod_labels("nmi")), ..Default::default() }),
                spec: Some(spec),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The workloads `opts.mode` deploys: the controller only in standard mode.
pub(crate) fn objects(opts: &InstallOptions, out: &mut Rendered) -> crate::error::Result<()> {
    if opts.mode.has_controller() {
        out.push(&controller(opts))?;
        out.push(&disruption_budget(opts))?;
    }
    out.push(&agent(opts))
}
