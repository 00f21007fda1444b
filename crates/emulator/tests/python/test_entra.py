"""Real azure-identity and msal clients against the emulator's Entra ID."""

import jwt
import msal
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import CertificateCredential, ClientSecretCredential

from conftest import ARM_SCOPE


def jwks_verify(emulator, token, audience):
    disc = requests.get(
        f"{emulator.login}/{emulator.tenant}/v2.0/.well-known/openid-configuration", verify=emulator.ca, timeout=10
    ).json()
    keys = requests.get(disc["jwks_uri"], verify=emulator.ca, timeout=10).json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(jwt.PyJWK(k) for k in keys["keys"] if k["kid"] == kid)
    return jwt.decode(token, key=key.key, algorithms=["RS256"], audience=audience)


def secret_credential(emulator, name, secret=None):
    app = emulator.app(name)
    return ClientSecretCredential(
        emulator.tenant,
        app["client_id"],
        secret or app["secrets"][0],
        authority=emulator.login,
        disable_instance_discovery=True,
        connection_verify=emulator.ca,
    )


def test_client_secret_credential_gets_a_verifiable_token(emulator):
    token = secret_credential(emulator, "podid-admin").get_token(ARM_SCOPE)
    assert token.expires_on > 0
    claims = jwks_verify(emulator, token.token, "https://management.azure.com")
    app = emulator.app("podid-admin")
    assert claims["oid"] == app["object_id"]
    assert claims["azp"] == app["client_id"]
    assert claims["tid"] == emulator.tenant
    assert claims["iss"] == f"{emulator.login}/{emulator.tenant}/v2.0"


def test_client_secret_credential_bad_secret(emulator):
    with pytest.raises(ClientAuthenticationError) as err:
        secret_credential(emulator, "podid-admin", secret="wrong").get_token(ARM_SCOPE)
    assert "AADSTS7000215: Invalid client secret provided" in err.value.message


def test_certificate_credential(emulator):
    app = emulator.app("podid-cluster")
    cred = CertificateCredential(
        emulator.tenant,
        app["client_id"],
        certificate_path=app["certificate_pem"],
        authority=emulator.login,
        disable_instance_discovery=True,
        connection_verify=emulator.ca,
    )
    token = cred.get_token(ARM_SCOPE)
    claims = jwks_verify(emulator, token.token, "https://management.azure.com")
    assert claims["oid"] == app["object_id"]
    assert claims["azpacr"] == "2"


def test_msal_errors_come_back_verbatim(emulator):
    app = emulator.app("podid-admin")
    cca = msal.ConfidentialClientApplication(
        app["client_id"],
        client_credential="wrong",
        authority=f"{emulator.login}/{emulator.tenant}",
        instance_discovery=False,
        verify=emulator.ca,
    )
    result = cca.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: ")
    for key in ["correlation_id", "trace_id", "timestamp"]:
        assert key in result

    unknown = msal.ConfidentialClientApplication(
        "00000000-0000-0000-0000-0000000000ff",
        client_credential="x",
        authority=f"{emulator.login}/{emulator.tenant}",
        instance_discovery=False,
        verify=emulator.ca,
    ).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert unknown["error"] == "unauthorized_client"
    assert unknown["error_codes"] == [700016]

    ok = msal.ConfidentialClientApplication(
        app["client_id"],
        client_credential=app["secrets"][0],
        authority=f"{emulator.login}/{emulator.tenant}",
        instance_discovery=False,
        verify=emulator.ca,
    ).acquire_token_for_client(scopes=[ARM_SCOPE])
    assert ok["token_type"] == "Bearer"
    assert ok["token_source"] == "identity_provider"
