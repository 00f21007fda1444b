//! Pods bound to a node, moved through their phases as a kubelet would report them.
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Container, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus, Node, Pod,
    PodCondition, PodIP, PodSpec, PodStatus, ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::error::KubeContext;
use crate::wait::eventually;
use crate::{Result, cluster::ensure_service_account};

const CONTAINER: &str = "app";
const IMAGE: &str = "registry.invalid/podid/app:test";

/// A Pod to create, already scheduled (`spec.nodeName`) if [`node`](Self::node) is given.
///
/// With an [`ip`](Self::ip) it is reported Running with that IP once created; without, it stays
/// Pending (a kubelet has not started it yet).
#[derive(Debug, Clone)]
pub struct PodBuilder {
    namespace: String,
    name: String,
    node: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    host_network: bool,
    service_account: Option<String>,
    ip: Option<IpAddr>,
}

impl PodBuilder {
    /// Pod `name` in `namespace`, with one container.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            node: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            host_network: false,
            service_account: None,
            ip: None,
        }
    }

    /// Binds it to node `node` (what the scheduler would do).
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Adds a label (e.g. `aadpodidbinding`).
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an annotation.
    pub fn annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// Runs it in the node's network namespace (its IP is then the node's).
    pub fn host_network(mut self) -> Self {
        self.host_network = true;
        self
    }

    /// Runs it as service account `name`, which [`create`](Self::create) creates if missing
    /// (there is no controller-manager to make even `default`).
    pub fn service_account(mut self, name: impl Into<String>) -> Self {
        self.service_account = Some(name.into());
        self
    }

    /// Reports it Running with this pod IP once created.
    pub fn ip(mut self, ip: IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// The Pod object, without status.
    pub fn build(&self) -> Pod {
        let container = Container { name: CONTAINER.into(), image: Some(IMAGE.into()), ..Default::default() };
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: non_empty(&self.labels),
                annotations: non_empty(&self.annotations),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![container],
                node_name: self.node.clone(),
                host_network: self.host_network.then_some(true),
                service_account_name: self.service_account.clone(),
                termination_grace_period_seconds: Some(0),
                ..Default::default()
            }),
            status: None,
        }
    }

    /// Creates the pod (and its service account), then reports it Running if it has an IP.
    pub async fn create(self, client: &Client) -> Result<Pod> {
        let api = Api::<Pod>::namespaced(client.clone(), &self.namespace);
        if let Some(account) = &self.service_account {
            ensure_service_account(
                &Api::<ServiceAccount>::namespaced(client.clone(), &self.namespace),
                account,
            )
            .await?;
        }
        let (namespace, name) = (&self.namespace, &self.name);
        let pod = api
            .create(&PostParams::default(), &self.build())
            .await
            .context(|| format!("create pod {namespace}/{name}"))?;
        match self.ip {
            Some(ip) => set_running(client, namespace, name, ip).await,
            None => Ok(pod),
        }
    }
}

/// Reports pod `namespace/name` Running and Ready with pod IP `ip` (and, if its node reports an
/// `InternalIP`, that as host IP), through the status subresource.
pub async fn set_running(client: &Client, namespace: &str, name: &str, ip: IpAddr) -> Result<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let pod = pods.get(name).await.context(|| format!("get pod {namespace}/{name}"))?;
    let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone());
    let host_ip = match node {
        Some(node) => node_internal_ip(client, &node).await?,
        None => None,
    };
    let now = Time(Timestamp::now());
    let running = ContainerState {
        running: Some(ContainerStateRunning { started_at: Some(now.clone()) }),
        ..Default::default()
    };
    let status = PodStatus {
        phase: Some("Running".into()),
        pod_ip: Some(ip.to_string()),
        pod_ips: Some(vec![PodIP { ip: ip.to_string() }]),
        host_ip,
        start_time: Some(now),
        conditions: Some(conditions("True", None)),
        container_statuses: Some(vec![container_status(true, running)]),
        ..Default::default()
    };
    write_status(&pods, namespace, name, status).await
}

/// Reports pod `namespace/name` Succeeded: its container exited 0.
pub async fn set_succeeded(client: &Client, namespace: &str, name: &str) -> Result<Pod> {
    finish(client, namespace, name, "Succeeded", 0).await
}

/// Reports pod `namespace/name` Failed: its container exited 1.
pub async fn set_failed(client: &Client, namespace: &str, name: &str) -> Result<Pod> {
    finish(client, namespace, name, "Failed", 1).await
}

async fn finish(client: &Client, namespace: &str, name: &str, phase: &str, exit_code: i32) -> Result<Pod> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    let reason = if exit_code == 0 { "Completed" } else { "Error" };
    let terminated = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code,
            reason: Some(reason.into()),
            finished_at: Some(Time(Timestamp::now())),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions("False", Some("PodCompleted"))),
        container_statuses: Some(vec![container_status(false, terminated)]),
        ..Default::default()
    };
    write_status(&pods, namespace, name, status).await
}

/// Deletes pod `namespace/name` with grace period 0 and waits until it is gone (no-op if absent).
pub async fn delete_pod(client: &Client, namespace: &str, name: &str) -> Result<()> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace);
    match pods.delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(e) => return Err(e).context(|| format!("delete pod {namespace}/{name}")),
    }
    let what = format!("pod {namespace}/{name} to be gone (finalizers?)");
    eventually(&what, Duration::from_secs(10), Duration::from_millis(50), || async {
        let pod = pods.get_opt(name).await.context(|| format!("get pod {namespace}/{name}"))?;
        Ok(pod.is_none().then_some(()))
    })
    .await
}

async fn write_status(pods: &Api<Pod>, namespace: &str, name: &str, status: PodStatus) -> Result<Pod> {
    let patch = serde_json::json!({ "status": status });
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .context(|| format!("write status of pod {namespace}/{name}"))
}

async fn node_internal_ip(client: &Client, node: &str) -> Result<Option<String>> {
    let node = Api::<Node>::all(client.clone()).get_opt(node).await.context(|| format!("get node {node}"))?;
    let addresses = node.and_then(|n| n.status).and_then(|s| s.addresses).unwrap_or_default();
    Ok(addresses.into_iter().find(|a| a.type_ == "InternalIP").map(|a| a.address))
}

fn conditions(ready: &str, reason: Option<&str>) -> Vec<PodCondition> {
    let condition = |type_: &str, status: &str, reason: Option<&str>| PodCondition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(str::to_owned),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    };
    vec![
        condition("Initialized", "True", None),
        condition("Ready", ready, reason),
        condition("ContainersReady", ready, reason),
        condition("PodScheduled", "True", None),
    ]
}

fn container_status(ready: bool, state: ContainerState) -> ContainerStatus {
    ContainerStatus {
        name: CONTAINER.into(),
        image: IMAGE.into(),
        image_id: String::new(),
        ready,
        started: Some(ready),
        restart_count: 0,
        state: Some(state),
        ..Default::default()
    }
}

fn non_empty(map: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then(|| map.clone())
}
