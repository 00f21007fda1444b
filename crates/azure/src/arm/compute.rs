//! Scale sets and VMs: read and update their identity block (the controller), list VMs (the CLI).
//!
//! ```text
//!  GET   {target}?api-version=2019-12-01          ─▶ TargetIdentity { identity, provisioning_state, details }
//!  PATCH {target}  {"identity":{"type",…,"userAssignedIdentities":{id:{}|null}}}
//!        ─▶ long-running operation ─▶ TargetIdentity after the update
//! ```
//!
//! A target last seen in `Deleting` is never patched (upstream refused the same way).
use std::collections::BTreeMap;

use podid_core::scaleset::{IdentityPatch, MAX_IDENTITIES_PER_UPDATE, ResourceIdentity, Target, TargetKind};
use reqwest::Method;
use serde_json::Value;

use super::lro::provisioning_state;
use super::{ArmClient, Error, Mode, Operation, request_id};

/// What ARM says about a user-assigned identity on a VM or scale set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserAssignedDetails {
    /// `clientId`; absent for dangling entries (identity deleted and re-created).
    pub client_id: Option<String>,
    /// `principalId`.
    pub principal_id: Option<String>,
}

/// The identity block of a VM or scale set, and its provisioning state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetIdentity {
    /// System-assigned flag and lower-cased user-assigned ids.
    pub identity: ResourceIdentity,
    /// `properties.provisioningState`, e.g. `Succeeded`, `Updating`, `Deleting`.
    pub provisioning_state: Option<String>,
    /// Per user-assigned identity (lower-cased id): the ids ARM reports.
    pub user_assigned: BTreeMap<String, UserAssignedDetails>,
}

impl TargetIdentity {
    /// Reads a VM or scale set body.
    pub fn from_body(body: &Value) -> Self {
        let identity = body.get("identity");
        let user_assigned = identity
            .and_then(|i| i.get("userAssignedIdentities"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(id, v)| {
                        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                        let details = UserAssignedDetails {
                            client_id: text("clientId"),
                            principal_id: text("principalId"),
                        };
                        (id.to_ascii_lowercase(), details)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            identity: ResourceIdentity::from_arm(identity),
            provisioning_state: provisioning_state(body).map(str::to_string),
            user_assigned,
        }
    }

    /// Whether ARM is deleting the resource.
    pub fn is_deleting(&self) -> bool {
        self.provisioning_state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("Deleting"))
    }
}

/// A VM as the CLI lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtualMachine {
    /// ARM id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub location: String,
    /// Identity block and provisioning state.
    pub identity: TargetIdentity,
}

fn kind_segment(kind: TargetKind) -> &'static str {
    match kind {
        TargetKind::ScaleSet => "virtualMachineScaleSets",
        TargetKind::VirtualMachine => "virtualMachines",
    }
}

fn operations(kind: TargetKind) -> (Operation, Operation) {
    match kind {
        TargetKind::ScaleSet => (Operation::VmssGet, Operation::VmssUpdate),
        TargetKind::VirtualMachine => (Operation::VmGet, Operation::VmUpdate),
    }
}

impl ArmClient {
    fn target_url(&self, target: &Target) -> Result<url::Url, Error> {
        self.url(
            &[
                "subscriptions",
                &target.subscription,
                "resourceGroups",
                &target.resource_group,
                "providers",
                "Microsoft.Compute",
                kind_segment(target.kind),
                &target.name,
            ],
            &self.options().compute_api_version,
        )
    }

    /// GET a scale set or VM and read its identity block (`vmss_get` / `vm_get`).
    pub async fn get_identity(&self, target: &Target) -> Result<TargetIdentity, Error> {
        let resource = target.to_string();
        self.observed(operations(target.kind).0, &resource, async {
            let url = self.target_url(target)?;
            let r =
                self.send(Method::GET, &url, None, &target.subscription, &request_id(), Mode::Call).await?;
            let current = TargetIdentity::from_body(&r.json()?);
            self.remember_state(target, current.provisioning_state.as_deref());
            Ok(current)
        })
        .await
    }

    /// PATCH a scale set's or VM's identities and wait for the update (`vmss_update` /
    /// `vm_update`). Refused without a request when the last GET saw `Deleting`.
    pub async fn patch_identity(
        &self,
        target: &Target,
        patch: &IdentityPatch,
    ) -> Result<TargetIdentity, Error> {
        let resource = target.to_string();
        self.observed(operations(target.kind).1, &resource, async {
            if self.last_provisioning_state(target).is_some_and(|s| s.eq_ignore_ascii_case("Deleting")) {
                return Err(Error::Deleting { resource: resource.clone() });
            }
            if patch.entries.len() > MAX_IDENTITIES_PER_UPDATE {
                return Err(Error::TooManyIdentities {
                    resource: resource.clone(),
                    count: patch.entries.len(),
                    max: MAX_IDENTITIES_PER_UPDATE,
                });
            }
            let url = self.target_url(target)?;
            let id = request_id();
            let body = patch.body();
            tracing::info!(
                identity_type = patch.type_,
                add = patch.entries.values().filter(|a| **a).count(),
                remove = patch.entries.values().filter(|a| !**a).count(),
                "Updating identities"
            );
            let initial =
                self.send(Method::PATCH, &url, Some(&body), &target.subscription, &id, Mode::Call).await?;
            let done = self.complete(initial, &url, &resource, &target.subscription, &id).await;
            if let Err(Error::Arm(e)) = &done
                && e.status == 404
            {
                self.remember_state(target, None);
            }
            let after = TargetIdentity::from_body(&done?);
            self.remember_state(target, after.provisioning_state.as_deref());
            Ok(after)
        })
        .await
    }

    /// Lists the VMs of a resource group (`vm_list`), following `nextLink`.
    pub async fn list_vms(
        &self,
        subscription: &str,
        resource_group: &str,
    ) -> Result<Vec<VirtualMachine>, Error> {
        let resource = format!("/subscriptions/{subscription}/resourceGroups/{resource_group}");
        self.observed(Operation::VmList, &resource, async {
            let url = self.url(
                &[
                    "subscriptions",
                    subscription,
                    "resourceGroups",
                    resource_group,
                    "providers",
                    "Microsoft.Compute",
                    "virtualMachines",
                ],
                &self.options().compute_api_version,
            )?;
            let items = self.list_all(url, subscription).await?;
            Ok(items
                .iter()
                .map(|v| {
                    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    VirtualMachine {
                        id: text("id"),
                        name: text("name"),
                        location: text("location"),
                        identity: TargetIdentity::from_body(v),
                    }
                })
                .collect())
        })
        .await
    }

    /// GETs `url` and every `nextLink` after it; returns all `value` items.
    pub(crate) async fn list_all(&self, url: url::Url, subscription: &str) -> Result<Vec<Value>, Error> {
        const MAX_PAGES: usize = 1000;
        let id = request_id();
        let mut items = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(Error::InvalidResponse {
                    url: url.to_string(),
                    message: "more than 1000 pages".into(),
                });
            }
            let page = self.send(Method::GET, &url, None, subscription, &id, Mode::Call).await?.json()?;
            if let Some(values) = page.get("value").and_then(Value::as_array) {
                items.extend(values.iter().cloned());
            }
            if let Some(link) = page.get("nextLink").and_then(Value::as_str).filter(|l| !l.is_empty()) {
                next = Some(self.follow(link, &url)?);
            }
        }
        Ok(items)
    }
}
