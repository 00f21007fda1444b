//! What every ARM call reports for metrics: which operation, how it ended, how long it took
//! (retries and long-running-operation polls included).
use std::fmt;
use std::time::Duration;

use super::error::Error;

/// The ARM operations podid performs. The first four are upstream's metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operation {
    /// GET a scale set.
    VmssGet,
    /// PATCH a scale set's identities.
    VmssUpdate,
    /// GET a VM.
    VmGet,
    /// PATCH a VM's identities.
    VmUpdate,
    /// List the VMs of a resource group.
    VmList,
    /// List the scale sets of a resource group.
    VmssList,
    /// GET a user-assigned identity.
    IdentityGet,
    /// PUT a federated identity credential.
    FederatedCredentialPut,
    /// List the federated identity credentials of an identity.
    FederatedCredentialList,
    /// PUT a role assignment.
    RoleAssignmentPut,
    /// List role assignments.
    RoleAssignmentList,
}

impl Operation {
    /// The metric label, e.g. `vmss_get`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::VmssGet => "vmss_get",
            Operation::VmssUpdate => "vmss_update",
            Operation::VmGet => "vm_get",
            Operation::VmUpdate => "vm_update",
            Operation::VmList => "vm_list",
            Operation::VmssList => "vmss_list",
            Operation::IdentityGet => "identity_get",
            Operation::FederatedCredentialPut => "federated_credential_put",
            Operation::FederatedCredentialList => "federated_credential_list",
            Operation::RoleAssignmentPut => "role_assignment_put",
            Operation::RoleAssignmentList => "role_assignment_list",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finished ARM call.
#[derive(Debug)]
pub struct CallRecord<'a> {
    /// Which operation.
    pub operation: Operation,
    /// `success` or [`Error::metric_label`].
    pub result: &'static str,
    /// The error, if it failed.
    pub error: Option<&'a Error>,
    /// Wall time of the whole call.
    pub duration: Duration,
}

/// Receives a [`CallRecord`] after every ARM call. Closures `Fn(&CallRecord)` implement it.
pub trait ArmObserver: Send + Sync {
    /// Called once per finished call.
    fn observe(&self, record: &CallRecord<'_>);
}

impl<F: Fn(&CallRecord<'_>) + Send + Sync> ArmObserver for F {
    fn observe(&self, record: &CallRecord<'_>) {
        self(record)
    }
}
