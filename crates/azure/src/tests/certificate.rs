use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier as _;

use super::*;

const PASSWORD: &str = "podid-test";
/// `openssl x509 -outform der | openssl sha1 -binary | base64 | tr '+/' '-_'` of the fixture.
const X5T: &str = "4CK9hxt2q24-hHlo2gusfqC4Jyo=";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn reads_pkcs12_as_openssl_python_and_windows_write_it() {
    for name in ["openssl3-default.pfx", "python-cryptography.pfx", "openssl-legacy.pfx", "windows-3des.pfx"]
    {
        let cert = ClientCertificate::from_pkcs12(&fixture(name), PASSWORD)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(cert.thumbprint(), X5T, "{name}");
        assert_eq!(cert.chain().len(), 1, "{name}");
    }
}

#[test]
fn reads_unencrypted_pkcs12_with_empty_password() {
    let cert = ClientCertificate::from_pkcs12(&fixture("python-cryptography-nopass.pfx"), "").unwrap();
    assert_eq!(cert.thumbprint(), X5T);
}

#[test]
fn wrong_password_and_garbage_are_errors() {
    let err = ClientCertificate::from_pkcs12(&fixture("openssl3-default.pfx"), "wrong").unwrap_err();
    assert!(matches!(err, CertificateError::Pkcs12(_)), "{err}");
    assert!(ClientCertificate::from_pkcs12(b"not a pfx", PASSWORD).is_err());
}

#[test]
fn reads_pem_key_and_certificate() {
    let cert = ClientCertificate::from_pem(&fixture("key-and-cert.pem")).unwrap();
    assert_eq!(cert.thumbprint(), X5T);
    assert!(matches!(ClientCertificate::from_pem(&fixture("cert.pem")), Err(CertificateError::NoKey)));
}

#[test]
fn assertion_is_an_rs256_jwt_azure_ad_accepts() {
    let cert = ClientCertificate::from_pkcs12(&fixture("openssl3-default.pfx"), PASSWORD).unwrap();
    let aud = "https://login.example/tenant/oauth2/token";
    let jwt = cert.assertion("client-1", aud, 1_700_000_000).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode =
        |p: &str| serde_json::from_slice::<serde_json::Value>(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    let (header, claims) = (decode(parts[0]), decode(parts[1]));
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["x5t"], X5T);
    let x5c = base64::engine::general_purpose::STANDARD.decode(header["x5c"][0].as_str().unwrap()).unwrap();
    assert_eq!(x5c, cert.chain()[0]);
    assert_eq!(
        (claims["aud"].as_str(), claims["iss"].as_str(), claims["sub"].as_str()),
        (Some(aud), Some("client-1"), Some("client-1"))
    );
    assert_eq!((claims["nbf"].as_u64(), claims["exp"].as_u64()), (Some(1_700_000_000), Some(1_700_000_600)));
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);

    let public = public_key(&cert.chain()[0]).unwrap();
    let sig = Signature::try_from(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().as_slice()).unwrap();
    VerifyingKey::<sha2::Sha256>::new(public)
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .unwrap();

    let again = cert.assertion("client-1", aud, 1_700_000_000).unwrap();
    assert_ne!(jwt, again, "each assertion has its own jti");
}

#[test]
fn debug_shows_only_the_thumbprint() {
    let cert = ClientCertificate::from_pem(&fixture("key-and-cert.pem")).unwrap();
    assert_eq!(format!("{cert:?}"), format!("ClientCertificate {{ x5t: {X5T:?}, .. }}"));
}
