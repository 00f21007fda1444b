//! `/host/token` over real sockets (issue #15, item 6): off unless enabled, and when enabled served
//! only to root processes of the node — the owner of the caller's socket, as the kernel's TCP table
//! names it, must be uid 0. The refused caller is `curl` run as `nobody` (`setpriv`), which needs
//! root to start; the test process itself is the root caller.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;

use http::StatusCode;
use podid_api::AssignedState;
use podid_nmi::http::limits::Limits;
use support::netns::root_or_explicit_skip;
use support::*;

const URL: &str = "/host/token/?resource=r";
const POD: [(&str, &str); 2] = [("podns", "app"), ("podname", "web")];

/// `GET URL` with the pod headers from `curl` running as uid/gid 65534.
async fn as_nobody(addr: SocketAddr) -> (u16, String) {
    let out = tokio::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "curl", "-s", "-w", "\n%{http_code}"])
        .args(["-H", "podns: app", "-H", "podname: web", &format!("http://127.0.0.1:{}{URL}", addr.port())])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or_default();
    (code.parse().unwrap_or(0), body.to_string())
}

fn enabled_agent() -> Agent {
    let agent = Agent::with(|c| c.host_token = true);
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    agent
}

#[tokio::test(flavor = "multi_thread")]
async fn root_processes_on_the_node_get_a_pods_token_other_uids_are_refused() {
    if !root_or_explicit_skip("root_processes_on_the_node_get_a_pods_token_other_uids_are_refused") {
        return;
    }
    let agent = enabled_agent();
    let addr = agent.serve().await;
    let (status, body) = wire_get(addr, URL, &POD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["clientid"], client("id1"));
    assert!(v["token"]["access_token"].is_string());

    let (code, body) = as_nobody(addr).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("only for root processes") && body.contains("uid 65534"), "{body}");
    assert_eq!(agent.provider.calls(), 1, "nothing was fetched for the refused caller");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ipv4_mapped_loopback_caller_is_checked_the_same_way() {
    if !root_or_explicit_skip("an_ipv4_mapped_loopback_caller_is_checked_the_same_way") {
        return;
    }
    let agent = enabled_agent();
    let addr = agent.serve_at("[::ffff:127.0.0.1]:0".parse().unwrap(), Limits::default()).await;
    let v4 = SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let (status, body) = wire_get(v4, URL, &POD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (code, body) = as_nobody(addr).await;
    assert_eq!(code, 403, "{body}");
}

#[tokio::test]
async fn off_by_default_even_for_root_over_a_socket() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    let addr = agent.serve().await;
    let (status, body) = wire_get(addr, URL, &POD).await;
    assert_eq!((status, body.as_str()), (StatusCode::NOT_FOUND, "404 page not found\n"));
    assert_eq!(agent.provider.calls(), 0);
}
