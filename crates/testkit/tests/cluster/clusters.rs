//! Starting, connecting to and stopping clusters.
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::Api;
use kube::api::ListParams;
use podid_testkit::{KUBECONFIG_ENV, TestCluster};

use super::{cluster, eventually, status_code};

#[tokio::test]
async fn two_clusters_run_side_by_side_and_stop_cleanly() {
    if std::env::var_os(KUBECONFIG_ENV).is_some() {
        eprintln!("skipped: {KUBECONFIG_ENV} is set, so this run starts no cluster");
        return;
    }
    podid_testkit::init_tracing();
    let (a, b) = tokio::join!(TestCluster::start(), TestCluster::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.server_url(), b.server_url());

    let ns = a.namespace("only-in-a").await.unwrap();
    assert!(Api::<Namespace>::all(b.client().unwrap()).get_opt(&ns).await.unwrap().is_none());

    // A test that panics while holding a cluster drops it while unwinding.
    let (dir, url) = (a.dir().to_owned(), a.server_url().to_owned());
    let panicked = tokio::spawn(async move {
        let _cluster = a;
        panic!("a failing test");
    });
    assert!(panicked.await.unwrap_err().is_panic());
    assert!(!dir.exists(), "{} was left behind", dir.display());
    assert!(!answers(&url), "{url} still answers");
    b.namespace("still-up").await.unwrap();
}

#[tokio::test]
async fn a_killed_process_leaves_nothing_behind() {
    if std::env::var_os(KUBECONFIG_ENV).is_some() {
        eprintln!("skipped: {KUBECONFIG_ENV} is set, so this run starts no cluster");
        return;
    }
    // `podid-cluster` holds a cluster; SIGKILL gives it no chance to drop it.
    let mut holder = Command::new(env!("CARGO_BIN_EXE_podid-cluster"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut export = String::new();
    BufReader::new(holder.stdout.take().unwrap()).read_line(&mut export).unwrap();
    let kubeconfig = PathBuf::from(export.trim().split_once('=').unwrap().1);
    let url = TestCluster::connect(&kubeconfig).await.unwrap().server_url().to_owned();
    assert!(answers(&url));

    holder.kill().unwrap();
    holder.wait().unwrap();
    let dir = kubeconfig.parent().unwrap().to_owned();
    eventually("the watchdog to clean up", || async { !dir.exists() && !answers(&url) }).await;
}

fn answers(url: &str) -> bool {
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn connect_uses_a_kubeconfig_and_creates_only_namespaces() {
    let shared = cluster().await;
    let external = TestCluster::connect(shared.kubeconfig_path()).await.unwrap();
    assert!(!external.is_local());
    assert_eq!(external.server_url(), shared.server_url());
    assert_eq!(external.issuer(), shared.issuer());
    assert_eq!(external.ca_pem(), shared.ca_pem());

    let ns = external.namespace("via-kubeconfig").await.unwrap();
    Api::<Namespace>::all(shared.client().unwrap()).get(&ns).await.unwrap();

    let nobody = external.client_as("nobody", &[]).unwrap();
    assert_eq!(status_code(Api::<Pod>::namespaced(nobody, &ns).list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn a_user_kubeconfig_file_authenticates_as_that_user() {
    let cluster = cluster().await;
    let ns = cluster.namespace("user-kubeconfig").await.unwrap();
    let path = cluster.kubeconfig_as("dave", &["podid:nmi"]).unwrap();
    let config = kube::config::Kubeconfig::read_from(&path).unwrap();
    let options = kube::config::KubeConfigOptions::default();
    let client =
        kube::Client::try_from(kube::Config::from_custom_kubeconfig(config, &options).await.unwrap())
            .unwrap();
    match Api::<Pod>::namespaced(client, &ns).list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert!(status.message.contains("\"dave\""), "{}", status.message),
        other => panic!("expected 403, got {other:?}"),
    }
}
