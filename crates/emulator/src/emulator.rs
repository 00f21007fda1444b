//! Starting the emulator: build the world from the configuration, create keys and TLS material in the
//! state directory, bind every listener on 127.0.0.1 port 0 (HTTPS for Entra ID and ARM, HTTP for admin
//! and for each node's IMDS), and hand back a [`RunningEmulator`] with the URLs and test helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::NodeRequest;
use crate::config::{AppConfig, ConfigError, EmulatorConfig};
use crate::crypto::{CryptoError, SigningKey, pem_blocks};
use crate::faults::{FaultSpec, Faults, LoggedRequest};
use crate::model::{Application, TokenSubject, World};
use crate::state::{Settings, SettingsUpdate, Shared, SharedState, Urls};
use crate::tls::{Tls, TlsError};
use crate::tokens::{self, ClientAuth, Minted, TokenVersion};

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// An application's credentials, as tests need them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AppInfo {
    pub client_id: String,
    pub object_id: String,
    pub secrets: Vec<String>,
    /// Key and certificate PEM for `CertificateCredential`, when one was generated.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub certificate_pem: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdentityInfo {
    pub id: String,
    pub resource_group: String,
    pub client_id: String,
    pub principal_id: String,
}

/// Everything a client needs to use a running emulator; written as the `--ready-file`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ReadyInfo {
    pub pid: u32,
    /// Entra ID authority host, `https://127.0.0.1:PORT`.
    pub login_url: String,
    /// ARM base URL, `https://127.0.0.1:PORT`.
    pub arm_url: String,
    /// Admin API, `http://127.0.0.1:PORT`.
    pub admin_url: String,
    /// The CA certificate (PEM file) that signs the HTTPS listeners' certificate.
    pub ca_pem: PathBuf,
    pub state_dir: PathBuf,
    pub tenant_id: String,
    pub subscription_id: String,
    pub location: String,
    /// Node name → IMDS base URL (`http://127.0.0.1:PORT`).
    pub imds: BTreeMap<String, String>,
    /// Application name → credentials.
    pub applications: BTreeMap<String, AppInfo>,
    /// Identity name → ids.
    pub identities: BTreeMap<String, IdentityInfo>,
}

fn app_info(a: &Application) -> AppInfo {
    AppInfo {
        client_id: a.client_id.clone(),
        object_id: a.object_id.clone(),
        secrets: a.secrets.clone(),
        certificate_pem: a.certificate_pem_path.clone(),
    }
}

pub(crate) fn ready_info(s: &Shared) -> ReadyInfo {
    let world = s.world.read();
    let urls = s.urls.read();
    ReadyInfo {
        pid: std::process::id(),
        login_url: urls.login.clone(),
        arm_url: urls.arm.clone(),
        admin_url: s.admin_url.read().clone(),
        ca_pem: s.state_dir.join("ca.pem"),
        state_dir: s.state_dir.clone(),
        tenant_id: world.tenant_id.clone(),
        subscription_id: world.subscription_id.clone(),
        location: world.location.clone(),
        imds: s.imds_urls.read().clone(),
        applications: world.applications.iter().map(|a| (a.name.clone(), app_info(a))).collect(),
        identities: world
            .identities
            .values()
            .map(|u| {
                let info = IdentityInfo {
                    id: u.id(&world.subscription_id),
                    resource_group: u.resource_group.clone(),
                    client_id: u.client_id.clone(),
                    principal_id: u.principal_id.clone(),
                };
                (u.name.clone(), info)
            })
            .collect(),
    }
}

pub(crate) async fn add_nodes(
    s: &SharedState,
    req: &NodeRequest,
) -> Result<BTreeMap<String, String>, EmulatorError> {
    let names = {
        let mut world = s.world.write();
        if world.group(&req.resource_group).is_none() {
            return Err(EmulatorError::Invalid(format!("no resource group '{}'", req.resource_group)));
        }
        match (&req.scale_set, &req.vm) {
            (Some(set), None) => {
                let key = world.add_scale_set(set, &req.resource_group, 0);
                (0..req.count.unwrap_or(1)).filter_map(|_| world.add_instance(&key)).collect::<Vec<_>>()
            }
            (None, Some(vm)) => {
                world.add_vm(vm, &req.resource_group);
                vec![vm.clone()]
            }
            _ => return Err(EmulatorError::Invalid("give exactly one of scale_set and vm".into())),
        }
    };
    crate::imds::ensure_listeners(s).await;
    let urls = s.imds_urls.read();
    Ok(names.into_iter().filter_map(|n| urls.get(&n).map(|u| (n.clone(), u.clone()))).collect())
}

pub(crate) fn add_application(s: &Shared, app: &AppConfig) -> Result<AppInfo, EmulatorError> {
    let config = EmulatorConfig {
        applications: vec![app.clone()],
        resource_groups: vec![],
        identities: vec![],
        scale_sets: vec![],
        virtual_machines: vec![],
        role_assignments: vec![],
        ..EmulatorConfig::default()
    };
    let built = World::from_config(&config, &s.state_dir, Instant::now())?;
    let new = built
        .applications
        .into_iter()
        .next()
        .ok_or_else(|| EmulatorError::Invalid("no application".into()))?;
    let mut world = s.world.write();
    if world
        .applications
        .iter()
        .any(|a| a.name.eq_ignore_ascii_case(&new.name) || a.client_id == new.client_id)
    {
        return Err(EmulatorError::Invalid(format!("application '{}' already exists", new.name)));
    }
    let info = app_info(&new);
    world.applications.push(new);
    Ok(info)
}

pub(crate) fn add_trusted_ca_pem(s: &Shared, pem: &str) -> Result<(), EmulatorError> {
    let certs = pem_blocks(pem, "CERTIFICATE");
    if certs.is_empty() {
        return Err(EmulatorError::Invalid("no CERTIFICATE block in the PEM".into()));
    }
    s.trusted_cas.write().extend(certs.into_iter().map(CertificateDer::from));
    Ok(())
}

pub(crate) fn mint_token(
    s: &Shared,
    principal: &str,
    audience: &str,
    version: TokenVersion,
) -> Result<Minted, EmulatorError> {
    let (subject, tenant) = {
        let world = s.world.read();
        let subject = if let Some(a) = world
            .applications
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case(principal) || a.client_id.eq_ignore_ascii_case(principal))
        {
            TokenSubject { object_id: a.object_id.clone(), app_id: a.client_id.clone(), mi_res_id: None }
        } else if let Some(u) = world
            .identities
            .values()
            .find(|u| u.name.eq_ignore_ascii_case(principal) || u.client_id.eq_ignore_ascii_case(principal))
        {
            TokenSubject {
                object_id: u.principal_id.clone(),
                app_id: u.client_id.clone(),
                mi_res_id: Some(u.id(&world.subscription_id)),
            }
        } else if uuid::Uuid::parse_str(principal).is_ok() {
            TokenSubject { object_id: principal.to_string(), app_id: principal.to_string(), mi_res_id: None }
        } else {
            return Err(EmulatorError::Invalid(format!("unknown principal '{principal}'")));
        };
        (subject, world.tenant_id.clone())
    };
    let login = s.urls.read().login.clone();
    let lifetime = s.settings.read().token_lifetime_secs;
    Ok(tokens::mint(&s.signing, &login, &tenant, &subject, audience, version, ClientAuth::Secret, lifetime)?)
}

/// Builds the shared state (world, signing key) with keys and certificates kept in `state_dir`, without
/// binding anything: the routers (`login::app`, `arm::app`, `imds::app`, `admin::app`) built from it can be
/// driven with `tower::ServiceExt::oneshot`.
pub fn build_state(config: &EmulatorConfig, state_dir: &Path) -> Result<SharedState, EmulatorError> {
    std::fs::create_dir_all(state_dir)?;
    let state_dir = state_dir.canonicalize()?;
    let key = crate::crypto::load_or_generate_rsa(&state_dir.join("signing-key.pem"))?;
    let signing = SigningKey::new(&key)?;
    let world = World::from_config(config, &state_dir, Instant::now())?;
    let mut trusted = Vec::new();
    for file in &config.trusted_ca_files {
        let pem = std::fs::read_to_string(file)
            .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
        trusted.extend(pem_blocks(&pem, "CERTIFICATE").into_iter().map(CertificateDer::from));
    }
    let (shutdown, _) = tokio::sync::watch::channel(false);
    Ok(Arc::new(Shared {
        world: RwLock::new(world),
        signing,
        settings: RwLock::new(Settings::from_config(config)),
        faults: Faults::default(),
        urls: RwLock::new(Urls { login: "https://127.0.0.1".into(), arm: "https://127.0.0.1".into() }),
        admin_url: RwLock::new(String::new()),
        trusted_cas: RwLock::new(trusted),
        state_dir,
        imds_urls: RwLock::new(BTreeMap::new()),
        listener_lock: tokio::sync::Mutex::new(()),
        imds_cache: parking_lot::Mutex::new(std::collections::HashMap::new()),
        shutdown,
    }))
}

/// Entry point.
pub struct Emulator;

impl Emulator {
    /// Starts with a fresh temporary state directory (removed when the emulator is dropped).
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        let dir = tempfile::Builder::new().prefix("podid-emulator-").tempdir()?;
        let mut running = Self::start_in(config, dir.path()).await?;
        running.tempdir = Some(dir);
        Ok(running)
    }

    /// Starts with keys, CA and generated certificates kept in `state_dir` (created if missing).
    pub async fn start_in(
        config: EmulatorConfig,
        state_dir: &Path,
    ) -> Result<RunningEmulator, EmulatorError> {
        let shared = build_state(&config, state_dir)?;
        let tls = Tls::init(&shared.state_dir, &config.tls_san_ips)?;
        let bind = || TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0));
        let (login, arm, admin) = (bind().await?, bind().await?, bind().await?);
        let url = |scheme: &str, l: &TcpListener| l.local_addr().map(|a| format!("{scheme}://{a}"));
        *shared.urls.write() = Urls { login: url("https", &login)?, arm: url("https", &arm)? };
        *shared.admin_url.write() = url("http", &admin)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config.clone());
        let mut tasks = Vec::new();
        let spawn =
            |l, tls, router| tokio::spawn(crate::server::serve(l, tls, router, shared.shutdown.subscribe()));
        tasks.push(spawn(login, Some(acceptor.clone()), crate::login::app(shared.clone())));
        tasks.push(spawn(arm, Some(acceptor), crate::arm::app(shared.clone())));
        tasks.push(spawn(admin, None, crate::admin::app(shared.clone())));
        crate::imds::ensure_listeners(&shared).await;
        let info = ready_info(&shared);
        tracing::info!(
            login = info.login_url,
            arm = info.arm_url,
            admin = info.admin_url,
            nodes = info.imds.len(),
            "Emulator ready"
        );
        Ok(RunningEmulator { shared, tasks, tempdir: None, ca_pem: tls.ca_pem, ca_path: tls.ca_path })
    }
}

/// A running emulator. Dropping it stops every listener.
pub struct RunningEmulator {
    shared: SharedState,
    tasks: Vec<JoinHandle<()>>,
    tempdir: Option<tempfile::TempDir>,
    ca_pem: String,
    ca_path: PathBuf,
}

impl RunningEmulator {
    /// URLs, ids and credentials (what the binary writes to its ready file).
    pub fn info(&self) -> ReadyInfo {
        ready_info(&self.shared)
    }
    pub fn login_url(&self) -> String {
        self.shared.urls.read().login.clone()
    }
    pub fn arm_url(&self) -> String {
        self.shared.urls.read().arm.clone()
    }
    pub fn admin_url(&self) -> String {
        self.shared.admin_url.read().clone()
    }
    /// IMDS base URL of a node.
    pub fn imds_url(&self, node: &str) -> Option<String> {
        self.shared.imds_urls.read().get(node).cloned()
    }
    /// Node name → IMDS base URL.
    pub fn imds_urls(&self) -> BTreeMap<String, String> {
        self.shared.imds_urls.read().clone()
    }
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }
    pub fn ca_pem_path(&self) -> &Path {
        &self.ca_path
    }
    pub fn tenant_id(&self) -> String {
        self.shared.tenant_id()
    }
    pub fn subscription_id(&self) -> String {
        self.shared.world.read().subscription_id.clone()
    }
    /// Mints a token for an application or identity (name or client id) or an object id.
    pub fn mint_token(&self, principal: &str, audience: &str) -> Result<String, EmulatorError> {
        mint_token(&self.shared, principal, audience, TokenVersion::V1).map(|m| m.access_token)
    }
    /// The JWKS document tokens verify against.
    pub fn jwks(&self) -> serde_json::Value {
        self.shared.signing.jwks()
    }
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.faults.requests()
    }
    pub fn clear_requests(&self) {
        self.shared.faults.clear_requests();
    }
    pub fn add_fault(&self, spec: FaultSpec) -> Result<u64, EmulatorError> {
        self.shared.faults.add(spec).map_err(|e| EmulatorError::Invalid(e.to_string()))
    }
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }
    pub fn update_settings(&self, update: &SettingsUpdate) -> Settings {
        let mut s = self.shared.settings.write();
        s.apply(update);
        s.clone()
    }
    /// Adds scale set instances or a VM at run time; returns the new nodes' IMDS URLs.
    pub async fn add_nodes(&self, req: &NodeRequest) -> Result<BTreeMap<String, String>, EmulatorError> {
        add_nodes(&self.shared, req).await
    }
    pub fn add_application(&self, app: &AppConfig) -> Result<AppInfo, EmulatorError> {
        add_application(&self.shared, app)
    }
    pub fn add_trusted_ca_pem(&self, pem: &str) -> Result<(), EmulatorError> {
        add_trusted_ca_pem(&self.shared, pem)
    }
    /// Lower-cased ids of the user-assigned identities on a scale set or VM (by name).
    pub fn assigned_identities(&self, resource_group: &str, name: &str) -> Option<Vec<String>> {
        let world = self.shared.world.read();
        let find = |kind: &str| {
            crate::model::compute_id(&world.subscription_id, resource_group, kind, name).to_ascii_lowercase()
        };
        world
            .scale_sets
            .get(&find("virtualMachineScaleSets"))
            .map(|s| &s.identity)
            .or_else(|| world.vms.get(&find("virtualMachines")).map(|v| &v.identity))
            .map(|b| b.user.keys().cloned().collect())
    }
    /// Direct access to the world (for assertions and set-up in tests).
    pub fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.shared.world.write())
    }
    /// Stops every listener and waits for them (up to 5 s).
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        let tasks = std::mem::take(&mut self.tasks);
        let _ = tokio::time::timeout(Duration::from_secs(5), futures_join(tasks)).await;
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
    }
}
