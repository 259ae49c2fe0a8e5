"""A VM's Azure profile (:class:`netsim_imds.identity.AzureProfile`) from the topology.

The ids Azure would assign (the tenant, the system identity's and user-assigned identities'
client and object ids) are derived from the datacenter's and the VM's or identity's names,
so they are stable across daemon restarts and differ between datacenters. The load balancer
a VM is behind is the ``lb`` host's virtual IP: netsim's HAProxy (:mod:`netsim.harness.haproxy`)
balances an availability set's VMs from ``VIP:80`` to their port 8080, so every VM of an
availability set is reported behind it.
"""

from __future__ import annotations

import hashlib
import uuid

from netsim.harness.haproxy import FRONTEND_PORT, SERVER_PORT
from netsim.model.addressing import LB_VIRTUAL_IP
from netsim.model.topology import VM, Datacenter
from netsim.model.vmdata import SYSTEM
from netsim_imds.identity import AzureProfile, ManagedIdentity


def derived_guid(*parts: str) -> str:
    """A stable GUID derived from ``parts`` (a version-4 shape over a SHA-256)."""
    return str(uuid.UUID(bytes=hashlib.sha256("/".join(parts).encode()).digest()[:16], version=4))


def tenant_id(dc: Datacenter) -> str:
    """The datacenter's Entra ID tenant (``tid`` of its tokens)."""
    return derived_guid(dc.name, "tenant")


def _identities(dc: Datacenter, vm: VM, subscription: str, group: str, vm_resource_id: str) -> tuple[ManagedIdentity, ...]:
    by_name = {u.name: u for u in dc.identities}
    out = []
    for name in vm.azure.identities:
        if name == SYSTEM:
            out.append(ManagedIdentity(derived_guid(dc.name, vm.name, "system", "client"),
                                       derived_guid(dc.name, vm.name, "system", "object"), vm_resource_id, True))
            continue
        user = by_name[name]
        rid = (f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
               f"Microsoft.ManagedIdentity/userAssignedIdentities/{name}")
        out.append(ManagedIdentity(user.client_id or derived_guid(dc.name, "identity", name, "client"),
                                   user.object_id or derived_guid(dc.name, "identity", name, "object"), rid))
    return tuple(out)


def azure_profile(dc: Datacenter, vm: VM, subscription: str, group: str) -> AzureProfile:
    """The Azure profile of ``vm`` (``group``: its resource group)."""
    vm_resource_id = (f"/subscriptions/{subscription}/resourceGroups/{group}"
                      f"/providers/Microsoft.Compute/virtualMachines/{vm.name}")
    az = vm.azure
    return AzureProfile(
        admin_username=vm.admin_username, ssh_keys=vm.ssh_keys, custom_data=az.custom_data,
        priority=az.priority, eviction_policy=az.eviction_policy, license_type=az.license_type, plan=az.plan,
        secure_boot=az.secure_boot, virtual_tpm=az.virtual_tpm, tenant_id=tenant_id(dc),
        identities=_identities(dc, vm, subscription, group, vm_resource_id),
        load_balancer=(LB_VIRTUAL_IP, FRONTEND_PORT, SERVER_PORT) if vm.availability_set else None,
    )
