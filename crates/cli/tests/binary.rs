//! The real `podid` binary: arguments, kubeconfig, stdout, one-line errors on stderr, exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Output;

use support::{resource_id, setup};

async fn podid(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_podid"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .await
        .expect("podid runs")
}

#[tokio::test]
async fn the_binary_adds_lists_and_fails_with_one_line() {
    let (cluster, _, ns) = setup("binary").await;
    let kubeconfig = cluster.kubeconfig_path();
    let id = resource_id("web");
    let client_id = "00000000-0000-4000-8000-000000000001";
    let add = podid(
        kubeconfig,
        &[
            "identity",
            "add",
            "-n",
            &ns,
            "--name",
            "web",
            "--identity-resource-id",
            &id,
            "--client-id",
            client_id,
        ],
    )
    .await;
    assert!(add.status.success(), "{add:?}");

    let list = podid(kubeconfig, &["identity", "list", "-n", &ns, "-o", "json"]).await;
    assert!(list.status.success(), "{list:?}");
    let rows: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(rows[0]["clientID"], client_id);

    let bad = podid(
        kubeconfig,
        &[
            "identity",
            "add",
            "-n",
            &ns,
            "--name",
            "web",
            "--identity-resource-id",
            "nope",
            "--client-id",
            client_id,
        ],
    )
    .await;
    assert_eq!(bad.status.code(), Some(1));
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: invalid resource id: \"nope\", must match /subscriptions/"),
        "{stderr}"
    );
    assert!(bad.stdout.is_empty());
}

#[tokio::test]
async fn help_lists_the_commands() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podid")).arg("--help").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    for command in ["identity", "exception", "explain"] {
        assert!(text.contains(command), "{text}");
    }
}
