//! The emulated Azure world, as plain synchronous data: one tenant and subscription holding resource
//! groups, user-assigned identities (with federated credentials), scale sets with instances, standalone
//! VMs, applications (service principals) and role assignments.
//!
//! ```text
//!   tenant ── applications (client id, object id, secrets, certificates, federated credentials)
//!   subscription
//!     ├─ resource group ── user-assigned identity (client id, principal id) ── federated credentials
//!     ├─ resource group ── scale set (identity block) ── instance n  ⇒ node "<vmss><n base36>"
//!     │                 └─ virtual machine (identity block)          ⇒ node "<vm name>"
//!     └─ role assignments (principal, role, scope)
//! ```
//!
//! Resources are keyed by lower-cased resource id, as ARM compares ids case-insensitively. Nothing here
//! does I/O or reads the clock: callers pass `now`.

pub mod identity_block;
pub mod rbac;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde_json::Value;

use crate::config::{ConfigError, EmulatorConfig, FederatedCredentialConfig, vmss_node_name};
use crate::crypto::RegisteredCert;
use identity_block::{IdentityBlock, IdentityPatch, ResolvedIdentity, apply_patch};
use rbac::RoleAssignment;

pub const UAI_TYPE: &str = "Microsoft.ManagedIdentity/userAssignedIdentities";

#[derive(Debug, Clone)]
pub struct ResourceGroup {
    pub name: String,
    pub location: String,
    pub tags: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl From<&FederatedCredentialConfig> for FederatedCredential {
    fn from(c: &FederatedCredentialConfig) -> Self {
        Self {
            name: c.name.clone(),
            issuer: c.issuer.clone(),
            subject: c.subject.clone(),
            audiences: c.audiences.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct UserAssignedIdentity {
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub tags: Value,
    pub client_id: String,
    pub principal_id: String,
    /// Keyed by lower-cased name.
    pub federated: BTreeMap<String, FederatedCredential>,
}

impl UserAssignedIdentity {
    pub fn id(&self, subscription: &str) -> String {
        format!(
            "/subscriptions/{subscription}/resourcegroups/{}/providers/{UAI_TYPE}/{}",
            self.resource_group, self.name
        )
    }
}

/// An app registration and its service principal.
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub client_id: String,
    pub object_id: String,
    pub secrets: Vec<String>,
    pub certificates: Vec<RegisteredCert>,
    pub federated: Vec<FederatedCredential>,
    /// Where the generated key+certificate PEM was written, if one was generated.
    pub certificate_pem_path: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: u32,
    pub node_name: String,
    pub private_ip: String,
    pub vm_id: String,
}

/// State shared by scale sets and VMs: the long-running operation in flight, if any.
#[derive(Debug, Clone, Default)]
pub struct Provisioning {
    pub busy_until: Option<Instant>,
    pub deleting: bool,
}

impl Provisioning {
    pub fn state(&self, now: Instant) -> &'static str {
        if self.deleting {
            "Deleting"
        } else if self.busy_until.is_some_and(|t| t > now) {
            "Updating"
        } else {
            "Succeeded"
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScaleSet {
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub tags: Value,
    pub identity: IdentityBlock,
    pub instances: BTreeMap<u32, Instance>,
    pub provisioning: Provisioning,
    pub unique_id: String,
}

#[derive(Debug, Clone)]
pub struct VirtualMachine {
    pub name: String,
    pub resource_group: String,
    pub location: String,
    pub tags: Value,
    pub identity: IdentityBlock,
    pub private_ip: String,
    pub vm_id: String,
    pub provisioning: Provisioning,
}

/// Where a node lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    ScaleSetInstance { scale_set_key: String, instance_id: u32 },
    Vm { vm_key: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub kind: NodeKind,
}

/// An in-flight or finished long-running operation.
#[derive(Debug, Clone)]
pub struct Operation {
    pub done_at: Instant,
    pub started: std::time::SystemTime,
}

/// Who a token is issued to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    pub object_id: String,
    pub app_id: String,
    /// Resource id of a managed identity (`xms_mirid`).
    pub mi_res_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct World {
    pub tenant_id: String,
    pub subscription_id: String,
    pub location: String,
    /// Keyed by lower-cased name.
    pub groups: BTreeMap<String, ResourceGroup>,
    /// Keyed by lower-cased id.
    pub identities: BTreeMap<String, UserAssignedIdentity>,
    pub applications: Vec<Application>,
    /// Keyed by lower-cased id.
    pub scale_sets: BTreeMap<String, ScaleSet>,
    /// Keyed by lower-cased id.
    pub vms: BTreeMap<String, VirtualMachine>,
    pub role_assignments: Vec<RoleAssignment>,
    pub operations: BTreeMap<String, Operation>,
    next_ip: u32,
}

pub fn compute_id(sub: &str, rg: &str, kind: &str, name: &str) -> String {
    format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/{kind}/{name}")
}

impl World {
    pub fn empty(tenant_id: &str, subscription_id: &str, location: &str) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            subscription_id: subscription_id.into(),
            location: location.into(),
            groups: BTreeMap::new(),
            identities: BTreeMap::new(),
            applications: Vec::new(),
            scale_sets: BTreeMap::new(),
            vms: BTreeMap::new(),
            role_assignments: Vec::new(),
            operations: BTreeMap::new(),
            next_ip: 4,
        }
    }

    /// Builds the world a configuration describes. Generated client certificates are written to
    /// `state_dir/{app}.pem`.
    pub fn from_config(config: &EmulatorConfig, state_dir: &Path, now: Instant) -> Result<Self, ConfigError> {
        let mut w = Self::empty(&config.tenant_id, &config.subscription_id, &config.location);
        for g in &config.resource_groups {
            w.put_group(&g.name, g.location.as_deref().unwrap_or(&config.location), Value::Null);
        }
        for app in &config.applications {
            let mut certificates = Vec::new();
            for file in &app.certificate_files {
                let pem = std::fs::read_to_string(file)
                    .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
                let certs = RegisteredCert::from_pem(&pem)
                    .map_err(|e| ConfigError::Invalid(format!("{}: {e}", file.display())))?;
                certificates.extend(certs);
            }
            let mut certificate_pem_path = None;
            if app.generate_certificate {
                let generated = crate::crypto::generate_client_certificate(&app.name)
                    .map_err(|e| ConfigError::Invalid(e.to_string()))?;
                let path = state_dir.join(format!("{}.pem", app.name));
                std::fs::write(&path, &generated.pem)
                    .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
                certificates.push(generated.cert);
                certificate_pem_path = Some(path);
            }
            w.applications.push(Application {
                name: app.name.clone(),
                client_id: app.client_id.clone().unwrap_or_else(new_guid),
                object_id: app.object_id.clone().unwrap_or_else(new_guid),
                secrets: app.secrets.clone(),
                certificates,
                federated: app.federated_credentials.iter().map(Into::into).collect(),
                certificate_pem_path,
            });
        }
        for i in &config.identities {
            w.require_group(&i.resource_group)?;
            let mut uai = w.new_identity(&i.name, &i.resource_group);
            if let Some(c) = &i.client_id {
                uai.client_id = c.clone();
            }
            if let Some(p) = &i.principal_id {
                uai.principal_id = p.clone();
            }
            for f in &i.federated_credentials {
                uai.federated.insert(f.name.to_ascii_lowercase(), f.into());
            }
            w.insert_identity(uai);
        }
        for s in &config.scale_sets {
            w.require_group(&s.resource_group)?;
            let key = w.add_scale_set(&s.name, &s.resource_group, s.instances);
            let block = w.initial_block(s.system_assigned, &s.identities, now)?;
            if let Some(ss) = w.scale_sets.get_mut(&key) {
                ss.identity = block;
            }
        }
        for v in &config.virtual_machines {
            w.require_group(&v.resource_group)?;
            let key = w.add_vm(&v.name, &v.resource_group);
            let block = w.initial_block(v.system_assigned, &v.identities, now)?;
            if let Some(vm) = w.vms.get_mut(&key) {
                vm.identity = block;
            }
        }
        for (i, r) in config.role_assignments.iter().enumerate() {
            let principal = w.resolve_principal_name(&r.principal).ok_or_else(|| {
                ConfigError::Invalid(format!("role assignment {i}: unknown principal '{}'", r.principal))
            })?;
            let role = rbac::find_role(&r.role).ok_or_else(|| {
                ConfigError::Invalid(format!("role assignment {i}: unknown role '{}'", r.role))
            })?;
            w.role_assignments.push(RoleAssignment {
                name: new_guid(),
                scope: config.full_scope(&r.scope),
                role_guid: role.guid.into(),
                principal_id: principal,
                principal_type: "ServicePrincipal".into(),
            });
        }
        Ok(w)
    }

    fn require_group(&self, name: &str) -> Result<(), ConfigError> {
        if self.groups.contains_key(&name.to_ascii_lowercase()) {
            Ok(())
        } else {
            Err(ConfigError::Invalid(format!("resource group '{name}' is not declared in resource_groups")))
        }
    }

    fn initial_block(
        &self,
        system: bool,
        ids: &[String],
        now: Instant,
    ) -> Result<IdentityBlock, ConfigError> {
        let mut user = Vec::new();
        for name in ids {
            let id = self
                .find_identity_by_name_or_id(name)
                .map(|u| u.id(&self.subscription_id))
                .ok_or_else(|| ConfigError::Invalid(format!("unknown identity '{name}'")))?;
            user.push((id, true));
        }
        let kind = match (system, user.is_empty()) {
            (false, true) => identity_block::IdentityType::None,
            (true, true) => identity_block::IdentityType::SystemAssigned,
            (false, false) => identity_block::IdentityType::UserAssigned,
            (true, false) => identity_block::IdentityType::SystemAndUserAssigned,
        };
        let patch = IdentityPatch { kind: Some(kind), user: Some(user) };
        apply_patch(&IdentityBlock::default(), &patch, true, now, |id| self.resolve_identity(id))
            .map_err(|e| ConfigError::Invalid(e.to_string()))
    }

    /// An application name, identity name or object id → object id.
    pub fn resolve_principal_name(&self, key: &str) -> Option<String> {
        if let Some(app) = self.applications.iter().find(|a| a.name.eq_ignore_ascii_case(key)) {
            return Some(app.object_id.clone());
        }
        if let Some(uai) = self.identities.values().find(|u| u.name.eq_ignore_ascii_case(key)) {
            return Some(uai.principal_id.clone());
        }
        uuid::Uuid::parse_str(key).is_ok().then(|| key.to_ascii_lowercase())
    }

    pub fn put_group(&mut self, name: &str, location: &str, tags: Value) -> bool {
        let key = name.to_ascii_lowercase();
        let existed = self.groups.contains_key(&key);
        let stored_name = self.groups.get(&key).map_or_else(|| name.to_string(), |g| g.name.clone());
        self.groups.insert(key, ResourceGroup { name: stored_name, location: location.into(), tags });
        !existed
    }

    pub fn group(&self, name: &str) -> Option<&ResourceGroup> {
        self.groups.get(&name.to_ascii_lowercase())
    }

    pub fn new_identity(&self, name: &str, rg: &str) -> UserAssignedIdentity {
        let rg_name = self.group(rg).map_or_else(|| rg.to_string(), |g| g.name.clone());
        UserAssignedIdentity {
            name: name.into(),
            resource_group: rg_name,
            location: self.location.clone(),
            tags: Value::Null,
            client_id: new_guid(),
            principal_id: new_guid(),
            federated: BTreeMap::new(),
        }
    }

    pub fn insert_identity(&mut self, uai: UserAssignedIdentity) {
        self.identities.insert(uai.id(&self.subscription_id).to_ascii_lowercase(), uai);
    }

    pub fn identity_key(&self, rg: &str, name: &str) -> String {
        format!("/subscriptions/{}/resourcegroups/{rg}/providers/{UAI_TYPE}/{name}", self.subscription_id)
            .to_ascii_lowercase()
    }

    pub fn find_identity_by_name_or_id(&self, key: &str) -> Option<&UserAssignedIdentity> {
        self.identities
            .get(&key.to_ascii_lowercase())
            .or_else(|| self.identities.values().find(|u| u.name.eq_ignore_ascii_case(key)))
    }

    pub fn resolve_identity(&self, lower_id: &str) -> Option<ResolvedIdentity> {
        self.identities.get(lower_id).map(|u| ResolvedIdentity {
            principal_id: u.principal_id.clone(),
            client_id: u.client_id.clone(),
        })
    }

    fn next_private_ip(&mut self) -> String {
        let n = self.next_ip;
        self.next_ip += 1;
        format!("10.224.{}.{}", n / 250, n % 250)
    }

    /// Adds a scale set with `instances` instances (or more instances to an existing one); returns its key.
    pub fn add_scale_set(&mut self, name: &str, rg: &str, instances: u32) -> String {
        let id = compute_id(&self.subscription_id, rg, "virtualMachineScaleSets", name);
        let key = id.to_ascii_lowercase();
        if !self.scale_sets.contains_key(&key) {
            let rg_name = self.group(rg).map_or_else(|| rg.to_string(), |g| g.name.clone());
            let set = ScaleSet {
                name: name.into(),
                resource_group: rg_name,
                location: self.location.clone(),
                tags: Value::Null,
                identity: IdentityBlock::default(),
                instances: BTreeMap::new(),
                provisioning: Provisioning::default(),
                unique_id: new_guid(),
            };
            self.scale_sets.insert(key.clone(), set);
        }
        for _ in 0..instances {
            self.add_instance(&key);
        }
        key
    }

    /// Adds one instance to a scale set; returns the node name.
    pub fn add_instance(&mut self, key: &str) -> Option<String> {
        let ip = self.next_private_ip();
        let set = self.scale_sets.get_mut(key)?;
        let instance_id = set.instances.keys().next_back().map_or(0, |n| n + 1);
        let node_name = vmss_node_name(&set.name, instance_id);
        set.instances.insert(
            instance_id,
            Instance { instance_id, node_name: node_name.clone(), private_ip: ip, vm_id: new_guid() },
        );
        Some(node_name)
    }

    pub fn add_vm(&mut self, name: &str, rg: &str) -> String {
        let key = compute_id(&self.subscription_id, rg, "virtualMachines", name).to_ascii_lowercase();
        if !self.vms.contains_key(&key) {
            let ip = self.next_private_ip();
            let rg_name = self.group(rg).map_or_else(|| rg.to_string(), |g| g.name.clone());
            let vm = VirtualMachine {
                name: name.into(),
                resource_group: rg_name,
                location: self.location.clone(),
                tags: Value::Null,
                identity: IdentityBlock::default(),
                private_ip: ip,
                vm_id: new_guid(),
                provisioning: Provisioning::default(),
            };
            self.vms.insert(key.clone(), vm);
        }
        key
    }

    /// Every node (scale set instance or VM), by name.
    pub fn nodes(&self) -> Vec<Node> {
        let mut out = Vec::new();
        for (key, set) in &self.scale_sets {
            for inst in set.instances.values() {
                out.push(Node {
                    name: inst.node_name.clone(),
                    kind: NodeKind::ScaleSetInstance {
                        scale_set_key: key.clone(),
                        instance_id: inst.instance_id,
                    },
                });
            }
        }
        for (key, vm) in &self.vms {
            out.push(Node { name: vm.name.clone(), kind: NodeKind::Vm { vm_key: key.clone() } });
        }
        out
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        self.nodes().into_iter().find(|n| n.name.eq_ignore_ascii_case(name))
    }

    /// The identity block that governs a node (its scale set's or its VM's).
    pub fn node_identity(&self, node: &Node) -> Option<&IdentityBlock> {
        match &node.kind {
            NodeKind::ScaleSetInstance { scale_set_key, .. } => {
                self.scale_sets.get(scale_set_key).map(|s| &s.identity)
            }
            NodeKind::Vm { vm_key } => self.vms.get(vm_key).map(|v| &v.identity),
        }
    }

    pub fn app_by_client_id(&self, client_id: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }

    pub fn identity_by_client_id(&self, client_id: &str) -> Option<&UserAssignedIdentity> {
        self.identities.values().find(|u| u.client_id.eq_ignore_ascii_case(client_id))
    }

    /// Whether an object id names a principal in the tenant (app, user-assigned or system identity).
    pub fn principal_exists(&self, object_id: &str) -> bool {
        let eq = |s: &str| s.eq_ignore_ascii_case(object_id);
        self.applications.iter().any(|a| eq(&a.object_id))
            || self.identities.values().any(|u| eq(&u.principal_id))
            || self
                .scale_sets
                .values()
                .filter_map(|s| s.identity.system.as_ref())
                .any(|s| eq(&s.principal_id))
            || self.vms.values().filter_map(|v| v.identity.system.as_ref()).any(|s| eq(&s.principal_id))
    }
}

pub fn new_guid() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_is_aks_like() {
        let dir = tempfile::tempdir().unwrap();
        let w = World::from_config(&EmulatorConfig::default(), dir.path(), Instant::now()).unwrap();
        let names: Vec<String> = w.nodes().into_iter().map(|n| n.name).collect();
        assert_eq!(names, ["aks-nodepool1-12345678-vmss000000", "aks-nodepool1-12345678-vmss000001"]);
        let node = w.node("AKS-NODEPOOL1-12345678-VMSS000001").unwrap();
        let block = w.node_identity(&node).unwrap();
        assert_eq!(block.user.len(), 1, "agent pool identity assigned");
        let cluster = w.applications.iter().find(|a| a.name == "podid-cluster").unwrap();
        assert!(cluster.certificate_pem_path.as_ref().unwrap().exists());
        assert_eq!(w.role_assignments.len(), 4);
        assert!(w.principal_exists(&cluster.object_id));
    }

    #[test]
    fn config_errors_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = EmulatorConfig { applications: vec![], ..EmulatorConfig::default() };
        let err = World::from_config(&c, dir.path(), Instant::now()).unwrap_err().to_string();
        assert!(err.contains("unknown principal 'podid-admin'"), "{err}");
        c = EmulatorConfig { resource_groups: vec![], ..EmulatorConfig::default() };
        let err = World::from_config(&c, dir.path(), Instant::now()).unwrap_err().to_string();
        assert!(err.contains("is not declared"), "{err}");
    }
}
