//! What federated mode needs: public issuer discovery, and pod-bound tokens for the
//! `api://AzureADTokenExchange` audience that verify against the published keys.
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, ResourceExt};
use podid_testkit::{PodBuilder, TOKEN_EXCHANGE_AUDIENCE};

use super::{cluster, ip, status_code};

fn get(path: &'static str) -> http::Request<Vec<u8>> {
    http::Request::get(path).body(Vec::new()).unwrap()
}

#[tokio::test]
async fn issuer_discovery_is_served_to_anyone() {
    let cluster = cluster().await;
    let anonymous = cluster.anonymous_client().unwrap();

    let document: serde_json::Value =
        anonymous.request(get("/.well-known/openid-configuration")).await.unwrap();
    assert_eq!(document["issuer"], cluster.issuer());
    if cluster.is_local() {
        assert_eq!(document["jwks_uri"], format!("{}/openid/v1/jwks", cluster.issuer()));
    }
    let keys: JwkSet = anonymous.request(get("/openid/v1/jwks")).await.unwrap();
    assert!(!keys.keys.is_empty());
    // Anonymous users get nothing else.
    assert_eq!(status_code(Api::<Namespace>::all(anonymous).list(&ListParams::default()).await), 403);
}

#[tokio::test]
async fn a_pod_bound_token_for_token_exchange_verifies_against_the_jwks() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("token-exchange").await.unwrap();
    let pod = PodBuilder::new(&ns, "app")
        .node(format!("{ns}-n1"))
        .service_account("workload")
        .ip(ip("10.244.5.1"))
        .create(&client)
        .await
        .unwrap();

    let accounts = Api::<ServiceAccount>::namespaced(client, &ns);
    let answer = accounts
        .create_token_request("workload", &PostParams::default(), &exchange_request(&pod))
        .await
        .unwrap();
    let token = answer.status.unwrap().token.unwrap();

    let keys: JwkSet = cluster.anonymous_client().unwrap().request(get("/openid/v1/jwks")).await.unwrap();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let key = DecodingKey::from_jwk(keys.find(&kid).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[TOKEN_EXCHANGE_AUDIENCE]);
    validation.set_issuer(&[cluster.issuer()]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).unwrap().claims;

    assert_eq!(claims["sub"], format!("system:serviceaccount:{ns}:workload"));
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "app");
    assert_eq!(claims["kubernetes.io"]["pod"]["uid"], pod.uid().unwrap());
}

#[tokio::test]
async fn a_token_cannot_be_bound_to_another_accounts_pod() {
    let cluster = cluster().await;
    let client = cluster.client().unwrap();
    let ns = cluster.namespace("token-wrong-pod").await.unwrap();
    let pod = PodBuilder::new(&ns, "app")
        .node(format!("{ns}-n1"))
        .service_account("owner")
        .create(&client)
        .await
        .unwrap();
    let accounts = Api::<ServiceAccount>::namespaced(client, &ns);
    create_account(&accounts, "intruder").await;
    let refused =
        accounts.create_token_request("intruder", &PostParams::default(), &exchange_request(&pod)).await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 400);
            assert!(status.message.contains("different serviceaccount"), "{}", status.message);
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

fn exchange_request(pod: &Pod) -> TokenRequest {
    TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec![TOKEN_EXCHANGE_AUDIENCE.into()]),
            expiration_seconds: Some(3600),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create_account(accounts: &Api<ServiceAccount>, name: &str) {
    let account = ServiceAccount {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        ..Default::default()
    };
    accounts.create(&PostParams::default(), &account).await.unwrap();
}
