"""The address plan: which address every interface of a datacenter gets.

Emulated addresses come only from 169.254.0.0/16 (link-local, RFC 3927) and
198.18.0.0/15 (RFC 2544 benchmarking). Within 198.18.0.0/15:

- node k (0-based) routes the k-th /24 for its VMs: gateway ``.1`` on its bridge,
  VMs from ``.2``;
- 198.19.248.0/22 holds the node uplinks, a /31 per node (fabric side even);
- 198.19.252.0/24 is every VM's container subnet, the same in each VM as Docker's
  172.17.0.0/16 is on every host: the VM's bridge ``.1``, containers from ``.2``. The
  VM masquerades them, so the subnet is never seen outside a VM, and nothing outside a
  VM is addressed from it (a VM would take such a destination for one of its containers);
- 198.19.255.0/24 is the fabric's services LAN: gateway ``.1``, lb ``.10`` (with the
  load balancer's virtual IP ``.100``), client ``.20``, ops ``.30``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import netaddr

from netsim_imds.address import METADATA_ADDRESS

ROUTABLE = netaddr.IPNetwork("198.18.0.0/15")
LINK_LOCAL = netaddr.IPNetwork("169.254.0.0/16")
UPLINKS = netaddr.IPNetwork("198.19.248.0/22")
CONTAINERS = netaddr.IPNetwork("198.19.252.0/24")
SERVICES = netaddr.IPNetwork("198.19.255.0/24")
SERVICES_GATEWAY = "198.19.255.1"
EXTRA_HOST_ADDRESSES = {"lb": "198.19.255.10", "client": "198.19.255.20", "ops": "198.19.255.30"}
LB_VIRTUAL_IP = "198.19.255.100"

MAX_NODES = (int(UPLINKS.first) - int(ROUTABLE.first)) // 256  # /24s below the uplink block
MAX_VMS_PER_NODE = 253  # .2 .. .254 of a /24
# Static link-local addresses: 169.254.(1 + i // 250).(1 + i % 250); the third octet stays
# within 1..254 (RFC 3927 section 2.1) and the last never reaches .254, so
# 169.254.169.254 is never handed out.
MAX_STATIC_LINK_LOCAL = 254 * 250


@dataclass(frozen=True)
class NodeAddresses:
    """Addresses of one node."""

    subnet: str          # the VMs' routable /24
    gateway: str         # on the node's bridge
    uplink: str          # node side of the /31
    fabric_side: str     # fabric side of the /31


def node_addresses(node_index: int) -> NodeAddresses:
    """The addresses of the node with 0-based ``node_index``."""
    base = int(ROUTABLE.first) + 256 * node_index
    link = int(UPLINKS.first) + 2 * node_index
    return NodeAddresses(
        subnet=f"{netaddr.IPAddress(base)}/24",
        gateway=str(netaddr.IPAddress(base + 1)),
        uplink=str(netaddr.IPAddress(link + 1)),
        fabric_side=str(netaddr.IPAddress(link)),
    )


def vm_routable(node_index: int, slot: int) -> str:
    """Routable address of the ``slot``-th (0-based) VM placed on a node."""
    return str(netaddr.IPAddress(int(ROUTABLE.first) + 256 * node_index + 2 + slot))


def routable_of(dc, vm_name: str) -> str:
    """A VM's routable address: its slot on its home node (the topology's), wherever it runs
    (read from the address plan, :mod:`netsim.model.plan`)."""
    return dc.address_plan.vm(vm_name).routable


def static_link_local(vm_index: int) -> str:
    """The deterministic link-local address of VM ``vm_index`` (``linklocal = "static"``)."""
    return f"169.254.{1 + vm_index // 250}.{1 + vm_index % 250}"


def mac(dc: str, kind: int, index: int) -> str:
    """A stable, locally administered unicast MAC for object ``index`` of ``kind``.

    ``kind`` separates VMs (1), node bridges (2) and extra hosts (3). The datacenter's
    name is hashed into the second octet so two datacenters never share MACs by accident.
    """
    dc_byte = hashlib.sha256(dc.encode()).digest()[0]
    return "02:%02x:%02x:%02x:%02x:%02x" % (dc_byte, kind, (index >> 16) & 0xFF, (index >> 8) & 0xFF, index & 0xFF)


def container_address(slot: int) -> str:
    """Address of the ``slot``-th (0-based) container of a VM (slot -1: the VM's bridge)."""
    return str(netaddr.IPAddress(int(CONTAINERS.first) + 2 + slot))


def container_mac(dc: str, vm_index: int, slot: int) -> str:
    """MAC of a container's eth0 (kind 4; unique in the datacenter, though containers of
    different VMs never share a link)."""
    return mac(dc, 4, vm_index * 64 + slot)


def container_bridge_mac(dc: str, vm_index: int) -> str:
    """MAC of a VM's container bridge (kind 5), fixed so it does not follow its ports'."""
    return mac(dc, 5, vm_index)


def node_bridge_mac(dc: str) -> str:
    """MAC of every node's bridge: the gateway and 169.254.169.254 answer from it."""
    return mac(dc, 2, 0)


def vm_mac(dc: str, vm_index: int) -> str:
    """MAC of a VM's eth0; the RFC 3927 generator is seeded with it."""
    return mac(dc, 1, vm_index)
