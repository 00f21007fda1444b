//! `podid explain pod NS/NAME`: the agent's decision ([`podid_core::decision::decide`], the call
//! the agent makes for every token request) rendered step by step from its trace, with what the
//! decision does not need but an operator does (the node's scale set, the federation chain).
use std::io::Write;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use podid_api::names::assigned_identity_name;
use podid_api::{AzureAssignedIdentity, AzureIdentity};
use podid_core::agent::{self, Request};
use podid_core::decision::{self, Candidate, Choice, Decision, Fit, Outcome, Pending, Settings, Step};
use podid_core::exception::ExceptReason;
use podid_core::matching::{MatchOptions, assignment_namespace, validate_identity};
use podid_core::scaleset::Target;
use podid_core::{Mode, PodView, Snapshot};

use super::federation::{self, Chain};
use super::{Report, key};
use crate::args::ExplainPod;
use crate::error::{Error, KubeContext, Result};
use crate::kube_util::{list_all, split_ref};

/// Everything the decision reads, and the pod's node.
pub(crate) struct World {
    pub pod: PodView,
    /// Every binding and identity; the pod's namespace's exceptions; the pod's assignments.
    pub objects: Snapshot,
    pub node: Option<Node>,
}

async fn load(client: &kube::Client, ns: &str, name: &str) -> Result<World> {
    let pod = Api::<Pod>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .doing(|| format!("read pod {ns}/{name}"))?
        .ok_or_else(|| Error::NotFound { kind: "pod", namespace: ns.into(), name: name.into(), hint: "" })?;
    let pod = PodView::from_pod(&pod);
    let node = match &pod.node {
        Some(n) => Api::<Node>::all(client.clone()).get_opt(n).await.doing(|| format!("read node {n}"))?,
        None => None,
    };
    let mut assigned = list_all::<AzureAssignedIdentity>(client, None, "AzureAssignedIdentities").await?;
    assigned.retain(|a| a.spec.pod == pod.key.name && a.spec.pod_namespace == pod.key.namespace);
    let objects = Snapshot {
        bindings: list_all(client, None, "AzureIdentityBindings").await?,
        identities: list_all(client, None, "AzureIdentities").await?,
        exceptions: list_all(client, Some(ns), "AzurePodIdentityExceptions").await?,
        assigned,
    };
    Ok(World { pod, objects, node })
}

/// The agent's settings as `explain` was told them.
pub(crate) fn settings(args: &ExplainPod) -> Settings<'_> {
    Settings {
        mode: args.mode,
        force_namespaced: args.force_namespaced || args.mode == Mode::Managed,
        mic_namespace: &args.mic_namespace,
        release_terminating: args.release_terminating_pods,
        verified_callers: args.verified_callers,
    }
}

/// The request `explain` describes.
pub(crate) fn request(args: &ExplainPod) -> Request<'_> {
    Request {
        client_id: args.client_id.as_deref(),
        resource_id: args.resource_id.as_deref(),
        object_id: None,
    }
}

/// `podid explain pod`.
pub(crate) async fn pod(client: &kube::Client, args: &ExplainPod, out: &mut impl Write) -> Result<ExitCode> {
    let (ns, name) = split_ref(&args.pod, "the pod")?;
    let world = load(client, &ns, &name).await?;
    let d = decision::decide(&world.pod, &request(args), &world.objects, &settings(args));
    let chain = match &d.outcome {
        Outcome::Serve(s) if s.federated => {
            Some(federation::chain(client, args, &world.pod, s.identity).await)
        }
        _ => None,
    };
    explain(&world, args, &d, chain).write(args.output, out)?;
    Ok(ExitCode::SUCCESS)
}

/// Renders the decision `d` (made on `w` with `args`' settings).
pub(crate) fn explain(w: &World, args: &ExplainPod, d: &Decision<'_>, chain: Option<Chain>) -> Report {
    let mut r = Report::new(format!("pod {} ({} mode)", w.pod.key, args.mode));
    r.step("pod", pod_lines(&w.pod, d));
    r.step("request", vec![request_line(&request(args))]);
    r.step("caller", vec![caller_line(&w.pod, args.verified_callers)]);
    for step in &d.trace {
        match step {
            Step::Label(selector) => r.step("label aadpodidbinding", vec![label_line(*selector)]),
            Step::Exception(except) => r.step("exceptions", exception_lines(w, except.as_ref())),
            Step::Bindings(found) => {
                let mut lines = vec![namespace_rule(args)];
                lines.extend(binding_lines(w, found));
                r.step("bindings", lines);
            }
            Step::Assignments(assigned) => r.step("assigned identities", assigned_lines(assigned, d)),
            Step::Chose { identity, choice } => r.step("choice", vec![choice_line(identity, *choice, d)]),
            Step::HostNetwork | Step::ObjectId | Step::Finished | Step::Terminating { .. } => {}
        }
    }
    let missing = chain.as_ref().and_then(|c| c.missing.clone());
    if let Some(chain) = chain {
        r.step("federation", chain.lines);
    }
    let target = node_target(w);
    r.step("node", vec![node_line(w, &target)]);
    // A request from the pod's own address is first attributed to it, as the agent does.
    let unattributed = w.pod.ip.and_then(|ip| agent::find_caller(ip, [&w.pod]).err());
    let outcome = unattributed.map_or_else(|| d.outcome.clone(), Outcome::Refuse);
    r.verdict = verdict(w, args, &outcome, &target, missing, &mut r.identity);
    r
}

/// How the agent knows a call is this pod's.
fn caller_line(pod: &PodView, verified: bool) -> String {
    let ip = pod.ip.map_or_else(|| "its address (none yet)".to_owned(), |ip| ip.to_string());
    match (verified, pod.host_network) {
        (false, false) => format!(
            "by source address {ip} only: a pod that takes this address (NET_RAW, ARP spoofing) would be taken for it; \
             the agent's --verified-callers has the kernel confirm each connection"
        ),
        (false, true) => "hostNetwork: it shares the node's address, so the agent cannot attribute its calls and \
                          refuses them (--verified-callers attributes them by the calling process's cgroup)"
            .into(),
        (true, false) => format!(
            "verified: a connection from {ip} counts as this pod's only if the kernel lists the calling socket in the \
             pod's own network namespace (/proc/<pid>/net/tcp of a process whose cgroup names the pod's UID), \
             checked once per connection"
        ),
        (true, true) => "verified on the node's network: the agent redirects the node's own calls to IMDS too and \
                         finds the calling process (/proc/<pid>/fd) and its cgroup, which names this pod's UID"
            .into(),
    }
}

fn verdict(
    w: &World,
    args: &ExplainPod,
    outcome: &Outcome<'_>,
    target: &std::result::Result<String, String>,
    missing: Option<String>,
    identity: &mut Option<String>,
) -> String {
    let pod = &w.pod.key;
    match outcome {
        Outcome::Serve(s) => {
            *identity = Some(key(s.identity));
            let mut v = format!(
                "pod {pod} gets identity {} (client id {})",
                key(s.identity),
                s.identity.spec.client_id
            );
            if s.federated {
                v.push_str(&format!(
                    " through federation, as service account {}/{}",
                    pod.namespace, w.pod.service_account
                ));
            }
            if let Some(missing) = missing {
                v.push_str(&format!(" — but Entra ID refuses the exchange: {missing}"));
            }
            v
        }
        Outcome::Direct(ExceptReason::Exception { name }) => format!(
            "no pod identity: pod {pod} is excepted by AzurePodIdentityException {}/{name}; the agent passes its \
             requests to IMDS, which answers with the node's own identities",
            pod.namespace
        ),
        Outcome::Direct(ExceptReason::Controller) => {
            format!("no pod identity: pod {pod} is the controller's own pod and reaches IMDS directly")
        }
        Outcome::Refuse(refusal) => {
            let (status, _) = refusal.answer_status(args.identity_not_found_status, false);
            format!("no identity (the agent answers {status} at once: {})", refusal.message)
        }
        Outcome::Pending(wait) if wait.state == Pending::Created => format!(
            "no identity yet: its AzureAssignedIdentity is still Created — the controller has not put the identity on \
             {} yet (check podid-mic's Events and logs); the agent serves it once Assigned, waiting up to 100 s \
             before it answers {}",
            target.clone().unwrap_or_else(|e| e),
            args.identity_not_found_status
        ),
        Outcome::Pending(wait) => format!(
            "no identity yet: the controller should create AzureAssignedIdentity {} but none exists (is podid-mic \
             running?); the agent waits up to 80 s, then answers {}",
            expected_assignment(&w.pod, wait.identity, args),
            args.identity_not_found_status
        ),
    }
}

/// The assigned identity the controller writes for `pod` and `identity`.
fn expected_assignment(pod: &PodView, identity: &AzureIdentity, args: &ExplainPod) -> String {
    let opts = MatchOptions { force_namespaced: args.force_namespaced, ..MatchOptions::default() };
    let name = identity.metadata.name.as_deref().unwrap_or_default();
    format!(
        "{}/{}",
        assignment_namespace(identity, opts),
        assigned_identity_name(&pod.key.name, &pod.key.namespace, name)
    )
}

fn request_line(req: &Request<'_>) -> String {
    if req.names_identity() {
        format!("asks for {} (--client-id / --resource-id)", req.asked())
    } else {
        "names no identity (no client_id or msi_res_id): the pod's default identity".into()
    }
}

fn label_line(selector: Option<&str>) -> String {
    match selector {
        Some(s) => format!("{s:?}: bindings with selector {s:?} apply"),
        None => "absent: no binding can select this pod".into(),
    }
}

fn namespace_rule(args: &ExplainPod) -> String {
    match (args.mode, args.force_namespaced) {
        (Mode::Managed, _) => {
            "namespace rule: managed mode reads only bindings and identities of the pod's namespace".into()
        }
        (Mode::Standard | Mode::Federated, true) => {
            "namespace rule: --force-namespaced: pod, binding and identity must share one namespace".into()
        }
        (Mode::Standard | Mode::Federated, false) => "namespace rule: bindings of any namespace apply, except for \
                                                       identities annotated aadpodidentity.k8s.io/Behavior: namespaced"
            .into(),
    }
}

fn pod_lines(pod: &PodView, d: &Decision<'_>) -> Vec<String> {
    let mut lines = vec![format!(
        "node {}, phase {:?}, IP {}",
        pod.node.as_deref().unwrap_or("<not scheduled>"),
        pod.phase,
        pod.ip.map_or("<none>".to_string(), |ip| ip.to_string())
    )];
    for step in &d.trace {
        lines.push(match step {
            Step::Terminating { released: false } => "terminating: it keeps its identities until its containers have \
                                                      stopped (--release-terminating-pods would release them now)"
                .into(),
            Step::Terminating { released: true } => {
                "terminating, and the agent runs with --release-terminating-pods: it holds no identities any more".into()
            }
            Step::Finished => "finished or unknown phase: it holds no identities".into(),
            Step::HostNetwork => "hostNetwork: without --verified-callers the agent cannot tell its requests apart \
                                  and refuses them unless excepted"
                .into(),
            Step::ObjectId => "the request selects by object_id, which pod identity refuses".into(),
            _ => continue,
        });
    }
    lines
}

fn exception_lines(w: &World, except: Option<&ExceptReason>) -> Vec<String> {
    let mut lines: Vec<String> = w
        .objects
        .exceptions
        .iter()
        .map(|e| format!("{} (podLabels {})", key(e), crate::exception::show(&e.spec.pod_labels)))
        .collect();
    if lines.is_empty() {
        lines.push(format!("none in namespace {}", w.pod.key.namespace));
    }
    lines.push(match except {
        Some(ExceptReason::Exception { name }) => format!("matched: {name} — the pod is excepted"),
        Some(ExceptReason::Controller) => {
            "the pod is the controller's own (ReplicaSet mic-*): excepted".into()
        }
        None => "none matches this pod".into(),
    });
    lines
}

/// Each binding with the pod's selector, oldest first: where it is, its identity, what it gives.
fn binding_lines(w: &World, found: &[Candidate<'_>]) -> Vec<String> {
    let Some(selector) = w.pod.binding_selector() else { return vec!["not looked at (no label)".into()] };
    if found.is_empty() {
        return vec![format!(
            "no AzureIdentityBinding in any namespace has selector {selector:?}: create one (podid identity add \
             --binding-selector {selector} ...) or fix the pod's label"
        )];
    }
    found.iter().map(|c| binding_line(w, c)).collect()
}

fn binding_line(w: &World, c: &Candidate<'_>) -> String {
    let b = c.binding;
    let bns = b.metadata.namespace.as_deref().unwrap_or_default();
    let place = if bns == w.pod.key.namespace { "same namespace" } else { "other namespace" };
    let created =
        b.metadata.creation_timestamp.as_ref().map(|t| format!(" (created {})", t.0)).unwrap_or_default();
    let identity = match &c.fit {
        Fit::IdentityMissing => format!("identity {bns}/{} does not exist", b.spec.azure_identity),
        Fit::OtherNamespace => format!("identity {bns}/{}", b.spec.azure_identity),
        Fit::Invalid { identity, reason } => format!("identity {} is invalid: {reason}", key(*identity)),
        Fit::Applies(i) | Fit::NamespaceRule { identity: i, .. } | Fit::DuplicateName { identity: i, .. } => {
            identity_line(i, c.federated)
        }
    };
    let verdict = match &c.fit {
        Fit::Applies(_) => "applies".to_string(),
        Fit::OtherNamespace => "ignored: managed mode only reads bindings of the pod's namespace".to_string(),
        _ => c.diagnostic(&w.pod).map(|d| format!("does not apply — {d}")).unwrap_or_default(),
    };
    format!("{} ({place}) → {identity}: {verdict}{created}", key(b))
}

fn identity_line(i: &AzureIdentity, federated: bool) -> String {
    let kind = validate_identity(i).map(|(k, _)| k.describe()).unwrap_or("identity");
    format!(
        "identity {} ({kind}, client id {}{}{})",
        key(i),
        i.spec.client_id,
        if i.is_namespaced() { ", namespaced" } else { "" },
        if federated { ", federated" } else { "" }
    )
}

fn assigned_lines(assigned: &[&AzureAssignedIdentity], d: &Decision<'_>) -> Vec<String> {
    let mut lines: Vec<String> = assigned
        .iter()
        .map(|a| {
            let identity = a.spec.azure_identity_ref.as_deref().map_or("<none>".to_string(), key);
            let state = a.state();
            let state = if state.as_str().is_empty() { "(legacy, usable)" } else { state.as_str() };
            format!("{} → identity {identity}, node {}, state {state}", key(*a), a.spec.node_name)
        })
        .collect();
    if lines.is_empty() {
        lines.push("none exists for this pod".into());
    }
    if let Outcome::Pending(wait) = &d.outcome
        && wait.state == Pending::NotCreated
    {
        lines.push(format!("the controller should create one for identity {}", key(wait.identity)));
    }
    lines
}

fn choice_line(identity: &AzureIdentity, choice: Choice, d: &Decision<'_>) -> String {
    match choice {
        Choice::Requested => {
            format!("{} is the first identity the pod has that the request names", key(identity))
        }
        Choice::Default => {
            let others = d.has().len().saturating_sub(1);
            format!(
                "default: {} is the identity of the pod's oldest binding that applies{} — a binding added later never \
                 changes it; request another by client_id",
                key(identity),
                if others > 0 { format!(" ({others} more)") } else { String::new() }
            )
        }
    }
}

fn node_line(w: &World, target: &std::result::Result<String, String>) -> String {
    match (target, &w.pod.node) {
        (Ok(t), Some(node)) => format!("node {node} runs on {t}"),
        (Ok(t), None) => t.clone(),
        (Err(e), _) => e.clone(),
    }
}

/// The scale set or VM of the pod's node, or why it is unknown.
fn node_target(w: &World) -> std::result::Result<String, String> {
    let Some(name) = &w.pod.node else { return Err("the pod is not scheduled to a node".into()) };
    let Some(node) = &w.node else { return Err(format!("node {name} does not exist")) };
    let provider = node.spec.as_ref().and_then(|s| s.provider_id.as_deref()).unwrap_or_default();
    if provider.is_empty() {
        return Err(format!(
            "node {name} has no spec.providerID: the controller cannot find its scale set or VM"
        ));
    }
    Target::from_provider_id(provider).map(|t| t.to_string()).map_err(|e| format!("node {name}: {e}"))
}
