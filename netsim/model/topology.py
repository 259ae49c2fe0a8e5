"""The topology as frozen data: a datacenter of nodes, VMs and availability sets.

This is Mininet's ``Topo`` idea: a pure description of names and placement that the
builder (:mod:`netsim.kernel.builder`) realises; nothing here touches the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal

from netsim.model.gcedata import GceProject, GceVm
from netsim.model.vmdata import AzureVm, Image, UserIdentity
from netsim_imds.flavors import DEFAULT_FLAVOR

LinkLocalMode = Literal["static", "claim"]
TimerProfile = Literal["rfc", "fast"]

AZURE_DEFAULT_UPDATE_DOMAINS = 5
AZURE_DEFAULT_FAULT_DOMAINS = 2


@dataclass(frozen=True)
class Node:
    """A physical host: one namespace with a bridge and a metadata server."""

    name: str
    index: int


@dataclass(frozen=True)
class AvailabilitySet:
    """VMs spread over update domains (walked one at a time) and fault domains."""

    name: str
    update_domains: int = AZURE_DEFAULT_UPDATE_DOMAINS
    fault_domains: int = AZURE_DEFAULT_FAULT_DOMAINS


@dataclass(frozen=True)
class VM:
    """A virtual machine: a namespace whose eth0 is a port of its node's bridge."""

    name: str
    node: str
    index: int
    availability_set: str | None = None
    update_domain: int = 0
    fault_domain: int = 0
    services: tuple[str, ...] = ()
    size: str = "Standard_D2s_v3"
    os_type: str = "Linux"
    http_tokens: str = "optional"  # AWS IMDSv2: "optional" or "required"
    hop_limit: int = 1  # AWS IMDSv2: IP TTL of the token reply, 1..64
    iam_role: str = ""  # AWS: the instance profile's role ("": none)
    user_data: str = ""  # the instance's user data ("": none; AWS serves it raw, Azure base64)
    # Instance data (netsim/model/vmdata.py loads and checks them; Azure serves them all).
    tags: tuple[tuple[str, str], ...] = ()
    admin_username: str = "azureuser"
    ssh_keys: tuple[str, ...] = ()
    image: Image = Image()
    zone: str = ""
    azure: AzureVm = AzureVm()
    gce: GceVm = GceVm()  # GCE's scheduling and instance attributes (netsim/model/gcedata.py)
    containers: tuple[str, ...] = ()  # namespaces behind a NATing bridge inside the VM (Docker's default)


@dataclass(frozen=True)
class Datacenter:
    """A whole emulated datacenter; ``lb``, ``client`` and ``ops`` hosts always exist."""

    name: str
    nodes: tuple[Node, ...]
    vms: tuple[VM, ...]
    availability_sets: tuple[AvailabilitySet, ...] = ()
    location: str = "westeurope"
    linklocal: LinkLocalMode = "claim"
    timers: TimerProfile = "rfc"
    cloud: str = DEFAULT_FLAVOR  # the metadata service's flavor (netsim_imds.flavors), e.g. "azure"
    identities: tuple[UserIdentity, ...] = ()  # user-assigned managed identities ([[identity]])
    project: GceProject = GceProject()  # GCE's project ([project], netsim/model/gcedata.py)
    source: str | None = field(default=None, compare=False)

    @cached_property
    def _by_name(self) -> tuple[dict[str, Node], dict[str, VM], dict[str, tuple[VM, ...]]]:
        on: dict[str, list[VM]] = {}
        for v in self.vms:
            on.setdefault(v.node, []).append(v)
        return ({n.name: n for n in self.nodes}, {v.name: v for v in self.vms},
                {node: tuple(vms) for node, vms in on.items()})

    @cached_property
    def address_plan(self):
        """The realised address plan (:class:`netsim.model.plan.AddressPlan`), computed once."""
        from netsim.model.plan import AddressPlan  # late: plan imports this module
        return AddressPlan(self)

    def node(self, name: str) -> Node:
        """The node called ``name`` (KeyError if none)."""
        return self._by_name[0][name]

    def vm(self, name: str) -> VM:
        """The VM called ``name`` (KeyError if none)."""
        return self._by_name[1][name]

    def vms_on(self, node: str) -> tuple[VM, ...]:
        """The VMs placed on ``node`` by the topology, in declaration order."""
        return self._by_name[2].get(node, ())

    def availability_set(self, name: str) -> AvailabilitySet:
        """The availability set called ``name`` (KeyError if none)."""
        for a in self.availability_sets:
            if a.name == name:
                return a
        raise KeyError(name)


def grid(name: str, nodes: int, vms_per_node: int, **settings) -> Datacenter:
    """A datacenter of ``nodes`` nodes with ``vms_per_node`` VMs each (benchmarks, scale tests).

    The VMs form one availability set ``grid`` whose update and fault domains are
    assigned round-robin, as Azure does.
    """
    from netsim.model.validate import validate  # late: validate imports this module

    avset = AvailabilitySet("grid")
    node_list = tuple(Node(f"n{i + 1}", i) for i in range(nodes))
    vms = []
    for n in node_list:
        for j in range(vms_per_node):
            i = len(vms)
            vms.append(VM(f"vm{i + 1}", n.name, i, "grid", i % avset.update_domains, i % avset.fault_domains))
    dc = Datacenter(name, node_list, tuple(vms), (avset,), **settings)
    validate(dc)
    return dc
