//! podid's CRDs are installed, Established and served.
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use kube::runtime::wait::{Condition, conditions};
use podid_api::{AzureIdentity, AzureIdentitySpec};

use super::cluster;

#[tokio::test]
async fn all_four_crds_are_established() {
    let client = cluster().await.client().unwrap();
    let api = Api::<CustomResourceDefinition>::all(client);
    for crd in podid_api::crd::crds() {
        let name = crd.metadata.name.unwrap();
        let installed = api.get(&name).await.unwrap();
        assert!(
            conditions::is_crd_established().matches_object(Some(&installed)),
            "{name} is not Established"
        );
    }
}

#[tokio::test]
async fn an_azure_identity_round_trips() {
    let cluster = cluster().await;
    let ns = cluster.namespace("crds-round-trip").await.unwrap();
    let api = Api::<AzureIdentity>::namespaced(cluster.client().unwrap(), &ns);
    let spec = AzureIdentitySpec {
        identity_type: 0,
        resource_id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/web".into(),
        client_id: "00000000-0000-0000-0000-000000000001".into(),
        ..Default::default()
    };
    let identity = AzureIdentity::new("web", spec);
    api.create(&PostParams::default(), &identity).await.unwrap();
    let read = api.get("web").await.unwrap();
    assert_eq!(read.spec.client_id, identity.spec.client_id);
    assert_eq!(read.spec.resource_id, identity.spec.resource_id);
}
