//! How each watched kind lands in the node index (the watch itself is
//! `podid_runtime::watch::drive`).
use podid_runtime::watch::Change;

use crate::index::NodeIndex;

// === sinks ===

pub fn pods(idx: &mut NodeIndex, c: Change<podid_api::Pod>) {
    match c {
        Change::Apply(p) => idx.apply_pod(&p),
        Change::Delete(k) => idx.delete_pod(&k),
        Change::Reset(all) => idx.reset_pods(&all),
    }
}

pub fn assigned(idx: &mut NodeIndex, c: Change<podid_api::AzureAssignedIdentity>) {
    match c {
        Change::Apply(a) => idx.apply_assigned(a),
        Change::Delete(k) => idx.delete_assigned(&k),
        Change::Reset(all) => idx.reset_assigned(all),
    }
}

pub fn bindings(idx: &mut NodeIndex, c: Change<podid_api::AzureIdentityBinding>) {
    match c {
        Change::Apply(b) => idx.apply_binding(b),
        Change::Delete(k) => idx.delete_binding(&k),
        Change::Reset(all) => idx.reset_bindings(all),
    }
}

pub fn identities(idx: &mut NodeIndex, c: Change<podid_api::AzureIdentity>) {
    match c {
        Change::Apply(i) => idx.apply_identity(i),
        Change::Delete(k) => idx.delete_identity(&k),
        Change::Reset(all) => idx.reset_identities(all),
    }
}

pub fn exceptions(idx: &mut NodeIndex, c: Change<podid_api::AzurePodIdentityException>) {
    match c {
        Change::Apply(e) => idx.apply_exception(e),
        Change::Delete(k) => idx.delete_exception(&k),
        Change::Reset(all) => idx.reset_exceptions(all),
    }
}
