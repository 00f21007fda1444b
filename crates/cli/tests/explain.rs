//! `podid explain pod|identity`: the decision chain against objects in a real API server, with
//! the test playing kubelet and controller (it writes pod status and assigned identities).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use podid_api::names::assigned_identity_name;
use podid_api::{
    AzureAssignedIdentity, AzureAssignedIdentitySpec, AzureAssignedIdentityStatus, AzureIdentity,
    AzureIdentityBinding, AzureIdentitySpec, BEHAVIOR_ANNOTATION, BEHAVIOR_NAMESPACED,
};
use podid_testkit::{NodeBuilder, PodBuilder};
use support::{podid, resource_id, setup};

const CLIENT: &str = "00000000-0000-4000-8000-0000000000aa";

/// A node on scale set `vmss0` and a running pod `app` on it, with `labels`.
async fn pod(client: &kube::Client, ns: &str, labels: &[(&str, &str)]) -> String {
    let node = format!("{ns}-n1");
    NodeBuilder::new(&node).vmss("sub1", "rg1", "vmss0", 0).create(client).await.unwrap();
    let mut builder = PodBuilder::new(ns, "app").node(&node).ip("10.244.0.7".parse().unwrap());
    for (k, v) in labels {
        builder = builder.label(*k, *v);
    }
    builder.create(client).await.unwrap();
    format!("{ns}/app")
}

/// `podid identity add` for identity `name` with selector `selector`.
async fn add_identity(client: &kube::Client, ns: &str, name: &str, selector: &str) {
    let id = resource_id(name);
    podid(
        client,
        &[
            "identity",
            "add",
            "-n",
            ns,
            "--name",
            name,
            "--identity-resource-id",
            &id,
            "--client-id",
            CLIENT,
            "--binding-selector",
            selector,
        ],
    )
    .await
    .ok();
}

/// Writes the assigned identity the controller would write, in `state`.
async fn assign(client: &kube::Client, ns: &str, identity: &str, state: &str) {
    let identity: AzureIdentity = Api::namespaced(client.clone(), ns).get(identity).await.unwrap();
    let binding: AzureIdentityBinding = Api::namespaced(client.clone(), ns)
        .get(&format!("{}-binding", identity.metadata.name.as_deref().unwrap()))
        .await
        .unwrap();
    let name = assigned_identity_name("app", ns, identity.metadata.name.as_deref().unwrap());
    let aai = AzureAssignedIdentity {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some("default".into()),
            labels: Some(BTreeMap::from([("nodename".into(), format!("{ns}-n1"))])),
            ..Default::default()
        },
        spec: AzureAssignedIdentitySpec {
            azure_identity_ref: Some(Box::new(identity)),
            azure_binding_ref: Some(Box::new(binding)),
            pod: "app".into(),
            pod_namespace: ns.into(),
            node_name: format!("{ns}-n1"),
            ..Default::default()
        },
        status: Some(AzureAssignedIdentityStatus { status: state.into(), ..Default::default() }),
    };
    Api::<AzureAssignedIdentity>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &aai)
        .await
        .unwrap();
}

fn verdict(out: &str) -> &str {
    out.lines().find_map(|l| l.strip_prefix("VERDICT: ")).unwrap_or_else(|| panic!("no verdict in:\n{out}"))
}

#[tokio::test]
async fn bound_pod_with_an_assigned_identity_gets_it() {
    let (_, client, ns) = setup("explain-bound").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    assign(&client, &ns, "web", "Assigned").await;
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert_eq!(verdict(&out), format!("pod {pod} gets identity {ns}/web (client id {CLIENT})"), "{out}");
    assert!(
        out.contains(&format!(
            "{ns}/web-binding (same namespace) → identity {ns}/web (user-assigned managed identity"
        )),
        "{out}"
    );
    assert!(out.contains("state Assigned"), "{out}");
    assert!(
        out.contains("runs on /subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0"),
        "{out}"
    );
}

#[tokio::test]
async fn bound_pod_gets_its_identity_in_managed_mode_without_assignments() {
    let (_, client, ns) = setup("explain-managed").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    let out = podid(&client, &["explain", "pod", &pod, "--mode", "managed", "--force-namespaced"]).await.ok();
    assert_eq!(verdict(&out), format!("pod {pod} gets identity {ns}/web (client id {CLIENT})"), "{out}");
}

#[tokio::test]
async fn pod_without_the_label_gets_nothing() {
    let (_, client, ns) = setup("explain-no-label").await;
    let pod = pod(&client, &ns, &[("app", "web")]).await;
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).starts_with(&format!(
            "no identity (the agent answers 400 at once: no azure identity found for request any identity (pod {pod}): \
             the pod has no aadpodidbinding label"
        )),
        "{out}"
    );
    assert!(out.contains("absent: no binding can select this pod"), "{out}");
}

#[tokio::test]
async fn label_without_a_binding_is_explained() {
    let (_, client, ns) = setup("explain-no-binding").await;
    let selector = format!("{ns}-nothing");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).contains(&format!(
            "no AzureIdentityBinding has selector {selector:?} (the pod's aadpodidbinding label)"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn binding_to_a_missing_identity_is_explained() {
    let (_, client, ns) = setup("explain-missing-identity").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    Api::<AzureIdentity>::namespaced(client.clone(), &ns).delete("web", &Default::default()).await.unwrap();
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).contains(&format!(
            "its bindings give it no identity: AzureIdentityBinding {ns}/web-binding refers to AzureIdentity \"web\", \
             which does not exist in namespace {ns}"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("identity {ns}/web does not exist")), "{out}");
}

#[tokio::test]
async fn namespaced_identity_is_not_used_across_namespaces() {
    let (cluster, client, ns) = setup("explain-namespaced").await;
    let other = cluster.namespace("explain-namespaced-id").await.unwrap();
    let selector = format!("{ns}-shared");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    let identity = AzureIdentity {
        metadata: ObjectMeta {
            name: Some("shared".into()),
            annotations: Some(BTreeMap::from([(BEHAVIOR_ANNOTATION.into(), BEHAVIOR_NAMESPACED.into())])),
            ..Default::default()
        },
        spec: AzureIdentitySpec {
            resource_id: resource_id("shared"),
            client_id: CLIENT.into(),
            ..Default::default()
        },
        status: None,
    };
    Api::<AzureIdentity>::namespaced(client.clone(), &other)
        .create(&PostParams::default(), &identity)
        .await
        .unwrap();
    add_identity(&client, &other, "shared", &selector).await; // adds the binding; the identity exists already
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).contains(&format!(
            "pod {pod} may not use AzureIdentity {other}/shared through binding {other}/shared-binding: the identity is \
             annotated aadpodidentity.k8s.io/Behavior: namespaced, so pod, binding and identity must share one namespace"
        )),
        "{out}"
    );
    assert!(out.contains(&format!("{other}/shared-binding (other namespace)")), "{out}");
}

#[tokio::test]
async fn managed_mode_ignores_bindings_of_other_namespaces() {
    let (cluster, client, ns) = setup("explain-managed-other").await;
    let other = cluster.namespace("explain-managed-other-id").await.unwrap();
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &other, "web", &selector).await;
    let out = podid(&client, &["explain", "pod", &pod, "--mode", "managed"]).await.ok();
    assert!(
        verdict(&out).starts_with(&format!(
            "no identity (the agent answers 400 at once: no azure identity found for request any identity (pod {pod}): \
             its bindings give it no identity: binding {other}/web-binding is ignored for pod {pod}: managed mode reads \
             only the bindings of the pod's own namespace ({ns})"
        )),
        "{out}"
    );
    assert!(out.contains("ignored: managed mode only reads bindings of the pod's namespace"), "{out}");
}

#[tokio::test]
async fn force_namespaced_refuses_a_binding_of_another_namespace() {
    let (cluster, client, ns) = setup("explain-force-ns").await;
    let other = cluster.namespace("explain-force-ns-id").await.unwrap();
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &other, "web", &selector).await;
    let plain = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        plain.contains(&format!("{other}/web-binding (other namespace)")) && plain.contains(": applies"),
        "{plain}"
    );
    let out = podid(&client, &["explain", "pod", &pod, "--force-namespaced"]).await.ok();
    assert!(
        verdict(&out).contains(&format!(
            "pod {pod} may not use AzureIdentity {other}/web through binding {other}/web-binding: podid runs with \
             --forceNamespaced, so pod, binding and identity must share one namespace"
        )),
        "{out}"
    );
}

#[tokio::test]
async fn excepted_pod_reaches_imds_directly() {
    let (_, client, ns) = setup("explain-excepted").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector), ("team", "Infra")]).await;
    add_identity(&client, &ns, "web", &selector).await;
    podid(&client, &["exception", "add", "-n", &ns, "--name", "infra", "--pod-labels", "team=infra"])
        .await
        .ok();
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).starts_with(&format!(
            "no pod identity: pod {pod} is excepted by AzurePodIdentityException {ns}/infra"
        )),
        "{out}"
    );
    assert!(out.contains("matched: infra — the pod is excepted"), "{out}");
}

#[tokio::test]
async fn standard_mode_waits_while_the_assignment_is_created() {
    let (_, client, ns) = setup("explain-created").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    assign(&client, &ns, "web", "Created").await;
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out).starts_with(
            "no identity yet: its AzureAssignedIdentity is still Created — the controller has not put the identity on \
             /subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachineScaleSets/vmss0 yet"
        ),
        "{out}"
    );
    assert!(out.contains("state Created"), "{out}");
}

#[tokio::test]
async fn standard_mode_without_an_assignment_blames_the_controller() {
    let (_, client, ns) = setup("explain-not-created").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    let out = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(
        verdict(&out)
            .starts_with("no identity yet: the controller should create AzureAssignedIdentity default/app-"),
        "{out}"
    );
}

#[tokio::test]
async fn the_default_identity_is_the_oldest_bindings_and_a_request_names_another() {
    let (_, client, ns) = setup("explain-default").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "zeta", &selector).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // creation times have 1 s resolution
    add_identity(&client, &ns, "alpha", &selector).await;
    let out = podid(&client, &["explain", "pod", &pod, "--mode", "managed", "--force-namespaced"]).await.ok();
    assert_eq!(verdict(&out), format!("pod {pod} gets identity {ns}/zeta (client id {CLIENT})"), "{out}");
    assert!(
        out.contains(&format!("default: {ns}/zeta is the identity of the pod's oldest binding that applies")),
        "{out}"
    );
    let out = podid(
        &client,
        &["explain", "pod", &pod, "--mode", "managed", "--client-id", "00000000-0000-4000-8000-0000000000ff"],
    )
    .await
    .ok();
    assert!(verdict(&out).starts_with("no identity (the agent answers 400 at once: no azure identity found for request clientID 0000##### REDACTED #####00ff"), "{out}");
    assert!(verdict(&out).contains(&format!("the pod has {ns}/zeta (clientID")), "{out}");
}

#[tokio::test]
async fn explain_pod_as_json() {
    let (_, client, ns) = setup("explain-json").await;
    let pod = pod(&client, &ns, &[]).await;
    let out = podid(&client, &["explain", "pod", &pod, "-o", "json"]).await.ok();
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(report["verdict"].as_str().unwrap().contains("the pod has no aadpodidbinding label"), "{out}");
    assert_eq!(report["identity"], serde_json::Value::Null);
    assert_eq!(report["steps"][0]["title"], "pod");
}

#[tokio::test]
async fn explain_of_a_missing_pod_or_bad_reference_is_one_line() {
    let (_, client, ns) = setup("explain-missing-pod").await;
    let err = podid(&client, &["explain", "pod", &format!("{ns}/ghost")]).await.err();
    assert_eq!(err, format!("pod {ns}/ghost does not exist"));
    let err = podid(&client, &["explain", "pod", "ghost"]).await.err();
    assert_eq!(err, "the pod must be given as NAMESPACE/NAME, not \"ghost\"");
}

#[tokio::test]
async fn explain_identity_shows_bindings_pods_and_assignments() {
    let (_, client, ns) = setup("explain-identity").await;
    let selector = format!("{ns}-web");
    let pod = pod(&client, &ns, &[("aadpodidbinding", &selector)]).await;
    add_identity(&client, &ns, "web", &selector).await;
    assign(&client, &ns, "web", "Assigned").await;
    let out = podid(&client, &["explain", "identity", &format!("{ns}/web")]).await.ok();
    assert!(
        out.contains(&format!("{ns}/web-binding selects pods labelled aadpodidbinding={selector}")),
        "{out}"
    );
    assert!(out.contains(&format!("{pod} on node {ns}-n1 gets it")), "{out}");
    assert!(out.contains(&format!("→ pod {pod}, node {ns}-n1, state Assigned")), "{out}");
    assert_eq!(
        verdict(&out),
        format!("identity {ns}/web is wanted by 1 pod(s); 1 assignment(s) usable, 0 not yet or no longer"),
        "{out}"
    );
}

#[tokio::test]
async fn explain_identity_without_bindings_says_it_is_unused() {
    let (_, client, ns) = setup("explain-identity-unused").await;
    add_identity(&client, &ns, "web", "web").await;
    podid(&client, &["identity", "delete", "-n", &ns, "--name", "web"]).await.ok();
    add_identity(&client, &ns, "web", "web").await;
    Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
        .delete("web-binding", &Default::default())
        .await
        .unwrap();
    let out = podid(&client, &["explain", "identity", &format!("{ns}/web")]).await.ok();
    assert_eq!(
        verdict(&out),
        format!("identity {ns}/web is unused: no AzureIdentityBinding points at it"),
        "{out}"
    );
}
