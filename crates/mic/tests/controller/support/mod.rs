//! Test harness: the shared real kube-apiserver (one per test binary), a fresh namespace and a
//! fresh in-process Azure emulator per test, and controllers started in-process against both.
//! Each controller watches only its test's namespaces, so tests run in parallel without seeing
//! each other's objects.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use podid_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use podid_api::{
    AssignedState, AzureAssignedIdentity, AzureIdentity, AzureIdentityBinding, AzureIdentityBindingSpec,
    AzureIdentitySpec,
};
use podid_azure::arm::ArmOptions;
use podid_azure::config::ArmAuth;
use podid_azure::credential::token_source;
use podid_azure::http::{Backoff, HttpOptions, build_client};
use podid_azure::imds::ImdsOptions;
use podid_azure::{ArmClient, Cloud, Secret};
use podid_core::matching::MatchOptions;
use podid_emulator::config::builtin::{CLUSTER_APP, NODE_RESOURCE_GROUP, SCALE_SET};
use podid_emulator::{Emulator, EmulatorConfig, LoggedRequest, RunningEmulator, SettingsUpdate};
use podid_mic::controller::Settings;
use podid_mic::leader::Election;
use podid_mic::{Config, Running};
use podid_testkit::{NodeBuilder, PodBuilder, TestCluster};
use url::Url;

pub const WAIT: Duration = Duration::from_secs(20);

/// One test's world.
pub struct Env {
    pub cluster: &'static TestCluster,
    pub client: kube::Client,
    pub ns: String,
    pub emu: RunningEmulator,
    pub scope: BTreeSet<String>,
}

/// Options of a controller under test.
#[derive(Clone, Debug)]
pub struct MicOptions {
    pub identity: String,
    pub force_namespaced: bool,
    pub immutable: Vec<String>,
    pub drift: Option<Duration>,
    pub lease: Duration,
    pub backoff: Duration,
}

impl Default for MicOptions {
    fn default() -> Self {
        Self {
            identity: "mic-a".into(),
            force_namespaced: false,
            immutable: vec![],
            drift: None,
            lease: Duration::from_secs(2),
            backoff: Duration::from_secs(1),
        }
    }
}

impl Env {
    pub async fn new(name: &str) -> Self {
        Self::with_config(name, EmulatorConfig::default()).await
    }

    pub async fn with_config(name: &str, config: EmulatorConfig) -> Self {
        podid_azure::install_crypto_provider();
        let cluster = TestCluster::shared().await.expect("test cluster starts");
        let client = cluster.client().unwrap();
        let ns = cluster.namespace(name).await.unwrap();
        let emu = Emulator::start(config).await.expect("emulator starts");
        emu.update_settings(&SettingsUpdate { operation_duration_ms: Some(50), ..SettingsUpdate::default() });
        let scope = BTreeSet::from([ns.clone()]);
        Self { cluster, client, ns, emu, scope }
    }

    /// A second namespace watched by this test's controllers (start them after this).
    pub async fn extra_namespace(&mut self, name: &str) -> String {
        let ns = self.cluster.namespace(name).await.unwrap();
        self.scope.insert(ns.clone());
        ns
    }

    pub fn arm(&self) -> ArmClient {
        self.arm_with_timeout(None)
    }

    /// An ARM client as the cluster identity; its HTTP requests time out after `timeout`.
    pub fn arm_with_timeout(&self, timeout: Option<Duration>) -> ArmClient {
        let info = self.emu.info();
        let app = &info.applications[CLUSTER_APP];
        let auth = ArmAuth::Secret {
            tenant_id: self.emu.tenant_id(),
            client_id: app.client_id.clone(),
            secret: Secret::new(app.secrets[0].clone()),
        };
        let cloud = Cloud::public()
            .with_resource_manager(Url::parse(&self.emu.arm_url()).unwrap())
            .with_authority_host(Url::parse(&self.emu.login_url()).unwrap());
        let http = HttpOptions {
            extra_ca_files: vec![self.emu.ca_pem_path().to_path_buf()],
            timeout,
            ..HttpOptions::default()
        };
        let credential = token_source(&auth, &cloud, &http, ImdsOptions::default()).unwrap();
        let options = ArmOptions {
            backoff: Backoff {
                max_retries: 2,
                initial: Duration::from_millis(50),
                max: Duration::from_millis(200),
                jitter: true,
            },
            poll_interval: Duration::from_millis(50),
            ..ArmOptions::default()
        };
        ArmClient::for_cloud(build_client(&http).unwrap(), &cloud, credential, options)
    }

    /// Starts a controller (in this test's runtime).
    pub fn mic(&self, opts: MicOptions) -> Running {
        self.mic_using(opts, self.arm())
    }

    /// Starts a controller that talks to ARM through `arm`.
    pub fn mic_using(&self, opts: MicOptions, arm: ArmClient) -> Running {
        let config = Config {
            settings: Settings {
                match_options: MatchOptions {
                    force_namespaced: opts.force_namespaced,
                    ..MatchOptions::default()
                },
                batch_window: Duration::from_millis(50),
                drift_interval: opts.drift,
                base_backoff: opts.backoff,
                max_backoff: Duration::from_secs(10),
                recheck_interval: Duration::from_millis(500),
            },
            scope: Some(self.scope.clone()),
            election: Election {
                namespace: self.ns.clone(),
                name: "podid-mic".into(),
                identity: opts.identity.clone(),
                lease_duration: opts.lease,
            },
            immutable: opts.immutable.iter().map(|s| s.to_ascii_lowercase()).collect(),
            max_identity_retries: 2,
            concurrency: 20,
        };
        podid_mic::start(self.client.clone(), arm, config)
    }

    /// Node `{ns}-n{i}`: instance `i` of the built-in scale set.
    pub async fn node(&self, i: u32) -> String {
        self.node_in(SCALE_SET, i).await
    }

    /// Node `{ns}-{scale set}-n{i}` of another scale set in the node group (created in the emulator).
    pub async fn node_in(&self, scale_set: &str, i: u32) -> String {
        let name = if scale_set == SCALE_SET {
            format!("{}-n{i}", self.ns)
        } else {
            format!("{}-{scale_set}-n{i}", self.ns)
        };
        NodeBuilder::new(&name)
            .vmss(&self.emu.subscription_id(), NODE_RESOURCE_GROUP, scale_set, i)
            .create(&self.client)
            .await
            .unwrap();
        name
    }

    pub fn identity_id(&self, name: &str) -> String {
        self.emu.info().identities[name].id.clone()
    }

    pub fn client_id(&self, name: &str) -> String {
        self.emu.info().identities[name].client_id.clone()
    }

    /// `AzureIdentity` `name` in `ns` for emulator identity `emu_identity` (type 0).
    pub async fn identity_in(&self, ns: &str, name: &str, emu_identity: &str) -> AzureIdentity {
        let mut id = AzureIdentity::new(
            name,
            AzureIdentitySpec {
                identity_type: 0,
                resource_id: self.identity_id(emu_identity),
                client_id: self.client_id(emu_identity),
                ..AzureIdentitySpec::default()
            },
        );
        id.metadata.namespace = Some(ns.into());
        Api::<AzureIdentity>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &id)
            .await
            .unwrap()
    }

    pub async fn identity(&self, name: &str, emu_identity: &str) -> AzureIdentity {
        self.identity_in(&self.ns.clone(), name, emu_identity).await
    }

    /// Binding `name` with selector `selector` to identity `identity`.
    pub async fn binding_in(
        &self,
        ns: &str,
        name: &str,
        identity: &str,
        selector: &str,
    ) -> AzureIdentityBinding {
        let b = AzureIdentityBinding {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: AzureIdentityBindingSpec {
                azure_identity: identity.into(),
                selector: selector.into(),
                ..AzureIdentityBindingSpec::default()
            },
            status: None,
        };
        Api::<AzureIdentityBinding>::namespaced(self.client.clone(), ns)
            .create(&PostParams::default(), &b)
            .await
            .unwrap()
    }

    pub async fn binding(&self, name: &str, identity: &str, selector: &str) -> AzureIdentityBinding {
        self.binding_in(&self.ns.clone(), name, identity, selector).await
    }

    /// A Running pod on `node` labelled `aadpodidbinding=selector`.
    pub async fn pod_in(&self, ns: &str, name: &str, node: &str, selector: &str) {
        PodBuilder::new(ns, name)
            .node(node)
            .label("aadpodidbinding", selector)
            .ip("10.244.0.10".parse().unwrap())
            .create(&self.client)
            .await
            .unwrap();
    }

    pub async fn pod(&self, name: &str, node: &str, selector: &str) {
        self.pod_in(&self.ns.clone(), name, node, selector).await;
    }

    pub async fn delete_pod(&self, name: &str) {
        podid_testkit::kubelet::delete_pod(&self.client, &self.ns, name).await.unwrap();
    }

    /// Every assigned identity of this test's pods.
    pub async fn aais(&self) -> Vec<AzureAssignedIdentity> {
        let all = Api::<AzureAssignedIdentity>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        all.items.into_iter().filter(|a| self.scope.contains(&a.spec.pod_namespace)).collect()
    }

    /// Lower-cased identity ids on the built-in scale set.
    pub fn on_vmss(&self) -> Vec<String> {
        self.on_scale_set(SCALE_SET)
    }

    pub fn on_scale_set(&self, name: &str) -> Vec<String> {
        self.emu.assigned_identities(NODE_RESOURCE_GROUP, name).unwrap_or_default()
    }

    pub fn has(&self, emu_identity: &str) -> bool {
        self.on_vmss().contains(&self.identity_id(emu_identity).to_ascii_lowercase())
    }

    /// ARM PATCHes the emulator received.
    pub fn patches(&self) -> Vec<LoggedRequest> {
        self.emu.requests().into_iter().filter(|r| r.method == "PATCH").collect()
    }

    pub fn arm_requests(&self) -> Vec<LoggedRequest> {
        self.emu.requests().into_iter().filter(|r| r.surface == podid_emulator::Surface::Arm).collect()
    }

    /// Waits until there is exactly one assigned identity per entry of `names` (in any order)
    /// with the given states.
    pub async fn wait_states(&self, want: &[(&str, AssignedState)]) -> Vec<AzureAssignedIdentity> {
        let mut want: Vec<(String, AssignedState)> = want.iter().map(|(n, s)| (n.to_string(), *s)).collect();
        want.sort();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let aais = self.aais().await;
            let mut have: Vec<(String, AssignedState)> =
                aais.iter().map(|a| (a.metadata.name.clone().unwrap_or_default(), a.state())).collect();
            have.sort();
            if have == want {
                return aais;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "assigned identities: want {want:?}, have {have:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_none(&self) {
        self.wait_states(&[]).await;
    }

    /// Events whose reason is `reason`, in this test's namespaces and `default`.
    pub async fn events(&self, reason: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
        let all = Api::<k8s_openapi::api::events::v1::Event>::all(self.client.clone())
            .list(&ListParams::default())
            .await
            .unwrap();
        all.items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter(|e| {
                e.regarding
                    .as_ref()
                    .and_then(|r| r.namespace.as_ref())
                    .is_some_and(|n| self.scope.contains(n))
            })
            .collect()
    }

    /// Deletes an assigned identity the way a careless operator does: finalizer stripped first.
    pub async fn strip_and_delete_aai(&self, name: &str) {
        let api =
            Api::<AzureAssignedIdentity>::namespaced(self.client.clone(), podid_api::DEFAULT_AAI_NAMESPACE);
        let patch = serde_json::json!({ "metadata": { "finalizers": null } });
        api.patch(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
        api.delete(name, &DeleteParams::default()).await.unwrap();
    }

    /// The ledgers (what podid added to each scale set) of this test's controllers.
    pub async fn ledgers(&self) -> Vec<podid_core::scaleset::TargetLedger> {
        let api = Api::<k8s_openapi::api::core::v1::ConfigMap>::namespaced(self.client.clone(), &self.ns);
        let list = api
            .list(&ListParams::default().labels(podid_core::scaleset::ledger::LEDGER_LABEL))
            .await
            .unwrap();
        list.items.into_iter().map(|cm| podid_mic::ledger::from_config_map(cm).unwrap().value).collect()
    }

    /// Reports, as the agent on the pod's node does, that IMDS refused the identity of `aai`.
    pub async fn report_drift(&self, aai: &AzureAssignedIdentity) {
        let pod = podid_core::PodKey::new(aai.spec.pod_namespace.clone(), aai.spec.pod.clone());
        let client =
            aai.spec.azure_identity_ref.as_ref().map(|i| i.spec.client_id.clone()).unwrap_or_default();
        let now = k8s_openapi::jiff::Timestamp::now();
        let e = podid_nmi::drift::event_for(
            aai,
            &pod,
            None,
            &aai.spec.node_name,
            &client,
            "Identity not found",
            now,
        );
        let ns = aai.metadata.namespace.clone().unwrap();
        Api::<k8s_openapi::api::events::v1::Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &e)
            .await
            .unwrap();
    }

    /// Puts an identity on the built-in scale set behind podid's back (an ARM PATCH of its own).
    pub async fn add_behind_podids_back(&self, emu_identity: &str) {
        use podid_core::scaleset::{Delta, Target, TargetKind, patches};
        let target = Target {
            subscription: self.emu.subscription_id(),
            resource_group: NODE_RESOURCE_GROUP.into(),
            kind: TargetKind::ScaleSet,
            name: SCALE_SET.into(),
        };
        let arm = self.arm();
        let current = arm.get_identity(&target).await.unwrap().identity;
        let add = [self.identity_id(emu_identity).to_ascii_lowercase()].into();
        for p in patches(&current, &Delta { add, remove: Default::default() }) {
            arm.patch_identity(&target, &p).await.unwrap();
        }
    }

    /// Takes an identity off every scale set behind podid's back.
    pub fn remove_behind_podids_back(&self, emu_identity: &str) {
        let id = self.identity_id(emu_identity).to_ascii_lowercase();
        self.emu.with_world(|w| {
            for s in w.scale_sets.values_mut() {
                s.identity.user.remove(&id);
            }
        });
    }

    pub async fn delete<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(self.client.clone(), &self.ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// The name of the assigned identity for pod `pod` in `ns` and identity `identity`.
pub fn aai_name(pod: &str, ns: &str, identity: &str) -> String {
    format!("{pod}-{ns}-{identity}")
}

/// Polls `f` every 50 ms until it returns `Some`, or `None` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls a condition until true; panics with `what` after `WAIT`.
pub async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let ok = eventually(WAIT, || {
        let fut = f();
        async move { fut.await.then_some(()) }
    })
    .await;
    assert!(ok.is_some(), "timed out waiting for: {what}");
}
