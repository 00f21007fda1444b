//! Nodes, with an Azure provider id and the status a kubelet reports.
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus};
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::Result;
use crate::error::KubeContext;

/// Provider id of scale-set instance `instance`, as the Azure cloud provider writes it.
pub fn vmss_provider_id(subscription: &str, resource_group: &str, scale_set: &str, instance: u32) -> String {
    format!(
        "azure:///subscriptions/{subscription}/resourceGroups/{resource_group}/providers/\
         Microsoft.Compute/virtualMachineScaleSets/{scale_set}/virtualMachines/{instance}"
    )
}

/// Provider id of a stand-alone (availability-set) VM.
pub fn vm_provider_id(subscription: &str, resource_group: &str, vm: &str) -> String {
    format!(
        "azure:///subscriptions/{subscription}/resourceGroups/{resource_group}/providers/Microsoft.Compute/virtualMachines/{vm}"
    )
}

/// A Node to create. Nodes are cluster-wide: in a shared cluster, derive names from the test's
/// namespace so tests do not collide.
#[derive(Debug, Clone)]
pub struct NodeBuilder {
    name: String,
    labels: BTreeMap<String, String>,
    provider_id: Option<String>,
    internal_ip: Option<IpAddr>,
}

impl NodeBuilder {
    /// A node called `name`, labelled as a kubelet labels it (`kubernetes.io/hostname`, `os`).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let labels = BTreeMap::from([
            ("kubernetes.io/hostname".to_owned(), name.clone()),
            ("kubernetes.io/os".to_owned(), "linux".to_owned()),
        ]);
        Self { name, labels, provider_id: None, internal_ip: None }
    }

    /// Sets `spec.providerID` verbatim.
    pub fn provider_id(mut self, provider_id: impl Into<String>) -> Self {
        self.provider_id = Some(provider_id.into());
        self
    }

    /// Makes it instance `instance` of a VM scale set (see [`vmss_provider_id`]).
    pub fn vmss(self, subscription: &str, resource_group: &str, scale_set: &str, instance: u32) -> Self {
        self.provider_id(vmss_provider_id(subscription, resource_group, scale_set, instance))
    }

    /// Makes it a stand-alone VM (see [`vm_provider_id`]).
    pub fn vm(self, subscription: &str, resource_group: &str, vm: &str) -> Self {
        self.provider_id(vm_provider_id(subscription, resource_group, vm))
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Reports this `InternalIP` in the node's status.
    pub fn internal_ip(mut self, ip: IpAddr) -> Self {
        self.internal_ip = Some(ip);
        self
    }

    /// The Node object, without status.
    pub fn build(&self) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(self.labels.clone()),
                ..Default::default()
            },
            spec: Some(NodeSpec { provider_id: self.provider_id.clone(), ..Default::default() }),
            status: None,
        }
    }

    /// Creates the node, then reports it Ready (with its addresses) through the status subresource.
    pub async fn create(self, client: &Client) -> Result<Node> {
        let api = Api::<Node>::all(client.clone());
        let name = &self.name;
        api.create(&PostParams::default(), &self.build()).await.context(|| format!("create node {name}"))?;
        let patch = serde_json::json!({ "status": self.status() });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .context(|| format!("report node {name} Ready"))
    }

    fn status(&self) -> NodeStatus {
        let mut addresses = vec![NodeAddress { type_: "Hostname".into(), address: self.name.clone() }];
        if let Some(ip) = self.internal_ip {
            addresses.insert(0, NodeAddress { type_: "InternalIP".into(), address: ip.to_string() });
        }
        let ready = NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: Some("KubeletReady".into()),
            message: Some("podid-testkit plays the kubelet".into()),
            ..Default::default()
        };
        NodeStatus { addresses: Some(addresses), conditions: Some(vec![ready]), ..Default::default() }
    }
}

/// Deletes node `name` (no-op if it does not exist).
pub async fn delete_node(client: &Client, name: &str) -> Result<()> {
    let api = Api::<Node>::all(client.clone());
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e).context(|| format!("delete node {name}")),
    }
}
