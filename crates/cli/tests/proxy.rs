//! Every podid program honours `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` for the API server, Entra ID
//! and ARM, and never uses the proxy for IMDS or loopback — checked through a real proxy that
//! counts what passes. The programs run in a network namespace with no route and no DNS except
//! the link to the proxy, so a request that bypassed the proxy fails instead of leaving the host.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy_support;

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use podid_emulator::config::builtin::{
    AGENTPOOL_IDENTITY, APP_IDENTITY, CLUSTER_APP, NODE_RESOURCE_GROUP, SCALE_SET,
};
use podid_testkit::kubelet::{NodeBuilder, PodBuilder};
use proxy_support::proxy::Proxy;
use proxy_support::{API_NAME, ARM_NAME, LOGIN_NAME, World, netns::root_or_explicit_skip, program};

fn text(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `command` to the end without blocking the runtime that serves the proxy.
async fn output(command: std::process::Command) -> Output {
    tokio::process::Command::from(command).output().await.unwrap()
}

/// Runs `podid args…` in the namespace (kubeconfig by name, through the proxy).
async fn podid_in_netns(world: &World, args: &[&str]) -> Output {
    let mut command = world.command(&program("podid"));
    command.args(args);
    output(command).await
}

#[tokio::test]
async fn the_cli_reaches_the_api_server_entra_and_arm_through_the_proxy() {
    if !root_or_explicit_skip("the_cli_reaches_the_api_server_entra_and_arm_through_the_proxy") {
        return;
    }
    let world = World::start("proxy-cli").await;
    let app = world.emu.info().identities[APP_IDENTITY].clone();
    let mut args =
        vec!["identity", "add", "-n", &world.namespace, "--name", "app", "--identity-resource-id", &app.id];
    let flags = world.azure_flags("podid-admin");
    args.extend(flags.iter().map(String::as_str));
    let out = podid_in_netns(&world, &args).await;
    assert!(out.status.success(), "{}\nproxy saw {}", text(&out), world.seen());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("(client id {})", app.client_id)),
        "{}",
        text(&out)
    );

    assert!(world.proxy.count(API_NAME) >= 1, "API server through the proxy: {}", world.seen());
    assert!(world.proxy.count(LOGIN_NAME) >= 1, "Entra ID through the proxy: {}", world.seen());
    assert!(world.proxy.count(ARM_NAME) >= 1, "ARM through the proxy: {}", world.seen());
    let arm_reads =
        world.emu.requests().iter().filter(|r| r.path.ends_with("/userAssignedIdentities/podid-app")).count();
    assert!(arm_reads >= 1, "the client id came from the emulator's ARM");
    let other: Vec<_> = world
        .proxy
        .seen()
        .into_iter()
        .filter(|s| ![API_NAME, LOGIN_NAME, ARM_NAME].contains(&s.host.as_str()))
        .collect();
    assert!(other.is_empty(), "nothing else was asked of the proxy: {other:?}");

    // NO_PROXY naming the API server sends the CLI there directly, which in this namespace (no
    // route, no DNS) cannot work: the error names the server and no proxy, and the proxy saw nothing.
    let before = world.proxy.seen().len();
    let mut command = world.command(&program("podid"));
    command.args(["identity", "list", "-A"]).env("NO_PROXY", format!("example.invalid,{API_NAME}"));
    let out = output(command).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{}", text(&out));
    let want = format!("cannot reach the Kubernetes API server at https://{API_NAME}:{}: ", world.api_port);
    assert!(stderr.contains(&want), "{stderr}");
    assert!(!stderr.contains("through proxy"), "{stderr}");
    assert_eq!(world.proxy.seen().len(), before, "NO_PROXY was honoured: {}", world.seen());
}

#[tokio::test]
async fn the_cli_reaches_a_loopback_api_server_directly_whatever_the_proxy_variables_say() {
    let cluster = podid_testkit::TestCluster::shared().await.expect("test cluster starts");
    let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), HashMap::new(), None).await;
    let kubeconfig = cluster.kubeconfig_path().to_owned();
    let run = |env: Vec<(&'static str, String)>| {
        let mut c = std::process::Command::new(program("podid"));
        c.arg("--kubeconfig").arg(&kubeconfig).args(["identity", "list", "-A"]);
        c.env_remove("KUBECONFIG").env_remove("NO_PROXY").env_remove("no_proxy").envs(env);
        output(c)
    };
    let out = run(vec![("HTTPS_PROXY", proxy.url()), ("HTTP_PROXY", proxy.url())]).await;
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(proxy.seen(), [], "loopback never goes through the proxy");
    // The reproduction from issue 16, where podid refused to start.
    let out = run(vec![("HTTPS_PROXY", "http://127.0.0.1:9".into()), ("NO_PROXY", "127.0.0.1".into())]).await;
    assert!(out.status.success(), "{}", text(&out));
}

/// GETs `url` from the host until `ok` holds for the answer, or fails after `within`.
async fn wait_for(url: &str, within: Duration, ok: impl Fn(u16, &str) -> bool) -> Result<(), String> {
    let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(5)).build().unwrap();
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        match http.get(url).send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body = r.text().await.unwrap_or_default();
                if ok(status, &body) {
                    return Ok(());
                }
                last = format!("{status} {body}");
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("{url} not ready within {within:?}: {last}"))
}

fn log(world: &World, name: &str) -> String {
    std::fs::read_to_string(world.dir.path().join(format!("{name}.log"))).unwrap_or_default()
}

#[tokio::test]
async fn agent_and_controller_watch_through_the_proxy_and_the_controller_assigns_through_it() {
    if !root_or_explicit_skip(
        "agent_and_controller_watch_through_the_proxy_and_the_controller_assigns_through_it",
    ) {
        return;
    }
    let world = World::start("proxy-components").await;
    let ns = world.namespace.clone();

    // The agent: its watches go to the API server by name, through the proxy.
    let mut nmi = world.command(&program("podid-nmi"));
    nmi.args(["--node", "proxy-node", "--kubelet-config", "/nonexistent", "--iptables=false"]).args([
        "--http-probe-port",
        "18080",
        "--prometheus-port",
        "18080",
    ]);
    world.netns.spawn(nmi, &world.dir.path().join("nmi.log"));
    let ready =
        wait_for(&format!("http://{}:18080/readyz", world.netns.ns_ip), Duration::from_secs(90), |s, _| {
            s == 200
        })
        .await;
    assert!(ready.is_ok(), "{ready:?}\nnmi log:\n{}\nproxy saw {}", log(&world, "nmi"), world.seen());
    let after_agent = world.proxy.count(API_NAME);
    assert!(after_agent >= 1, "the agent reached the API server through the proxy: {}", world.seen());

    // The controller: leader election and watches through the proxy, then Entra ID and ARM.
    let info = world.emu.info();
    let cluster_app = &info.applications[CLUSTER_APP];
    let azure_json = world.dir.path().join("azure.json");
    let config = serde_json::json!({
        "cloud": "AzurePublicCloud",
        "tenantId": world.emu.tenant_id(),
        "subscriptionId": world.emu.subscription_id(),
        "resourceGroup": NODE_RESOURCE_GROUP,
        "vmType": "vmss",
        "aadClientId": cluster_app.client_id,
        "aadClientSecret": cluster_app.secrets[0],
    });
    std::fs::write(&azure_json, config.to_string()).unwrap();
    let mut mic = world.command(&program("podid-mic"));
    mic.arg("--kubeconfig")
        .arg(&world.kubeconfig)
        .arg("--cloudconfig")
        .arg(&azure_json)
        .args(["--arm-endpoint", &world.arm_url(), "--aad-authority", &world.login_url()])
        .arg("--trusted-ca-file")
        .arg(&world.proxy_ca)
        .args(["--http-probe-port", "18081", "--prometheus-port", "18081"])
        .args(["--leader-election-namespace", &ns, "--leader-election-instance", "proxy-test"])
        .env("MIC_POD_NAMESPACE", &ns);
    world.netns.spawn(mic, &world.dir.path().join("mic.log"));
    let active =
        wait_for(&format!("http://{}:18081/healthz", world.netns.ns_ip), Duration::from_secs(90), |s, b| {
            s == 200 && b.trim() == "Active"
        })
        .await;
    assert!(active.is_ok(), "{active:?}\nmic log:\n{}\nproxy saw {}", log(&world, "mic"), world.seen());
    assert!(
        world.proxy.count(API_NAME) > after_agent,
        "the controller reached the API server through the proxy"
    );

    // A pod bound to the emulator's app identity on a scale-set node: the controller assigns it.
    let app = info.identities[APP_IDENTITY].clone();
    let sub = world.emu.subscription_id();
    let node = format!("proxy-node-{}", &ns[ns.len().saturating_sub(5)..]);
    NodeBuilder::new(&node)
        .vmss(&sub, NODE_RESOURCE_GROUP, SCALE_SET, 0)
        .create(&world.client)
        .await
        .unwrap();
    let add = [
        "identity",
        "add",
        "-n",
        &ns,
        "--name",
        "app",
        "--identity-resource-id",
        &app.id,
        "--client-id",
        &app.client_id,
    ];
    let out = podid_in_netns(&world, &add).await;
    assert!(out.status.success(), "{}", text(&out));
    PodBuilder::new(&ns, "web")
        .node(&node)
        .label("aadpodidbinding", "app")
        .ip("10.244.7.7".parse().unwrap())
        .create(&world.client)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let assigned = loop {
        let ids = world.emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap_or_default();
        if ids.iter().any(|i| i.eq_ignore_ascii_case(&app.id)) || Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(
        assigned.iter().any(|i| i.eq_ignore_ascii_case(&app.id)),
        "{assigned:?}\nmic log:\n{}\nproxy saw {}",
        log(&world, "mic"),
        world.seen()
    );
    assert!(
        world.proxy.count(LOGIN_NAME) >= 1,
        "the controller's Entra ID token through the proxy: {}",
        world.seen()
    );
    assert!(
        world.proxy.count(ARM_NAME) >= 1,
        "the controller's ARM calls through the proxy: {}",
        world.seen()
    );
    podid_testkit::kubelet::delete_pod(&world.client, &ns, "web").await.unwrap();
    podid_testkit::kubelet::delete_node(&world.client, &node).await.unwrap();
}

#[tokio::test]
async fn the_demo_asks_imds_directly_and_lists_vms_through_the_proxy() {
    if !root_or_explicit_skip("the_demo_asks_imds_directly_and_lists_vms_through_the_proxy") {
        return;
    }
    let world = World::start("proxy-demo").await;
    let agentpool = world.emu.info().identities[AGENTPOOL_IDENTITY].clone();
    // IMDS at a routable (non-loopback) address: only the IMDS client's own rule keeps it direct.
    let imds = format!("http://{}", world.imds.addr);
    let mut demo = world.command(&program("podid-demo"));
    demo.args(["--subscriptionid", &world.emu.subscription_id(), "--clientid", &agentpool.client_id])
        .args(["--resourcegroup", NODE_RESOURCE_GROUP, "--imds-endpoint", &imds])
        .args(["--arm-endpoint", &world.arm_url(), "--once"])
        .arg("--ca-file")
        .arg(&world.proxy_ca);
    let out = output(demo).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\nproxy saw {}", text(&out), world.seen());
    assert!(stdout.contains("successfully acquired a token using the MSI"), "{stdout}");
    assert!(stdout.contains("successfully doARMOperations vm count"), "{stdout}");
    assert!(stdout.contains("successfully made GET on instance metadata"), "{stdout}");

    assert!(world.imds.connections() >= 2, "token and instance metadata went straight to IMDS");
    assert!(world.proxy.count(ARM_NAME) >= 1, "ARM through the proxy: {}", world.seen());
    let imds_host = world.imds.addr.ip().to_string();
    assert_eq!(world.proxy.count(&imds_host), 0, "IMDS never through the proxy: {}", world.seen());
    assert_eq!(world.proxy.count(LOGIN_NAME), 0, "the demo has no Entra ID call: {}", world.seen());
}
