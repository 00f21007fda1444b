//! `podid identity add --federated` and `podid explain pod` for federated identities, against a
//! real API server (its own service-account issuer) and the Azure emulator's ARM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use podid_api::{AzureIdentity, FEDERATED_ANNOTATION, TOKEN_EXCHANGE_AUDIENCE};
use podid_azure::arm::FederatedCredential;
use podid_azure::credential::ServicePrincipal;
use podid_azure::http::{HttpOptions, build_client};
use podid_azure::{AadClient, ArmClient, ArmOptions, CachedTokenSource, ClientCredential, Cloud, Secret};
use podid_emulator::config::builtin::{ADMIN_APP, APP_IDENTITY};
use podid_testkit::{NodeBuilder, PodBuilder};
use support::{Azure, podid, setup};

/// An ARM client of the emulator's admin application, to read back what the CLI wrote.
fn arm(azure: &Azure) -> ArmClient {
    let info = azure.emu.info();
    let app = &info.applications[ADMIN_APP];
    let cloud = Cloud::public()
        .with_resource_manager(azure.emu.arm_url().parse().unwrap())
        .with_authority_host(azure.emu.login_url().parse().unwrap());
    let options =
        HttpOptions { extra_ca_files: vec![azure.emu.ca_pem_path().to_path_buf()], ..Default::default() };
    let http = build_client(&options).unwrap();
    let principal = ServicePrincipal {
        aad: AadClient::new(http.clone(), cloud.authority_host.clone()),
        tenant_id: azure.emu.tenant_id(),
        client_id: app.client_id.clone(),
        credential: ClientCredential::Secret(Secret::new(app.secrets[0].clone())),
    };
    ArmClient::for_cloud(http, &cloud, Arc::new(CachedTokenSource::new(principal)), ArmOptions::default())
}

/// The federated credentials of the emulator's `podid-app` identity, through ARM.
async fn credentials(azure: &Azure) -> Vec<FederatedCredential> {
    let id = azure.app_identity();
    arm(azure)
        .list_federated_credentials(&azure.emu.subscription_id(), &id.resource_group, APP_IDENTITY)
        .await
        .unwrap()
}

/// `identity add --federated` of identity `name` (the emulator's `podid-app`), plus `extra`.
async fn add_federated(
    client: &kube::Client,
    azure: &Azure,
    ns: &str,
    name: &str,
    extra: &[&str],
) -> support::Outcome {
    let id = azure.app_identity().id;
    let flags = azure.admin_flags();
    let mut args =
        vec!["identity", "add", "-n", ns, "--name", name, "--identity-resource-id", &id, "--federated"];
    args.extend(extra);
    args.extend(flags.iter().map(String::as_str));
    podid(client, &args).await
}

async fn identities(client: &kube::Client, ns: &str) -> Vec<AzureIdentity> {
    Api::<AzureIdentity>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items
}

/// A node and a running pod `app` (service account `default`) labelled `aadpodidbinding=selector`.
/// Bindings of any namespace apply in standard mode: tests use their namespace as the selector.
async fn pod(client: &kube::Client, ns: &str, selector: &str) -> String {
    let node = format!("{ns}-n1");
    NodeBuilder::new(&node).vmss("sub1", "rg1", "vmss0", 0).create(client).await.unwrap();
    PodBuilder::new(ns, "app")
        .node(&node)
        .ip("10.244.0.9".parse().unwrap())
        .label("aadpodidbinding", selector)
        .create(client)
        .await
        .unwrap();
    format!("{ns}/app")
}

#[tokio::test]
async fn add_federated_annotates_the_identity_and_creates_its_credential() {
    let (cluster, client, ns) = setup("fed-add").await;
    let azure = Azure::start().await;
    let out = add_federated(
        &client,
        &azure,
        &ns,
        "web",
        &["--service-account", "app", "--cluster-identity-object-id", "x"],
    )
    .await
    .ok();

    let ids = identities(&client, &ns).await;
    assert_eq!(ids.len(), 1);
    let annotations = ids[0].metadata.annotations.clone().unwrap_or_default();
    assert_eq!(annotations.get(FEDERATED_ANNOTATION).map(String::as_str), Some("true"));
    assert_eq!(ids[0].spec.client_id, azure.app_identity().client_id, "client id read from ARM");

    let fics = credentials(&azure).await;
    assert_eq!(fics.len(), 1, "{fics:?}");
    assert_eq!(fics[0].name, format!("podid-{ns}-app"));
    assert_eq!(fics[0].issuer, cluster.issuer(), "the API server's own issuer");
    assert_eq!(fics[0].subject, format!("system:serviceaccount:{ns}:app"));
    assert_eq!(fics[0].audiences, [TOKEN_EXCHANGE_AUDIENCE]);
    assert!(out.contains("no Managed Identity Operator grant is needed"), "{out}");
    assert!(out.contains("--cluster-identity-object-id ignored"), "{out}");
}

#[tokio::test]
async fn add_federated_twice_changes_nothing() {
    let (_, client, ns) = setup("fed-idempotent").await;
    let azure = Azure::start().await;
    add_federated(&client, &azure, &ns, "web", &[]).await.ok();
    let before = identities(&client, &ns).await;
    let out = add_federated(&client, &azure, &ns, "web", &[]).await.ok();
    assert!(out.contains("already accepts issuer"), "{out}");
    assert!(out.contains("already exists with these settings"), "{out}");
    let after = identities(&client, &ns).await;
    assert_eq!(before[0].metadata.resource_version, after[0].metadata.resource_version);
    assert_eq!(credentials(&azure).await.len(), 1, "no second credential");
}

#[tokio::test]
async fn add_federated_refuses_to_turn_an_existing_standard_identity_federated() {
    let (_, client, ns) = setup("fed-conflict").await;
    let azure = Azure::start().await;
    let id = azure.app_identity();
    let args = [
        "identity",
        "add",
        "-n",
        &ns,
        "--name",
        "web",
        "--identity-resource-id",
        &id.id,
        "--client-id",
        &id.client_id,
    ];
    podid(&client, &args).await.ok();
    let err = add_federated(&client, &azure, &ns, "web", &[]).await.err();
    assert!(err.contains("already exists with different settings") && err.contains("not federated"), "{err}");
    assert!(credentials(&azure).await.is_empty(), "nothing was written to ARM");
}

/// A user who may do everything `add` needs but cannot read the issuer discovery document.
async fn user_without_discovery(client: &kube::Client, user: &str) {
    let rule = |groups: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![groups.into()]),
        resources: Some(resources.iter().map(|r| (*r).to_string()).collect()),
        verbs: vec!["get".into(), "list".into(), "create".into(), "delete".into()],
        ..Default::default()
    };
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(user.into()), ..Default::default() },
        rules: Some(vec![
            rule("aadpodidentity.k8s.io", &["azureidentities", "azureidentitybindings"]),
            rule("", &["namespaces"]),
        ]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(client.clone()).create(&PostParams::default(), &role).await.unwrap();
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta { name: Some(user.into()), ..Default::default() },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: user.into(),
        },
        subjects: Some(vec![Subject { kind: "User".into(), name: user.into(), ..Default::default() }]),
    };
    Api::<ClusterRoleBinding>::all(client.clone()).create(&PostParams::default(), &binding).await.unwrap();
}

#[tokio::test]
async fn add_federated_without_an_issuer_is_one_clear_error_and_creates_nothing() {
    let (cluster, admin, ns) = setup("fed-no-issuer").await;
    let azure = Azure::start().await;
    let user = format!("{ns}-user");
    user_without_discovery(&admin, &user).await;
    let limited = cluster.client_as(&user, &[]).unwrap();
    let err = add_federated(&limited, &azure, &ns, "web", &[]).await.err();
    assert!(err.starts_with("cannot find the cluster's service-account issuer"), "{err}");
    assert!(err.contains("pass --issuer"), "{err}");
    assert!(identities(&admin, &ns).await.is_empty(), "no identity");
    assert!(credentials(&azure).await.is_empty(), "no credential");

    let err = add_federated(&admin, &azure, &ns, "web", &["--issuer", "http://plain.example"]).await.err();
    assert!(err.contains("is not an https:// URL"), "{err}");
    assert!(identities(&admin, &ns).await.is_empty(), "no identity");
}

#[tokio::test]
async fn explain_shows_the_federation_chain_with_its_credential() {
    let (cluster, client, ns) = setup("fed-explain").await;
    let azure = Azure::start().await;
    add_federated(&client, &azure, &ns, &ns, &[]).await.ok();
    let pod = pod(&client, &ns, &ns).await;
    let flags = azure.admin_flags();
    let mut args = vec!["explain", "pod", &pod];
    args.extend(flags.iter().map(String::as_str));
    let out = podid(&client, &args).await.ok();
    assert!(
        out.contains(&format!("identity {ns}/{ns} is federated: annotated {FEDERATED_ANNOTATION}")),
        "{out}"
    );
    assert!(out.contains(&format!("subject system:serviceaccount:{ns}:default")), "{out}");
    assert!(out.contains(&format!("issuer {} (from the API server", cluster.issuer())), "{out}");
    assert!(out.contains(&format!("federated identity credential podid-{ns}-default on")), "{out}");
    assert!(out.contains("matches issuer, subject and audience"), "{out}");
    assert!(!out.contains("assigned identities"), "no assigned-identity step: {out}");
    assert!(out.contains("through federation, as service account"), "{out}");
    assert!(!out.contains("refuses the exchange"), "{out}");
}

#[tokio::test]
async fn explain_names_the_missing_credential() {
    let (cluster, client, ns) = setup("fed-explain-missing").await;
    let azure = Azure::start().await;
    add_federated(&client, &azure, &ns, &ns, &["--service-account", "other"]).await.ok();
    let pod = pod(&client, &ns, &ns).await;
    let flags = azure.admin_flags();
    let mut args = vec!["explain", "pod", &pod];
    args.extend(flags.iter().map(String::as_str));
    let out = podid(&client, &args).await.ok();
    let subject = format!("system:serviceaccount:{ns}:default");
    assert!(
        out.contains(&format!("has issuer {}, subject {subject}", cluster.issuer())),
        "names the issuer and subject to add: {out}"
    );
    assert!(out.contains("podid identity add --federated --service-account default"), "{out}");
    let verdict = out.lines().find(|l| l.starts_with("VERDICT:")).unwrap();
    assert!(verdict.contains("Entra ID refuses the exchange"), "{verdict}");
}

#[tokio::test]
async fn explain_in_federated_mode_federates_unannotated_identities() {
    let (_, client, ns) = setup("fed-explain-mode").await;
    let id = support::resource_id("web");
    let client_id = "00000000-0000-4000-8000-0000000000fe";
    let args = [
        "identity",
        "add",
        "-n",
        &ns,
        "--name",
        &ns,
        "--identity-resource-id",
        &id,
        "--client-id",
        client_id,
    ];
    podid(&client, &args).await.ok();
    let pod = pod(&client, &ns, &ns).await;
    let out = podid(&client, &["explain", "pod", &pod, "--mode", "federated"]).await.ok();
    assert!(out.contains("--operation-mode=federated"), "{out}");
    assert!(out.contains("not checked: no ARM credentials"), "{out}");
    assert!(out.contains("through federation"), "{out}");

    let standard = podid(&client, &["explain", "pod", &pod]).await.ok();
    assert!(!standard.contains("federation"), "standard mode does not federate it: {standard}");
}
