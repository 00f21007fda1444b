//! **Which pod gets which identity** — the one decision. The agent answers every token request
//! with [`decide`], its prefetcher asks [`servable`] (the same rules, for every identity at once),
//! and `podid explain pod` prints the [`Decision::trace`] of the same call; the controller's
//! [`crate::matching::desired`] applies the same binding rules ([`crate::candidates`]) to all pods.
//!
//! ```text
//!  pod ─▶ 1 exception in its namespace (or the controller's own pod)  ─▶ Direct: node's IMDS
//!         2 hostNetwork                                              ─▶ Refuse 403
//!           object_id in the request                                 ─▶ Refuse 400
//!           finished; terminating with --release-terminating-pods    ─▶ Refuse 404
//!         3 label aadpodidbinding=S (none ─▶ Refuse 404 at once)
//!         4 bindings with selector S, oldest first ─▶ Candidate: Applies(identity) or why not
//!         5 choose: the first applying identity the request names (client_id / msi_res_id,
//!           case-insensitive) — with no selector, the first of all: the DEFAULT identity,
//!           that of the pod's oldest binding, so adding a binding never changes it
//!           nothing chosen ─▶ Refuse 404 at once: what was asked, what the pod has, what to do
//!         6 serve the chosen identity:
//!             federated (annotated, or every type 0 in federated mode) ─▶ Serve: token exchange
//!             managed or federated mode                                ─▶ Serve: node IMDS / SP
//!             standard mode: its AzureAssignedIdentity is Assigned     ─▶ Serve
//!                                               is Created            ─▶ Pending(Created)
//!                                               does not exist yet    ─▶ Pending(NotCreated)
//! ```
//!
//! A pending decision is the only one that waits: the agent re-decides on every change of its
//! index and, at the end of its budget, refuses with [`timed_out`]. Everything else is answered
//! at once, so an SDK shows podid's reason instead of retrying for minutes.
//!
//! A terminating pod (deletionTimestamp set, phase still Pending or Running) keeps its identities
//! until its containers have stopped, in the controller and here, unless
//! `--release-terminating-pods` is set (upstream released them at deletion).
use podid_api::{AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding};

use crate::agent::{Request, allowed_namespace, host_network_refusal, wanted};
pub use crate::candidates::{Candidate, Fit, Settings, age_order, candidates};
use crate::exception::{ExceptReason, except_reason};
use crate::matching::object_key;
use crate::mode::Mode;
use crate::refusal::{Reason, Refusal, RefusalKind, identities_words, identity_words};
use crate::world::Objects;
use crate::{PodView, redact};

/// How the chosen identity was picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The request named it (client id or resource id).
    Requested,
    /// The request named none: the identity of the pod's oldest binding that applies.
    Default,
}

/// An identity to serve.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Served<'a> {
    /// In standard mode the copy embedded in the assignment (what the controller put on the
    /// node); otherwise the identity object itself.
    pub identity: &'a AzureIdentity,
    /// The binding that gives it (`None`: an assignment whose binding the agent has not seen).
    pub binding: Option<&'a AzureIdentityBinding>,
    /// Through workload identity federation (no assignment, no scale set).
    pub federated: bool,
    /// Standard mode: the `Assigned` assignment it is served from.
    pub assignment: Option<&'a AzureAssignedIdentity>,
    pub choice: Choice,
}

/// In standard mode: what the assignment of the chosen identity is waiting for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pending {
    /// No assigned identity exists yet: the controller has to create it.
    NotCreated,
    /// It exists but is still `Created`: the controller has not finished the ARM assignment.
    Created,
}

/// A standard-mode decision that can still turn into a token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wait<'a> {
    pub state: Pending,
    pub identity: &'a AzureIdentity,
    pub binding: Option<&'a AzureIdentityBinding>,
    pub assignment: Option<&'a AzureAssignedIdentity>,
    pub choice: Choice,
}

/// The answer to one request.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome<'a> {
    /// Excepted pod: the agent fetches from the node's IMDS with the request's `client_id`.
    Direct(ExceptReason),
    Serve(Served<'a>),
    /// Wait for the next change of the index, then decide again; at the end of the budget
    /// answer [`timed_out`].
    Pending(Wait<'a>),
    Refuse(Refusal),
}

/// One step of the decision, in the order it was taken.
#[derive(Clone, Debug, PartialEq)]
pub enum Step<'a> {
    /// The exception (or controller rule) that matched, if any.
    Exception(Option<ExceptReason>),
    /// The pod is a hostNetwork pod.
    HostNetwork,
    /// The request selected by `object_id`.
    ObjectId,
    /// The pod has finished (phase not Pending or Running).
    Finished,
    /// The pod is terminating; `released`: `--release-terminating-pods` is set.
    Terminating { released: bool },
    /// The pod's `aadpodidbinding` label.
    Label(Option<&'a str>),
    /// Every binding with the pod's selector, oldest first, and what it gives the pod.
    Bindings(Vec<Candidate<'a>>),
    /// Standard mode: the pod's assigned identities.
    Assignments(Vec<&'a AzureAssignedIdentity>),
    /// The identity the decision settled on.
    Chose { identity: &'a AzureIdentity, choice: Choice },
}

/// The outcome and the steps that led to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision<'a> {
    pub outcome: Outcome<'a>,
    pub trace: Vec<Step<'a>>,
}

impl<'a> Decision<'a> {
    /// The bindings step, if the decision got that far.
    pub fn candidates(&self) -> &[Candidate<'a>] {
        self.trace
            .iter()
            .find_map(|s| match s {
                Step::Bindings(c) => Some(c.as_slice()),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The identities the pod's bindings give it, default first.
    pub fn has(&self) -> Vec<&'a AzureIdentity> {
        self.candidates().iter().filter_map(Candidate::applied).collect()
    }
}

/// Decides one request of `pod` (see the module header).
pub fn decide<'a>(
    pod: &'a PodView,
    req: &Request<'_>,
    objects: &'a impl Objects,
    s: &Settings<'_>,
) -> Decision<'a> {
    let mut trace = Vec::with_capacity(4);
    if let Some(outcome) = preflight(pod, req, objects, s, &mut trace) {
        return Decision { outcome, trace };
    }
    let found = candidates(pod, objects, s);
    let mut assignments = Vec::new();
    let chosen = found.iter().find_map(|c| c.applied().filter(|i| wanted(i, req)).map(|i| (c, i)));
    let choice = if req.names_identity() { Choice::Requested } else { Choice::Default };
    let outcome = match chosen {
        Some((c, identity)) => serve_or_wait(pod, c, identity, choice, objects, s, &mut assignments),
        None => unchosen(pod, req, &found, objects, s, &mut assignments),
    };
    let chose = chosen.map(|(_, identity)| Step::Chose { identity, choice });
    trace.push(Step::Bindings(found));
    // A federated identity is exchanged, never assigned: there is no assignment step to show.
    let federated = matches!(&outcome, Outcome::Serve(served) if served.federated);
    if s.mode == Mode::Standard && !federated {
        trace.push(Step::Assignments(assignments));
    }
    trace.extend(chose);
    Decision { outcome, trace }
}

/// Every identity `pod` would be served right now, whichever it asked for (prefetch's view).
pub fn servable<'a>(pod: &'a PodView, objects: &'a impl Objects, s: &Settings<'_>) -> Vec<Served<'a>> {
    let req = Request::default();
    if preflight(pod, &req, objects, s, &mut Vec::new()).is_some() {
        return Vec::new();
    }
    let mut out: Vec<Served<'a>> = Vec::new();
    for (c, identity) in candidates(pod, objects, s).iter().filter_map(|c| Some((c, c.applied()?))) {
        if let Outcome::Serve(served) =
            serve_or_wait(pod, c, identity, Choice::Requested, objects, s, &mut Vec::new())
            && !out.iter().any(|o| object_key(o.identity) == object_key(served.identity))
        {
            out.push(served);
        }
    }
    out
}

/// Steps 1–3: exceptions, callers that get nothing whatever they ask, the label.
fn preflight<'a>(
    pod: &'a PodView,
    req: &Request<'_>,
    objects: &'a impl Objects,
    s: &Settings<'_>,
    trace: &mut Vec<Step<'a>>,
) -> Option<Outcome<'a>> {
    let except = except_reason(pod, objects.exceptions_in(&pod.key.namespace), s.mic_namespace);
    trace.push(Step::Exception(except.clone()));
    if let Some(reason) = except {
        return Some(Outcome::Direct(reason));
    }
    let refuse = |r| Some(Outcome::Refuse(r));
    if pod.host_network && !s.verified_callers {
        trace.push(Step::HostNetwork);
        return refuse(host_network_refusal(pod.ip.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into())));
    }
    if req.object_id.is_some() {
        trace.push(Step::ObjectId);
        return refuse(Refusal::new(
            RefusalKind::BadRequest,
            Reason::ObjectId,
            "object_id is not supported by pod identity: select the identity with client_id or msi_res_id",
        ));
    }
    if !pod.phase.is_live() {
        trace.push(Step::Finished);
        return refuse(finished(pod));
    }
    if pod.terminating {
        trace.push(Step::Terminating { released: s.release_terminating });
        if s.release_terminating {
            return refuse(terminating(pod, req));
        }
    }
    let selector = pod.binding_selector();
    trace.push(Step::Label(selector));
    match selector {
        None => refuse(no_label(pod, req)),
        Some(_) => None,
    }
}

/// Step 6 for the chosen candidate.
fn serve_or_wait<'a>(
    pod: &PodView,
    c: &Candidate<'a>,
    identity: &'a AzureIdentity,
    choice: Choice,
    objects: &'a impl Objects,
    s: &Settings<'_>,
    assignments: &mut Vec<&'a AzureAssignedIdentity>,
) -> Outcome<'a> {
    let direct =
        Served { identity, binding: Some(c.binding), federated: c.federated, assignment: None, choice };
    if c.federated || s.mode != Mode::Standard {
        return Outcome::Serve(direct);
    }
    assignments.extend(objects.assigned_to(&pod.key));
    let key = object_key(identity);
    let mine = assignments.iter().copied().filter_map(|a| Some((a, a.spec.azure_identity_ref.as_deref()?)));
    let mut state = Pending::NotCreated;
    let mut waiting_on = None;
    for (a, embedded) in mine.filter(|(_, i)| object_key(*i) == key) {
        if a.state().is_usable() {
            return Outcome::Serve(Served { identity: embedded, assignment: Some(a), ..direct });
        }
        if a.state() == AssignedState::Created {
            state = Pending::Created;
            waiting_on = Some(a);
        }
    }
    Outcome::Pending(Wait { state, identity, binding: Some(c.binding), assignment: waiting_on, choice })
}

/// Step 5 found nothing the request names among the applying bindings.
fn unchosen<'a>(
    pod: &PodView,
    req: &Request<'_>,
    found: &[Candidate<'a>],
    objects: &'a impl Objects,
    s: &Settings<'_>,
    assignments: &mut Vec<&'a AzureAssignedIdentity>,
) -> Outcome<'a> {
    if s.mode == Mode::Standard
        && let Some(o) = unbound_assignment(pod, req, objects, s, assignments)
    {
        return o;
    }
    let invalid_federated = found.iter().find_map(|c| match &c.fit {
        Fit::Invalid { identity, reason } if c.federated && wanted(identity, req) => Some(reason.clone()),
        _ => None,
    });
    match invalid_federated {
        Some(reason) => {
            Outcome::Refuse(Refusal::new(RefusalKind::Forbidden, Reason::InvalidIdentity, reason))
        }
        None => Outcome::Refuse(not_found(pod, req, found)),
    }
}

/// Standard mode: an assignment of a requested identity whose binding the agent has not seen
/// (its binding watch lags the controller's, or the binding was just deleted and the controller
/// is about to remove the assignment). It is served while it lasts, as upstream did.
fn unbound_assignment<'a>(
    pod: &PodView,
    req: &Request<'_>,
    objects: &'a impl Objects,
    s: &Settings<'_>,
    assignments: &mut Vec<&'a AzureAssignedIdentity>,
) -> Option<Outcome<'a>> {
    assignments.extend(objects.assigned_to(&pod.key));
    let mut usable: Vec<(&AzureAssignedIdentity, &AzureIdentity)> = assignments
        .iter()
        .copied()
        .filter_map(|a| Some((a, a.spec.azure_identity_ref.as_deref()?)))
        .filter(|(_, i)| wanted(i, req) && allowed_namespace(i, pod, s.force_namespaced))
        .filter(|(_, i)| !s.mode.federation().covers(i))
        .collect();
    usable.sort_by(|(a, _), (b, _)| {
        let age = |x: &'a AzureAssignedIdentity| x.spec.azure_binding_ref.as_deref().map(age_order);
        age(a).cmp(&age(b))
    });
    let choice = if req.names_identity() { Choice::Requested } else { Choice::Default };
    if let Some((a, identity)) = usable.iter().find(|(a, _)| a.state().is_usable()) {
        let served = Served { identity, binding: None, federated: false, assignment: Some(a), choice };
        return Some(Outcome::Serve(served));
    }
    let (a, identity) = usable.into_iter().find(|(a, _)| a.state() == AssignedState::Created)?;
    Some(Outcome::Pending(Wait {
        state: Pending::Created,
        identity,
        binding: None,
        assignment: Some(a),
        choice,
    }))
}

// === refusals ===

fn finished(pod: &PodView) -> Refusal {
    Refusal::new(
        RefusalKind::NotFound,
        Reason::Finished,
        format!("pod {} has finished (phase {:?}): a finished pod holds no identities", pod.key, pod.phase),
    )
}

fn terminating(pod: &PodView, req: &Request<'_>) -> Refusal {
    Refusal::new(
        RefusalKind::NotFound,
        Reason::Terminating,
        format!(
            "no azure identity found for request {} (pod {}): the pod is terminating and the agent runs with \
             --release-terminating-pods, which releases a pod's identities as soon as it is deleted. To let \
             terminating pods finish their work with their identities, run the agent without it",
            req.asked(),
            pod.key
        ),
    )
}

fn no_label(pod: &PodView, req: &Request<'_>) -> Refusal {
    Refusal::new(
        RefusalKind::NotFound,
        Reason::NoLabel,
        format!(
            "no azure identity found for request {} (pod {}): the pod has no aadpodidbinding label, so no \
             AzureIdentityBinding selects it. To fix: label the pod aadpodidbinding=<selector of a binding> (podid \
             identity add --binding-selector <selector> ... creates a binding)",
            req.asked(),
            pod.key
        ),
    )
}

/// "No identity for this request": what was asked, what the pod has, what to do.
pub fn not_found(pod: &PodView, req: &Request<'_>, found: &[Candidate<'_>]) -> Refusal {
    let selector = pod.binding_selector().unwrap_or_default();
    let ns = &pod.key.namespace;
    let applying: Vec<&AzureIdentity> = found.iter().filter_map(Candidate::applied).collect();
    let why_not: Vec<String> =
        found.iter().filter_map(|c| c.diagnostic(pod)).take(5).map(|d| d.to_string()).collect();
    let (reason, has, todo) = if found.is_empty() {
        (
            Reason::NoBinding,
            format!("no AzureIdentityBinding has selector {selector:?} (the pod's aadpodidbinding label)"),
            format!(
                "create one (podid identity add -n {ns} --binding-selector {selector} ...) or change the pod's label"
            ),
        )
    } else if applying.is_empty() {
        (
            Reason::NoUsableBinding,
            format!("its bindings give it no identity: {}", why_not.join("; ")),
            format!(
                "fix the bindings or identities named above (podid explain pod {} shows each step)",
                pod.key
            ),
        )
    } else {
        let blocked: Vec<String> = found
            .iter()
            .filter(|c| req.names_identity() && fit_identity(c).is_some_and(|i| wanted(i, req)))
            .filter_map(|c| c.diagnostic(pod))
            .map(|d| d.to_string())
            .collect();
        let mut has = match applying.as_slice() {
            [only] => format!("the pod has only {}", identity_words(only)),
            all => format!(
                "the pod has {} (default {})",
                identities_words(all.iter().copied()),
                object_key(all[0])
            ),
        };
        if !blocked.is_empty() {
            has.push_str(&format!("; the requested one is not given to it: {}", blocked.join("; ")));
        }
        (
            Reason::NotBound,
            has,
            format!(
                "ask for one of these (or for none, to get the default), or bind the requested identity with an \
                 AzureIdentityBinding with selector {selector:?}"
            ),
        )
    };
    Refusal::new(
        RefusalKind::NotFound,
        reason,
        format!(
            "no azure identity found for request {} (pod {}): {has}. To fix: {todo}",
            req.asked(),
            pod.key
        ),
    )
}

fn fit_identity<'a>(c: &Candidate<'a>) -> Option<&'a AzureIdentity> {
    match &c.fit {
        Fit::Applies(i) | Fit::Invalid { identity: i, .. } | Fit::NamespaceRule { identity: i, .. } => {
            Some(i)
        }
        Fit::DuplicateName { identity, .. } => Some(identity),
        Fit::OtherNamespace | Fit::IdentityMissing => None,
    }
}

/// The refusal after waiting `waited_secs` for a standard-mode assignment (upstream's wording,
/// then what is missing and where to look).
pub fn timed_out(pod: &PodView, req: &Request<'_>, wait: &Wait<'_>, waited_secs: u64) -> Refusal {
    let prefix =
        req.client_id.map(|c| format!("clientID in request: {}, ", redact::client_id(c))).unwrap_or_default();
    let identity = identity_words(wait.identity);
    let binding = wait.binding.map(|b| format!(" (binding {})", object_key(b))).unwrap_or_default();
    let (state, reason, why) = match wait.state {
        Pending::NotCreated => (
            "CREATED",
            Reason::NotAssigned,
            format!(
                "the controller has not created the AzureAssignedIdentity for identity {identity}{binding}: is podid-mic \
                 running, and does it watch namespace {}?",
                pod.key.namespace
            ),
        ),
        Pending::Created => (
            "ASSIGNED",
            Reason::StillCreated,
            format!(
                "AzureAssignedIdentity {} for identity {identity} is still Created: the controller has not put the \
                 identity on the node's scale set or VM yet",
                wait.assignment.map(|a| object_key(a).to_string()).unwrap_or_default()
            ),
        ),
    };
    Refusal::new(
        RefusalKind::NotFound,
        reason,
        format!(
            "{prefix}getting assigned identities for pod {} in {state} state failed after {waited_secs}s: {why}. \
             Check MIC pod logs and Events for identity assignment errors",
            pod.key
        ),
    )
}
