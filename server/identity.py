"""Who is asking: the identity of a VM, as the metadata server answers for it.

The server never learns identity from the request itself: the driver maps the peer
address to a :class:`VmIdentity` through a callback built on the node's neighbour
table (see ``shared/ARCHITECTURE.md``, "Caller identity").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass


@dataclass(frozen=True)
class ManagedIdentity:
    """An Azure managed identity a VM may ask tokens for (``/metadata/identity``).

    ``resource_id`` is the ARM id of the identity's owner, as tokens carry it in
    ``xms_mirid``: the VM's own id for the system-assigned identity, the
    ``Microsoft.ManagedIdentity/userAssignedIdentities/<name>`` id for a user-assigned one.
    """

    client_id: str
    object_id: str
    resource_id: str
    system: bool = False


@dataclass(frozen=True)
class AzureProfile:
    """A VM's Azure-only instance data (grouped so other flavors' fields stay flat and few).

    Strings as the instance document prints them; ``ssh_keys`` are public key lines, served
    as ``publicKeys`` under ``/home/<admin_username>/.ssh/authorized_keys``; ``identities``
    are the managed identities (the system one first, when assigned); ``load_balancer`` is
    ``(frontend ip, frontend port, backend port)`` of the load balancer the VM is behind
    (None: none).
    """

    admin_username: str = "azureuser"
    ssh_keys: tuple[str, ...] = ()
    custom_data: str = ""
    priority: str = "Regular"
    eviction_policy: str = ""
    license_type: str = ""
    plan: tuple[str, str, str] = ("", "", "")
    """Marketplace plan: (name, product, publisher)."""
    secure_boot: bool = False
    virtual_tpm: bool = False
    tenant_id: str = "00000000-0000-0000-0000-000000000000"
    identities: tuple[ManagedIdentity, ...] = ()
    load_balancer: tuple[str, int, int] | None = None


@dataclass(frozen=True)
class GceProfile:
    """A VM's GCE-only instance data: its scheduling (``on_host_maintenance`` MIGRATE or
    TERMINATE), its instance attributes, and its project ("" id and 0 number: the flavor
    derives them from the datacenter)."""

    on_host_maintenance: str = "MIGRATE"
    automatic_restart: bool = True
    preemptible: bool = False
    attributes: tuple[tuple[str, str], ...] = ()
    project_id: str = ""
    project_number: int = 0
    project_attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class VmIdentity:
    """Everything the metadata APIs tell a VM about itself.

    Only the first fields are required; the rest default to plausible values (the image
    and cloud fields to Azure's, the default flavor; another flavor reads what it needs).
    ``mac`` is written as the kernel does (``02:00:00:00:00:01``); each flavor renders it
    its own way (Azure: ``020000000001``). ``address``/``prefix`` are the
    routable (198.18/15) address; ``link_local`` is the RFC 3927 address the VM
    talks to 169.254.169.254 from.
    """

    name: str
    vm_id: str
    node: str
    location: str = "westeurope"
    update_domain: int = 0
    fault_domain: int = 0
    availability_set: str = ""
    vm_size: str = "Standard_D2s_v3"
    os_type: str = "Linux"
    mac: str = ""
    link_local: str = ""
    address: str = ""
    prefix: int = 24
    subnet: str = ""
    resource_group: str = "netsim"
    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    publisher: str = "Canonical"
    offer: str = "0001-com-ubuntu-server-jammy"
    sku: str = "22_04-lts-gen2"
    image_version: str = "latest"
    tags: tuple[tuple[str, str], ...] = ()
    zone: str = ""
    vm_scale_set: str = ""
    placement_group_id: str = ""
    az_environment: str = "AzurePublicCloud"
    provider: str = "Microsoft.Compute"
    # AWS's instance metadata options and instance data (topology keys of the VM; other
    # flavors ignore them).
    http_tokens: str = "optional"
    """IMDSv2: ``optional`` (token or none) or ``required`` (no or bad token: 401)."""
    hop_limit: int = 1
    """IMDSv2: the IP TTL of the token reply (``HttpPutResponseHopLimit``, 1..64)."""
    iam_role: str = ""
    """The instance profile's role ("" : none)."""
    user_data: str = ""
    """The instance's user data ("" : none)."""
    azure: AzureProfile = AzureProfile()
    """Azure's own instance data (other flavors ignore it)."""
    gce: GceProfile = GceProfile()
    """GCE's own instance data (other flavors ignore it)."""

    @property
    def subnet_address(self) -> str:
        """Network address of the routable subnet (``subnet`` or derived from the address)."""
        if self.subnet:
            return self.subnet.partition("/")[0]
        if not self.address:
            return ""
        return str(ipaddress.ip_interface(f"{self.address}/{self.prefix}").network.network_address)
