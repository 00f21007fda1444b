//! `podid explain pod NS/NAME`: the agent's decision — a federated identity first
//! ([`podid_core::federation::decide_federated`]), else the standard or managed one — step by step.
use std::io::Write;
use std::process::ExitCode;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use podid_api::{AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzurePodIdentityException};
use podid_core::agent::{self, Options, Outcome, Pending, Request};
use podid_core::exception::{ExceptReason, except_reason};
use podid_core::federation::{self as core_fed, Federation};
use podid_core::matching::{self, MatchOptions, validate_identity};
use podid_core::scaleset::Target;
use podid_core::{Diagnostic, PodView};

use super::federation::{self, Chain};
use super::{Report, key};
use crate::args::{ExplainPod, Mode};
use crate::error::{Error, KubeContext, Result};
use crate::kube_util::{list_all, split_ref};

/// Everything the decision reads.
struct World {
    pod: PodView,
    bindings: Vec<AzureIdentityBinding>,
    identities: Vec<AzureIdentity>,
    exceptions: Vec<AzurePodIdentityException>,
    assigned: Vec<AzureAssignedIdentity>,
    node: Option<Node>,
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
    Ok(World {
        bindings: list_all(client, None, "AzureIdentityBindings").await?,
        identities: list_all(client, None, "AzureIdentities").await?,
        exceptions: list_all(client, Some(ns), "AzurePodIdentityExceptions").await?,
        assigned,
        node,
        pod,
    })
}

/// `podid explain pod`.
pub(crate) async fn pod(client: &kube::Client, args: &ExplainPod, out: &mut impl Write) -> Result<ExitCode> {
    let (ns, name) = split_ref(&args.pod, "the pod")?;
    let world = load(client, &ns, &name).await?;
    let chain = match federated_outcome(&world, args) {
        Some(Outcome::Serve(identity)) if federation::federation(args.mode).covers(identity) => {
            Some(federation::chain(client, args, &world.pod, identity).await)
        }
        _ => None,
    };
    let report = explain(&world, args, chain);
    report.write(args.output, out)?;
    Ok(ExitCode::SUCCESS)
}

/// The agent's federated decision (`None`: no federated identity is bound; the mode decides).
fn federated_outcome<'a>(w: &'a World, args: &ExplainPod) -> Option<Outcome<'a>> {
    let opts = Options { force_namespaced: args.force_namespaced, mic_namespace: &args.mic_namespace };
    let lookup = |ns: &str, name: &str| {
        w.identities
            .iter()
            .find(|i| i.metadata.namespace.as_deref() == Some(ns) && i.metadata.name.as_deref() == Some(name))
    };
    let bound = core_fed::bound_identities(&w.pod, &w.bindings, lookup, opts);
    let federation: Federation = federation::federation(args.mode);
    core_fed::decide_federated(&w.pod, &Request::default(), &bound, &w.exceptions, opts, federation)
}

fn explain(w: &World, args: &ExplainPod, chain: Option<Chain>) -> Report {
    let mut r = Report::new(format!("pod {} ({} mode)", w.pod.key, mode_name(args.mode)));
    let match_opts = MatchOptions { force_namespaced: args.force_namespaced };
    let opts = Options { force_namespaced: args.force_namespaced, mic_namespace: &args.mic_namespace };
    let desired = matching::desired(std::slice::from_ref(&w.pod), &w.bindings, &w.identities, match_opts);

    r.step("pod", pod_lines(&w.pod));
    let selector = w.pod.binding_selector();
    r.step(
        "label aadpodidbinding",
        vec![match selector {
            Some(s) => format!("{s:?}: bindings with selector {s:?} apply"),
            None => "absent: no binding can select this pod".into(),
        }],
    );
    let except = except_reason(&w.pod, &w.exceptions, opts.mic_namespace);
    r.step("exceptions", exception_lines(w, except.as_ref()));
    let mut bindings = vec![namespace_rule(args)];
    bindings.extend(binding_lines(w, args, &desired.diagnostics));
    r.step("bindings", bindings);
    let missing = chain.as_ref().and_then(|c| c.missing.clone());
    match chain {
        Some(chain) => r.step("federation", chain.lines),
        None if args.mode == Mode::Standard => r.step("assigned identities", assigned_lines(w, &desired)),
        None => {}
    }
    let target = node_target(w);
    r.step("node", vec![node_line(w, &target)]);

    let req = Request::default();
    let outcome = match (federated_outcome(w, args), args.mode) {
        (Some(outcome), _) => outcome,
        (None, Mode::Standard) => agent::decide_standard(&w.pod, &req, &w.assigned, &w.exceptions, opts),
        (None, Mode::Managed) => {
            agent::decide_managed(&w.pod, &req, &w.bindings, &w.identities, &w.exceptions, opts)
        }
        (None, Mode::Federated) => Outcome::Refuse(agent::not_bound(&w.pod, &req)),
    };
    r.verdict = match outcome {
        Outcome::Serve(identity) if federation::federation(args.mode).covers(identity) => {
            r.identity = Some(key(identity));
            let mut v = format!(
                "pod {} gets identity {} (client id {}) through federation, as service account {}/{}",
                w.pod.key,
                key(identity),
                identity.spec.client_id,
                w.pod.key.namespace,
                w.pod.service_account
            );
            if let Some(missing) = missing {
                v.push_str(&format!(" — but Entra ID refuses the exchange: {missing}"));
            }
            v
        }
        Outcome::Serve(identity) => {
            r.identity = Some(key(identity));
            format!(
                "pod {} gets identity {} (client id {})",
                w.pod.key,
                key(identity),
                identity.spec.client_id
            )
        }
        Outcome::Direct(ExceptReason::Exception { name }) => format!(
            "no pod identity: pod {} is excepted by AzurePodIdentityException {}/{name}; the agent passes its \
             requests to IMDS, which answers with the node's own identities",
            w.pod.key, w.pod.key.namespace
        ),
        Outcome::Direct(ExceptReason::Controller) => format!(
            "no pod identity: pod {} is the controller's own pod and reaches IMDS directly",
            w.pod.key
        ),
        Outcome::Refuse(refusal) => {
            let (status, _) = refusal.status(false);
            let why = match (args.mode, w.pod.binding_selector()) {
                (Mode::Managed, Some(s))
                    if !w.bindings.iter().any(|b| {
                        b.spec.selector == s
                            && b.metadata.namespace.as_deref() == Some(w.pod.key.namespace.as_str())
                    }) =>
                {
                    format!(
                        ": no AzureIdentityBinding in namespace {} has selector {s:?} (managed mode reads only the \
                         pod's namespace)",
                        w.pod.key.namespace
                    )
                }
                _ => why_none(w, &desired),
            };
            format!("no identity (the agent answers {status}: {}){why}", refusal.message)
        }
        Outcome::Pending(Pending::Created) => format!(
            "no identity yet: its AzureAssignedIdentity is still Created — the controller has not put the identity on \
             {} yet (check podid-mic's Events and logs); the agent serves it once Assigned, waiting up to 100 s \
             before it answers 404",
            target.unwrap_or_else(|e| e)
        ),
        Outcome::Pending(Pending::NotCreated) if !desired.assignments.is_empty() => {
            let names: Vec<String> = desired.assignments.keys().map(ToString::to_string).collect();
            format!(
                "no identity yet: the controller should create AzureAssignedIdentity {} but none exists (is podid-mic \
                 running?); the agent waits up to 80 s, then answers 404",
                names.join(", ")
            )
        }
        Outcome::Pending(Pending::NotCreated) => format!("no identity{}", why_none(w, &desired)),
    };
    r
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Standard => "standard",
        Mode::Managed => "managed",
        Mode::Federated => "federated",
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
        (Mode::Standard | Mode::Federated, false) => {
            "namespace rule: bindings of any namespace apply, except for identities annotated \
                                    aadpodidentity.k8s.io/Behavior: namespaced"
                .into()
        }
    }
}

fn pod_lines(pod: &PodView) -> Vec<String> {
    let mut lines = vec![format!(
        "node {}, phase {:?}, IP {}",
        pod.node.as_deref().unwrap_or("<not scheduled>"),
        pod.phase,
        pod.ip.map_or("<none>".to_string(), |ip| ip.to_string())
    )];
    if pod.terminating {
        lines.push("terminating: it holds no identities any more".into());
    }
    if !pod.phase.is_live() {
        lines.push("finished or unknown phase: it holds no identities".into());
    }
    if pod.host_network {
        lines.push(
            "hostNetwork: the agent cannot tell its requests apart and refuses them unless excepted".into(),
        );
    }
    lines
}

fn exception_lines(w: &World, except: Option<&ExceptReason>) -> Vec<String> {
    let mut lines: Vec<String> = w
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

/// Each binding with the pod's selector: where it is, its identity, and whether it applies.
fn binding_lines(w: &World, args: &ExplainPod, diagnostics: &[Diagnostic]) -> Vec<String> {
    let Some(selector) = w.pod.binding_selector() else { return vec!["not looked at (no label)".into()] };
    let mut matching: Vec<&AzureIdentityBinding> =
        w.bindings.iter().filter(|b| b.spec.selector == selector).collect();
    matching.sort_by_key(|b| key(*b));
    if matching.is_empty() {
        return vec![format!(
            "no AzureIdentityBinding in any namespace has selector {selector:?}: create one (podid identity add \
             --binding-selector {selector} ...) or fix the pod's label"
        )];
    }
    matching
        .into_iter()
        .map(|b| {
            let bns = b.metadata.namespace.as_deref().unwrap_or_default();
            let place = if bns == w.pod.key.namespace { "same namespace" } else { "other namespace" };
            let identity = w.identities.iter().find(|i| {
                i.metadata.namespace.as_deref() == Some(bns)
                    && i.metadata.name.as_deref() == Some(&b.spec.azure_identity)
            });
            let state = match identity {
                None => format!("identity {bns}/{} does not exist", b.spec.azure_identity),
                Some(i) => match validate_identity(i) {
                    Err(reason) => format!("identity {} is invalid: {reason}", key(i)),
                    Ok((kind, _)) => format!(
                        "identity {} ({}, client id {}{})",
                        key(i),
                        kind.describe(),
                        i.spec.client_id,
                        if i.is_namespaced() { ", namespaced" } else { "" }
                    ),
                },
            };
            let verdict = if args.mode == Mode::Managed && bns != w.pod.key.namespace {
                "ignored: managed mode only reads bindings of the pod's namespace".to_string()
            } else {
                applies(w, b, diagnostics)
            };
            format!("{} ({place}) → {state}: {verdict}", key(b))
        })
        .collect()
}

/// Whether `b` gives the pod its identity, by the controller's own diagnostics.
fn applies(w: &World, b: &AzureIdentityBinding, diagnostics: &[Diagnostic]) -> String {
    let bkey = matching::object_key(b);
    let ikey = podid_core::PodKey::new(bkey.namespace.clone(), b.spec.azure_identity.clone());
    for d in diagnostics {
        let hit = match d {
            Diagnostic::IdentityNotFound { binding, .. } => *binding == bkey,
            Diagnostic::InvalidIdentity { identity, .. } => *identity == ikey,
            Diagnostic::NamespaceMismatch { binding, pod, .. } => *binding == bkey && *pod == w.pod.key,
            Diagnostic::DuplicateIdentityName { dropped, pod, .. } => *dropped == ikey && *pod == w.pod.key,
            _ => false,
        };
        if hit {
            return format!("does not apply — {d}");
        }
    }
    if matching::is_eligible(&w.pod) {
        "applies".into()
    } else {
        "would apply, but the pod is not eligible".into()
    }
}

fn assigned_lines(w: &World, desired: &matching::Desired) -> Vec<String> {
    let mut lines: Vec<String> = w
        .assigned
        .iter()
        .map(|a| {
            let identity = a.spec.azure_identity_ref.as_deref().map_or("<none>".to_string(), key);
            let state = a.state();
            let current = desired.assignments.values().any(|want| podid_core::diff::matches(want, a));
            format!(
                "{} → identity {identity}, node {}, state {}{}",
                key(a),
                a.spec.node_name,
                if state.as_str().is_empty() { "(legacy, usable)" } else { state.as_str() },
                if current { "" } else { " (stale: the controller will rewrite or remove it)" }
            )
        })
        .collect();
    if lines.is_empty() {
        lines.push("none exists for this pod".into());
    }
    for want in desired.assignments.values() {
        if !w.assigned.iter().any(|a| podid_core::diff::matches(want, a)) {
            lines.push(format!(
                "the controller should create {} (identity {})",
                want.key,
                key(&want.identity)
            ));
        }
    }
    lines
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

/// The first reason from podid-core why the pod gets nothing.
fn why_none(w: &World, desired: &matching::Desired) -> String {
    if w.pod.binding_selector().is_none() {
        return ": the pod has no aadpodidbinding label".into();
    }
    if !matching::is_eligible(&w.pod) {
        return ": the pod is not scheduled, terminating or finished".into();
    }
    let relevant = desired.diagnostics.iter().find(|d| match d {
        Diagnostic::InvalidIdentity { identity, .. } => w.bindings.iter().any(|b| {
            Some(b.spec.selector.as_str()) == w.pod.binding_selector()
                && b.metadata.namespace.as_deref() == Some(identity.namespace.as_str())
                && b.spec.azure_identity == identity.name
        }),
        Diagnostic::UnknownNode { .. } => false,
        _ => true,
    });
    relevant.map_or(String::new(), |d| format!(": {d}"))
}
