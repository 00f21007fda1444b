//! `podid identity add|delete|list` against a real API server (and the Azure emulator for ARM).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::ExitCode;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use podid_api::{AzureIdentity, AzureIdentityBinding};
use support::{Azure, podid, resource_id, setup};

const CLIENT: &str = "00000000-0000-4000-8000-000000000001";

async fn identities(client: &kube::Client, ns: &str) -> Vec<AzureIdentity> {
    Api::<AzureIdentity>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items
}

async fn bindings(client: &kube::Client, ns: &str) -> Vec<AzureIdentityBinding> {
    Api::<AzureIdentityBinding>::namespaced(client.clone(), ns).list(&Default::default()).await.unwrap().items
}

fn add_args<'a>(ns: &'a str, name: &'a str, id: &'a str) -> Vec<&'a str> {
    vec!["identity", "add", "-n", ns, "--name", name, "--identity-resource-id", id, "--client-id", CLIENT]
}

#[tokio::test]
async fn add_creates_identity_and_binding() {
    let (_, client, ns) = setup("identity-add").await;
    let id = resource_id("web");
    let out = podid(&client, &add_args(&ns, "web", &id)).await.ok();
    assert!(out.contains(&format!("created AzureIdentity {ns}/web")), "{out}");

    let ids = identities(&client, &ns).await;
    assert_eq!(ids.len(), 1);
    assert_eq!((ids[0].spec.identity_type, ids[0].spec.resource_id.as_str()), (0, id.as_str()));
    assert_eq!(ids[0].spec.client_id, CLIENT);
    let bs = bindings(&client, &ns).await;
    assert_eq!(bs.len(), 1);
    assert_eq!(bs[0].metadata.name.as_deref(), Some("web-binding"));
    assert_eq!((bs[0].spec.azure_identity.as_str(), bs[0].spec.selector.as_str()), ("web", "web"));
}

#[tokio::test]
async fn add_uses_the_given_binding_selector() {
    let (_, client, ns) = setup("identity-selector").await;
    let id = resource_id("web");
    let mut args = add_args(&ns, "web", &id);
    args.extend(["--binding-selector", "frontend"]);
    podid(&client, &args).await.ok();
    assert_eq!(bindings(&client, &ns).await[0].spec.selector, "frontend");
}

#[tokio::test]
async fn add_twice_with_the_same_arguments_changes_nothing() {
    let (_, client, ns) = setup("identity-idempotent").await;
    let id = resource_id("web");
    podid(&client, &add_args(&ns, "web", &id)).await.ok();
    let before = (identities(&client, &ns).await, bindings(&client, &ns).await);
    let out = podid(&client, &add_args(&ns, "web", &id)).await.ok();
    assert!(out.contains("already exists with these settings"), "{out}");
    let after = (identities(&client, &ns).await, bindings(&client, &ns).await);
    assert_eq!(before.0[0].metadata.resource_version, after.0[0].metadata.resource_version);
    assert_eq!(before.1[0].metadata.resource_version, after.1[0].metadata.resource_version);
}

#[tokio::test]
async fn add_refuses_a_different_identity_of_the_same_name() {
    let (_, client, ns) = setup("identity-conflict").await;
    podid(&client, &add_args(&ns, "web", &resource_id("web"))).await.ok();
    let other = resource_id("other");
    let err = podid(&client, &add_args(&ns, "web", &other)).await.err();
    assert!(
        err.starts_with(&format!("AzureIdentity {ns}/web already exists with different settings")),
        "{err}"
    );
    assert!(err.contains("podid identity delete"), "{err}");
    assert_eq!(identities(&client, &ns).await[0].spec.resource_id, resource_id("web"));
}

#[tokio::test]
async fn add_refuses_another_client_id_for_an_existing_identity() {
    let (_, client, ns) = setup("identity-client-conflict").await;
    let id = resource_id("web");
    podid(&client, &add_args(&ns, "web", &id)).await.ok();
    let other = "00000000-0000-4000-8000-000000000002";
    let args =
        ["identity", "add", "-n", &ns, "--name", "web", "--identity-resource-id", &id, "--client-id", other];
    let err = podid(&client, &args).await.err();
    assert!(
        err.starts_with(&format!("AzureIdentity {ns}/web already exists with different settings")),
        "{err}"
    );
    assert_eq!(identities(&client, &ns).await[0].spec.client_id, CLIENT);
}

#[tokio::test]
async fn add_refuses_a_conflicting_binding_and_creates_nothing() {
    let (_, client, ns) = setup("binding-conflict").await;
    let binding = AzureIdentityBinding {
        metadata: ObjectMeta { name: Some("web-binding".into()), ..Default::default() },
        spec: podid_api::AzureIdentityBindingSpec {
            azure_identity: "someone-else".into(),
            selector: "x".into(),
            ..Default::default()
        },
        status: None,
    };
    Api::<AzureIdentityBinding>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &binding)
        .await
        .unwrap();
    let err = podid(&client, &add_args(&ns, "web", &resource_id("web"))).await.err();
    assert!(err.starts_with(&format!("AzureIdentityBinding {ns}/web-binding already exists")), "{err}");
    assert!(identities(&client, &ns).await.is_empty(), "no identity was created");
}

#[tokio::test]
async fn add_rejects_names_that_are_not_dns_subdomains() {
    let (_, client, ns) = setup("identity-bad-name").await;
    let err = podid(&client, &add_args(&ns, "Web_App", &resource_id("web"))).await.err();
    assert!(
        err.starts_with("invalid identity name: name \"Web_App\" is not a valid RFC 1123 subdomain"),
        "{err}"
    );
    assert!(identities(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn add_rejects_a_malformed_resource_id() {
    let (_, client, ns) = setup("identity-bad-id").await;
    let bad = "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Compute/virtualMachines/vm";
    let err = podid(&client, &add_args(&ns, "web", bad)).await.err();
    assert!(
        err.starts_with(&format!("invalid resource id: {bad:?}, must match /subscriptions/<subid>/")),
        "{err}"
    );
    assert!(identities(&client, &ns).await.is_empty());
}

/// Runs `add` with `extra` arguments, expects a refusal starting with `want`, and checks that
/// nothing was written.
async fn refused(client: &kube::Client, ns: &str, name: &str, id: &str, extra: &[&str], want: &str) {
    let mut args = vec!["identity", "add", "-n", ns, "--name", name, "--identity-resource-id", id];
    args.extend_from_slice(extra);
    if !extra.contains(&"--client-id") {
        args.extend(["--client-id", CLIENT]);
    }
    let err = podid(client, &args).await.err();
    assert!(err.starts_with(want), "{extra:?}: {err}");
    assert!(identities(client, ns).await.is_empty(), "{extra:?}: no identity written");
    assert!(bindings(client, ns).await.is_empty(), "{extra:?}: no binding written");
}

#[tokio::test]
async fn add_refuses_selectors_no_pod_can_carry() {
    let (_, client, ns) = setup("identity-bad-selector").await;
    let id = resource_id("web");
    refused(
        &client,
        &ns,
        "web",
        &id,
        &["--binding-selector", "bad value!"],
        "invalid --binding-selector: \"bad value!\" is not a valid label value: use letters, digits, '-', '_' and '.'",
    )
    .await;
    let long = "s".repeat(64);
    refused(
        &client,
        &ns,
        "web",
        &id,
        &["--binding-selector", &long],
        &format!(
            "invalid --binding-selector: \"{long}\" is 64 characters long; a label value may have at most 63"
        ),
    )
    .await;
}

#[tokio::test]
async fn add_refuses_a_default_selector_too_long_for_a_label() {
    let (_, client, ns) = setup("identity-long-name").await;
    let name = "n".repeat(64);
    let err_start = format!("invalid --binding-selector: \"{name}\" is 64 characters long");
    refused(&client, &ns, &name, &resource_id("web"), &[], &err_start).await;
    let id = resource_id("web");
    let mut args = add_args(&ns, &name, &id);
    args.extend(["--binding-selector", "web"]);
    podid(&client, &args).await.ok();
    assert_eq!(
        bindings(&client, &ns).await[0].spec.selector,
        "web",
        "a short selector makes the long name work"
    );
}

#[tokio::test]
async fn add_refuses_ids_that_are_not_guids() {
    let (_, client, ns) = setup("identity-bad-guid").await;
    let id = resource_id("web");
    refused(
        &client,
        &ns,
        "web",
        &id,
        &["--client-id", "not-a-guid"],
        "invalid --client-id \"not-a-guid\" is not a GUID: it must look like 00000000-0000-0000-0000-000000000000",
    )
    .await;
    refused(
        &client,
        &ns,
        "web",
        &id,
        &["--cluster-identity-object-id", "cluster"],
        "invalid --cluster-identity-object-id \"cluster\" is not a GUID",
    )
    .await;
}

#[tokio::test]
async fn add_refuses_resource_ids_arm_cannot_have_issued() {
    let (_, client, ns) = setup("identity-inexact-id").await;
    let base = resource_id("web");
    let with_query = format!("{base}?x=1");
    refused(
        &client,
        &ns,
        "web",
        &with_query,
        &[],
        &format!("invalid resource id: {with_query:?} has \"?x=1\" after the identity's name: an ARM id has no query"),
    )
    .await;
    let fragment = format!("{base}#top");
    refused(&client, &ns, "web", &fragment, &[], &format!("invalid resource id: {fragment:?} has \"#top\""))
        .await;
    let not_guid = base.replace("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "my-subscription");
    refused(&client, &ns, "web", &not_guid, &[], "invalid resource id").await;
    let short = resource_id("ab");
    refused(
        &client,
        &ns,
        "web",
        &short,
        &[],
        &format!("invalid resource id: {short:?}: the identity name has 2 characters"),
    )
    .await;
    let spaced = resource_id("we b");
    refused(&client, &ns, "web", &spaced, &[], &format!("invalid resource id: {spaced:?}, must match")).await;
}

#[tokio::test]
async fn add_rejects_a_missing_namespace() {
    let (_, client, _) = setup("identity-no-ns").await;
    let err = podid(&client, &add_args("no-such-namespace", "web", &resource_id("web"))).await.err();
    assert_eq!(
        err,
        "namespace \"no-such-namespace\" does not exist: create it first (kubectl create namespace no-such-namespace)"
    );
}

#[tokio::test]
async fn add_reads_the_client_id_from_arm() {
    let (_, client, ns) = setup("identity-arm").await;
    let azure = Azure::start().await;
    let app = azure.app_identity();
    let mut args = vec!["identity", "add", "-n", &ns, "--name", "app", "--identity-resource-id", &app.id];
    let flags = azure.admin_flags();
    args.extend(flags.iter().map(String::as_str));
    podid(&client, &args).await.ok();
    assert_eq!(identities(&client, &ns).await[0].spec.client_id, app.client_id);
}

#[tokio::test]
async fn add_of_an_identity_arm_does_not_know_fails_and_creates_nothing() {
    let (_, client, ns) = setup("identity-arm-unknown").await;
    let azure = Azure::start().await;
    let id = resource_id("nobody");
    let mut args = vec!["identity", "add", "-n", &ns, "--name", "nobody", "--identity-resource-id", &id];
    let flags = azure.admin_flags();
    args.extend(flags.iter().map(String::as_str));
    let err = podid(&client, &args).await.err();
    assert!(err.starts_with(&format!("user-assigned identity {id} does not exist in ARM")), "{err}");
    assert!(identities(&client, &ns).await.is_empty());
    assert!(bindings(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn add_without_client_id_or_credentials_says_what_to_set() {
    let (_, client, ns) = setup("identity-no-creds").await;
    let id = resource_id("web");
    let err = podid(&client, &["identity", "add", "-n", &ns, "--name", "web", "--identity-resource-id", &id])
        .await
        .err();
    assert!(err.starts_with("ARM credentials missing: set AZURE_TENANT_ID"), "{err}");
    assert!(err.ends_with("or pass --client-id to skip ARM"), "{err}");
    assert!(identities(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn federated_add_without_credentials_says_arm_is_needed_not_to_pass_a_client_id() {
    let (_, client, ns) = setup("identity-no-creds-fed").await;
    let id = resource_id("web");
    let cid = "00000000-0000-0000-0000-0000000000aa";
    let args =
        ["identity", "add", "-n", &ns, "--name", "web", "--identity-resource-id", &id, "--client-id", cid];
    let err = podid(&client, &[&args[..], &["--federated"]].concat()).await.err();
    assert!(err.starts_with("ARM credentials missing"), "{err}");
    assert!(err.ends_with("--federated creates the federated identity credential through ARM"), "{err}");
    assert!(identities(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn add_grants_managed_identity_operator_then_verifies_it() {
    let (_, client, ns) = setup("identity-role").await;
    let azure = Azure::start().await;
    let app = azure.app_identity();
    // A principal with no role yet: the agent pool identity.
    let principal = azure.emu.info().identities["podid-agentpool"].principal_id.clone();
    let flags = azure.admin_flags();
    let mut args = vec!["identity", "add", "-n", &ns, "--name", "app", "--identity-resource-id", &app.id];
    args.extend(["--cluster-identity-object-id", &principal]);
    args.extend(flags.iter().map(String::as_str));
    let out = podid(&client, &args).await.ok();
    assert!(
        out.contains(&format!(
            "granted Managed Identity Operator on {} to cluster identity {principal}",
            app.id
        )),
        "{out}"
    );
    let out = podid(&client, &args).await.ok();
    assert!(out.contains("already holds Managed Identity Operator"), "{out}");
}

#[tokio::test]
async fn add_says_which_role_it_could_not_grant_and_exits_2() {
    let (_, client, ns) = setup("identity-role-denied").await;
    let azure = Azure::start().await;
    let app = azure.app_identity();
    let principal = azure.emu.info().identities["podid-agentpool"].principal_id.clone();
    // podid-cluster may read identities but not grant roles.
    let flags = azure.flags("podid-cluster");
    let mut args = vec!["identity", "add", "-n", &ns, "--name", "app", "--identity-resource-id", &app.id];
    args.extend(["--cluster-identity-object-id", &principal]);
    args.extend(flags.iter().map(String::as_str));
    let outcome = podid(&client, &args).await;
    assert_eq!(outcome.result.as_ref().ok(), Some(&ExitCode::from(2)), "{}", outcome.out);
    assert!(
        outcome.out.contains(&format!("warning: could not make sure cluster identity {principal}")),
        "{}",
        outcome.out
    );
    assert!(outcome.out.contains("az role assignment create"), "{}", outcome.out);
    assert_eq!(identities(&client, &ns).await.len(), 1, "the identity itself is added");
}

/// A user who may do everything `add` needs except create bindings.
async fn user_without_binding_create(client: &kube::Client, user: &str) {
    let rule = |verbs: &[&str], resources: &[&str]| PolicyRule {
        api_groups: Some(vec!["aadpodidentity.k8s.io".into()]),
        resources: Some(resources.iter().map(|r| (*r).to_string()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_string()).collect(),
        ..Default::default()
    };
    let role = ClusterRole {
        metadata: ObjectMeta { name: Some(user.into()), ..Default::default() },
        rules: Some(vec![
            rule(&["get", "list", "create", "delete"], &["azureidentities"]),
            rule(&["get", "list"], &["azureidentitybindings"]),
            PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["namespaces".into()]),
                verbs: vec!["get".into()],
                ..Default::default()
            },
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
async fn a_failed_binding_create_leaves_no_identity_behind() {
    let (cluster, admin, ns) = setup("identity-rollback").await;
    let user = format!("{ns}-user");
    user_without_binding_create(&admin, &user).await;
    let limited = cluster.client_as(&user, &[]).unwrap();
    let err = podid(&limited, &add_args(&ns, "web", &resource_id("web"))).await.err();
    assert!(
        err.starts_with(&format!("create AzureIdentityBinding {ns}/web-binding (nothing was left behind")),
        "{err}"
    );
    assert!(err.contains("forbidden"), "{err}");
    assert!(identities(&admin, &ns).await.is_empty(), "the identity was removed again");
}

#[tokio::test]
async fn delete_removes_identity_and_binding() {
    let (_, client, ns) = setup("identity-delete").await;
    podid(&client, &add_args(&ns, "web", &resource_id("web"))).await.ok();
    let out = podid(&client, &["identity", "delete", "-n", &ns, "--name", "web"]).await.ok();
    assert!(out.contains("deleted AzureIdentityBinding") && out.contains("deleted AzureIdentity"), "{out}");
    assert!(identities(&client, &ns).await.is_empty());
    assert!(bindings(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn delete_of_a_missing_identity_is_an_error() {
    let (_, client, ns) = setup("identity-delete-missing").await;
    let err = podid(&client, &["identity", "delete", "-n", &ns, "--name", "ghost"]).await.err();
    assert_eq!(
        err,
        format!("AzureIdentity {ns}/ghost does not exist (nor its binding): see podid identity list -A")
    );
}

#[tokio::test]
async fn list_shows_identities_as_table_json_and_yaml() {
    let (_, client, ns) = setup("identity-list").await;
    podid(&client, &add_args(&ns, "web", &resource_id("web"))).await.ok();
    podid(&client, &add_args(&ns, "api", &resource_id("api"))).await.ok();

    let table = podid(&client, &["identity", "list", "-n", &ns]).await.ok();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].starts_with("NAMESPACE") && lines[1].contains(" api ") && lines[2].contains(" web "),
        "{table}"
    );
    assert!(lines[2].contains(CLIENT), "{table}");

    let json = podid(&client, &["identity", "list", "-n", &ns, "-o", "json"]).await.ok();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[1]["name"], "web");
    assert_eq!(rows[1]["resourceID"], resource_id("web"));
    assert_eq!(rows[1]["bindings"][0]["selector"], "web");

    let yaml = podid(&client, &["identity", "list", "-n", &ns, "-o", "yaml"]).await.ok();
    assert!(yaml.contains("name: web") && yaml.contains("selector: api"), "{yaml}");

    let all = podid(&client, &["identity", "list", "-A"]).await.ok();
    assert!(all.lines().filter(|l| l.starts_with(&ns)).count() == 2, "{all}");
}
