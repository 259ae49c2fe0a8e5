"""What maintenance really does to a VM: freeze, power off and on, move, remove.

Each step is idempotent, so a daemon restarted after SIGKILL can run it again safely.
``placement`` is the datacenter's one :class:`~netsim.runtime.placement.Placement` (every
VM to the node that holds it now): only these effects change it (on Redeploy, service
healing and removal), everyone else reads it. The VM keeps its MAC, routable address and
identity wherever it goes.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, MutableMapping

from netsim.model import names
from netsim.kernel import netns, nft, procfs
from netsim.errors import NetsimError
from netsim.kernel.rtnl import Rtnl
from netsim.runtime.services import Services
from netsim.kernel.teardown import end_processes, processes_in, remove_namespaces
from netsim.model.plan import VmPlan, plan_of
from netsim.model.topology import Datacenter

log = logging.getLogger("netsim.runtime.effects")
STOPPED_STATES = ("T", "t", "Z", "X", None)  # stopped, traced, dead, or gone


class Effects:
    """Applies effects to the VMs of one datacenter."""

    def __init__(self, dc: Datacenter, placement: MutableMapping[str, str], claims, services: Services) -> None:
        self.dc, self.placement, self.claims, self.services = dc, placement, claims, services
        self.on_leaving: Callable[[str, str], None] | None = None
        """``on_leaving(vm, node)``: the VM is about to be live-migrated off ``node`` (the
        daemon ends its connections to that node's metadata server while the VM still hears)."""

    def leaving(self, vm: str) -> None:
        """A live migration is about to take ``vm`` off its node: tell ``on_leaving`` first."""
        if self.on_leaving is not None and vm in self.placement:
            self.on_leaving(vm, self.placement[vm])

    # -- helpers -------------------------------------------------------------------------

    def _vm_ns(self, vm: str) -> str:
        return names.vm_ns(self.dc.name, vm)

    def _node_ns(self, node: str) -> str:
        return names.node_ns(self.dc.name, node)

    def _plan(self, vm: str) -> VmPlan:
        """The VM's fixed addresses, port and routes (:mod:`netsim.model.plan`)."""
        return plan_of(self.dc).vm(vm)

    def _port_index(self, vm: str) -> int:
        return self._plan(vm).port_index

    def _namespaces(self, vm: str) -> list[str]:
        """The VM's namespace and those of its containers (which live inside the VM)."""
        return [self._vm_ns(vm)] + [c.namespace for c in self._plan(vm).containers]

    def processes(self, vm: str) -> list[int]:
        """PIDs of every process running inside the VM, its containers' included: a freeze
        pauses them and a power-off ends them with the VM's own."""
        inodes = {i for i in map(netns.inode_of, self._namespaces(vm)) if i}
        return processes_in(inodes) if inodes else []

    def _links(self, vm: str, up: bool) -> None:
        """Set both ends of the VM's link: its eth0 and its port on the node's bridge."""
        self._port(vm, up)
        with Rtnl.in_namespace(self._vm_ns(vm)) as sock:
            sock.set_link(names.NIC_INDEX, up=up, what=f"setting eth0 of {vm} {'up' if up else 'down'}")
            sock.flush()

    def _port(self, vm: str, up: bool) -> None:
        with Rtnl.in_namespace(self._node_ns(self.placement[vm])) as node:
            node.set_link(self._port_index(vm), up=up, what=f"setting the port of {vm} {'up' if up else 'down'}")
            node.flush()

    # -- Freeze ---------------------------------------------------------------------------

    def freeze(self, vm: str) -> int:
        """Pause every process of the VM (SIGSTOP) and cut its port; return how many.

        Returns once every process is really stopped: a signal is delivered when its
        process is next scheduled, which may be a moment later on another CPU.
        """
        pids = self.processes(vm)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(procfs.task_state(pid) not in STOPPED_STATES for pid in pids):
            time.sleep(0.001)
        self._port(vm, up=False)
        log.info("%s frozen: %d processes stopped, port down", vm, len(pids))
        return len(pids)

    def thaw(self, vm: str) -> int:
        """Give the VM its port back and resume its processes (SIGCONT)."""
        self._port(vm, up=True)
        pids = self.processes(vm)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        log.info("%s thawed: %d processes resumed", vm, len(pids))
        return len(pids)

    # -- Reboot ---------------------------------------------------------------------------

    def power_off(self, vm: str) -> None:
        """Links down, address released, every process of the VM ended."""
        self._links(vm, up=False)
        if self.claims is not None:
            self.claims.link_event(vm, False)
        end_processes(self.processes(vm))
        self.services.forget(vm)
        log.info("%s powered off", vm)

    def _vm_routes(self, vm: str) -> None:
        """The VM's own routes, which the kernel dropped with its link: the default route
        through its (home) gateway and, when claiming, 169.254/16 on-link (RFC 3927 s2.6)."""
        with Rtnl.in_namespace(self._vm_ns(vm)) as sock:
            for route in self._plan(vm).routes:
                sock.add_route(route.dst, gateway=route.gateway, oif=route.oif, metric=route.metric, exist_ok=True)
            sock.flush()

    def power_on(self, vm: str) -> None:
        """Links up, routes back, the address claimed again, the declared services started."""
        self._links(vm, up=True)
        self._vm_routes(vm)
        if self.claims is not None:
            self.claims.link_event(vm, True)
        if not self.services.alive(vm):
            self.services.start(vm)
        log.info("%s powered on", vm)

    # -- Redeploy and service healing ------------------------------------------------------

    def _routes(self, vm: str, node: str, add: bool) -> None:
        """Routes that make the VM's routable address follow it to ``node`` (away from home)."""
        away = plan_of(self.dc).away_routes(vm, node)
        if away is None:  # its home node
            return
        home = self._plan(vm).home
        if add:
            # The VM still thinks its home subnet is on-link: the new node answers ARP for
            # those addresses (proxy ARP) and routes them through the fabric.
            with netns.entered(self._node_ns(node)):
                netns.write_sysctl(f"net/ipv4/conf/{names.NODE_BRIDGE}/proxy_arp", "1")
                netns.write_sysctl(f"net/ipv4/neigh/{names.NODE_BRIDGE}/proxy_delay", "0")
        with Rtnl.in_namespace(self._node_ns(node)) as sock:
            if add:
                # The VM keeps its gateway: the new node answers for it on its bridge.
                sock.add_address(names.NIC_INDEX, away.home_gateway, 32, exist_ok=True)
                sock.add_route(away.host_route, oif=names.NIC_INDEX, exist_ok=True)
            else:
                sock.del_route(away.host_route, oif=names.NIC_INDEX)
            sock.flush()
        with Rtnl.in_namespace(names.fabric_ns(self.dc.name)) as fabric:
            fabric.del_route(away.host_route)
            if add:
                fabric.add_route(away.host_route, gateway=away.fabric_via)
            fabric.flush()
        try:
            self._home_routes(vm, add)
        except NetsimError as exc:  # a failed home node: done again when it recovers
            log.info("home node %s of %s not updated: %s", home, vm, exc)

    def _home_routes(self, vm: str, add: bool) -> None:
        """On the VM's home node: answer ARP for it and route it through the fabric, so the
        VM's old neighbours on its home subnet still reach it."""
        p = self._plan(vm)
        via = plan_of(self.dc).node(p.home).fabric_side
        if add:
            # Proxy ARP answers after a random delay of up to 0.8 s by default.
            with netns.entered(self._node_ns(p.home)):
                netns.write_sysctl(f"net/ipv4/neigh/{names.NODE_BRIDGE}/proxy_delay", "0")
        with Rtnl.in_namespace(self._node_ns(p.home)) as sock:
            sock.proxy_neighbour(names.NIC_INDEX, p.routable, add=add)
            if add:
                sock.add_route(f"{p.routable}/32", gateway=via, exist_ok=True)
            else:
                sock.del_route(f"{p.routable}/32", gateway=via)
            sock.flush()

    def node_recovered(self, node: str) -> None:
        """A node is back: restore the routes its links took with them, the home routes of
        its VMs that live elsewhere now and those of the VMs that live on it away from home."""
        for vm, where in self.placement.items():
            home = self.dc.vm(vm).node
            if home == node and where != node:
                self._home_routes(vm, add=True)
            elif where == node and home != node:
                self._routes(vm, node, add=True)

    def _port_security(self, vm: str, node: str, add: bool) -> None:
        """Tell ``node``'s port security the VM's port, MAC and fixed addresses (the routable
        one, and the static link-local one when there are no claims) arrive or leave."""
        p = self._plan(vm)
        verb = "add" if add else "delete"
        commands = f'{verb} element bridge netsim_portsec port_mac {{ "{p.port}" . {p.mac} }}\n'
        for address in p.fixed_addresses:
            commands += nft.claim_commands(p.port, address, add)
        try:
            nft.run(self._node_ns(node), commands)
        except nft.NftError as exc:
            if add:
                raise
            log.info("port security of %s already forgot %s: %s", node, vm, exc)

    def _plug(self, vm: str, node: str, *, up: bool | None) -> None:
        """Make the VM's port (already in ``node``'s namespace) a pinned port of its bridge:
        enslaved while down, learning off and the VM's MAC static on it
        (:meth:`~netsim.kernel.rtnl.Rtnl.pin_port`), all in one batch before it may come up, so
        that identity lookups (the FDB port of the VM's MAC) name this port and no frame
        is ever learned from it. Idempotent."""
        index, mac = self._port_index(vm), self._plan(vm).mac
        with Rtnl.in_namespace(self._node_ns(node)) as sock:
            sock.set_link(index, master=names.NIC_INDEX, what=f"plugging {vm} into br0 of {node}")
            sock.pin_port(index, mac)
            if up is not None:
                sock.set_link(index, up=up, what=f"setting the port of {vm} {'up' if up else 'down'}")
            sock.flush()

    def move(self, vm: str, to_node: str) -> None:
        """Move the VM's port to ``to_node``'s bridge (Redeploy, service healing)."""
        src = self.placement[vm]
        if src == to_node:
            # Already there, perhaps because a daemon killed in the middle of this step
            # found the port in the new node: finish plugging it (each part is idempotent).
            self._plug(vm, to_node, up=None)
            self._port_security(vm, to_node, add=True)
            self._routes(vm, to_node, add=True)
            return
        if self.claims is not None:
            self.claims.link_event(vm, False)  # releases the address and its owner entry on src
        index = self._port_index(vm)
        self._routes(vm, src, add=False)
        self._port_security(vm, src, add=False)
        dst_fd = netns.open_fd(self._node_ns(to_node))
        try:
            with Rtnl.in_namespace(self._node_ns(src)) as sock:
                sock.set_link(index, up=False, ns_fd=dst_fd, what=f"moving the port of {vm} to node {to_node}")
                sock.flush()
        finally:
            os.close(dst_fd)
        # Port security first: a port that came up before its MAC is known would drop the
        # VM's first frames as spoofed.
        self._port_security(vm, to_node, add=True)
        self._plug(vm, to_node, up=True)
        self.placement[vm] = to_node
        self._routes(vm, to_node, add=True)
        if self.claims is not None:
            self.claims.link_event(vm, True)  # RFC 3927: claim again on the new link
        log.info("%s moved from node %s to node %s", vm, src, to_node)

    # -- Preempt and Terminate -------------------------------------------------------------

    def remove(self, vm: str) -> None:
        """Delete the VM: its processes, its namespace, its port and its routes."""
        if self.claims is not None:
            try:
                self.claims.remove(vm)
            except NetsimError:
                pass
        node = self.placement.get(vm)
        if node is not None:
            try:
                self._routes(vm, node, add=False)
                self._port_security(vm, node, add=False)
            except NetsimError as exc:
                log.info("cleaning up after %s on %s: %s", vm, node, exc)
        self.services.forget(vm)
        remove_namespaces(self._namespaces(vm))
        self.placement.pop(vm, None)
        log.info("%s removed", vm)
