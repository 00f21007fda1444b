//! `podid exception add|update|delete|list` against a real API server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use kube::Api;
use podid_api::AzurePodIdentityException;
use support::{podid, setup};

async fn exceptions(client: &kube::Client, ns: &str) -> Vec<AzurePodIdentityException> {
    Api::<AzurePodIdentityException>::namespaced(client.clone(), ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items
}

fn labels(e: &AzurePodIdentityException) -> Vec<(String, String)> {
    e.spec.pod_labels.clone().into_iter().collect()
}

fn pair(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

#[tokio::test]
async fn add_creates_an_exception_with_the_labels() {
    let (_, client, ns) = setup("exception-add").await;
    let out = podid(
        &client,
        &["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=mic,component=mic"],
    )
    .await
    .ok();
    assert!(out.contains(&format!("created AzurePodIdentityException {ns}/mic")), "{out}");
    let found = exceptions(&client, &ns).await;
    assert_eq!(labels(&found[0]), [pair("app", "mic"), pair("component", "mic")]);
}

#[tokio::test]
async fn add_again_is_idempotent_but_other_labels_conflict() {
    let (_, client, ns) = setup("exception-idempotent").await;
    let args = ["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=mic"];
    podid(&client, &args).await.ok();
    let out = podid(&client, &args).await.ok();
    assert!(out.contains("already exists with these labels"), "{out}");
    let err = podid(&client, &["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=other"])
        .await
        .err();
    assert_eq!(
        err,
        format!(
            "AzurePodIdentityException {ns}/mic already exists with other pod labels app=mic: use podid exception update"
        )
    );
}

#[tokio::test]
async fn update_replaces_the_labels() {
    let (_, client, ns) = setup("exception-update").await;
    podid(&client, &["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=mic"]).await.ok();
    podid(&client, &["exception", "update", "-n", &ns, "--name", "mic", "--pod-labels", "tier=node"])
        .await
        .ok();
    assert_eq!(labels(&exceptions(&client, &ns).await[0]), [pair("tier", "node")]);
}

#[tokio::test]
async fn update_of_a_missing_exception_says_to_add_it() {
    let (_, client, ns) = setup("exception-update-missing").await;
    let err = podid(&client, &["exception", "update", "-n", &ns, "--name", "nope", "--pod-labels", "a=b"])
        .await
        .err();
    assert_eq!(
        err,
        format!("AzurePodIdentityException {ns}/nope does not exist: create it with podid exception add")
    );
}

#[tokio::test]
async fn delete_removes_it_and_a_second_delete_fails() {
    let (_, client, ns) = setup("exception-delete").await;
    podid(&client, &["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=mic"]).await.ok();
    podid(&client, &["exception", "delete", "-n", &ns, "--name", "mic"]).await.ok();
    assert!(exceptions(&client, &ns).await.is_empty());
    let err = podid(&client, &["exception", "delete", "-n", &ns, "--name", "mic"]).await.err();
    assert!(err.starts_with(&format!("AzurePodIdentityException {ns}/mic does not exist")), "{err}");
}

#[tokio::test]
async fn malformed_labels_are_refused() {
    let (_, client, ns) = setup("exception-bad-labels").await;
    for (labels, want) in [
        ("app", "--pod-labels: \"app\" is not key=value (example: app=mic,tier=node)"),
        ("=x", "--pod-labels: \"=x\" has an empty key"),
        ("a=1,a=2", "--pod-labels: key \"a\" is given twice"),
        ("", "--pod-labels needs at least one key=value pair (example: app=mic)"),
    ] {
        let err = podid(&client, &["exception", "add", "-n", &ns, "--name", "e", "--pod-labels", labels])
            .await
            .err();
        assert_eq!(err, want);
    }
    assert!(exceptions(&client, &ns).await.is_empty());
}

#[tokio::test]
async fn labels_no_pod_can_carry_are_refused_and_nothing_is_written() {
    let (_, client, ns) = setup("exception-invalid-labels").await;
    let long = format!("app={}", "v".repeat(64));
    for (labels, want) in [
        (
            "app=bad value",
            "invalid --pod-labels: \"bad value\" is not a valid label value: use letters, digits",
        ),
        ("bad key=mic", "invalid --pod-labels: \"bad key\" is not a valid label key"),
        (long.as_str(), "invalid --pod-labels: \"vvvv"),
    ] {
        for verb in ["add", "update"] {
            let err = podid(&client, &["exception", verb, "-n", &ns, "--name", "e", "--pod-labels", labels])
                .await
                .err();
            assert!(err.starts_with(want), "{verb} {labels}: {err}");
        }
    }
    assert!(exceptions(&client, &ns).await.is_empty());
    podid(&client, &["exception", "add", "-n", &ns, "--name", "e", "--pod-labels", "app=mic"]).await.ok();
    let err = podid(&client, &["exception", "update", "-n", &ns, "--name", "e", "--pod-labels", "app=a b"])
        .await
        .err();
    assert!(err.contains("is not a valid label value"), "{err}");
    assert_eq!(
        labels(&exceptions(&client, &ns).await[0]),
        [pair("app", "mic")],
        "the update changed nothing"
    );
}

#[tokio::test]
async fn bad_name_and_missing_namespace_are_refused() {
    let (_, client, ns) = setup("exception-bad-name").await;
    let err =
        podid(&client, &["exception", "add", "-n", &ns, "--name=-bad", "--pod-labels", "a=b"]).await.err();
    assert!(
        err.starts_with("invalid exception name: name \"-bad\" is not a valid RFC 1123 subdomain"),
        "{err}"
    );
    let err = podid(&client, &["exception", "add", "-n", "missing-ns", "--name", "e", "--pod-labels", "a=b"])
        .await
        .err();
    assert!(err.starts_with("namespace \"missing-ns\" does not exist"), "{err}");
}

#[tokio::test]
async fn list_shows_exceptions() {
    let (_, client, ns) = setup("exception-list").await;
    podid(&client, &["exception", "add", "-n", &ns, "--name", "mic", "--pod-labels", "app=mic"]).await.ok();
    let table = podid(&client, &["exception", "list", "-n", &ns]).await.ok();
    assert_eq!(
        table.lines().nth(1).map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec![ns.as_str(), "mic", "app=mic"])
    );
    let json = podid(&client, &["exception", "list", "-n", &ns, "-o", "json"]).await.ok();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows[0]["podLabels"]["app"], "mic");
}
