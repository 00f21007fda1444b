//! Throwaway key material of a local cluster: a CA, the API server's serving certificate, and
//! the RSA key that signs service-account tokens.
//!
//! Certificates use ECDSA P-256 (fast to make with `rcgen`); the service-account key is RSA 2048
//! because the tokens it signs are later exchanged at (emulated) Entra ID, which expects RS256.
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

use crate::{Error, Result};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub(crate) struct CertAndKey {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

/// The service-account signing key, PKCS#8 private and SPKI public PEM.
#[derive(Debug, Clone)]
pub(crate) struct SigningKey {
    pub(crate) private_pem: String,
    pub(crate) public_pem: String,
}

/// A certificate authority that lives as long as one cluster.
#[derive(Clone)]
pub(crate) struct Ca {
    issuer: std::sync::Arc<Issuer<'static, KeyPair>>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// Makes a new self-signed CA.
    pub(crate) fn new() -> Result<Self> {
        let key = KeyPair::generate().map_err(pki("CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "podid-testkit-ca");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(pki("CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok(Self { issuer: std::sync::Arc::new(Issuer::new(params, key)), cert_pem: cert.pem(), key_pem })
    }

    /// The CA certificate, PEM.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM (PKCS#8).
    pub(crate) fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A serving certificate for the API server on loopback and `extra_ips` (where nodes and pods
    /// reach it), under the names pods would use.
    pub(crate) fn serving_cert(&self, extra_ips: &[std::net::IpAddr]) -> Result<CertAndKey> {
        let names = [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ];
        let mut names: Vec<String> = names.map(String::from).to_vec();
        names.extend(extra_ips.iter().map(ToString::to_string));
        let mut params = CertificateParams::new(names).map_err(pki("serving certificate"))?;
        params.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params, "serving certificate")
    }

    /// A client certificate for user `common_name`, in `group` if given (the API server maps the
    /// organisation to a group), as kubelets, kube-proxy and the API server's kubelet client use.
    pub(crate) fn client_cert(&self, common_name: &str, group: Option<&str>) -> Result<CertAndKey> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, common_name);
        if let Some(group) = group {
            params.distinguished_name.push(DnType::OrganizationName, group);
        }
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params, "client certificate")
    }

    fn sign(&self, params: CertificateParams, what: &'static str) -> Result<CertAndKey> {
        let key = KeyPair::generate().map_err(pki(what))?;
        let cert = params.signed_by(&key, &self.issuer).map_err(pki(what))?;
        Ok(CertAndKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

/// A fresh RSA 2048 key for `--service-account-signing-key-file`.
pub(crate) fn service_account_key() -> Result<SigningKey> {
    const WHAT: &str = "service-account key";
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(pki(WHAT))?;
    let private_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(pki(WHAT))?.to_string();
    let public_pem = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(pki(WHAT))?;
    Ok(SigningKey { private_pem, public_pem })
}

fn pki<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> Error {
    move |e| Error::Pki { what, message: e.to_string() }
}
