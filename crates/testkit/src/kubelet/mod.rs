//! Playing the kubelet's (and scheduler's) part, since the test cluster has neither.
//!
//! Nodes are created with their status written as a kubelet would (Ready, addresses); pods are
//! created already bound to a node and move through their phases by writes to the status
//! subresource; deletion is immediate (grace period 0), because no kubelet will ever confirm it.
//!
//! ```no_run
//! # use podid_testkit::kubelet::{NodeBuilder, PodBuilder, delete_pod, set_succeeded};
//! # async fn example(client: kube::Client, ns: &str) -> podid_testkit::Result<()> {
//! # let ip = |text: &str| text.parse().unwrap();
//! NodeBuilder::new("n1").vmss("sub", "rg", "vmss0", 0).internal_ip(ip("10.240.0.4")).create(&client).await?;
//! PodBuilder::new(ns, "app").node("n1").label("aadpodidbinding", "web").ip(ip("10.244.0.7")).create(&client).await?;
//! set_succeeded(&client, ns, "app").await?;
//! delete_pod(&client, ns, "app").await?;
//! # Ok(())
//! # }
//! ```
mod node;
mod pod;

pub use node::{NodeBuilder, delete_node, vm_provider_id, vmss_provider_id};
pub use pod::{PodBuilder, delete_pod, set_failed, set_running, set_succeeded};
