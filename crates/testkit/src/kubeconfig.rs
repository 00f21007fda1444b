//! Kubeconfig documents: the admin's, and ones derived from it for other identities.
//!
//! Every client the test kit hands out is built from a [`Kubeconfig`], so a file written for a
//! MIC or NMI process and a `kube::Client` used in a test authenticate in exactly the same way.
use std::path::Path;

use base64::Engine as _;
use kube::config::{AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

use crate::{Error, Result};

const NAME: &str = "podid-test";

/// A single-context kubeconfig for `server`, trusting `ca_pem`, as `auth`.
pub(crate) fn single(server: &str, ca_pem: &str, auth: AuthInfo) -> Kubeconfig {
    let cluster = Cluster {
        server: Some(server.to_owned()),
        certificate_authority_data: Some(base64::engine::general_purpose::STANDARD.encode(ca_pem)),
        ..Cluster::default()
    };
    Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster { name: NAME.into(), cluster: Some(cluster), ..NamedCluster::default() }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(auth),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context { cluster: NAME.into(), user: Some(NAME.into()), ..Context::default() }),
            ..NamedContext::default()
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    }
}

/// Bearer-token credentials.
pub(crate) fn token(token: &str) -> AuthInfo {
    AuthInfo { token: Some(token.to_owned().into()), ..AuthInfo::default() }
}

/// Client-certificate credentials.
pub(crate) fn client_cert(cert: &crate::pki::CertAndKey) -> AuthInfo {
    let b64 = |pem: &str| base64::engine::general_purpose::STANDARD.encode(pem);
    AuthInfo {
        client_certificate_data: Some(b64(&cert.cert_pem)),
        client_key_data: Some(b64(&cert.key_pem).into()),
        ..AuthInfo::default()
    }
}

/// `base` reduced to its current context, with that context's user changed by `change`.
pub(crate) fn derive(base: &Kubeconfig, change: impl FnOnce(&mut AuthInfo)) -> Kubeconfig {
    let mut config = base.clone();
    let context = current_context(&config).cloned().unwrap_or_default();
    config.contexts.retain(|named| Some(&named.name) == config.current_context.as_ref());
    config.clusters.retain(|named| named.name == context.cluster);
    config.auth_infos.retain(|named| Some(&named.name) == context.user.as_ref());
    let mut auth = config.auth_infos.first().and_then(|named| named.auth_info.clone()).unwrap_or_default();
    change(&mut auth);
    let user = context.user.unwrap_or_else(|| NAME.into());
    config.auth_infos =
        vec![NamedAuthInfo { name: user.clone(), auth_info: Some(auth), ..NamedAuthInfo::default() }];
    if let Some(named) = config.contexts.first_mut().and_then(|named| named.context.as_mut()) {
        named.user = Some(user);
    }
    config
}

/// The cluster entry the current context points at.
pub(crate) fn current_cluster(config: &Kubeconfig) -> Option<&Cluster> {
    let name = &current_context(config)?.cluster;
    config.clusters.iter().find(|named| &named.name == name)?.cluster.as_ref()
}

fn current_context(config: &Kubeconfig) -> Option<&Context> {
    let name = config.current_context.as_ref()?;
    config.contexts.iter().find(|named| &named.name == name)?.context.as_ref()
}

/// The CA bundle of the current cluster, PEM, if the kubeconfig names one.
pub(crate) fn ca_pem(config: &Kubeconfig) -> Option<String> {
    let cluster = current_cluster(config)?;
    if let Some(data) = &cluster.certificate_authority_data {
        let bytes = base64::engine::general_purpose::STANDARD.decode(data.trim()).ok()?;
        return String::from_utf8(bytes).ok();
    }
    std::fs::read_to_string(cluster.certificate_authority.as_ref()?).ok()
}

/// Writes `config` as YAML, readable by `kubectl --kubeconfig` and only by its owner.
pub(crate) fn write(config: &Kubeconfig, path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let invalid = |message: String| Error::Kubeconfig { path: path.to_owned(), message };
    let yaml = serde_saphyr::to_string(config).map_err(|e| invalid(e.to_string()))?;
    let io = |source| Error::Io { action: "write", path: path.to_owned(), source };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    std::io::Write::write_all(&mut file, yaml.as_bytes()).map_err(io)
}

/// Reads the kubeconfig at `path` (relative file references made absolute).
pub(crate) fn read(path: &Path) -> Result<Kubeconfig> {
    let config = Kubeconfig::read_from(path)
        .map_err(|e| Error::Kubeconfig { path: path.to_owned(), message: e.to_string() })?;
    if current_cluster(&config).is_none() {
        let message = "no current-context, or it names no cluster".into();
        return Err(Error::Kubeconfig { path: path.to_owned(), message });
    }
    Ok(config)
}

/// A client for `config`'s current context.
///
/// Must be called inside a Tokio runtime; the client lives on that runtime.
pub(crate) fn client(config: Kubeconfig) -> Result<kube::Client> {
    // kube picks rustls' process-wide provider; make sure there is one even if several crypto
    // backends end up compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let invalid = |message: String| Error::Kubeconfig { path: "<in memory>".into(), message };
    let config = kube::Config::try_from(config).map_err(|e| invalid(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| invalid(e.to_string()))
}
