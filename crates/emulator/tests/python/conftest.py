"""Starts the podid-emulator binary once per test session and hands its ready file to the tests.

The binary is `target/debug/podid-emulator` at the repository root, or `$PODID_EMULATOR_BIN`.
Every listener binds 127.0.0.1 port 0; the ready file tells the ports.
"""

import json
import os
import pathlib
import signal
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[4]
ARM_SCOPE = "https://management.azure.com/.default"
NODE0 = "aks-nodepool1-12345678-vmss000000"
NODE1 = "aks-nodepool1-12345678-vmss000001"
SCALE_SET = "aks-nodepool1-12345678-vmss"
NODE_RG = "MC_podid_podid_eastus"


class Emulator:
    def __init__(self, info):
        self.info = info
        self.ca = info["ca_pem"]
        self.login = info["login_url"]
        self.arm = info["arm_url"]
        self.admin = info["admin_url"]
        self.tenant = info["tenant_id"]
        self.subscription = info["subscription_id"]

    def app(self, name):
        return self.info["applications"][name]

    def identity(self, name):
        return self.info["identities"][name]

    def imds(self, node):
        return self.info["imds"][node]

    def settings(self, **kw):
        r = requests.put(f"{self.admin}/admin/settings", json=kw, timeout=10)
        r.raise_for_status()

    def fault(self, spec):
        r = requests.post(f"{self.admin}/admin/faults", json=spec, timeout=10)
        r.raise_for_status()

    def requests_log(self, **filters):
        return requests.get(f"{self.admin}/admin/requests", params=filters, timeout=10).json()

    def refresh(self):
        self.info = requests.get(f"{self.admin}/admin/info", timeout=10).json()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory):
    binary = os.environ.get("PODID_EMULATOR_BIN", str(ROOT / "target" / "debug" / "podid-emulator"))
    if not os.path.exists(binary):
        pytest.fail(f"{binary} is missing: run `cargo build -p podid-emulator` first or set PODID_EMULATOR_BIN")
    work = tmp_path_factory.mktemp("emulator")
    ready = work / "ready.json"
    log = open(work / "emulator.log", "wb")
    proc = subprocess.Popen(
        [binary, "--state-dir", str(work / "state"), "--ready-file", str(ready)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            pytest.fail(f"emulator exited with {proc.returncode}: {(work / 'emulator.log').read_text()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("emulator did not become ready within 60 s")
        time.sleep(0.05)
    emu = Emulator(json.loads(ready.read_text()))
    yield emu
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(autouse=True)
def clean_state(emulator, monkeypatch):
    """Each test starts without faults, with default timing, and without ambient Azure variables."""
    requests.delete(f"{emulator.admin}/admin/faults", timeout=10)
    emulator.settings(operation_duration_ms=0, imds_propagation_delay_ms=0)
    for var in [
        "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_AUTHORITY_HOST", "AZURE_FEDERATED_TOKEN_FILE",
        "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IMDS_ENDPOINT",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    ]:
        monkeypatch.delenv(var, raising=False)
    yield
