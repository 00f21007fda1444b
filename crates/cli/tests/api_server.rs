//! The real `podid` binary when the API server cannot be reached: one line naming the server, the
//! cause and the connect timeout, after at most that timeout — never a bare
//! `ServiceError: client error (Connect)` after 30 s.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tokio::net::TcpSocket;

/// A kubeconfig whose server is `server` (nothing else in it matters: no request is answered).
fn kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- cluster: {{server: \"{server}\", insecure-skip-tls-verify: true}}\n  name: c\n\
             contexts:\n- context: {{cluster: c, user: u}}\n  name: c\ncurrent-context: c\nusers:\n- name: u\n  user: {{token: t}}\n"
        ),
    )
    .unwrap();
    path
}

async fn podid(kubeconfig: &Path, args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_podid"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("PODID_CONNECT_TIMEOUT")
        .output()
        .await
        .expect("podid runs");
    (out, started.elapsed())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_refused_connection_names_the_server_and_the_timeout_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = format!("https://127.0.0.1:{port}");
    let (out, took) = podid(&kubeconfig(dir.path(), &server), &["identity", "list", "-A"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.starts_with(&format!(
            "error: list AzureIdentities: cannot reach the Kubernetes API server at {server}: "
        )),
        "{err}"
    );
    assert!(err.contains("Connection refused"), "{err}");
    assert!(
        err.contains("(connect timeout 5 s, --connect-timeout;"),
        "the default is short and named: {err}"
    );
    assert!(took < Duration::from_secs(20), "a refusal is not waited out: {took:?}");
}

#[tokio::test]
async fn a_server_that_never_accepts_is_given_up_after_the_connect_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // A listener with a backlog of one that never accepts: once one connection waits in its queue,
    // the kernel drops further SYNs, so a connect hangs until the client gives up.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _queued = std::net::TcpStream::connect(addr).unwrap();
    let server = format!("https://{addr}");
    let (out, took) =
        podid(&kubeconfig(dir.path(), &server), &["--connect-timeout", "2", "exception", "list", "-A"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "cannot reach the Kubernetes API server at {server}: no connection within the timeout"
        )),
        "{err}"
    );
    assert!(err.contains("(connect timeout 2 s, --connect-timeout;"), "{err}");
    assert!(took >= Duration::from_millis(1900), "it waited for the timeout: {took:?}");
    assert!(took < Duration::from_secs(25), "and not for kube's default 30 s: {took:?}");
    drop(listener);
}
