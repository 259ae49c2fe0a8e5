"""Who is calling the metadata server, from where the request entered the node.

The peer address of a connection is looked up in the node's neighbour table (its MAC),
the MAC in the bridge's forwarding database (the port netsim pinned it to: VM ports
never learn, see :meth:`netsim.kernel.rtnl.Rtnl.pin_port`), and the port must be that VM's
port. Nothing in the request itself is trusted. The server resolves once per connection.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable


from netsim.model import names
from netsim.kernel.rtnl import Rtnl
from netsim.model import addressing
from netsim.model.topology import Datacenter
from netsim_imds.identity import VmIdentity

CACHE_SECONDS = 10.0  # how long one peer's lookup stands (a claim or move invalidates it at once)


def vm_id(dc: str, vm: str) -> str:
    """A stable vmId (a UUID derived from the datacenter's and VM's names)."""
    return str(uuid.UUID(bytes=hashlib.sha256(f"{dc}/{vm}".encode()).digest()[:16], version=4))


def identity_of(dc: Datacenter, vm_name: str, link_local: str = "", placed_on: str | None = None) -> VmIdentity:
    """The metadata identity of a VM; ``placed_on`` is the node holding it now (default:
    its node in the topology). Its routable address stays that of its home node."""
    vm = dc.vm(vm_name)
    node = dc.node(vm.node)
    return VmIdentity(
        name=vm.name, vm_id=vm_id(dc.name, vm.name), node=placed_on or vm.node, location=dc.location,
        update_domain=vm.update_domain, fault_domain=vm.fault_domain,
        availability_set=vm.availability_set or "", vm_size=vm.size, os_type=vm.os_type,
        mac=addressing.vm_mac(dc.name, vm.index), link_local=link_local,
        address=addressing.routable_of(dc, vm_name), prefix=24,
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
        self._by_ip: dict[str, tuple[float, str | None]] = {}

    def _rtnl(self) -> Rtnl:
        if self._sock is None:
            self._sock = Rtnl.in_namespace(self.ns)
        return self._sock

    def close(self) -> None:
        """Close the node socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def invalidate(self) -> None:
        """Forget what was resolved (a VM claimed, lost or moved an address)."""
        self._by_ip.clear()

    def _lookup(self, peer_ip: str) -> str | None:
        """The VM behind ``peer_ip``: the neighbour entry's MAC must belong to a VM and be
        pinned, statically, to that VM's own port of the bridge (a learned entry is what a
        spoofed frame could have made, so it is not trusted). Two single-object netlink
        lookups, no table dumps: this runs on the server's event loop."""
        sock = self._rtnl()
        mac = sock.neighbour_mac(names.NIC_INDEX, peer_ip)
        vm = self._by_mac.get(mac or "")
        if vm is None:
            return None
        port = sock.fdb_port(names.NIC_INDEX, mac, static_only=True)
        return vm if port == names.PORT_INDEX_BASE + self.dc.vm(vm).index else None

    def __call__(self, peer_ip: str) -> VmIdentity | None:
        now = time.monotonic()
        hit = self._by_ip.get(peer_ip)
        if hit is None or now - hit[0] > CACHE_SECONDS:
            if len(self._by_ip) > 65536:
                self._by_ip.clear()
            hit = self._by_ip[peer_ip] = (now, self._lookup(peer_ip))
        vm = hit[1]
        if vm is None:
            return None
        link_local = peer_ip if peer_ip.startswith("169.254.") else self.link_local_of(vm)
        return identity_of(self.dc, vm, link_local, self.node)
