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


def test_paths_match_case_insensitively(node0):
    """Azure's IMDS ignores the case of its paths; so does the emulator's."""
    import requests

    imds = node0.imds(NODE0)
    lower = requests.get(f"{imds}/metadata/instance?api-version=2021-02-01", headers={"Metadata": "true"}, timeout=10)
    mixed = requests.get(f"{imds}/Metadata/Instance?api-version=2021-02-01", headers={"Metadata": "true"}, timeout=10)
    assert (lower.status_code, mixed.status_code) == (200, 200)
    assert mixed.json()["compute"]["vmId"] == lower.json()["compute"]["vmId"]
    vm_id = requests.get(
        f"{imds}/metadata/instance/Compute/VMID?api-version=2021-02-01&format=text", headers={"Metadata": "true"}, timeout=10
    )
    assert vm_id.status_code == 200 and lower.json()["compute"]["vmId"] in vm_id.text
    token = requests.get(
        f"{imds}/Metadata/Identity/OAuth2/Token",
        params={"api-version": "2018-02-01", "resource": "https://management.azure.com/"},
        headers={"Metadata": "true"},
        timeout=10,
    )
    assert token.status_code == 200 and token.json()["access_token"]
