"""A small stand-alone testbed: nodes (a namespace holding bridge ``br0``) and VMs (a
namespace whose ``eth0`` is a veth into its node's bridge), for the link-local tests and
benchmark. The datacenter builder is not involved, so the claim can be exercised alone.

Every namespace the lab creates is recorded as it is made and removed by
:meth:`Lab.close`, which is idempotent and runs even after a failed build.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from netsim.kernel import netns
from netsim.linklocal.errors import LinkLocalError
from netsim.kernel.rtnl import Rtnl

BRIDGE_INDEX = 2
"""Index of ``br0`` in a node namespace (``lo`` is 1)."""
NIC_INDEX = 2
"""Index of ``eth0`` in a VM namespace."""
PORT_INDEX_BASE = 100
"""Node-side VM ports are ``PORT_INDEX_BASE + vm ordinal``."""


@dataclass(frozen=True)
class LabVm:
    """One VM of the lab: its name, namespace, node namespace, MAC and node-side port."""

    name: str
    ns: str
    node_ns: str
    mac: str
    port: str


def _quiet_namespace() -> None:
    # No IPv6: its DAD and router solicitations would be noise on every bridge.
    netns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
    netns.write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")


class Lab:
    """``nodes`` x ``vms_per_node`` VMs on per-node bridges, namespaces named ``prefix...``.

    ``prefix`` must start with ``nsim-`` (the project's namespaces) and should be unique
    to the caller; ``mac_tag`` (0-255) goes into every MAC so two labs differ.
    """

    def __init__(self, prefix: str, nodes: int = 1, vms_per_node: int = 2, *, mac_tag: int = 0x4c) -> None:
        if not prefix.startswith("nsim-"):
            raise LinkLocalError(f"lab prefix {prefix!r} must start with 'nsim-'")
        if not 0 < vms_per_node <= 0xFFFF or not 0 < nodes <= 0xFF:
            raise LinkLocalError("a lab holds 1-255 nodes of 1-65535 VMs")
        self.prefix, self.n_nodes, self.per_node, self.mac_tag = prefix, nodes, vms_per_node, mac_tag
        self.created: list[str] = []
        """Every namespace made so far, in creation order."""
        self.vms: list[LabVm] = []
        """The VMs, node by node."""
        self.nodes: list[str] = []
        """The node namespaces."""

    def node_ns(self, i: int) -> str:
        """Namespace name of node ``i``."""
        return f"{self.prefix}n{i}"

    def build(self) -> "Lab":
        """Create every namespace, bridge and veth; bring all links up. Undone on failure."""
        try:
            for i in range(self.n_nodes):
                self._build_node(i)
        except BaseException:
            self.close()
            raise
        return self

    def _create(self, name: str) -> Rtnl:
        if netns.inode_of(name) is not None:
            raise LinkLocalError(f"namespace {name!r} exists already (a crashed run?); remove it first")
        self.created.append(name)
        with netns.created(name):
            _quiet_namespace()
            return Rtnl.here(name)

    def _build_node(self, i: int) -> None:
        node_name = self.node_ns(i)
        node = self._create(node_name)
        self.nodes.append(node_name)
        vms: list[tuple[LabVm, Rtnl]] = []
        try:
            node.add_bridge("br0", index=BRIDGE_INDEX)
            node.set_link(1, up=True)
            node.flush()
            for j in range(self.per_node):
                vm = LabVm(name=f"n{i}v{j}", ns=f"{node_name}v{j}", node_ns=node_name,
                           mac=f"02:{self.mac_tag:02x}:00:{i:02x}:{j >> 8:02x}:{j & 0xFF:02x}", port=f"p-v{j}")
                rt = self._create(vm.ns)
                vms.append((vm, rt))
                fd = netns.open_fd(vm.ns)
                try:
                    node.add_veth(vm.port, PORT_INDEX_BASE + j, "eth0", NIC_INDEX, fd,
                                  master=BRIDGE_INDEX, peer_mac=vm.mac)
                    node.flush()
                finally:
                    os.close(fd)
            for vm, rt in vms:
                rt.set_link(1, up=True)
                rt.set_link(NIC_INDEX, up=True)
                rt.flush()
                self.vms.append(vm)
        finally:
            node.close()
            for _, rt in vms:
                rt.close()

    def socket_in_node(self, node: int, ifname: str = "br0", proto: int = 0x0806) -> socket.socket:
        """A raw AF_PACKET socket bound to ``ifname`` inside node ``node`` (for captures)."""
        # Protocol 0 until bound: binding a socket created with a protocol waits ~12 ms.
        sock = netns.socket_in(self.node_ns(node), socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((ifname, proto))
        return sock

    def socket_in_vm(self, vm: LabVm, proto: int = 0x0806) -> socket.socket:
        """A raw AF_PACKET socket bound to ``eth0`` inside ``vm`` (to send frames as another host)."""
        sock = netns.socket_in(vm.ns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind(("eth0", proto))
        return sock

    def addresses(self, vm: LabVm) -> list[str]:
        """IPv4 addresses currently on the VM's ``eth0``."""
        with Rtnl.in_namespace(vm.ns) as rt:
            return [a for index, a, _ in rt.addresses() if index == NIC_INDEX]

    def add_static(self, vm: LabVm, address: str) -> None:
        """Configure ``address``/16 on the VM's ``eth0`` without any claim (a host that just has it)."""
        with Rtnl.in_namespace(vm.ns) as rt:
            rt.add_address(NIC_INDEX, address, 16)
            rt.flush()

    def close(self) -> None:
        """Remove every namespace this lab created (idempotent)."""
        while self.created:
            netns.remove(self.created.pop())
        self.vms.clear()
        self.nodes.clear()

    def __enter__(self) -> "Lab":
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.close()
