//! End to end in standard mode on real nodes: podid installed with `podid install --apply`, the
//! controller and the agents running from the images built here, pods running the real Python
//! and Rust Azure SDKs. Root only (CI runs as root; a missing prerequisite fails with what to do).
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use podid_emulator::config::builtin;
use podid_sandbox::{Mode, azure};
use support::{APP_2_CLIENT, APP_CLIENT, PodSpec, exclusive, shared};

const MODE: Mode = Mode::Standard;

fn world() -> &'static podid_sandbox::world::World {
    support::world(MODE)
}

#[tokio::test]
async fn the_python_and_rust_sdks_get_the_bound_identity_on_every_node() {
    let world = world();
    let _guard = shared().await;
    let ns = support::app_namespace(world, MODE, "sdks").await;
    for (i, node) in support::nodes(world).iter().enumerate() {
        for image in ["sdk-python", "sdk-rust"] {
            let pod = PodSpec::new(&format!("{image}-{i}"), image, "app")
                .on(node)
                .args(&["--client-id", APP_CLIENT]);
            let (ok, logs) = support::run_pod(world, &ns, &pod.build(world), Duration::from_secs(150)).await;
            assert!(ok && logs.starts_with("token "), "{image} on {node}: {logs}");
        }
        support::app_token_served(world, &ns, &format!("whose-{i}"), node).await;
    }
}

#[tokio::test]
async fn a_pod_without_a_binding_is_refused_and_the_sdk_shows_why() {
    let _guard = shared().await;
    support::unbound_pod_is_refused_with_the_reason(world()).await;
}

/// The client id of the scale set's own (kubelet) identity: on the node's real IMDS, but never
/// bound to a pod. A token for it can only come from the real IMDS.
fn agentpool_client() -> String {
    let info = world().emulator.info();
    info.identities
        .get(builtin::AGENTPOOL_IDENTITY)
        .map(|i| i.client_id.clone())
        .expect("the agent pool identity")
}

#[tokio::test]
async fn a_killed_agent_leaves_pods_refused_never_served_by_imds_until_the_kubelet_restarts_it() {
    let world = world();
    let _guard = exclusive().await;
    let ns = support::app_namespace(world, MODE, "agent-killed").await;
    let node = support::nodes(world)[1].clone();
    let probe = support::token_loop(&agentpool_client(), 45.0, 0.2);
    let pod = PodSpec::new("prober", "sdk-python", "app").on(&node).python(&probe).build(world);
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(world.cluster.api().client().unwrap(), &ns);
    pods.create(&Default::default(), &pod).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    support::kill_agent(world, &node);
    let (_, logs) = finished(world, &ns, "prober").await;
    let tally = support::tally(&logs, "");
    assert!(
        tally.wrong.is_empty(),
        "a pod got a token the agent must refuse, from the real IMDS: {:?}",
        tally.wrong
    );
    assert!(tally.refused > 0, "the agent's death was never seen (no refused connection): {logs}");
    assert!(tally.other.iter().any(|l| l.starts_with("http 4")), "the agent never refused while up: {logs}");
    // Restarted by the kubelet: the bound identity is served again.
    support::app_token_served(world, &ns, "after", &node).await;
}

/// Waits until pod `name` has finished and returns whether it succeeded, and its logs.
async fn finished(world: &podid_sandbox::world::World, ns: &str, name: &str) -> (bool, String) {
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(world.cluster.api().client().unwrap(), ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let pod = pods.get(name).await.unwrap();
        let phase = pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
        if phase == "Succeeded" || phase == "Failed" {
            let logs = pods.logs(name, &Default::default()).await.unwrap();
            return (phase == "Succeeded", logs);
        }
        assert!(tokio::time::Instant::now() < deadline, "{ns}/{name} still {phase}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_rolling_update_of_the_agents_under_token_load_serves_no_wrong_token() {
    let world = world();
    let _guard = exclusive().await;
    let ns = support::namespace(world, "rollout").await;
    support::add_identity(world, MODE, &ns, "one", azure::FIRST_IDENTITY, "one");
    support::add_identity(world, MODE, &ns, "two", azure::SECOND_IDENTITY, "two");
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(world.cluster.api().client().unwrap(), &ns);
    let mut loads = Vec::new();
    for (i, node) in support::nodes(world).iter().enumerate() {
        for (selector, client) in [("one", APP_CLIENT), ("two", APP_2_CLIENT)] {
            let name = format!("load-{selector}-{i}");
            let program = support::token_loop(client, 60.0, 0.05);
            pods.create(
                &Default::default(),
                &PodSpec::new(&name, "sdk-python", selector).on(node).python(&program).build(world),
            )
            .await
            .unwrap();
            loads.push((name, client));
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    support::run(world.kubectl().unwrap().args(["-n", "kube-system", "rollout", "restart", "ds/nmi"]));
    support::run(world.kubectl().unwrap().args([
        "-n",
        "kube-system",
        "rollout",
        "status",
        "ds/nmi",
        "--timeout=180s",
    ]));
    let mut totals = BTreeMap::new();
    for (name, client) in loads {
        let (_, logs) = finished(world, &ns, &name).await;
        let tally = support::tally(&logs, client);
        assert!(tally.wrong.is_empty(), "{name} got tokens of another identity: {:?}", tally.wrong);
        assert!(tally.right > 0, "{name} got no token: {logs}");
        totals.insert(name, (tally.right, tally.refused, tally.other.len()));
    }
    println!("rolling update under load, per pod (right, refused, other): {totals:?}");
}

#[tokio::test]
async fn deleting_the_leader_during_a_burst_of_pods_leaves_no_duplicate_or_orphaned_assignment() {
    let world = world();
    let _guard = exclusive().await;
    let ns = support::namespace(world, "leader").await;
    support::add_identity(world, MODE, &ns, "burst", azure::FIRST_IDENTITY, "burst");
    let client = world.cluster.api().client().unwrap();
    let lease =
        Api::<Lease>::namespaced(client.clone(), "kube-system").get("aad-pod-identity-mic").await.unwrap();
    let leader = lease.spec.and_then(|s| s.holder_identity).expect("a leader");
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(client.clone(), &ns);
    const BURST: usize = 20;
    for i in 0..BURST {
        let pod = PodSpec::new(&format!("burst-{i}"), "busybox", "burst").shell("sleep 3600").build(world);
        pods.create(&Default::default(), &pod).await.unwrap();
        if i == 2 {
            support::run(world.kubectl().unwrap().args([
                "-n",
                "kube-system",
                "delete",
                "pod",
                &leader,
                "--wait=false",
            ]));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let list = support::assignments_of(world, &ns).await;
        let by_pod: BTreeMap<String, usize> = list.iter().fold(BTreeMap::new(), |mut m, a| {
            *m.entry(a.spec.pod.clone()).or_default() += 1;
            m
        });
        assert!(by_pod.values().all(|n| *n == 1), "duplicate assignments: {by_pod:?}");
        let all_assigned = list.iter().all(|a| a.status.as_ref().is_some_and(|s| s.status == "Assigned"));
        if by_pod.len() == BURST && all_assigned {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} of {BURST} pods assigned", by_pod.len());
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for i in 0..BURST {
        let _ = pods.delete(&format!("burst-{i}"), &Default::default()).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while !support::assignments_of(world, &ns).await.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "assignments left after their pods were deleted");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
