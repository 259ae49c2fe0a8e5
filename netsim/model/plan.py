"""The realised address plan: every address, port and route of a datacenter, computed once.

:mod:`netsim.model.addressing` says how addresses are drawn; this module applies it to a
:class:`~netsim.model.topology.Datacenter` once, and is the one place that the builder,
the effects of maintenance, caller identity, ``status`` and ``reach`` read a VM's port
index, port name, MAC, routable address, gateway, routes, static link-local address and
port-security input from. Pure: nothing here touches the kernel.

A VM's plan is fixed by its *home* node (the topology's): a VM moved by Redeploy or service
healing keeps its MAC, its routable address and its gateway, and the node that holds it
answers for them (:meth:`AddressPlan.away_routes`).
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.model import addressing, names
from netsim.model.topology import Datacenter

LINK_LOCAL_ROUTE_METRIC = 1024
"""Metric of a claiming VM's on-link 169.254/16 route: the kernel's own route, with the
claimed address as source, wins once there is one (RFC 3927 section 2.6)."""

VM_PREFIXLEN = 24       # a VM's routable address within its home node's /24
UPLINK_PREFIXLEN = 31   # node <-> fabric
LINK_LOCAL_PREFIXLEN = 16


@dataclass(frozen=True)
class Route:
    """One IPv4 route: ``dst`` (a prefix or ``"default"``) via ``gateway`` or out of ``oif``."""

    dst: str
    gateway: str | None = None
    oif: int | None = None
    metric: int | None = None


@dataclass(frozen=True)
class NodePlan:
    """The addresses of one node."""

    name: str
    index: int
    subnet: str
    """The routable /24 of the VMs whose home is this node."""
    gateway: str
    """The VMs' gateway, on the node's bridge."""
    uplink: str
    """Node side of the node's /31 to the fabric."""
    fabric_side: str
    """Fabric side of that /31: the node's default gateway."""
    fabric_port_index: int
    """Interface index of the node's uplink peer in the fabric namespace."""


@dataclass(frozen=True)
class ContainerPlan:
    """One container inside a VM: a namespace behind the VM's container bridge, NATed by
    the VM as Docker's default bridge network is (one routed hop behind the VM)."""

    name: str
    vm: str
    namespace: str
    port: str
    """VM-side name of the container's veth (the container sees ``eth0``)."""
    port_index: int
    """Interface index of that port in the VM's namespace."""
    mac: str
    address: str
    prefixlen: int
    gateway: str
    """The VM's address on its container bridge: the container's default route."""


@dataclass(frozen=True)
class ContainerBridge:
    """A VM's bridge for its containers (Docker's ``docker0``)."""

    address: str
    """The containers' gateway, on the bridge."""
    prefixlen: int
    mac: str
    subnet: str
    """What the VM masquerades out of its eth0."""


@dataclass(frozen=True)
class VmPlan:
    """Everything fixed about one VM's network attachment."""

    name: str
    home: str
    """The node the topology places the VM on; its addresses come from there."""
    port: str
    """Node-side name of the VM's veth."""
    port_index: int
    """Interface index of that port in whichever node holds it (unique in the datacenter)."""
    mac: str
    routable: str
    prefixlen: int
    subnet: str
    gateway: str
    static_link_local: str | None
    """The deterministic link-local address with ``linklocal = "static"``; None when claimed."""
    routes: tuple[Route, ...]
    """The VM's own routes on eth0 (beyond the ones its addresses imply)."""
    containers: tuple[ContainerPlan, ...] = ()
    """The VM's containers, in the topology's order."""
    container_bridge: ContainerBridge | None = None
    """The VM's container bridge; None without containers."""

    def container(self, name: str) -> ContainerPlan:
        """The plan of container ``name`` of this VM (KeyError if none)."""
        for c in self.containers:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def fixed_addresses(self) -> tuple[str, ...]:
        """Addresses the VM owns from the start, for port security: the routable one and the
        static link-local one (claimed addresses are added as the VM claims them)."""
        return (self.routable,) + ((self.static_link_local,) if self.static_link_local else ())

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """``(address, prefixlen)`` of the VM's eth0 at build time."""
        out = ((self.routable, self.prefixlen),)
        if self.static_link_local:
            out += ((self.static_link_local, LINK_LOCAL_PREFIXLEN),)
        return out


@dataclass(frozen=True)
class AwayRoutes:
    """What makes a VM's routable address follow it to a node that is not its home."""

    host_route: str
    """``ADDRESS/32``: on the holding node (out of its bridge) and in the fabric."""
    home_gateway: str
    """The VM's gateway, added as a /32 to the holding node's bridge (the VM keeps it)."""
    fabric_via: str
    """The holding node's uplink: the fabric's next hop for the VM's address. (The home node
    routes the address back out through its own :attr:`NodePlan.fabric_side`.)"""


class AddressPlan:
    """The realised plan of one datacenter (read it through :func:`plan_of`)."""

    def __init__(self, dc: Datacenter) -> None:
        self.dc_name = dc.name
        self.linklocal = dc.linklocal
        self.nodes: dict[str, NodePlan] = {}
        for n in dc.nodes:
            a = addressing.node_addresses(n.index)
            self.nodes[n.name] = NodePlan(n.name, n.index, a.subnet, a.gateway, a.uplink, a.fabric_side,
                                          names.PORT_INDEX_BASE + n.index)
        self.vms: dict[str, VmPlan] = {}
        for n in dc.nodes:
            node = self.nodes[n.name]
            for slot, vm in enumerate(dc.vms_on(n.name)):
                static = addressing.static_link_local(vm.index) if dc.linklocal == "static" else None
                routes: tuple[Route, ...] = ()
                if static is None:
                    # RFC 3927 section 2.6: link-local destinations are on-link even before
                    # an address is claimed.
                    routes += (Route(str(addressing.LINK_LOCAL), oif=names.NIC_INDEX,
                                     metric=LINK_LOCAL_ROUTE_METRIC),)
                routes += (Route("default", gateway=node.gateway),)
                containers, bridge = _containers(dc.name, vm)
                self.vms[vm.name] = VmPlan(
                    name=vm.name, home=n.name, port=names.vm_port(vm.name),
                    port_index=names.PORT_INDEX_BASE + vm.index, mac=addressing.vm_mac(dc.name, vm.index),
                    routable=addressing.vm_routable(n.index, slot), prefixlen=VM_PREFIXLEN,
                    subnet=node.subnet, gateway=node.gateway, static_link_local=static, routes=routes,
                    containers=containers, container_bridge=bridge)
        self.vm_by_mac = {p.mac: p.name for p in self.vms.values()}

    def node(self, name: str) -> NodePlan:
        """The plan of node ``name`` (KeyError if none)."""
        return self.nodes[name]

    def vm(self, name: str) -> VmPlan:
        """The plan of VM ``name`` (KeyError if none)."""
        return self.vms[name]

    def port_security(self, node: str) -> dict[str, tuple[str, list[str]]]:
        """Input of :func:`netsim.kernel.nft.port_security` for ``node`` at build time: each
        VM port whose home is the node -> (its MAC, its fixed addresses)."""
        return {p.port: (p.mac, list(p.fixed_addresses)) for p in self.vms.values() if p.home == node}

    def away_routes(self, vm: str, node: str) -> AwayRoutes | None:
        """The routes that make ``vm`` reachable on ``node``; None if ``node`` is its home."""
        p = self.vms[vm]
        if node == p.home:
            return None
        return AwayRoutes(f"{p.routable}/32", p.gateway, self.nodes[node].uplink)


def _containers(dc: str, vm) -> tuple[tuple[ContainerPlan, ...], ContainerBridge | None]:
    """The plans of ``vm``'s containers and of its container bridge (every VM uses the same
    subnet, :data:`netsim.model.addressing.CONTAINERS`, as every Docker host uses 172.17/16)."""
    if not vm.containers:
        return (), None
    gateway, plen = addressing.container_address(-1), addressing.CONTAINERS.prefixlen
    containers = tuple(ContainerPlan(name=c, vm=vm.name, namespace=names.container_ns(dc, vm.name, c),
                                     port=names.container_port(c), port_index=names.PORT_INDEX_BASE + slot,
                                     mac=addressing.container_mac(dc, vm.index, slot),
                                     address=addressing.container_address(slot), prefixlen=plen, gateway=gateway)
                       for slot, c in enumerate(vm.containers))
    return containers, ContainerBridge(gateway, plen, addressing.container_bridge_mac(dc, vm.index),
                                       str(addressing.CONTAINERS))


def plan_of(dc: Datacenter) -> AddressPlan:
    """The datacenter's address plan, computed on first use and kept with the (frozen) topology."""
    return dc.address_plan
