//! `coordination.k8s.io/v1` Leases, as MIC's leader election uses them.
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use super::{cluster, status_code};

#[tokio::test]
async fn a_lease_is_created_then_taken_over_once() {
    let cluster = cluster().await;
    let ns = cluster.namespace("lease").await.unwrap();
    let leases = Api::<Lease>::namespaced(cluster.client().unwrap(), &ns);
    let lease = Lease {
        metadata: ObjectMeta { name: Some("mic-leader".into()), ..Default::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some("mic-a".into()),
            lease_duration_seconds: Some(15),
            acquire_time: Some(MicroTime(Timestamp::now())),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }),
    };
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(status_code(leases.create(&PostParams::default(), &lease).await), 409);

    let take = |mut lease: Lease, holder: &str| {
        let spec = lease.spec.get_or_insert_with(Default::default);
        spec.holder_identity = Some(holder.into());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        lease
    };
    // Both candidates saw the same resourceVersion; only the first write wins.
    let taken =
        leases.replace("mic-leader", &PostParams::default(), &take(held.clone(), "mic-b")).await.unwrap();
    assert_eq!(taken.spec.unwrap().holder_identity.as_deref(), Some("mic-b"));
    assert_eq!(
        status_code(leases.replace("mic-leader", &PostParams::default(), &take(held, "mic-c")).await),
        409
    );
    let now = leases.get("mic-leader").await.unwrap().spec.unwrap();
    assert_eq!((now.holder_identity.as_deref(), now.lease_transitions), (Some("mic-b"), Some(1)));
}
