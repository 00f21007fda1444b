"""Real ManagedIdentityCredential (pod-identity mode) against a node's emulated IMDS."""

import time

import pytest
from azure.identity import CredentialUnavailableError, ManagedIdentityCredential

from conftest import NODE0
from test_entra import jwks_verify

SCOPE = "https://management.azure.com/.default"


@pytest.fixture
def node0(emulator, monkeypatch):
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.imds(NODE0))
    return emulator


def test_selection_by_client_id_resource_id_and_object_id(node0):
    agentpool = node0.identity("podid-agentpool")
    creds = [
        ManagedIdentityCredential(client_id=agentpool["client_id"]),
        ManagedIdentityCredential(identity_config={"resource_id": agentpool["id"]}),
        ManagedIdentityCredential(identity_config={"object_id": agentpool["principal_id"]}),
        ManagedIdentityCredential(),
    ]
    for cred in creds:
        token = cred.get_token(SCOPE)
        claims = jwks_verify(node0, token.token, "https://management.azure.com")
        assert claims["oid"] == agentpool["principal_id"]
        assert claims["appid"] == agentpool["client_id"]
        assert claims["xms_mirid"] == agentpool["id"]


def test_identity_not_on_the_node_is_refused_fast(node0):
    other = node0.identity("podid-restricted-app")
    start = time.monotonic()
    with pytest.raises(CredentialUnavailableError) as err:
        ManagedIdentityCredential(client_id=other["client_id"]).get_token(SCOPE)
    assert "Identity not found" in str(err.value)
    assert time.monotonic() - start < 3
