//! Keys and certificates: the RSA key Entra ID signs tokens with (published as JWKS), client certificates
//! registered on applications (looked up by SHA-1 `x5t` or SHA-256 `x5t#S256` thumbprint), and the
//! generation of both. RSA keys come from the `rsa` crate (ring cannot generate RSA keys); certificates
//! are built with `rcgen`.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha1::Digest as _;
use x509_cert::der::{Decode as _, Encode as _};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("RSA: {0}")]
    Rsa(String),
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Generates a 2048-bit RSA key.
pub fn generate_rsa() -> Result<RsaPrivateKey, CryptoError> {
    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).map_err(|e| CryptoError::Rsa(e.to_string()))
}

fn write(path: &Path, text: &str) -> Result<(), CryptoError> {
    std::fs::write(path, text).map_err(|source| CryptoError::Io { path: path.display().to_string(), source })
}

/// Loads a PKCS#8 PEM RSA key from `path`, or generates one and writes it there.
pub fn load_or_generate_rsa(path: &Path) -> Result<RsaPrivateKey, CryptoError> {
    if let Ok(pem) = std::fs::read_to_string(path)
        && let Ok(key) = RsaPrivateKey::from_pkcs8_pem(&pem)
    {
        return Ok(key);
    }
    let key = generate_rsa()?;
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| CryptoError::Rsa(e.to_string()))?;
    write(path, &pem)?;
    Ok(key)
}

/// The token-signing key: RS256, published in the JWKS under `kid`.
pub struct SigningKey {
    pub kid: String,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    n: String,
    e: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn new(key: &RsaPrivateKey) -> Result<Self, CryptoError> {
        let der = key.to_pkcs1_der().map_err(|e| CryptoError::Rsa(e.to_string()))?;
        let public = key.to_public_key();
        let n = URL_SAFE_NO_PAD.encode(public.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(public.e().to_bytes_be());
        // Entra's kid is a base64url thumbprint; derive a stable one from the modulus.
        let kid = URL_SAFE_NO_PAD.encode(&sha1::Sha1::digest(public.n().to_bytes_be())[..]);
        let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&n, &e)
            .map_err(|e| CryptoError::Rsa(e.to_string()))?;
        Ok(Self { kid, encoding: jsonwebtoken::EncodingKey::from_rsa_der(der.as_bytes()), decoding, n, e })
    }

    /// Signs claims as an RS256 JWT with `kid` and `x5t` headers, as Entra does.
    pub fn sign(&self, claims: &serde_json::Value) -> Result<String, CryptoError> {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        header.x5t = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| CryptoError::Rsa(e.to_string()))
    }

    pub fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding
    }

    /// The JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
            "n": self.n, "e": self.e, "issuer": serde_json::Value::Null,
        }]})
    }
}

/// A certificate registered on an application, for client assertions.
#[derive(Debug, Clone)]
pub struct RegisteredCert {
    pub der: Vec<u8>,
    /// base64url SHA-1 of the DER, without padding (compare `x5t` with its padding stripped).
    pub x5t: String,
    /// base64url SHA-256 of the DER, without padding.
    pub x5t_s256: String,
    pub public_key: RsaPublicKey,
}

impl RegisteredCert {
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let cert =
            x509_cert::Certificate::from_der(der).map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| CryptoError::Certificate(e.to_string()))?;
        let public_key = RsaPublicKey::from_public_key_der(&spki)
            .map_err(|e| CryptoError::Certificate(format!("not an RSA certificate: {e}")))?;
        Ok(Self {
            der: der.to_vec(),
            x5t: URL_SAFE_NO_PAD.encode(&sha1::Sha1::digest(der)[..]),
            x5t_s256: URL_SAFE_NO_PAD.encode(&sha2::Sha256::digest(der)[..]),
            public_key,
        })
    }

    /// Every certificate in a PEM text.
    pub fn from_pem(pem: &str) -> Result<Vec<Self>, CryptoError> {
        let certs = pem_blocks(pem, "CERTIFICATE");
        if certs.is_empty() {
            return Err(CryptoError::Certificate("no CERTIFICATE block in PEM".into()));
        }
        certs.iter().map(|der| Self::from_der(der)).collect()
    }

    /// The SHA-1 thumbprint as upper-case hex (what the portal shows).
    pub fn thumbprint_hex(&self) -> String {
        sha1::Sha1::digest(&self.der).iter().map(|b| format!("{b:02X}")).collect()
    }

    pub fn decoding_key(&self) -> Result<jsonwebtoken::DecodingKey, CryptoError> {
        let n = URL_SAFE_NO_PAD.encode(self.public_key.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(self.public_key.e().to_bytes_be());
        jsonwebtoken::DecodingKey::from_rsa_components(&n, &e).map_err(|e| CryptoError::Rsa(e.to_string()))
    }
}

/// Decodes every PEM block with the given label.
pub fn pem_blocks(pem: &str, label: &str) -> Vec<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let after = &rest[start + begin.len()..];
        let Some(stop) = after.find(&end) else { break };
        let body: String = after[..stop].chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(der) = STANDARD.decode(body) {
            out.push(der);
        }
        rest = &after[stop + end.len()..];
    }
    out
}

/// A generated client certificate: PEM of the private key followed by the certificate (the layout
/// `CertificateCredential(certificate_path=...)` reads), plus the parsed certificate.
pub struct ClientCertificate {
    pub pem: String,
    pub cert: RegisteredCert,
}

/// Generates an RSA key and a self-signed certificate for `subject`.
pub fn generate_client_certificate(subject: &str) -> Result<ClientCertificate, CryptoError> {
    let key = generate_rsa()?;
    let key_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| CryptoError::Rsa(e.to_string()))?;
    let key_pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&key_pem, &rcgen::PKCS_RSA_SHA256)
        .map_err(|e| CryptoError::Certificate(e.to_string()))?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| CryptoError::Certificate(e.to_string()))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, subject);
    let cert = params.self_signed(&key_pair).map_err(|e| CryptoError::Certificate(e.to_string()))?;
    let registered = RegisteredCert::from_der(cert.der())?;
    Ok(ClientCertificate { pem: format!("{}{}", key_pem.as_str(), cert.pem()), cert: registered })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_certificates_round_trip_through_pem() {
        let generated = generate_client_certificate("test").unwrap();
        let parsed = RegisteredCert::from_pem(&generated.pem).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].x5t, generated.cert.x5t);
        assert_eq!(parsed[0].x5t.len(), 27, "20 bytes of SHA-1 without padding");
        assert_eq!(generated.cert.thumbprint_hex().len(), 40);
        assert_eq!(pem_blocks(&generated.pem, "PRIVATE KEY").len(), 1);
    }

    #[test]
    fn signed_tokens_verify_with_the_published_key() {
        let key = SigningKey::new(&generate_rsa().unwrap()).unwrap();
        let token = key.sign(&serde_json::json!({"aud": "x", "exp": 4_000_000_000u64})).unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["x"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(&token, key.decoding_key(), &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));
        assert_eq!(key.jwks()["keys"][0]["kid"], key.kid.as_str());
    }
}
