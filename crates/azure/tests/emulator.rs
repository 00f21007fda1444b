//! The clients against the podid Azure emulator (in-process, HTTPS with its own CA, 127.0.0.1):
//! azure.json → credential → ARM identity updates, IMDS tokens, certificate assertions, fault
//! injection for throttling and transient errors, and the CLI's identity and role calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use podid_azure::arm::{ArmOptions, Error};
use podid_azure::config::{ArmAuth, CloudConfig};
use podid_azure::credential::token_source;
use podid_azure::http::{Backoff, HttpOptions, build_client};
use podid_azure::imds::{ImdsClient, ImdsOptions, ManagedIdentity};
use podid_azure::{AadClient, ArmClient, ClientCertificate, ClientCredential, Cloud, Secret};
use podid_core::scaleset::{Delta, ResourceIdentity, Target, TargetKind, patches};
use podid_emulator::config::builtin::{
    AGENTPOOL_IDENTITY, APP_IDENTITY, CLUSTER_APP, NODE_RESOURCE_GROUP, RESTRICTED_IDENTITY, SCALE_SET,
};
use podid_emulator::{Emulator, EmulatorConfig, FaultAction, FaultSpec, RunningEmulator, Surface};
use url::Url;

struct Env {
    emu: RunningEmulator,
    cloud: Cloud,
    http: HttpOptions,
}

async fn start() -> Env {
    start_with(EmulatorConfig::default()).await
}

async fn start_with(config: EmulatorConfig) -> Env {
    let emu = Emulator::start(config).await.expect("emulator starts");
    let cloud = Cloud::public()
        .with_resource_manager(Url::parse(&emu.arm_url()).unwrap())
        .with_authority_host(Url::parse(&emu.login_url()).unwrap());
    let http = HttpOptions {
        extra_ca_files: vec![emu.ca_pem_path().to_path_buf()],
        proxy_from_env: false,
        ..HttpOptions::default()
    };
    Env { emu, cloud, http }
}

fn fast() -> ArmOptions {
    ArmOptions {
        backoff: Backoff {
            max_retries: 3,
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            jitter: true,
        },
        poll_interval: Duration::from_millis(100),
        ..ArmOptions::default()
    }
}

impl Env {
    fn cluster_secret(&self) -> ArmAuth {
        let app = &self.emu.info().applications[CLUSTER_APP];
        ArmAuth::Secret {
            tenant_id: self.emu.tenant_id(),
            client_id: app.client_id.clone(),
            secret: Secret::new(app.secrets[0].clone()),
        }
    }

    fn arm(&self, auth: &ArmAuth) -> ArmClient {
        // Never the real IMDS address, even for credentials that do not use IMDS.
        let imds = ImdsOptions::at(Url::parse("http://127.0.0.1:9").unwrap());
        let credential = token_source(auth, &self.cloud, &self.http, imds).unwrap();
        ArmClient::for_cloud(build_client(&self.http).unwrap(), &self.cloud, credential, fast())
    }

    fn vmss(&self) -> Target {
        Target {
            subscription: self.emu.subscription_id(),
            resource_group: NODE_RESOURCE_GROUP.into(),
            kind: TargetKind::ScaleSet,
            name: SCALE_SET.into(),
        }
    }

    fn identity_id(&self, name: &str) -> String {
        self.emu.info().identities[name].id.to_ascii_lowercase()
    }

    fn assigned(&self) -> Vec<String> {
        self.emu.assigned_identities(NODE_RESOURCE_GROUP, SCALE_SET).unwrap()
    }

    fn imds(&self) -> ImdsClient {
        let node = format!("{SCALE_SET}000000");
        let url = self.emu.imds_url(&node).expect("node has an IMDS listener");
        ImdsClient::new(ImdsOptions { retry_delays: vec![], ..ImdsOptions::at(Url::parse(&url).unwrap()) })
            .unwrap()
    }
}

async fn apply(
    arm: &ArmClient,
    target: &Target,
    add: &[String],
    remove: &[String],
) -> Result<ResourceIdentity, Error> {
    let current = arm.get_identity(target).await?.identity;
    let delta = Delta { add: add.iter().cloned().collect(), remove: remove.iter().cloned().collect() };
    let mut after = current.clone();
    for patch in patches(&current, &delta) {
        after = arm.patch_identity(target, &patch).await?.identity;
    }
    Ok(after)
}

#[tokio::test]
async fn azure_json_service_principal_assigns_and_removes_identities() {
    let env = start().await;
    let app = &env.emu.info().applications[CLUSTER_APP];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("azure.json");
    let json = serde_json::json!({
        "cloud": "AzurePublicCloud", "tenantId": env.emu.tenant_id(), "aadClientId": app.client_id,
        "aadClientSecret": app.secrets[0], "subscriptionId": env.emu.subscription_id(),
        "resourceGroup": NODE_RESOURCE_GROUP, "vmType": "vmss", "useManagedIdentityExtension": false,
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let config = CloudConfig::from_file(&path).unwrap();
    let (_, auth) = config.validate(&BTreeMap::<String, String>::new()).unwrap();
    let arm = env.arm(&auth);
    let target = env.vmss();

    let before = arm.get_identity(&target).await.unwrap();
    assert_eq!(
        before.identity.user_assigned.iter().collect::<Vec<_>>(),
        [&env.identity_id(AGENTPOOL_IDENTITY)]
    );
    assert_eq!(before.provisioning_state.as_deref(), Some("Succeeded"));

    let app_id = env.identity_id(APP_IDENTITY);
    let after = apply(&arm, &target, std::slice::from_ref(&app_id), &[]).await.unwrap();
    assert!(after.user_assigned.contains(&app_id));
    assert!(env.assigned().contains(&app_id));

    let after = apply(&arm, &target, &[], std::slice::from_ref(&app_id)).await.unwrap();
    assert!(!after.user_assigned.contains(&app_id));
    assert_eq!(env.assigned(), [env.identity_id(AGENTPOOL_IDENTITY)]);
}

#[tokio::test]
async fn linked_authorization_failure_names_the_identity_to_drop() {
    let env = start().await;
    let arm = env.arm(&env.cluster_secret());
    let target = env.vmss();
    let (good, bad) = (env.identity_id(APP_IDENTITY), env.identity_id(RESTRICTED_IDENTITY));
    let err = apply(&arm, &target, &[good.clone(), bad.clone()], &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("LinkedAuthorizationFailed"), "{err}");
    assert_eq!(err.erroneous_identities(), [bad]);
    // The controller's targeted retry: the same update without the quoted identity.
    let after = apply(&arm, &target, std::slice::from_ref(&good), &[]).await.unwrap();
    assert!(after.user_assigned.contains(&good));
}

#[tokio::test]
async fn missing_identity_is_a_failed_identity_operation() {
    let env = start().await;
    let arm = env.arm(&env.cluster_secret());
    let ghost = env.identity_id(APP_IDENTITY).replace("podid-app", "podid-ghost");
    let err = apply(&arm, &env.vmss(), std::slice::from_ref(&ghost), &[]).await.unwrap_err();
    assert_eq!(err.code(), Some("FailedIdentityOperation"), "{err}");
    assert_eq!(err.erroneous_identities(), [ghost]);
}

#[tokio::test]
async fn slow_operations_are_polled_to_completion() {
    let env = start().await;
    env.emu.update_settings(&podid_emulator::SettingsUpdate {
        operation_duration_ms: Some(1200),
        ..Default::default()
    });
    let arm = env.arm(&env.cluster_secret());
    let app_id = env.identity_id(APP_IDENTITY);
    env.emu.clear_requests();
    let after = apply(&arm, &env.vmss(), std::slice::from_ref(&app_id), &[]).await.unwrap();
    assert!(after.user_assigned.contains(&app_id));
    let polls =
        env.emu.requests().iter().filter(|r| r.path.to_ascii_lowercase().contains("/operations/")).count();
    assert!(polls >= 2, "the operation was polled until it succeeded ({polls} polls)");
}

#[tokio::test]
async fn deleting_scale_sets_are_left_alone() {
    let env = start().await;
    env.emu.with_world(|w| {
        for s in w.scale_sets.values_mut() {
            s.provisioning.deleting = true;
        }
    });
    let arm = env.arm(&env.cluster_secret());
    let err = apply(&arm, &env.vmss(), &[env.identity_id(APP_IDENTITY)], &[]).await.unwrap_err();
    assert!(matches!(err, Error::Deleting { .. }), "{err}");
    assert!(env.emu.requests().iter().all(|r| r.method != "PATCH"));
}

#[tokio::test]
async fn throttling_closes_the_subscription_until_retry_after() {
    let env = start().await;
    let arm = env.arm(&env.cluster_secret());
    let target = env.vmss();
    arm.get_identity(&target).await.unwrap();
    let spec = FaultSpec {
        count: Some(1),
        ..FaultSpec::new(Surface::Arm, FaultAction::Throttle { retry_after_secs: 1 })
    };
    env.emu.add_fault(spec).unwrap();
    env.emu.clear_requests();

    let err = arm.get_identity(&target).await.unwrap_err();
    assert_eq!(err.status(), Some(429), "{err}");
    let err = arm.get_identity(&target).await.unwrap_err();
    assert!(matches!(err, Error::Throttled { .. }), "{err}");
    assert_eq!(env.emu.requests().len(), 1, "the throttled call sent nothing");

    tokio::time::sleep_until(arm.throttled_until(&target.subscription).unwrap()).await;
    arm.get_identity(&target).await.unwrap();
}

#[tokio::test]
async fn transient_arm_errors_are_retried() {
    let env = start().await;
    let arm = env.arm(&env.cluster_secret());
    arm.get_identity(&env.vmss()).await.unwrap();
    let status = FaultAction::Status { status: 503, body: None, headers: Default::default() };
    env.emu.add_fault(FaultSpec { count: Some(2), ..FaultSpec::new(Surface::Arm, status) }).unwrap();
    env.emu
        .add_fault(FaultSpec { count: Some(1), ..FaultSpec::new(Surface::Arm, FaultAction::Drop) })
        .unwrap();
    env.emu.clear_requests();
    arm.get_identity(&env.vmss()).await.unwrap();
    assert_eq!(env.emu.requests().len(), 4);
}

#[tokio::test]
async fn pkcs12_certificate_credential_reaches_arm() {
    let env = start().await;
    let app = &env.emu.info().applications[CLUSTER_APP];
    let pem =
        std::fs::read(app.certificate_pem.as_ref().expect("the cluster app has a certificate")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sp.pfx");
    std::fs::write(&path, to_pkcs12(&pem, "pfx-password")).unwrap();

    let auth = ArmAuth::Certificate {
        tenant_id: env.emu.tenant_id(),
        client_id: app.client_id.clone(),
        path,
        password: Secret::new("pfx-password"),
    };
    let identity = env.arm(&auth).get_identity(&env.vmss()).await.unwrap();
    assert!(!identity.identity.user_assigned.is_empty());

    let cert = ClientCertificate::from_pem(&pem).unwrap();
    let aad = AadClient::new(build_client(&env.http).unwrap(), env.cloud.authority_host.clone());
    let wrong_client = aad
        .token(
            &env.emu.tenant_id(),
            &env.emu.info().applications["podid-admin"].client_id,
            &ClientCredential::Certificate(Arc::new(cert)),
            "https://management.azure.com/",
        )
        .await
        .unwrap_err();
    assert_eq!(wrong_client.status(), Some(401), "{wrong_client}");
    assert!(wrong_client.entra().is_some_and(|e| e.error == "invalid_client"), "{wrong_client}");
}

/// A PKCS#12 file as p12-keystore writes it by default (PBES2, AES-256, HMAC-SHA256).
fn to_pkcs12(pem: &[u8], password: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject as _;
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(pem).unwrap();
    let key = match key {
        rustls::pki_types::PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        other => panic!("expected a PKCS#8 key, got {other:?}"),
    };
    let cert = rustls::pki_types::CertificateDer::pem_slice_iter(pem).next().unwrap().unwrap();
    let chain = p12_keystore::PrivateKeyChain::new(
        b"podid".to_vec(),
        p12_keystore::PrivateKey::from_der(&key).unwrap(),
        [p12_keystore::Certificate::from_der(cert.as_ref()).unwrap()],
    );
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry("sp", p12_keystore::KeyStoreEntry::PrivateKeyChain(chain));
    store.writer(password).write().unwrap()
}

#[tokio::test]
async fn wrong_secret_is_an_upstream_error_with_entra_codes() {
    let env = start().await;
    let ArmAuth::Secret { tenant_id, client_id, .. } = env.cluster_secret() else { unreachable!() };
    let auth = ArmAuth::Secret { tenant_id, client_id, secret: Secret::new("wrong") };
    let err = env.arm(&auth).get_identity(&env.vmss()).await.unwrap_err();
    let Error::Token(token) = &err else { panic!("{err}") };
    let entra = token.entra().unwrap();
    assert_eq!(entra.error, "invalid_client");
    assert!(entra.error_codes.contains(&7_000_215), "{entra:?}");
    assert!(!err.to_string().contains("wrong\""));
}

#[tokio::test]
async fn imds_serves_tokens_only_for_assigned_identities() {
    let env = start().await;
    let imds = env.imds();
    let agentpool = env.emu.info().identities[AGENTPOOL_IDENTITY].client_id.clone();
    let token =
        imds.token("https://vault.azure.net", &ManagedIdentity::ClientId(agentpool.clone())).await.unwrap();
    assert_eq!(token.client_id.as_deref(), Some(agentpool.as_str()));
    assert!(token.expires_at() > podid_azure::token::epoch_seconds(std::time::SystemTime::now()));
    let json = serde_json::to_value(&token).unwrap();
    assert!(json.as_object().unwrap().values().all(serde_json::Value::is_string), "{json}");

    let app = env.emu.info().identities[APP_IDENTITY].client_id.clone();
    let err =
        imds.token("https://vault.azure.net", &ManagedIdentity::ClientId(app.clone())).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert_eq!(err.entra().unwrap().error_description, "Identity not found");

    apply(&env.arm(&env.cluster_secret()), &env.vmss(), &[env.identity_id(APP_IDENTITY)], &[]).await.unwrap();
    let by_id = ManagedIdentity::ResourceId(env.emu.info().identities[APP_IDENTITY].id.clone());
    imds.token("https://vault.azure.net", &by_id).await.unwrap();
    imds.token("https://vault.azure.net", &ManagedIdentity::ClientId(app)).await.unwrap();
}

#[tokio::test]
async fn managed_identity_credential_drives_arm_through_imds() {
    let env = start().await;
    let agentpool = env.emu.info().identities[AGENTPOOL_IDENTITY].clone();
    let vmss_scope = format!(
        "/subscriptions/{}/resourceGroups/{NODE_RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachineScaleSets/{SCALE_SET}",
        env.emu.subscription_id()
    );
    let admin = env.arm(&admin_auth(&env));
    let role = podid_azure::arm::role_definition_id(
        &env.emu.subscription_id(),
        podid_azure::arm::builtin_roles::READER,
    );
    admin
        .create_role_assignment(&vmss_scope, &role, &agentpool.principal_id, "ServicePrincipal")
        .await
        .unwrap();

    let node_imds = env.emu.imds_url(&format!("{SCALE_SET}000000")).unwrap();
    let auth = ArmAuth::ManagedIdentity { client_id: Some(agentpool.client_id.clone()) };
    let credential =
        token_source(&auth, &env.cloud, &env.http, ImdsOptions::at(Url::parse(&node_imds).unwrap())).unwrap();
    let token = credential.token(&env.cloud.arm_resource).await.unwrap();
    assert_eq!(token.resource, "https://management.azure.com/");
    let arm = ArmClient::for_cloud(build_client(&env.http).unwrap(), &env.cloud, credential, fast());
    arm.get_identity(&env.vmss()).await.unwrap();
}

fn admin_auth(env: &Env) -> ArmAuth {
    let app = &env.emu.info().applications["podid-admin"];
    ArmAuth::Secret {
        tenant_id: env.emu.tenant_id(),
        client_id: app.client_id.clone(),
        secret: Secret::new(app.secrets[0].clone()),
    }
}

#[tokio::test]
async fn cli_calls_identity_federation_roles_and_vm_listing() {
    let env = start().await;
    let arm = env.arm(&admin_auth(&env));
    let sub = env.emu.subscription_id();
    let info = env.emu.info().identities[APP_IDENTITY].clone();

    let uai = arm.get_user_assigned_identity(&sub, &info.resource_group, APP_IDENTITY).await.unwrap();
    assert_eq!(
        (uai.client_id.as_str(), uai.principal_id.as_str()),
        (info.client_id.as_str(), info.principal_id.as_str())
    );
    assert_eq!(uai.tenant_id, env.emu.tenant_id());
    let missing = arm.get_user_assigned_identity(&sub, &info.resource_group, "nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");

    let audiences = vec!["api://AzureADTokenExchange".to_string()];
    let fic = arm
        .put_federated_credential(
            &sub,
            &info.resource_group,
            APP_IDENTITY,
            "podid-fic",
            "https://issuer.example",
            "system:serviceaccount:ns:sa",
            &audiences,
        )
        .await
        .unwrap();
    assert_eq!((fic.name.as_str(), fic.subject.as_str()), ("podid-fic", "system:serviceaccount:ns:sa"));
    assert_eq!(fic.audiences, audiences);
    let listed = arm.list_federated_credentials(&sub, &info.resource_group, APP_IDENTITY).await.unwrap();
    assert_eq!(listed, vec![fic.clone()], "the list returns what the PUT wrote");
    let missing = arm.list_federated_credentials(&sub, &info.resource_group, "nope").await.unwrap_err();
    assert!(missing.is_not_found(), "{missing}");

    let scope = format!("/subscriptions/{sub}/resourceGroups/{}", info.resource_group);
    let role = podid_azure::arm::role_definition_id(&sub, podid_azure::arm::builtin_roles::READER);
    let created =
        arm.create_role_assignment(&scope, &role, &info.principal_id, "ServicePrincipal").await.unwrap();
    assert_eq!(created.principal_id, info.principal_id);
    let dup =
        arm.create_role_assignment(&scope, &role, &info.principal_id, "ServicePrincipal").await.unwrap_err();
    assert_eq!(dup.code(), Some("RoleAssignmentExists"), "{dup}");
    let listed = arm.list_role_assignments(&scope, Some(&info.principal_id)).await.unwrap();
    assert!(listed.iter().any(|a| a.name == created.name), "{listed:?}");
    assert!(listed.iter().all(|a| a.principal_id == info.principal_id), "{listed:?}");

    let request = podid_emulator::NodeRequest {
        resource_group: NODE_RESOURCE_GROUP.into(),
        scale_set: None,
        vm: Some("vm-0".into()),
        count: None,
    };
    env.emu.add_nodes(&request).await.unwrap();
    let vms = arm.list_vms(&sub, NODE_RESOURCE_GROUP).await.unwrap();
    assert_eq!(vms.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["vm-0"]);
}
