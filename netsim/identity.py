"""Who is calling the metadata server, from where the request entered the node.

The peer address of a connection is looked up in the node's neighbour table (its MAC),
the MAC in the bridge's forwarding database (the port it was learned on), and the port
must be that VM's port. Nothing in the request itself is trusted.
"""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Callable

from pyroute2.netlink.rtnl import RTM_GETNEIGH
from pyroute2.netlink.rtnl.ndmsg import ndmsg

from netsim import names
from netsim.rtnl import Rtnl
from netsim.topology import addressing
from netsim.topology.model import Datacenter
from server.identity import VmIdentity

CACHE_SECONDS = 1.0         # how long one read of the node's tables answers every peer
MISS_REFRESH_SECONDS = 0.05  # how often one unknown peer may make them be read again


def vm_id(dc: str, vm: str) -> str:
    """A stable vmId (a UUID derived from the datacenter's and VM's names)."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"{dc}/{vm}".encode()).digest()[:16], version=4))


def identity_of(dc: Datacenter, vm_name: str, link_local: str = "", placed_on: str | None = None) -> VmIdentity:
    """The metadata identity of a VM; ``placed_on`` is the node holding it now (default:
    its node in the topology). Its routable address stays that of its home node."""
    vm = dc.vm(vm_name)
    node = dc.node(vm.node)
    slot = [v.name for v in dc.vms_on(vm.node)].index(vm.name)
    return VmIdentity(
        name=vm.name, vm_id=vm_id(dc.name, vm.name), node=placed_on or vm.node, location=dc.location,
        update_domain=vm.update_domain, fault_domain=vm.fault_domain,
        availability_set=vm.availability_set or "", vm_size=vm.size, os_type=vm.os_type,
        mac=addressing.vm_mac(dc.name, vm.index), link_local=link_local,
        address=addressing.vm_routable(node.index, slot), prefix=24,
        subnet=addressing.node_addresses(node.index).subnet,
        resource_group=f"netsim-{dc.name}",
    )


class NeighbourResolver:
    """Maps a peer address seen on a node to the VM behind it (or None)."""

    def __init__(self, dc: Datacenter, node: str, link_local_of: Callable[[str], str] | None = None) -> None:
        self.dc, self.node = dc, node
        self.link_local_of = link_local_of or (lambda vm: addressing.static_link_local(dc.vm(vm).index)
                                               if dc.linklocal == "static" else "")
        self.ns = names.node_ns(dc.name, node)
        self._sock: Rtnl | None = None
        self._by_mac = {addressing.vm_mac(dc.name, v.index): v.name for v in dc.vms}
        self._by_ip: dict[str, str] = {}
        self._taken = -1e9
        self._missed: dict[str, float] = {}

    def _rtnl(self) -> Rtnl:
        if self._sock is None:
            self._sock = Rtnl.in_namespace(self.ns)
        return self._sock

    def close(self) -> None:
        """Close the node socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _snapshot(self) -> dict[str, str]:
        """Peer address -> VM, from one read of the neighbour table, FDB and links."""
        sock = self._rtnl()
        ports = {index: name for name, index in sock.links().items()}
        msg = ndmsg()
        msg["family"] = socket.AF_BRIDGE
        learned = {e.get_attr("NDA_LLADDR"): ports.get(e["ifindex"])
                   for e in sock._dump(msg, RTM_GETNEIGH, ndmsg) if e.get_attr("NDA_MASTER") == names.NIC_INDEX}
        found = {}
        for n in sock.neighbours():
            vm = self._by_mac.get(n.lladdr or "")
            # The MAC must have been learned on that VM's own port of the bridge.
            if n.ifindex == names.NIC_INDEX and vm and learned.get(n.lladdr) == names.vm_port(vm):
                found[n.address] = vm
        return found

    def __call__(self, peer_ip: str) -> VmIdentity | None:
        now = time.monotonic()
        stale = now - self._taken > CACHE_SECONDS
        # An unknown peer re-reads the tables, but at most once per MISS_REFRESH_SECONDS
        # each, so an unattributable client cannot make the node dump its tables per request.
        if stale or (peer_ip not in self._by_ip and now - self._missed.get(peer_ip, -1e9) > MISS_REFRESH_SECONDS):
            if not stale:
                self._missed[peer_ip] = now
                if len(self._missed) > 4096:
                    self._missed.clear()
            self._by_ip, self._taken = self._snapshot(), now
        vm = self._by_ip.get(peer_ip)
        if vm is None:
            return None
        link_local = peer_ip if peer_ip.startswith("169.254.") else self.link_local_of(vm)
        return identity_of(self.dc, vm, link_local, self.node)
