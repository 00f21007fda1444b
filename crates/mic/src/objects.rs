//! Writing assigned identities, exactly as upstream does (spec §2.9, §2.13): POST the full object
//! (status included: the CRD has no status subresource), PUT to rewrite it, JSON-patch
//! `/status/status` to change state, DELETE then drop podid's finalizer.
use tokio::time::Instant;

use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use podid_api::{AAI_FINALIZER, AssignedState, AzureAssignedIdentity};
use podid_runtime::watch::lean;
use serde_json::json;

use crate::metrics::Metrics;

/// A failed Kubernetes write.
#[derive(Debug, thiserror::Error)]
#[error("{action} assigned identity {namespace}/{name}: {source}")]
pub struct WriteError {
    pub action: &'static str,
    pub namespace: String,
    pub name: String,
    #[source]
    pub source: kube::Error,
}

/// Writes assigned identities.
#[derive(Clone)]
pub struct Objects {
    pub client: kube::Client,
    pub metrics: std::sync::Arc<Metrics>,
}

fn names(aai: &AzureAssignedIdentity) -> (String, String) {
    (aai.metadata.namespace.clone().unwrap_or_default(), aai.metadata.name.clone().unwrap_or_default())
}

impl Objects {
    fn api(&self, namespace: &str) -> Api<AzureAssignedIdentity> {
        Api::namespaced(self.client.clone(), namespace)
    }

    fn fail(
        &self,
        action: &'static str,
        op: &str,
        aai: &AzureAssignedIdentity,
        source: kube::Error,
    ) -> WriteError {
        self.metrics.k8s_error(op);
        let (namespace, name) = names(aai);
        WriteError { action, namespace, name, source }
    }

    /// POSTs a new assigned identity (state `Created`).
    pub async fn create(&self, aai: &AzureAssignedIdentity) -> Result<AzureAssignedIdentity, WriteError> {
        let (ns, _) = names(aai);
        let started = Instant::now();
        let r = self.api(&ns).create(&PostParams::default(), aai).await;
        self.metrics.k8s_op("addition", started.elapsed());
        r.map(lean).map_err(|e| self.fail("create", "assigned_identity_addition", aai, e))
    }

    /// PUTs a rewritten assigned identity (keeps its resourceVersion: a concurrent change fails).
    pub async fn replace(&self, aai: &AzureAssignedIdentity) -> Result<AzureAssignedIdentity, WriteError> {
        let (ns, name) = names(aai);
        let started = Instant::now();
        let r = self.api(&ns).replace(&name, &PostParams::default(), aai).await;
        self.metrics.k8s_op("update", started.elapsed());
        r.map(lean).map_err(|e| self.fail("update", "assigned_identity_update", aai, e))
    }

    /// Sets `status.status` with a JSON patch.
    pub async fn set_state(
        &self,
        aai: &AzureAssignedIdentity,
        state: AssignedState,
    ) -> Result<AzureAssignedIdentity, WriteError> {
        let (ns, name) = names(aai);
        // `add` sets the member whether or not it exists (a legacy object has no `status` key
        // inside `status`); without any status object, the whole object is added.
        let patch = if aai.status.is_some() {
            json!([{ "op": "add", "path": "/status/status", "value": state.as_str() }])
        } else {
            json!([{ "op": "add", "path": "/status", "value": { "status": state.as_str(), "availableReplicas": 1 } }])
        };
        let patch: json_patch::Patch = serde_json::from_value(patch).map_err(|e| {
            self.fail(
                "patch status of",
                "update_azure_assigned_identity_status",
                aai,
                kube::Error::SerdeError(e),
            )
        })?;
        self.api(&ns)
            .patch(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map(lean)
            .map_err(|e| self.fail("patch status of", "update_azure_assigned_identity_status", aai, e))
    }

    /// Marks `Unassigned`, deletes, and drops podid's finalizer so the object goes away.
    /// Returns the last resourceVersion written.
    pub async fn unassign_and_delete(&self, aai: &AzureAssignedIdentity) -> Result<Option<u64>, WriteError> {
        let (ns, name) = names(aai);
        let api = self.api(&ns);
        let started = Instant::now();
        let mut last = match self.set_state(aai, AssignedState::Unassigned).await {
            Ok(o) => o,
            Err(e) if is_not_found(&e.source) => return Ok(None),
            Err(e) => return Err(e),
        };
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(either) => {
                if let Some(o) = either.left() {
                    last = o;
                }
            }
            Err(e) if is_not_found(&e) => return Ok(rv(&last)),
            Err(e) => return Err(self.fail("delete", "assigned_identity_deletion", aai, e)),
        }
        let finalizers = last.metadata.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == AAI_FINALIZER) {
            let keep: Vec<&String> = finalizers.iter().filter(|f| *f != AAI_FINALIZER).collect();
            let patch = json!({ "metadata": { "finalizers": keep, "resourceVersion": last.metadata.resource_version } });
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(o) => last = o,
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(self.fail("remove finalizer of", "assigned_identity_deletion", aai, e)),
            }
        }
        self.metrics.k8s_op("deletion", started.elapsed());
        Ok(rv(&last))
    }
}

fn rv(aai: &AzureAssignedIdentity) -> Option<u64> {
    aai.metadata.resource_version.as_deref().and_then(|v| v.parse().ok())
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
