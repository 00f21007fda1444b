//! Client certificates for Entra ID: a PKCS#12 (PFX) blob and its password, or PEM, turned into
//! an RS256 client assertion.
//!
//! ```text
//!  PFX (AES-256/PBKDF2 as OpenSSL 3 and Python `cryptography` write it, or legacy 3DES/RC2)
//!    └─▶ RSA key + the certificate whose public key matches it (+ the other certificates)
//!          └─▶ JWT  header {alg: RS256, typ: JWT, x5t: b64url(SHA-1(DER)) padded, x5c: [b64(DER)…]}
//!                   claims {aud: token endpoint, iss = sub = client_id, jti, nbf, iat, exp = nbf + 600}
//! ```
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use rsa::signature::{SignatureEncoding as _, Signer as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use sha1::Digest as _;
use x509_cert::der::{Decode as _, Encode as _};

/// How long an assertion is valid, seconds (azure-identity uses the same).
pub const ASSERTION_LIFETIME_SECS: u64 = 600;

/// A certificate that cannot be used as a client credential.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The PKCS#12 blob is malformed, uses an unsupported algorithm, or the password is wrong.
    #[error("reading the PKCS#12 certificate failed (wrong password or unsupported format?): {0}")]
    Pkcs12(String),
    /// The PEM text holds no usable key or certificate.
    #[error("reading the PEM certificate failed: {0}")]
    Pem(String),
    /// No RSA private key was found.
    #[error("the certificate file holds no RSA private key")]
    NoKey,
    /// No certificate matches the private key.
    #[error("the certificate file holds no certificate for its private key")]
    NoMatchingCertificate,
    /// Signing failed.
    #[error("signing the client assertion failed: {0}")]
    Sign(String),
}

/// An RSA private key with its certificate chain (leaf first).
#[derive(Clone)]
pub struct ClientCertificate {
    key: RsaPrivateKey,
    chain: Vec<Vec<u8>>,
    x5t: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate").field("x5t", &self.x5t).finish_non_exhaustive()
    }
}

impl ClientCertificate {
    /// Reads a PKCS#12 blob (the `certificate` key of an upstream type-2 identity secret).
    pub fn from_pkcs12(data: &[u8], password: &str) -> Result<Self, CertificateError> {
        let archive = p12_keystore::Pkcs12Archive::from_pkcs12(data, password)
            .map_err(|e| CertificateError::Pkcs12(e.to_string()))?;
        let keys = archive.keys.iter().filter_map(|k| RsaPrivateKey::from_pkcs8_der(k.key.as_der()).ok());
        let certs: Vec<Vec<u8>> = archive.certs.iter().map(|c| c.cert.as_der().to_vec()).collect();
        Self::pair(keys.collect(), certs)
    }

    /// Reads PEM text holding an RSA key (PKCS#8 or PKCS#1) and its certificate(s).
    pub fn from_pem(pem: &[u8]) -> Result<Self, CertificateError> {
        let certs = CertificateDer::pem_slice_iter(pem)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertificateError::Pem(e.to_string()))?;
        let key = match PrivateKeyDer::from_pem_slice(pem) {
            Ok(PrivateKeyDer::Pkcs8(k)) => RsaPrivateKey::from_pkcs8_der(k.secret_pkcs8_der()).ok(),
            Ok(PrivateKeyDer::Pkcs1(k)) => RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der()).ok(),
            _ => None,
        };
        Self::pair(key.into_iter().collect(), certs)
    }

    /// Picks the first key that some certificate belongs to; that certificate leads the chain.
    fn pair(keys: Vec<RsaPrivateKey>, certs: Vec<Vec<u8>>) -> Result<Self, CertificateError> {
        if keys.is_empty() {
            return Err(CertificateError::NoKey);
        }
        for key in keys {
            let public = key.to_public_key();
            let Some(leaf) = certs.iter().position(|der| public_key(der).as_ref() == Some(&public)) else {
                continue;
            };
            let mut chain = vec![certs[leaf].clone()];
            chain.extend(certs.iter().enumerate().filter(|(i, _)| *i != leaf).map(|(_, c)| c.clone()));
            let x5t = URL_SAFE.encode(sha1::Sha1::digest(&chain[0]));
            return Ok(Self { key, chain, x5t });
        }
        Err(CertificateError::NoMatchingCertificate)
    }

    /// The `x5t` header value: base64url of the SHA-1 of the DER certificate, with padding.
    pub fn thumbprint(&self) -> &str {
        &self.x5t
    }

    /// The DER certificates, leaf first.
    pub fn chain(&self) -> &[Vec<u8>] {
        &self.chain
    }

    /// A signed client assertion for `client_id` at the token endpoint `audience`, valid from
    /// `now` (epoch seconds) for [`ASSERTION_LIFETIME_SECS`].
    pub fn assertion(&self, client_id: &str, audience: &str, now: u64) -> Result<String, CertificateError> {
        let header = json!({
            "alg": "RS256",
            "typ": "JWT",
            "x5t": self.x5t,
            "x5c": self.chain.iter().map(|c| STANDARD.encode(c)).collect::<Vec<_>>(),
        });
        let claims = json!({
            "aud": audience,
            "iss": client_id,
            "sub": client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signer = SigningKey::<sha2::Sha256>::new(self.key.clone());
        let signature =
            signer.try_sign(signing_input.as_bytes()).map_err(|e| CertificateError::Sign(e.to_string()))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes())))
    }
}

/// The RSA public key of a DER certificate, if it has one.
fn public_key(der: &[u8]) -> Option<RsaPublicKey> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let spki = cert.tbs_certificate.subject_public_key_info.to_der().ok()?;
    RsaPublicKey::from_public_key_der(&spki).ok()
}

#[cfg(test)]
#[path = "tests/certificate.rs"]
mod tests;
