"""Who is calling the metadata server, from where the request entered the node.

The peer address of a connection is looked up in the node's neighbour table (its MAC),
the MAC in the bridge's forwarding database (the port netsim pinned it to: VM ports
never learn, see :meth:`netsim.kernel.rtnl.Rtnl.pin_port`), and the port must be that VM's
port. Nothing in the request itself is trusted. The server resolves a connection's caller
when it opens and, while no VM is found, again on each of its requests (a refusal is never
cached here); once found, the caller stands for the connection's life.
"""

from __future__ import annotations

import time
from collections.abc import Callable


from netsim.model import names
from netsim.kernel.rtnl import Rtnl, RtnlError
from netsim.model.plan import plan_of
from netsim.model.topology import Datacenter
from netsim.runtime.azure_profile import azure_profile, derived_guid
from netsim_imds.identity import GceProfile, VmIdentity

CACHE_SECONDS = 10.0  # how long a VM found behind an address stands (a claim or move invalidates it at once)
# A lookup that found nothing settled (no resolved neighbour entry, no static forwarding entry
# for a VM's MAC, a netlink error) is tried again after each of these pauses before the caller
# is refused, and a refusal is never cached: under host contention the kernel can be between
# two states of an entry, and the server answers a refused connection 403 for as long as it
# lives. The pauses block the loop, so they are bounded: RETRY_BUDGET seconds per second and node.
RETRY_DELAYS = (0.0005, 0.002)
RETRY_BUDGET = 0.02


class _Unsettled(Exception):
    """The kernel has no settled answer for a peer yet (worth asking again)."""


def vm_id(dc: str, vm: str) -> str:
    """A stable vmId (a UUID derived from the datacenter's and VM's names)."""
    return derived_guid(dc, vm)


def identity_of(dc: Datacenter, vm_name: str, link_local: str = "", placed_on: str | None = None) -> VmIdentity:
    """The metadata identity of a VM; ``placed_on`` is the node holding it now (default:
    its node in the topology). Its routable address stays that of its home node."""
    vm = dc.vm(vm_name)
    plan = plan_of(dc).vm(vm_name)
    group = f"netsim-{dc.name}"
    return VmIdentity(
        name=vm.name, vm_id=vm_id(dc.name, vm.name), node=placed_on or vm.node, location=dc.location,
        update_domain=vm.update_domain, fault_domain=vm.fault_domain,
        availability_set=vm.availability_set or "", vm_size=vm.size, os_type=vm.os_type,
        mac=plan.mac, link_local=link_local, address=plan.routable, prefix=plan.prefixlen, subnet=plan.subnet,
        resource_group=group,
        http_tokens=vm.http_tokens, hop_limit=vm.hop_limit, iam_role=vm.iam_role, user_data=vm.user_data,
        publisher=vm.image.publisher, offer=vm.image.offer, sku=vm.image.sku, image_version=vm.image.version,
        tags=vm.tags, zone=vm.zone,
        azure=azure_profile(dc, vm, VmIdentity.subscription_id, group),
        gce=GceProfile(vm.gce.on_host_maintenance, vm.gce.automatic_restart, vm.gce.preemptible, vm.gce.metadata,
                       dc.project.id, dc.project.number, dc.project.attributes),
    )


class NeighbourResolver:
    """Maps a peer address seen on a node to the VM behind it (or None)."""

    def __init__(self, dc: Datacenter, node: str, link_local_of: Callable[[str], str] | None = None, *,
                 open_rtnl: Callable[[], Rtnl] | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.dc, self.node = dc, node
        self.plan = plan_of(dc)
        self.link_local_of = link_local_of or (lambda vm: self.plan.vm(vm).static_link_local or "")
        self.ns = names.node_ns(dc.name, node)
        self._sock: Rtnl | None = None
        self._open_rtnl = open_rtnl or (lambda: Rtnl.in_namespace(self.ns))
        self._sleep = sleep
        self._waited = (0.0, 0.0)  # (start of the current second, seconds paused in it)
        self._by_ip: dict[str, tuple[float, VmIdentity]] = {}  # peer address -> (when, its VM): VMs only

    def _rtnl(self) -> Rtnl:
        if self._sock is None:
            self._sock = self._open_rtnl()
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
        if mac is None:  # no entry, or one not resolved yet (INCOMPLETE, FAILED): no MAC to judge
            raise _Unsettled("no resolved neighbour entry")
        vm = self.plan.vm_by_mac.get(mac)
        if vm is None:
            return None
        port = sock.fdb_port(names.NIC_INDEX, mac, static_only=True)
        if port is None:  # a VM's MAC not pinned here (yet: a move installs the pin)
            raise _Unsettled("no static forwarding entry")
        return vm if port == self.plan.vm(vm).port_index else None

    def __call__(self, peer_ip: str) -> VmIdentity | None:
        now = time.monotonic()
        hit = self._by_ip.get(peer_ip)
        if hit is None or now - hit[0] > CACHE_SECONDS:
            found = self._resolve(peer_ip, now)
            if found is None:
                return None  # not cached: the next connection asks the kernel again
            if len(self._by_ip) > 65536:
                self._by_ip.clear()
            # The identity is built once per lookup, not per connection (a sha256 and the
            # plan's look-ups): a claim or move that changes it calls invalidate().
            link_local = peer_ip if peer_ip.startswith("169.254.") else self.link_local_of(found)
            hit = self._by_ip[peer_ip] = (now, identity_of(self.dc, found, link_local, self.node))
        return hit[1]

    def _resolve(self, peer_ip: str, now: float) -> str | None:
        """:meth:`_lookup`, asked again after each of RETRY_DELAYS while its answer is not
        settled (within the node's pause budget); a netlink error reopens the socket."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return self._lookup(peer_ip)
            except _Unsettled:
                pass
            except (RtnlError, OSError):  # a kernel or socket error (ENOBUFS, ...): a fresh socket
                self.close()
            if delay is None or not self._may_pause(delay, now):
                return None
            self._sleep(delay)
        return None

    def _may_pause(self, delay: float, now: float) -> bool:
        """Whether the loop may be paused ``delay`` more seconds (RETRY_BUDGET per second)."""
        start, spent = self._waited
        if now - start >= 1.0:
            start, spent = now, 0.0
        if spent + delay > RETRY_BUDGET:
            self._waited = (start, spent)
            return False
        self._waited = (start, spent + delay)
        return True
