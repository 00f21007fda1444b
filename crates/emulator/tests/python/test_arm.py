"""Real ARM management clients (msi, compute, authorization, resource) against the emulator."""

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.identity import ClientSecretCredential, ManagedIdentityCredential
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient

from conftest import NODE1, NODE_RG, SCALE_SET

ID_RG = "podid-identities"
MIO = "f1a07417-d97a-45cb-824c-7a7467783830"


def credential(emulator, name):
    app = emulator.app(name)
    return ClientSecretCredential(
        emulator.tenant, app["client_id"], app["secrets"][0],
        authority=emulator.login, disable_instance_discovery=True, connection_verify=emulator.ca,
    )


def client(cls, emulator, name):
    return cls(
        credential(emulator, name), emulator.subscription,
        base_url=emulator.arm, connection_verify=emulator.ca, polling_interval=0.2,
    )


def test_create_identity_assign_to_scale_set_and_use_it(emulator, monkeypatch):
    name = f"py-{uuid.uuid4().hex[:8]}"
    msi = client(ManagedServiceIdentityClient, emulator, "podid-admin")
    created = msi.user_assigned_identities.create_or_update(ID_RG, name, {"location": "eastus", "tags": {"t": "1"}})
    assert created.client_id and created.principal_id and created.tenant_id == emulator.tenant
    fetched = msi.user_assigned_identities.get(ID_RG, name)
    assert (fetched.client_id, fetched.principal_id) == (created.client_id, created.principal_id)
    assert name in [i.name for i in msi.user_assigned_identities.list_by_resource_group(ID_RG)]

    # The cluster service principal assigns it (long-running operation with Azure-AsyncOperation polling).
    emulator.settings(operation_duration_ms=1200)
    compute = client(ComputeManagementClient, emulator, "podid-cluster")
    update = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {created.id.lower(): {}}}}
    poller = compute.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update, polling_interval=0.2)
    result = poller.result()
    assert result.provisioning_state == "Succeeded"
    ids = {k.lower() for k in result.identity.user_assigned_identities}
    assert created.id.lower() in ids
    back = compute.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET)
    assert back.identity.user_assigned_identities[created.id.lower()].client_id == created.client_id
    vms = list(compute.virtual_machine_scale_set_vms.list(NODE_RG, SCALE_SET))
    assert len(vms) >= 2
    ops = [r for r in emulator.requests_log(surface="arm") if "/operations/" in r["path"]]
    assert ops, "the poller followed Azure-AsyncOperation"

    # Every instance's IMDS now serves it.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", emulator.imds(NODE1))
    token = ManagedIdentityCredential(client_id=created.client_id).get_token("https://management.azure.com/.default")
    assert token.token

    # And it can be removed again with a null entry.
    remove = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {created.id.lower(): None}}}
    compute.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, remove, polling_interval=0.2).result()
    msi.user_assigned_identities.delete(ID_RG, name)
    with pytest.raises(ResourceNotFoundError):
        msi.user_assigned_identities.get(ID_RG, name)


def test_linked_authorization_failed(emulator):
    restricted = emulator.identity("podid-restricted-app")
    compute = client(ComputeManagementClient, emulator, "podid-cluster")
    update = {"identity": {"type": "UserAssigned", "userAssignedIdentities": {restricted["id"]: {}}}}
    with pytest.raises(HttpResponseError) as err:
        compute.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update).result()
    assert err.value.status_code == 403
    assert err.value.error.code == "LinkedAuthorizationFailed"
    assert f"'{restricted['id']}'" in err.value.error.message


def test_role_assignments_and_groups(emulator):
    resources = client(ResourceManagementClient, emulator, "podid-admin")
    rg = resources.resource_groups.create_or_update(f"py-rg-{uuid.uuid4().hex[:6]}", {"location": "eastus"})
    assert rg.properties.provisioning_state == "Succeeded"

    auth = client(AuthorizationManagementClient, emulator, "podid-admin")
    cluster = emulator.app("podid-cluster")
    scope = rg.id
    assignment = auth.role_assignments.create(
        scope,
        str(uuid.uuid4()),
        {
            "properties": {
                "roleDefinitionId": f"/subscriptions/{emulator.subscription}/providers/Microsoft.Authorization/roleDefinitions/{MIO}",
                "principalId": cluster["object_id"],
                "principalType": "ServicePrincipal",
            }
        },
    )
    assert assignment.principal_id == cluster["object_id"]
    listed = list(auth.role_assignments.list_for_scope(scope, filter=f"principalId eq '{cluster['object_id']}'"))
    assert any(a.role_definition_id.endswith(MIO) for a in listed)

    # The cluster principal may not write role assignments.
    weak = client(AuthorizationManagementClient, emulator, "podid-cluster")
    with pytest.raises(HttpResponseError) as err:
        weak.role_assignments.create(scope, str(uuid.uuid4()), {"properties": {
            "roleDefinitionId": f"/subscriptions/{emulator.subscription}/providers/Microsoft.Authorization/roleDefinitions/{MIO}",
            "principalId": cluster["object_id"],
        }})
    assert err.value.error.code == "AuthorizationFailed"


def test_throttling_is_retried_with_retry_after(emulator):
    emulator.fault({"surface": "arm", "method": "GET", "action": {"kind": "throttle", "retry_after_secs": 1}, "count": 1})
    compute = client(ComputeManagementClient, emulator, "podid-cluster")
    vmss = compute.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET)
    assert vmss.name == SCALE_SET


def test_unknown_member_in_a_plain_dict_is_refused_with_arms_error(emulator):
    """azure-mgmt-compute sends a plain dict's keys as they are: Python-style keys reach ARM verbatim,
    and ARM refuses what its model does not have instead of answering 200 and changing nothing."""
    app = emulator.identity("podid-app")
    compute = client(ComputeManagementClient, emulator, "podid-cluster")
    before = compute.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET).identity.user_assigned_identities
    update = {"identity": {"type": "UserAssigned", "user_assigned_identities": {app["id"]: {}}}}
    with pytest.raises(HttpResponseError) as err:
        compute.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update).result()
    assert err.value.status_code == 400
    assert err.value.error.code == "InvalidRequestContent"
    assert "Could not find member 'user_assigned_identities'" in err.value.error.message
    assert "Path 'identity.user_assigned_identities'" in err.value.error.message
    after = compute.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET).identity.user_assigned_identities
    assert set(after) == set(before), "nothing was assigned"


def test_identity_keys_come_back_in_the_case_they_were_first_sent(emulator):
    """Compute keeps an identity's key as it was first added and compares ids ignoring case."""
    from azure.mgmt.compute.models import VirtualMachineScaleSetIdentity, VirtualMachineScaleSetUpdate

    app = emulator.identity("podid-app")
    mixed = app["id"].replace("/resourcegroups/", "/resourceGroups/")
    compute = client(ComputeManagementClient, emulator, "podid-cluster")

    def patch(identity_id, value):
        identity = VirtualMachineScaleSetIdentity(type="UserAssigned", user_assigned_identities={identity_id: value})
        update = VirtualMachineScaleSetUpdate(identity=identity)
        return compute.virtual_machine_scale_sets.begin_update(NODE_RG, SCALE_SET, update).result()

    def keys():
        return set(compute.virtual_machine_scale_sets.get(NODE_RG, SCALE_SET).identity.user_assigned_identities)

    patch(mixed, {})
    assert mixed in keys()
    patch(mixed.lower(), {})  # what aad-pod-identity sends for an id already there
    assert mixed in keys() and mixed.lower() not in keys()
    patch(mixed.upper(), None)
    assert not {k for k in keys() if k.lower() == mixed.lower()}, "removal ignores case"
