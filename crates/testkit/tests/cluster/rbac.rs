//! Users minted by the test kit are held to RBAC like real ones.
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use podid_testkit::PodBuilder;

use super::{cluster, eventually, status_code};

#[tokio::test]
async fn a_user_may_do_what_its_role_allows_and_nothing_else() {
    let cluster = cluster().await;
    let admin = cluster.client().unwrap();
    let ns = cluster.namespace("rbac-user").await.unwrap();
    let other = cluster.namespace("rbac-other").await.unwrap();
    grant_pod_reading(&admin, &ns, subject("User", "alice")).await;

    let alice = cluster.client_as("alice", &[]).unwrap();
    let pods = Api::<Pod>::namespaced(alice.clone(), &ns);
    eventually("alice to be allowed to list pods", || async {
        pods.list(&ListParams::default()).await.is_ok()
    })
    .await;

    let pod = PodBuilder::new(&ns, "p").build();
    assert_eq!(status_code(pods.create(&PostParams::default(), &pod).await), 403);
    assert_eq!(
        status_code(Api::<Pod>::namespaced(alice.clone(), &other).list(&ListParams::default()).await),
        403
    );
    assert_eq!(status_code(Api::<Node>::all(alice).list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn a_group_binding_covers_its_members_only() {
    let cluster = cluster().await;
    let admin = cluster.client().unwrap();
    let ns = cluster.namespace("rbac-group").await.unwrap();
    grant_pod_reading(&admin, &ns, subject("Group", "podid:readers")).await;

    let member = Api::<Pod>::namespaced(cluster.client_as("bob", &["podid:readers", "other"]).unwrap(), &ns);
    eventually("the group to be allowed", || async { member.list(&ListParams::default()).await.is_ok() })
        .await;
    let outsider = Api::<Pod>::namespaced(cluster.client_as("carol", &["other"]).unwrap(), &ns);
    assert_eq!(status_code(outsider.list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn a_service_account_token_is_held_to_rbac() {
    let cluster = cluster().await;
    let admin = cluster.client().unwrap();
    let ns = cluster.namespace("rbac-sa").await.unwrap();
    let mic = cluster.service_account_client(&ns, "mic").await.unwrap();
    let pods = Api::<Pod>::namespaced(mic, &ns);
    match pods.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403);
            assert!(
                status.message.contains(&format!("system:serviceaccount:{ns}:mic")),
                "{}",
                status.message
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let mut account = subject("ServiceAccount", "mic");
    account.api_group = None;
    account.namespace = Some(ns.clone());
    grant_pod_reading(&admin, &ns, account).await;
    eventually("the service account to be allowed", || async {
        pods.list(&ListParams::default()).await.is_ok()
    })
    .await;
}

fn subject(kind: &str, name: &str) -> Subject {
    Subject {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
        ..Default::default()
    }
}

/// A Role that may get, list and watch pods in `ns`, bound to `subject`.
async fn grant_pod_reading(admin: &kube::Client, ns: &str, subject: Subject) {
    let meta = || ObjectMeta { name: Some("pod-reader".into()), ..Default::default() };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["pods".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name: "pod-reader".into(),
        },
        subjects: Some(vec![subject]),
    };
    Api::<Role>::namespaced(admin.clone(), ns).create(&PostParams::default(), &role).await.unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns).create(&PostParams::default(), &binding).await.unwrap();
}
