"""Every name netsim gives a kernel object comes from here.

Namespaces are named ``nsim-<datacenter>-<kind>-<name>``; a datacenter's prefix is
``nsim-<datacenter>-``, so two datacenters coexist and ``netsim cleanup`` finds exactly
what one of them made. netsim creates no link in the host's own namespace: every link
lives inside one of the datacenter's namespaces and goes away with it.
"""

from __future__ import annotations

import re

from netsim.model.bounds import InvalidValue

PREFIX = "nsim-"
IFNAMSIZ = 15  # usable characters of a Linux interface name
NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
MAX_DC_NAME = 8
MAX_HOST_NAME = 12  # leaves room for the 2-character port prefixes below

# Interface names inside the namespaces.
VM_IFNAME = "eth0"          # a VM's NIC (and that of lb/client/ops)
NODE_BRIDGE = "br0"         # the node's virtual switch
NODE_UPLINK = "uplink"      # node side of the node <-> fabric link
FABRIC_SERVICES_BRIDGE = "svc0"  # fabric's LAN for lb, client, ops
CONTAINER_BRIDGE = "cbr0"   # a VM's bridge for its containers (Docker's docker0, kubenet's cbr0)

# Fixed interface indexes make a build need no lookups (indexes are per namespace).
LO_INDEX = 1
NIC_INDEX = 2          # eth0 in a VM or extra host; br0 in a node
UPLINK_INDEX = 3       # uplink in a node; svc0 in the fabric
PORT_INDEX_BASE = 1000  # node-side VM ports and fabric-side node ports: base + ordinal
CONTAINER_BRIDGE_INDEX = 3  # cbr0 in a VM; its containers' VM-side ports are PORT_INDEX_BASE + slot

EXTRA_HOSTS = ("lb", "client", "ops")


def check_name(value: str, what: str, limit: int) -> str | None:
    """Return why ``value`` is not a valid name for ``what``, or None if it is."""
    if not isinstance(value, str) or not NAME_RE.match(value):
        return f"{what} name {value!r} must start with a lowercase letter and use only a-z, 0-9 and '-'"
    if len(value) > limit:
        return f"{what} name {value!r} is {len(value)} characters; the limit is {limit}"
    return None


DC_NAME_RE = re.compile(r"^[a-z][a-z0-9]*$")
"""A datacenter name: no '-', so that ``nsim-<dc>-`` never prefixes another datacenter's
namespaces (``a`` against ``a-b``) and :func:`dc_of_namespace` reads it back exactly; no
'/', '.' or NUL, so that it is safe to join into a state path."""


def dc_name_problem(value: object) -> str | None:
    """Why ``value`` is not a valid datacenter name, or None: the one rule that the CLI's
    ``--name``, the topology's ``[datacenter] name`` and every state folder obey."""
    if not isinstance(value, str) or not DC_NAME_RE.match(value):
        return (f"datacenter name {value!r} must be 1 to {MAX_DC_NAME} characters: a lowercase letter, "
                "then lowercase letters or digits")
    if len(value) > MAX_DC_NAME:
        return f"datacenter name {value!r} is {len(value)} characters; the limit is {MAX_DC_NAME}"
    return None


def check_dc_name(value: object) -> str:
    """``value`` if it is a valid datacenter name (:func:`dc_name_problem`); else raise
    :class:`~netsim.model.bounds.InvalidValue`. Call it before building any path from a name."""
    if (why := dc_name_problem(value)) is not None:
        raise InvalidValue(why)
    return value  # type: ignore[return-value]


def dc_prefix(dc: str) -> str:
    """Prefix of every namespace of datacenter ``dc``."""
    return f"{PREFIX}{dc}-"


def node_ns(dc: str, node: str) -> str:
    """Namespace of a physical node."""
    return f"{dc_prefix(dc)}node-{node}"


def vm_ns(dc: str, vm: str) -> str:
    """Namespace of a VM."""
    return f"{dc_prefix(dc)}vm-{vm}"


CONTAINER_SEPARATOR = "/"
"""Joins a VM and one of its containers in a host name: ``web1/c1`` (``netsim exec``, the API)."""


def container_ns(dc: str, vm: str, container: str) -> str:
    """Namespace of a container inside a VM. The '.' cannot occur in a VM or container
    name, so VM ``a`` with container ``b-c`` never meets VM ``a-b`` with container ``c``."""
    return f"{dc_prefix(dc)}ct-{vm}.{container}"


def container_port(container: str) -> str:
    """VM-side name of a container's veth (unique within its VM; the container sees eth0)."""
    return f"c-{container}"


def split_host(host: str) -> tuple[str, str | None]:
    """``"web1/c1"`` -> ``("web1", "c1")``; ``"web1"`` -> ``("web1", None)``."""
    vm, sep, container = host.partition(CONTAINER_SEPARATOR)
    return (vm, container) if sep else (host, None)


def fabric_ns(dc: str) -> str:
    """Namespace of the fabric router between nodes and the extra hosts."""
    return f"{dc_prefix(dc)}fabric"


def extra_ns(dc: str, host: str) -> str:
    """Namespace of an extra host: ``lb``, ``client`` or ``ops``."""
    return f"{dc_prefix(dc)}{host}"


def vm_port(vm: str) -> str:
    """Node-side name of a VM's veth (unique in the datacenter, so a port can move)."""
    return f"p-{vm}"


def node_port(node: str) -> str:
    """Fabric-side name of a node's uplink."""
    return f"n-{node}"


def extra_port(host: str) -> str:
    """Fabric-side name of an extra host's link."""
    return f"h-{host}"


def dc_of_namespace(ns: str) -> str | None:
    """The datacenter a netsim namespace belongs to, or None for someone else's."""
    if not ns.startswith(PREFIX):
        return None
    rest = ns[len(PREFIX):]
    dc, sep, _ = rest.partition("-")
    return dc if sep else None
