//! Doing: one unit's work, in order (spec §2.9, with upstream's problems fixed).
//!
//! ```text
//!  Target unit:  GET target ─▶ write new/rewritten AAIs (Created; pre-existing identities marked)
//!                ─▶ PATCH(es) (≤150 each; identities ARM refuses are dropped and the rest retried)
//!                ─▶ on failure, GET again to learn what actually happened
//!                ─▶ Assigned for every AAI whose identity is on the target; events either way
//!                ─▶ deletions: Unassigned → DELETE → drop finalizer, unless the removal failed
//!  Direct unit:  service-principal AAIs: Created → Assigned; AAIs of deleted nodes: deleted
//! ```
//!
//! Every write goes through to the index at once so the next pass sees it.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_azure::ArmClient;
use podid_azure::arm::Error as ArmFailure;
use podid_core::PodKey;
use podid_core::matching::{Assignment, object_key};
use podid_core::scaleset::{ResourceIdentity, Target, delta, patches, preexisting_for_new};
use tracing::{debug, info, warn};

use crate::events::{self, Events};
use crate::index::SharedIndex;
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::plan::{Unit, UnitWork, aai_identity_key};

/// How a unit's work ended.
#[derive(Debug)]
pub struct Outcome {
    pub unit: Unit,
    /// The target could not be updated: retry no earlier than this (if ARM said when).
    pub failed: Option<Option<tokio::time::Instant>>,
    /// Identities ARM refused to assign (lower-cased ids) and why.
    pub refused: Vec<(String, String)>,
}

/// Carries out units of work; owns the Kubernetes and ARM clients.
#[derive(Clone)]
pub struct Executor {
    pub objects: Objects,
    pub arm: ArmClient,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub index: Arc<SharedIndex>,
    /// Lower-cased client ids never removed.
    pub immutable: Arc<BTreeSet<String>>,
    /// Retries of a PATCH after dropping identities ARM refused.
    pub max_identity_retries: u32,
    /// Kubernetes writes in flight at once within one unit.
    pub concurrency: usize,
}

impl Executor {
    /// Runs one unit.
    pub async fn run(&self, unit: Unit, work: UnitWork, seen: Arc<BTreeMap<PodKey, Instant>>) -> Outcome {
        match &unit {
            Unit::Direct => {
                self.direct(work, &seen).await;
                Outcome { unit, failed: None, refused: Vec::new() }
            }
            Unit::Target(t) => {
                let t = t.clone();
                let (failed, refused) = self.target(&t, work, &seen).await;
                Outcome { unit, failed, refused }
            }
        }
    }

    /// Runs `f` on every item, at most `concurrency` at a time (upstream's `--createDeleteBatch`);
    /// returns the results in input order.
    async fn each<I, T, F, Fut>(&self, items: I, f: F) -> Vec<T>
    where
        I: Iterator,
        F: FnMut(I::Item) -> Fut,
        Fut: Future<Output = T>,
    {
        futures::stream::iter(items.map(f)).buffered(self.concurrency.max(1)).collect().await
    }

    fn record(&self, aai: &AzureAssignedIdentity) {
        let aai = aai.clone();
        self.index.quietly(|i| i.record_aai(aai));
    }

    async fn direct(&self, work: UnitWork, seen: &BTreeMap<PodKey, Instant>) {
        let written = self.write_objects(&work, &BTreeSet::new()).await;
        self.each(written.into_iter(), |(a, obj)| async move { self.mark_assigned(&a, &obj, seen).await })
            .await;
        let reason = if work.node_gone { "its node no longer exists" } else { "no pod needs it any more" };
        self.each(work.delete.iter().cloned(), |aai| async move { self.delete(&aai, reason).await }).await;
    }

    /// Writes new and rewritten objects; returns them with the pending ones, ready to be marked.
    async fn write_objects(
        &self,
        work: &UnitWork,
        preexisting: &BTreeSet<String>,
    ) -> Vec<(Assignment, AzureAssignedIdentity)> {
        let pre = |a: &Assignment| a.resource_key.as_ref().is_some_and(|k| preexisting.contains(k));
        let created = self
            .each(work.create.iter().cloned(), |a| async move {
                match self.objects.create(&a.to_object(pre(&a))).await {
                    Ok(obj) => {
                        info!(aai = %a.key, pod = %a.pod, node = a.node, "Created assigned identity");
                        self.record(&obj);
                        Some((a, obj))
                    }
                    Err(e) => {
                        warn!(error = %e, "Cannot create an assigned identity");
                        self.events.publish(true, events::APPLY_ERROR, e.to_string(), &a.pod, None).await;
                        None
                    }
                }
            })
            .await;
        let updated = self
            .each(work.update.iter().cloned(), |(a, old)| async move {
                match self.objects.replace(&a.to_update(&old, pre(&a))).await {
                    Ok(obj) => {
                        info!(aai = %a.key, pod = %a.pod, node = a.node, "Rewrote assigned identity");
                        self.record(&obj);
                        Some((a, obj))
                    }
                    Err(e) => {
                        warn!(error = %e, "Cannot rewrite an assigned identity");
                        self.events
                            .publish(true, events::APPLY_ERROR, e.to_string(), &a.pod, Some(&old))
                            .await;
                        None
                    }
                }
            })
            .await;
        let mut out: Vec<_> = created.into_iter().chain(updated).flatten().collect();
        out.extend(work.pending.iter().cloned());
        out
    }

    async fn mark_assigned(
        &self,
        a: &Assignment,
        obj: &AzureAssignedIdentity,
        seen: &BTreeMap<PodKey, Instant>,
    ) {
        match self.objects.set_state(obj, AssignedState::Assigned).await {
            Ok(done) => {
                self.record(&done);
                if let Some(t) = seen.get(&a.pod) {
                    self.metrics.assigned_after(t.elapsed());
                }
                info!(aai = %a.key, pod = %a.pod, node = a.node, "Assigned");
                let note = format!(
                    "Binding {} applied on node {} for pod {}",
                    a.binding.metadata.name.as_deref().unwrap_or_default(),
                    a.node,
                    a.key.name
                );
                self.events.publish(false, events::APPLIED, note, &a.pod, Some(&done)).await;
            }
            Err(e) => {
                warn!(error = %e, "Cannot mark an assigned identity Assigned");
                self.events.publish(true, events::STATUS_ERROR, e.to_string(), &a.pod, Some(obj)).await;
            }
        }
    }

    async fn delete(&self, aai: &AzureAssignedIdentity, why: &str) {
        let pod = PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone());
        let key = object_key(aai);
        match self.objects.unassign_and_delete(aai).await {
            Ok(last) => {
                self.index.quietly(|i| i.forget_aai(&key, last));
                info!(aai = %key, pod = %pod, node = aai.spec.node_name, "Deleted assigned identity");
                let note =
                    format!("Assigned identity {} removed from node {}: {why}", key.name, aai.spec.node_name);
                self.events.publish(false, events::REMOVED, note, &pod, Some(aai)).await;
            }
            Err(e) => {
                warn!(error = %e, "Cannot delete an assigned identity");
                self.events.publish(true, events::REMOVE_ERROR, e.to_string(), &pod, Some(aai)).await;
            }
        }
    }

    async fn target(
        &self,
        t: &Target,
        work: UnitWork,
        seen: &BTreeMap<PodKey, Instant>,
    ) -> (Option<Option<tokio::time::Instant>>, Vec<(String, String)>) {
        let current = match self.arm.get_identity(t).await {
            Ok(c) if c.is_deleting() => {
                warn!(target = %t, "Scale set or VM is being deleted; not updating it");
                return (Some(None), Vec::new());
            }
            Ok(c) => c.identity,
            Err(e) => {
                warn!(target = %t, error = %e, "Cannot read the identities of the scale set or VM");
                return (Some(self.retry_at(t, &e)), Vec::new());
            }
        };
        let preexisting = preexisting_for_new(&work.needs, &current);
        let to_mark = self.write_objects(&work, &preexisting).await;

        let mut want = delta(&work.needs, &current, &self.immutable);
        want.add.retain(|k| !work.hold_back.contains(k));
        let (state, refused, failure) = self.apply(t, current, &mut want).await;
        let failed = failure.as_ref().map(|e| self.retry_at(t, e));

        let (state, refused, failure) = (&state, &refused, &failure);
        self.each(to_mark.into_iter(), |(a, obj)| async move {
            let (a, obj) = (&a, &obj);
            let Some(k) = &a.resource_key else { return self.mark_assigned(a, obj, seen).await };
            if state.user_assigned.contains(k) {
                self.mark_assigned(a, obj, seen).await;
            } else if let Some((_, why)) = refused.iter().find(|(r, _)| r == k) {
                let note = format!("failed to apply binding: ARM refused identity {k}: {why}");
                self.events.publish(true, events::APPLY_ERROR, note, &a.pod, Some(obj)).await;
            } else if let Some(e) = failure {
                let note = format!("failed to apply binding: {e}");
                self.events.publish(true, events::APPLY_ERROR, note, &a.pod, Some(obj)).await;
            }
        })
        .await;
        let want = &want;
        self.each(work.delete.iter().cloned(), |aai| async move {
            let aai = &aai;
            if let Some(k) = &aai_identity_key(aai)
                && want.remove.contains(k)
                && state.user_assigned.contains(k)
            {
                let pod = PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone());
                let note = format!("identity {k} is still on {t}; keeping the assigned identity to retry");
                self.events.publish(true, events::REMOVE_ERROR, note, &pod, Some(aai)).await;
                return;
            }
            self.delete(aai, "no pod needs it any more").await;
        })
        .await;
        let refused = refused.clone();
        (failed, refused)
    }

    /// Sends the PATCHes for `want`, dropping identities ARM refuses and retrying the rest.
    /// Returns the target's state as last known, the refused identities, and a failure.
    async fn apply(
        &self,
        t: &Target,
        mut state: ResourceIdentity,
        want: &mut podid_core::scaleset::Delta,
    ) -> (ResourceIdentity, Vec<(String, String)>, Option<ArmFailure>) {
        let mut refused = Vec::new();
        let mut retries = 0;
        loop {
            let mut error = None;
            for patch in patches(&state, want) {
                debug!(target = %t, entries = patch.entries.len(), "Patching identities");
                match self.arm.patch_identity(t, &patch).await {
                    Ok(after) => state = after.identity,
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let Some(e) = error else { return (state, refused, None) };
            let bad: Vec<String> =
                e.erroneous_identities().into_iter().filter(|k| want.add.contains(k)).collect();
            if bad.is_empty() || retries >= self.max_identity_retries {
                warn!(target = %t, error = %e, "Cannot update the identities of the scale set or VM");
                if !matches!(e, ArmFailure::Throttled { .. })
                    && let Ok(now) = self.arm.get_identity(t).await
                {
                    state = now.identity;
                }
                if !bad.is_empty() {
                    refused.extend(bad.into_iter().map(|k| (k, e.to_string())));
                }
                return (state, refused, Some(e));
            }
            warn!(target = %t, refused = ?bad, error = %e, "ARM refused identities; retrying without them");
            for k in bad {
                want.add.remove(&k);
                refused.push((k, e.to_string()));
            }
            retries += 1;
        }
    }

    fn retry_at(&self, t: &Target, e: &ArmFailure) -> Option<tokio::time::Instant> {
        match e {
            ArmFailure::Throttled { until, .. } => Some(*until),
            _ => self.arm.throttled_until(&t.subscription),
        }
    }
}
