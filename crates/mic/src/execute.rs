//! Doing: one unit's work, in order (spec §2.9, with upstream's problems fixed).
//!
//! ```text
//!  Target unit:  GET target ─▶ ledger: fold in the state read (the first visit creates it)
//!                ─▶ write new/rewritten AAIs (Created; pre-existing identities marked)
//!                   ‖ store what the PATCH will add in the ledger (a crash after it loses nothing)
//!                ─▶ PATCH(es) (≤150 each; identities ARM refuses are dropped and the rest retried)
//!                ─▶ on failure, GET again to learn what actually happened
//!                ─▶ ledger: fold in the state after (stored; deleted once it records nothing)
//!                ─▶ Assigned for every AAI whose identity is on the target; events either way
//!                ─▶ deletions: Unassigned → DELETE → drop finalizer, unless the removal failed
//!  Direct unit:  service-principal AAIs: Created → Assigned; AAIs of deleted nodes: deleted
//! ```
//!
//! Every write goes through to the index at once so the next pass sees it. A PATCH response is
//! the target's state (no GET after it, no poll when it says the update is done).
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use podid_api::{AssignedState, AzureAssignedIdentity};
use podid_azure::ArmClient;
use podid_azure::arm::Error as ArmFailure;
use podid_core::PodKey;
use podid_core::matching::{Assignment, object_key};
use podid_core::scaleset::{Delta, Ledger, ResourceIdentity, Target, TargetLedger, delta, patches};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::events::{self, Events, pod_ref, regarding};
use crate::index::SharedIndex;
use crate::ledger::{LedgerError, LedgerStore, Saved, StoredLedger};
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::plan::{Unit, UnitWork, aai_identity_key};

/// Why a unit of work failed (the loop backs it off; ARM's Retry-After when it gave one).
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("cannot read the identities of {target}: {source}")]
    Read {
        target: Target,
        #[source]
        source: ArmFailure,
        retry_at: Option<Instant>,
    },
    #[error("{target} is being deleted; not updating it")]
    Deleting { target: Target },
    #[error("cannot update the identities of {target}: {source}")]
    Update {
        target: Target,
        #[source]
        source: ArmFailure,
        retry_at: Option<Instant>,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("the work of {0:?} panicked")]
    Panicked(Unit),
}

impl UnitError {
    /// The earliest retry ARM allows, if it said.
    pub fn retry_at(&self) -> Option<Instant> {
        match self {
            Self::Read { retry_at, .. } | Self::Update { retry_at, .. } => *retry_at,
            _ => None,
        }
    }
}

/// How a unit's work ended.
#[derive(Debug)]
pub struct Outcome {
    pub unit: Unit,
    /// `Err`: the unit as a whole failed and backs off.
    pub result: Result<(), UnitError>,
    /// Identities ARM refused to assign (lower-cased ids) and why.
    pub refused: Vec<(String, String)>,
    /// Assigned identities whose write failed (each backs off on its own).
    pub failed_objects: Vec<PodKey>,
    /// Assigned identities whose work is done (their back-off, if any, is forgotten).
    pub done_objects: Vec<PodKey>,
}

impl Outcome {
    fn new(unit: Unit) -> Self {
        Self {
            unit,
            result: Ok(()),
            refused: Vec::new(),
            failed_objects: Vec::new(),
            done_objects: Vec::new(),
        }
    }

    /// Sorts the results of per-object work into done and failed.
    fn objects(&mut self, results: impl IntoIterator<Item = Result<PodKey, PodKey>>) {
        for r in results {
            match r {
                Ok(k) => self.done_objects.push(k),
                Err(k) => self.failed_objects.push(k),
            }
        }
    }
}

/// Carries out units of work; owns the Kubernetes and ARM clients.
#[derive(Clone)]
pub struct Executor {
    pub objects: Objects,
    pub ledgers: LedgerStore,
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

/// What the writes of one unit produced.
#[derive(Default)]
struct Written {
    /// New, rewritten and pending assignments, ready to be marked `Assigned`.
    to_mark: Vec<(Assignment, AzureAssignedIdentity)>,
    failed: Vec<PodKey>,
}

impl Executor {
    /// Runs one unit.
    pub async fn run(&self, unit: Unit, work: UnitWork, seen: Arc<BTreeMap<PodKey, Instant>>) -> Outcome {
        let mut out = Outcome::new(unit.clone());
        match &unit {
            Unit::Direct => self.direct(work, &seen, &mut out).await,
            Unit::Target(t) => out.result = self.target(t, work, &seen, &mut out).await,
        }
        out
    }

    /// An outcome for a unit that panicked.
    pub fn panicked(unit: Unit) -> Outcome {
        let mut out = Outcome::new(unit.clone());
        out.result = Err(UnitError::Panicked(unit));
        out
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

    fn pod(&self, pod: &PodKey) -> ObjectReference {
        pod_ref(pod, self.index.quietly(|i| i.pod_uid(pod)))
    }

    /// The binding and the pod: where a failed assignment's Warning goes.
    fn binding_and_pod(&self, a: &Assignment) -> [ObjectReference; 2] {
        [regarding(&a.binding), self.pod(&a.pod)]
    }

    async fn direct(&self, work: UnitWork, seen: &BTreeMap<PodKey, Instant>, out: &mut Outcome) {
        let written = self.write_objects(&work, &BTreeSet::new()).await;
        out.failed_objects.extend(written.failed);
        let marked =
            self.each(written.to_mark.into_iter(), |(a, obj)| async move {
                self.mark_assigned(&a, &obj, seen).await
            })
            .await;
        out.objects(marked);
        let reason = if work.node_gone { "its node no longer exists" } else { "no pod needs it any more" };
        let deleted =
            self.each(work.delete.into_iter(), |aai| async move { self.delete(&aai, reason).await }).await;
        out.objects(deleted);
    }

    /// Writes new and rewritten objects; returns them with the pending ones, ready to be marked.
    /// `preexisting` marks identities found on the target before podid added anything.
    async fn write_objects(&self, work: &UnitWork, preexisting: &BTreeSet<String>) -> Written {
        let pre = |a: &Assignment| a.resource_key.as_ref().is_some_and(|k| preexisting.contains(k));
        let created = self
            .each(work.create.iter().cloned(), |a| async move {
                let r = self.objects.create(&a.to_object(pre(&a))).await;
                self.written(a, r, "Created", None).await
            })
            .await;
        let updated = self
            .each(work.update.iter().cloned(), |(a, old)| async move {
                let r = self.objects.replace(&a.to_update(&old, pre(&a))).await;
                self.written(a, r, "Rewrote", Some(&old)).await
            })
            .await;
        let mut out = Written::default();
        for r in created.into_iter().chain(updated) {
            match r {
                Ok(pair) => out.to_mark.push(pair),
                Err(key) => out.failed.push(key),
            }
        }
        out.to_mark.extend(work.pending.iter().cloned());
        out
    }

    async fn written(
        &self,
        a: Assignment,
        r: Result<AzureAssignedIdentity, crate::objects::WriteError>,
        what: &str,
        old: Option<&AzureAssignedIdentity>,
    ) -> Result<(Assignment, AzureAssignedIdentity), PodKey> {
        match r {
            Ok(obj) => {
                info!(aai = %a.key, pod = %a.pod, node = a.node, "{what} assigned identity");
                self.record(&obj);
                Ok((a, obj))
            }
            Err(e) => {
                warn!(error = %e, "Cannot write an assigned identity");
                let mut on = self.binding_and_pod(&a).to_vec();
                on.extend(old.map(regarding));
                self.events.publish(true, events::APPLY_ERROR, e.to_string(), &on).await;
                Err(a.key.clone())
            }
        }
    }

    /// Marks an assignment `Assigned`; its key, `Err` if that failed.
    async fn mark_assigned(
        &self,
        a: &Assignment,
        obj: &AzureAssignedIdentity,
        seen: &BTreeMap<PodKey, Instant>,
    ) -> Result<PodKey, PodKey> {
        match self.objects.set_state(obj, AssignedState::Assigned).await {
            Ok(done) => {
                self.record(&done);
                if let Some(t) = seen.get(&a.pod) {
                    self.metrics.assigned_after(t.elapsed());
                }
                info!(aai = %a.key, pod = %a.pod, node = a.node, "Assigned");
                let binding = a.binding.metadata.name.as_deref().unwrap_or_default();
                let note = format!("binding {binding} applied on node {} for pod {}", a.node, a.key.name);
                self.events.publish(false, events::APPLIED, note, &[regarding(&a.binding)]).await;
                Ok(a.key.clone())
            }
            Err(e) => {
                warn!(error = %e, "Cannot mark an assigned identity Assigned");
                self.events.publish(true, events::STATUS_ERROR, e.to_string(), &[regarding(obj)]).await;
                Err(a.key.clone())
            }
        }
    }

    /// The binding (embedded in the assigned identity) and the pod of a deletion.
    fn removal_refs(&self, aai: &AzureAssignedIdentity) -> (Vec<ObjectReference>, PodKey) {
        let pod = PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone());
        let binding = aai.spec.azure_binding_ref.as_deref().map(regarding);
        (binding.into_iter().collect(), pod)
    }

    /// Unassigns and deletes; its key, `Err` if that failed.
    async fn delete(&self, aai: &AzureAssignedIdentity, why: &str) -> Result<PodKey, PodKey> {
        let key = object_key(aai);
        let (binding, pod) = self.removal_refs(aai);
        match self.objects.unassign_and_delete(aai).await {
            Ok(last) => {
                self.index.quietly(|i| i.forget_aai(&key, last));
                info!(aai = %key, pod = %pod, node = aai.spec.node_name, "Deleted assigned identity");
                let name = aai.spec.azure_binding_ref.as_ref().and_then(|b| b.metadata.name.clone());
                let note = format!(
                    "Binding {} removed from node {} for pod {}: {why}",
                    name.unwrap_or_default(),
                    aai.spec.node_name,
                    aai.spec.pod
                );
                self.events.publish(false, events::REMOVED, note, &binding).await;
                Ok(key)
            }
            Err(e) => {
                warn!(error = %e, "Cannot delete an assigned identity");
                let mut on = binding;
                on.push(self.pod(&pod));
                self.events.publish(true, events::REMOVE_ERROR, e.to_string(), &on).await;
                Err(key)
            }
        }
    }

    async fn target(
        &self,
        t: &Target,
        work: UnitWork,
        seen: &BTreeMap<PodKey, Instant>,
        out: &mut Outcome,
    ) -> Result<(), UnitError> {
        let read = self.arm.get_identity(t).await;
        let current = self.current(t, &work, read).await?;
        let stored = work.ledger.as_deref().cloned();
        let mut ledger =
            stored.as_ref().map_or_else(|| Ledger::first(&current, &work.needs), |s| s.value.ledger.clone());
        ledger.observe(&current, &work.needs.needed, &self.immutable);
        let mut want = delta(&work.needs, &ledger, &current, &self.immutable);
        want.add.retain(|k| !work.hold_back.contains(k));
        // The assignments and the ledger's record of what is about to be added, in parallel;
        // both before the PATCH.
        let preexisting = ledger.preexisting.clone();
        ledger.intend(&want.add, &work.needs.needed);
        let (written, stored) =
            futures::join!(self.write_objects(&work, &preexisting), self.store(t, stored.as_ref(), &ledger));
        out.failed_objects.extend(written.failed);
        let stored = stored?;

        let (state, refused, failure) = self.apply(t, current, &mut want).await;
        ledger.observe(&state, &work.needs.needed, &self.immutable);
        let stored_after = self.store(t, stored.as_ref(), &ledger).await;
        let (state, refused_ref, failure_ref) = (&state, &refused, &failure);
        let marks = self
            .each(written.to_mark.into_iter(), |(a, obj)| async move {
                self.mark_or_explain(&a, &obj, state, refused_ref, failure_ref, seen).await
            })
            .await;
        out.objects(marks.into_iter().flatten());
        let want = &want;
        let deleted = self
            .each(work.delete.into_iter(), |aai| async move {
                self.delete_unless_kept(t, &aai, want, state).await
            })
            .await;
        out.objects(deleted.into_iter().flatten());
        out.refused = refused;
        if let Some(e) = failure {
            let retry_at = self.retry_at(t, &e);
            return Err(UnitError::Update { target: t.clone(), source: e, retry_at });
        }
        stored_after.map(drop)
    }

    /// The target's identities, or why the unit stops (a target that is gone loses its ledger).
    async fn current(
        &self,
        t: &Target,
        work: &UnitWork,
        read: Result<podid_azure::arm::TargetIdentity, ArmFailure>,
    ) -> Result<ResourceIdentity, UnitError> {
        match read {
            Ok(c) if c.is_deleting() => Err(UnitError::Deleting { target: t.clone() }),
            Ok(c) => Ok(c.identity),
            Err(e) => {
                if e.is_not_found()
                    && let Some(l) = &work.ledger
                {
                    info!(target = %t, "Scale set or VM is gone; dropping its ledger");
                    self.store(t, Some(l), &Ledger::default()).await?;
                }
                let retry_at = self.retry_at(t, &e);
                Err(UnitError::Read { target: t.clone(), source: e, retry_at })
            }
        }
    }

    /// Stores the ledger if it changed (write-through to the index); returns what is stored now.
    async fn store(
        &self,
        t: &Target,
        stored: Option<&StoredLedger>,
        ledger: &Ledger,
    ) -> Result<Option<StoredLedger>, UnitError> {
        let value = TargetLedger { target: t.clone(), ledger: ledger.clone() };
        match self.ledgers.save(stored, &value).await? {
            Saved::Unchanged => Ok(stored.cloned()),
            Saved::Written(s) => {
                debug!(target = %t, added = ledger.added.len(), "Ledger stored");
                let copy = s.clone();
                self.index.quietly(|i| i.record_ledger(copy));
                Ok(Some(s))
            }
            Saved::Deleted { name, last_rv } => {
                debug!(target = %t, "Ledger deleted: podid holds nothing there");
                self.index.quietly(|i| i.forget_ledger(&name, last_rv));
                Ok(None)
            }
        }
    }

    /// Marks an assignment whose identity is on the target; explains why not otherwise.
    async fn mark_or_explain(
        &self,
        a: &Assignment,
        obj: &AzureAssignedIdentity,
        state: &ResourceIdentity,
        refused: &[(String, String)],
        failure: &Option<ArmFailure>,
        seen: &BTreeMap<PodKey, Instant>,
    ) -> Option<Result<PodKey, PodKey>> {
        let Some(k) = &a.resource_key else { return Some(self.mark_assigned(a, obj, seen).await) };
        if state.user_assigned.contains(k) {
            return Some(self.mark_assigned(a, obj, seen).await);
        }
        let note = if let Some((_, why)) = refused.iter().find(|(r, _)| r == k) {
            format!("failed to apply binding: ARM refused identity {k}: {why}")
        } else if let Some(e) = failure {
            format!("failed to apply binding: {e}")
        } else {
            return None;
        };
        self.events.publish(true, events::APPLY_ERROR, note, &self.binding_and_pod(a)).await;
        None
    }

    /// Deletes an assignment unless its identity's removal failed (kept to retry).
    async fn delete_unless_kept(
        &self,
        t: &Target,
        aai: &AzureAssignedIdentity,
        want: &Delta,
        state: &ResourceIdentity,
    ) -> Option<Result<PodKey, PodKey>> {
        if let Some(k) = &aai_identity_key(aai)
            && want.remove.contains(k)
            && state.user_assigned.contains(k)
        {
            let (mut on, pod) = self.removal_refs(aai);
            on.push(self.pod(&pod));
            let note = format!("identity {k} is still on {t}; keeping the assigned identity to retry");
            self.events.publish(true, events::REMOVE_ERROR, note, &on).await;
            return None;
        }
        Some(self.delete(aai, "no pod needs it any more").await)
    }

    /// Sends the PATCHes for `want`, dropping identities ARM refuses and retrying the rest.
    /// Returns the target's state as last known, the refused identities, and a failure.
    async fn apply(
        &self,
        t: &Target,
        mut state: ResourceIdentity,
        want: &mut Delta,
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

    fn retry_at(&self, t: &Target, e: &ArmFailure) -> Option<Instant> {
        match e {
            ArmFailure::Throttled { until, .. } => Some(*until),
            _ => self.arm.throttled_until(&t.subscription),
        }
    }
}
