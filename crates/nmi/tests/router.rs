//! The agent's HTTP surface, driven in process (no socket): wire format, caller identification,
//! decisions, waiting, caching, refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use http::StatusCode;
use podid_api::AssignedState;
use support::*;

const TOKEN_PATH: &str = "/metadata/identity/oauth2/token";

#[tokio::test]
async fn missing_metadata_header_is_rejected_with_imds_json() {
    let agent = Agent::standard();
    let resp = agent.get(POD_IP, &format!("{TOKEN_PATH}?resource=https://vault.azure.net"), &[]).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.content_type, "application/json; charset=utf-8");
    assert_eq!(
        resp.body,
        "{\"error\":\"invalid_request\",\"error_description\":\"Required metadata header not specified\"}\n"
    );
}

#[tokio::test]
async fn metadata_header_value_must_be_exactly_true() {
    let agent = Agent::standard();
    let resp = agent.get(POD_IP, &format!("{TOKEN_PATH}?resource=r"), &[("Metadata", "True")]).await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missing_resource_is_400_plain_text() {
    let agent = Agent::standard();
    let resp = agent.token(POD_IP, "").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    assert_eq!(resp.body, "parameter resource cannot be empty\n");
    assert_eq!(resp.content_type, "text/plain; charset=utf-8");
    assert!(resp.nosniff);
}

#[tokio::test]
async fn assigned_identity_gets_string_typed_token_json() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    let resp = agent.token(POD_IP, "resource=https://management.azure.com/").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert_eq!(resp.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    for key in
        ["access_token", "refresh_token", "expires_in", "expires_on", "not_before", "resource", "token_type"]
    {
        assert!(v[key].is_string(), "{key} must be a string: {v}");
    }
    assert_eq!(v["access_token"], format!("token-for-{}-https://management.azure.com/", client("id1")));
    assert_eq!(v["expires_in"], "3600");
}

#[tokio::test]
async fn every_sdk_request_variant_is_understood() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    let rid = rid("id1");
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    for (path, query) in [
        (TOKEN_PATH, "api-version=2018-02-01&resource=https://management.azure.com".to_string()),
        (
            "/metadata/identity/oauth2/token/",
            "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com".to_string(),
        ),
        (
            TOKEN_PATH,
            format!(
                "api-version=2019-08-01&resource={}&client_id={}",
                enc("https://management.azure.com"),
                client("id1")
            ),
        ),
        (
            TOKEN_PATH,
            format!("api-version=2018-02-01&resource=https://management.azure.com&msi_res_id={rid}"),
        ),
        (
            TOKEN_PATH,
            format!("api-version=2018-02-01&resource=https://management.azure.com&mi_res_id={}", enc(&rid)),
        ),
    ] {
        let resp = agent.get(POD_IP, &format!("{path}?{query}"), &[("metadata", "true")]).await;
        assert_eq!(resp.status, StatusCode::OK, "{path}?{query}: {}", resp.body);
    }
}

#[tokio::test]
async fn unknown_caller_is_500_after_a_short_wait() {
    let agent = Agent::standard();
    let resp = agent.token("10.244.9.9", "resource=r").await;
    assert_eq!(resp.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(resp.body.starts_with("pod list is empty"), "{}", resp.body);
}

#[tokio::test]
async fn pod_that_appears_during_the_wait_is_served() {
    let agent = Agent::standard();
    let a = agent.clone();
    let req = tokio::spawn(async move { a.token(POD_IP, "resource=r").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    assert_eq!(req.await.unwrap().status, StatusCode::OK);
}

#[tokio::test]
async fn created_assignment_is_served_as_soon_as_it_becomes_assigned() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Created);
    let a = agent.clone();
    let req = tokio::spawn(async move { a.token(POD_IP, "resource=r").await });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!req.is_finished(), "must wait while Created");
    agent.set_state("app", "web", "id1", AssignedState::Assigned);
    let resp = tokio::time::timeout(Duration::from_secs(2), req).await.unwrap().unwrap();
    assert_eq!(resp.status, StatusCode::OK);
}

#[tokio::test]
async fn pending_assignment_times_out_with_404_or_503_retry_after() {
    let agent = Agent::with(|c| {
        c.wait_created = Duration::from_millis(200);
        c.wait_assigned = Duration::from_millis(300);
    });
    agent.add_pod("app", "web", POD_IP, "demo");
    agent.add_identity("app", "id1");
    agent.add_binding("app", "b", "id1", "demo");
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.body.contains("in CREATED state failed"), "{}", resp.body);

    let agent = Agent::with(|c| {
        c.wait_created = Duration::from_millis(100);
        c.set_retry_after_header = true;
    });
    agent.add_pod("app", "web", POD_IP, "demo");
    agent.add_identity("app", "id1");
    agent.add_binding("app", "b", "id1", "demo");
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.retry_after.as_deref(), Some("20"));
}

#[tokio::test]
async fn request_nothing_can_become_assigned_for_is_refused_at_once_naming_what_the_pod_has() {
    let agent = Agent::with(|c| c.wait_created = Duration::from_secs(600));
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    for query in [
        format!("resource=r&client_id={}", client("other")),
        format!("resource=r&msi_res_id={}", rid("other")),
    ] {
        let resp =
            tokio::time::timeout(Duration::from_secs(5), agent.token(POD_IP, &query)).await.expect("at once");
        assert_eq!(resp.status, StatusCode::NOT_FOUND);
        assert!(resp.body.starts_with("no azure identity found for request "), "{}", resp.body);
        assert!(
            resp.body.contains("the pod has only app/id1 (clientID id10##### REDACTED #####0000)"),
            "{}",
            resp.body
        );
        assert!(resp.body.contains("To fix: ask for one of these"), "{}", resp.body);
    }
    agent.add_pod("app", "other", "10.244.0.30", "nothing");
    let resp = tokio::time::timeout(Duration::from_secs(5), agent.token("10.244.0.30", "resource=r"))
        .await
        .expect("at once");
    assert!(resp.body.contains("no AzureIdentityBinding has selector \"nothing\""), "{}", resp.body);
}

#[tokio::test]
async fn another_pods_identity_is_never_served() {
    let agent = Agent::with(|c| c.wait_created = Duration::from_millis(100));
    agent.bind_pod("app", "owner", "10.244.0.20", "id1", AssignedState::Assigned);
    agent.add_pod("app", "thief", POD_IP, "demo");
    let resp = agent.token(POD_IP, &format!("resource=r&client_id={}", client("id1"))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert_eq!(agent.provider.calls(), 0);
}

#[tokio::test]
async fn warm_cache_serves_without_upstream_calls_and_joins_concurrent_misses() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    agent.provider.set_delay(Duration::from_millis(100));
    let mut handles = Vec::new();
    for _ in 0..50 {
        let a = agent.clone();
        handles.push(tokio::spawn(async move { a.token(POD_IP, "resource=r").await.status }));
    }
    for h in handles {
        assert_eq!(h.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(agent.provider.calls(), 1, "fifty concurrent misses must make one upstream call");
    for _ in 0..10 {
        assert_eq!(agent.token(POD_IP, "resource=r").await.status, StatusCode::OK);
    }
    assert_eq!(agent.provider.calls(), 1);
}

#[tokio::test]
async fn upstream_refusal_is_403_and_outage_is_503() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    agent.provider.fail_with(podid_nmi::token::TokenError::Refused("Identity not found".into()));
    assert_eq!(agent.token(POD_IP, "resource=r").await.status, StatusCode::FORBIDDEN);
    agent.provider.fail_with(podid_nmi::token::TokenError::Unavailable("connection refused".into()));
    assert_eq!(agent.token(POD_IP, "resource=r2").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn cached_token_keeps_being_served_while_upstream_is_down_until_expiry() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    assert_eq!(agent.token(POD_IP, "resource=r").await.status, StatusCode::OK);
    agent.provider.fail_with(podid_nmi::token::TokenError::Unavailable("IMDS down".into()));
    agent.clock.set(NOW + 2000); // past the refresh point, before expiry
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["expires_in"], "1600", "expires_in counts down for cached tokens");
    agent.clock.set(NOW + 3600);
    assert_eq!(agent.token(POD_IP, "resource=r").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn excepted_pod_gets_the_node_identity_directly() {
    let agent = Agent::standard();
    agent.add_pod_labelled("kube-system", "omsagent", POD_IP, &[("kubernetes.azure.com/managedby", "aks")]);
    agent.add_exception("kube-system", "aks-addon-exception", &[("kubernetes.azure.com/managedby", "aks")]);
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    assert!(resp.body.contains("token-for-system-r"));
}

#[tokio::test]
async fn path_confusion_is_refused_and_never_proxied() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    for p in [
        r"/metadata/identity\oauth2\token/",
        "/metadata/Identity/oauth2/token",
        "//metadata/identity/oauth2/token",
        "/metadata/identity%2Foauth2%2Ftoken",
    ] {
        let resp = agent.get(POD_IP, &format!("{p}?resource=r"), &[("Metadata", "true")]).await;
        assert_eq!((resp.status, resp.body.as_str()), (StatusCode::BAD_REQUEST, "Invalid request\n"), "{p}");
    }
    assert_eq!(agent.imds.hits(), 0);
}

#[tokio::test]
async fn imds_endpoints_are_proxied_other_paths_are_not_and_instance_can_be_blocked() {
    let agent = Agent::standard();
    let resp = agent.get(POD_IP, "/metadata/versions", &[("Metadata", "true")]).await;
    assert_eq!((resp.status, resp.body.as_str()), (StatusCode::NOT_FOUND, "imds says no"));
    assert_eq!(agent.imds.hits(), 1);
    let resp = agent.get(POD_IP, "/metadata/versions", &[]).await;
    assert!(resp.body.contains("Required metadata header not specified"));
    let resp = agent.get(POD_IP, "/doesnotexist", &[("Metadata", "true")]).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
    assert!(resp.body.starts_with("not forwarded to IMDS"), "{}", resp.body);
    assert_eq!(agent.imds.hits(), 1, "an unknown path is never forwarded");
    let blocked = Agent::with(|c| c.block_instance_metadata = true);
    let resp =
        blocked.get(POD_IP, "/metadata/instance?api-version=2017-08-01", &[("Metadata", "true")]).await;
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (StatusCode::FORBIDDEN, "Request blocked by AAD Pod Identity NMI\n")
    );
}

#[tokio::test]
async fn host_token_is_off_unless_enabled() {
    let agent = Agent::standard();
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    let resp =
        agent.get("127.0.0.1", "/host/token/?resource=r", &[("podns", "app"), ("podname", "web")]).await;
    assert_eq!((resp.status, resp.body.as_str()), (StatusCode::NOT_FOUND, "404 page not found\n"));
    assert_eq!(agent.provider.calls(), 0);
}

#[tokio::test]
async fn host_token_needs_pod_headers_a_host_address_and_a_socket_to_check() {
    let agent = Agent::with(|c| c.host_token = true);
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    let url = "/host/token/?resource=r";
    let resp = agent.get(POD_IP, url, &[]).await;
    assert_eq!(resp.body, "missing 'podname' and 'podns' from request header\n");
    let resp = agent.get(POD_IP, url, &[("podns", "app"), ("podname", "web")]).await;
    assert_eq!(
        (resp.status, resp.body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "request remote address is not from a host\n")
    );
    // In process there is no socket whose owner the kernel could name: refused.
    let resp = agent.get("127.0.0.1", url, &[("podns", "app"), ("podname", "web")]).await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN, "{}", resp.body);
    assert!(resp.body.contains("only for root processes"), "{}", resp.body);
    assert_eq!(agent.provider.calls(), 0);
}

#[tokio::test]
async fn host_network_caller_is_forbidden() {
    let agent = Agent::standard();
    agent.add_host_network_pod("app", "hn", "10.1.0.4");
    let resp = agent.token("10.1.0.4", "resource=r").await;
    assert_eq!(resp.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn managed_mode_serves_from_bindings_without_assignments() {
    let agent = Agent::managed();
    agent.add_pod("app", "web", POD_IP, "demo");
    agent.add_binding("app", "b", "id1", "demo");
    agent.add_identity("app", "id1");
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::OK, "{}", resp.body);
    let resp = agent.token(POD_IP, &format!("resource=r&client_id={}", client("other"))).await;
    assert_eq!(resp.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn not_found_can_be_answered_as_imds_does_with_400_json() {
    let agent = Agent::with(|c| {
        c.mode = podid_nmi::Mode::Managed;
        c.force_namespaced = true;
        c.not_found_as_bad_request = true;
    });
    agent.add_pod("app", "web", POD_IP, "demo");
    let resp = agent.token(POD_IP, "resource=r").await;
    assert_eq!(resp.status, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
    assert_eq!(v["error"], "invalid_request");
    assert!(v["error_description"].as_str().unwrap().starts_with("no azure identity found"));
}

#[tokio::test]
async fn identity_usable_again_is_prefetched_and_unbound_identity_is_evicted() {
    let agent = Agent::standard();
    tokio::spawn(podid_nmi::prefetch::run(agent.state.clone()));
    agent.bind_pod("app", "web", POD_IP, "id1", AssignedState::Assigned);
    assert_eq!(agent.token(POD_IP, "resource=r1").await.status, StatusCode::OK);
    assert_eq!(agent.provider.calls(), 1);
    assert_eq!(agent.state.cache.len(), 1);

    // The assignment goes back to Created (say, re-assigned after an identity update): the token
    // is dropped at once.
    agent.set_state("app", "web", "id1", AssignedState::Created);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !agent.state.cache.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(agent.state.cache.is_empty(), "tokens of an identity no pod may use are evicted");

    // Usable again: fetched for the resource asked before, without waiting for a request.
    agent.set_state("app", "web", "id1", AssignedState::Assigned);
    while agent.provider.calls() < 2 && tokio::time::Instant::now() < deadline + Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(agent.provider.calls(), 2, "prefetched");
    tokio::time::sleep(Duration::from_millis(50)).await;
    let resp = agent.token(POD_IP, "resource=r1").await;
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(agent.provider.calls(), 2, "the first request after prefetch is a cache hit");
}
