//! The controller Deployment (+ PodDisruptionBudget) and the agent DaemonSet.
//!
//! The controller is named `mic` (upstream's name) so its ReplicaSet pods `mic-*` in the install
//! namespace are the agent's built-in exception (`--MICNamespace`) as well as the rendered
//! `podid-mic-exception`.
use serde_json::{Map, Value, json};

use super::{InstallOptions, MIC_SERVICE_ACCOUNT, Mode, NMI_SERVICE_ACCOUNT, labels};

/// Name of the controller Deployment.
pub const MIC_DEPLOYMENT: &str = "mic";
/// Name of the agent DaemonSet.
pub const NMI_DAEMONSET: &str = "nmi";
/// The controller's admin port (`/healthz`, `/readyz`).
pub const MIC_PROBE_PORT: u16 = 8080;
/// The agent's admin port (upstream's manifests use 8085: 8080 is often taken on hosts).
pub const NMI_PROBE_PORT: u16 = 8085;

/// Labels selecting the pods of `component`.
pub(crate) fn selector(component: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("app.kubernetes.io/name".into(), "podid".into());
    m.insert("app.kubernetes.io/component".into(), component.into());
    m
}

fn pod_labels(component: &str) -> Map<String, Value> {
    let mut m = selector(component);
    m.extend(labels(Some(component)));
    // Upstream's labels: dashboards and `mic-exception`s written for aad-pod-identity still match.
    m.insert("app".into(), component.into());
    m.insert("component".into(), component.into());
    m
}

fn field_env(name: &str, path: &str) -> Value {
    json!({ "name": name, "valueFrom": { "fieldRef": { "fieldPath": path } } })
}

fn probe(path: &str, port: u16) -> Value {
    json!({ "httpGet": { "path": path, "port": port }, "periodSeconds": 10, "timeoutSeconds": 5 })
}

fn controller(opts: &InstallOptions) -> Value {
    let ns = &opts.namespace;
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": { "name": MIC_DEPLOYMENT, "namespace": ns, "labels": labels(Some("mic")) },
        "spec": {
            "replicas": 2,
            "selector": { "matchLabels": selector("mic") },
            "template": {
                "metadata": { "labels": pod_labels("mic") },
                "spec": {
                    "serviceAccountName": MIC_SERVICE_ACCOUNT,
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "securityContext": {
                        "runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                        "seccompProfile": { "type": "RuntimeDefault" }
                    },
                    "affinity": { "podAntiAffinity": { "preferredDuringSchedulingIgnoredDuringExecution": [{
                        "weight": 100,
                        "podAffinityTerm": {
                            "labelSelector": { "matchLabels": selector("mic") },
                            "topologyKey": "kubernetes.io/hostname"
                        }
                    }]}},
                    "containers": [{
                        "name": "mic",
                        "image": opts.image("mic"),
                        "imagePullPolicy": "IfNotPresent",
                        "args": [
                            "--cloudconfig=/etc/kubernetes/azure.json",
                            format!("--leader-election-namespace={ns}"),
                            "--leader-election-instance=$(POD_NAME)",
                            format!("--http-probe-port={MIC_PROBE_PORT}"),
                            "--log-format=json",
                        ],
                        "env": [
                            field_env("MIC_POD_NAMESPACE", "metadata.namespace"),
                            field_env("POD_NAME", "metadata.name"),
                        ],
                        "ports": [{ "name": "admin", "containerPort": MIC_PROBE_PORT }],
                        "readinessProbe": probe("/readyz", MIC_PROBE_PORT),
                        "livenessProbe": probe("/healthz", MIC_PROBE_PORT),
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "256Mi" },
                            "limits": { "cpu": "200m", "memory": "1Gi" }
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"] }
                        },
                        "volumeMounts": [{ "name": "azure-json", "mountPath": "/etc/kubernetes/azure.json", "readOnly": true }]
                    }],
                    "volumes": [{ "name": "azure-json", "hostPath": { "path": "/etc/kubernetes/azure.json", "type": "File" } }]
                }
            }
        }
    })
}

fn disruption_budget(opts: &InstallOptions) -> Value {
    json!({
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": { "name": MIC_DEPLOYMENT, "namespace": opts.namespace, "labels": labels(Some("mic")) },
        "spec": { "minAvailable": 1, "selector": { "matchLabels": selector("mic") } }
    })
}

fn agent(opts: &InstallOptions) -> Value {
    let mut args = vec![
        json!("--node=$(NODE_NAME)"),
        json!(format!("--operation-mode={}", opts.mode.as_str())),
        json!(format!("--MICNamespace={}", opts.namespace)),
        json!(format!("--http-probe-port={NMI_PROBE_PORT}")),
        json!("--metadata-header-required=true"),
        json!("--log-format=json"),
    ];
    let mut mounts = vec![json!({ "name": "xtables-lock", "mountPath": "/run/xtables.lock" })];
    let mut volumes = vec![
        json!({ "name": "xtables-lock", "hostPath": { "path": "/run/xtables.lock", "type": "FileOrCreate" } }),
    ];
    if opts.allow_kubenet {
        args.push(json!("--allow-network-plugin-kubenet=true"));
    } else {
        mounts
            .push(json!({ "name": "kubelet-config", "mountPath": "/etc/default/kubelet", "readOnly": true }));
        volumes.push(json!({ "name": "kubelet-config", "hostPath": { "path": "/etc/default/kubelet", "type": "File" } }));
    }
    if opts.mode == Mode::Managed {
        args.push(json!("--forceNamespaced=true"));
    }
    if opts.identity_not_found_status != 400 {
        args.push(json!(format!("--identity-not-found-status={}", opts.identity_not_found_status)));
    }
    match &opts.tenant_id {
        Some(tenant) => args.push(json!(format!("--tenant-id={tenant}"))),
        None if opts.mode == Mode::Federated => {
            mounts.push(
                json!({ "name": "azure-json", "mountPath": "/etc/kubernetes/azure.json", "readOnly": true }),
            );
            volumes.push(json!({ "name": "azure-json", "hostPath": { "path": "/etc/kubernetes/azure.json", "type": "File" } }));
        }
        None => {}
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": { "name": NMI_DAEMONSET, "namespace": opts.namespace, "labels": labels(Some("nmi")) },
        "spec": {
            "selector": { "matchLabels": selector("nmi") },
            "updateStrategy": { "type": "RollingUpdate", "rollingUpdate": { "maxUnavailable": 1 } },
            "template": {
                "metadata": { "labels": pod_labels("nmi") },
                "spec": {
                    "serviceAccountName": NMI_SERVICE_ACCOUNT,
                    "hostNetwork": true,
                    "dnsPolicy": "ClusterFirstWithHostNet",
                    "priorityClassName": "system-node-critical",
                    "nodeSelector": { "kubernetes.io/os": "linux" },
                    "tolerations": [{ "operator": "Exists" }],
                    "containers": [{
                        "name": "nmi",
                        "image": opts.image("nmi"),
                        "imagePullPolicy": "IfNotPresent",
                        "args": args,
                        "env": [field_env("NODE_NAME", "spec.nodeName")],
                        "readinessProbe": probe("/readyz", NMI_PROBE_PORT),
                        "livenessProbe": probe("/healthz", NMI_PROBE_PORT),
                        "resources": {
                            "requests": { "cpu": "100m", "memory": "256Mi" },
                            "limits": { "cpu": "200m", "memory": "512Mi" }
                        },
                        // Root for iptables (nft backend: NET_ADMIN suffices); nothing else.
                        "securityContext": {
                            "runAsUser": 0,
                            "privileged": false,
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": { "drop": ["ALL"], "add": ["NET_ADMIN"] }
                        },
                        "volumeMounts": mounts
                    }],
                    "volumes": volumes
                }
            }
        }
    })
}

/// The workloads `opts.mode` deploys: the controller only in standard mode.
pub(crate) fn objects(opts: &InstallOptions) -> Vec<Value> {
    let mut out = Vec::new();
    if opts.mode.has_controller() {
        out.push(controller(opts));
        out.push(disruption_budget(opts));
    }
    out.push(agent(opts));
    out
}
