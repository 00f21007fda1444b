//! TLS for the HTTPS listeners (Entra ID and ARM) and for outbound fetches of federated issuers.
//!
//! A CA (ECDSA P-256) is generated once per state directory and kept in `ca.pem`/`ca-key.pem`, so
//! clients that trust it keep working across restarts; a fresh server certificate for `localhost`,
//! `127.0.0.1`, `::1` and any extra addresses the configuration names (`tls_san_ips`) is issued
//! from it at every start. Only the ring crypto provider is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io { path: path.to_path_buf(), source }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The emulator's CA and the server configuration built from it.
pub struct Tls {
    pub ca_pem: String,
    pub ca_path: PathBuf,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl Tls {
    /// Loads or creates the CA in `dir` and issues a server certificate for loopback and
    /// `extra_ips`.
    pub fn init(dir: &Path, extra_ips: &[std::net::IpAddr]) -> Result<Self, TlsError> {
        let ca_path = dir.join("ca.pem");
        let key_path = dir.join("ca-key.pem");
        let loaded = match (std::fs::read_to_string(&ca_path), std::fs::read_to_string(&key_path)) {
            (Ok(cert), Ok(key)) => rcgen::KeyPair::from_pem(&key)
                .ok()
                .and_then(|k| rcgen::Issuer::from_ca_cert_pem(&cert, k).ok().map(|issuer| (cert, issuer))),
            _ => None,
        };
        let (ca_pem, issuer) = match loaded {
            Some(found) => found,
            None => {
                let key = rcgen::KeyPair::generate()?;
                let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
                params.distinguished_name.push(rcgen::DnType::CommonName, "podid-emulator CA");
                params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
                params.key_usages =
                    vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
                let cert = params.self_signed(&key)?;
                std::fs::write(&key_path, key.serialize_pem()).map_err(io(&key_path))?;
                std::fs::write(&ca_path, cert.pem()).map_err(io(&ca_path))?;
                (cert.pem(), rcgen::Issuer::new(params, key))
            }
        };
        let server_key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        let loopback = [std::net::Ipv4Addr::LOCALHOST.into(), std::net::Ipv6Addr::LOCALHOST.into()];
        for &ip in loopback.iter().chain(extra_ips) {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(ip));
        }
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &issuer)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(vec![server.der().clone()], key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self { ca_pem, ca_path, server_config: Arc::new(config) })
    }
}

/// A client configuration trusting exactly these CA certificates (DER).
pub fn client_config(roots: &[CertificateDer<'static>]) -> Result<rustls::ClientConfig, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        // A CA that does not parse is skipped: it cannot anchor anything anyway.
        let _ = store.add(root.clone());
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
