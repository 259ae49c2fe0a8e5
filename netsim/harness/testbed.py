"""The one stand-alone test bed of the server and link-local tests and benchmarks (needs root).

*Nodes* are namespaces holding bridge ``br0`` (carrying 169.254.169.254/16 when the bed
serves a metadata server); *VMs* are namespaces whose ``eth0`` is a veth into a node's
bridge. The datacenter builder is not involved, so the metadata server and the RFC 3927
claim can each be exercised alone. Two ways to fill it:

- :meth:`Testbed.build` makes ``nodes`` x ``vms_per_node`` VMs without addresses (the
  link-local tests, which claim them), listed in :attr:`Testbed.vms`;
- :meth:`Testbed.add_client` adds one VM with a fixed 169.254/16 address to the first
  node, which :meth:`Testbed.build_node` gives the metadata address (the server tests),
  listed by name in :attr:`Testbed.clients`.

Like pyroute2's shipped fixtures, this lives in the package so tests and benchmarks build
the same thing. Every namespace is recorded as it is made and removed by
:meth:`Testbed.close` (idempotent, run even after a failed build); nothing else is touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from netsim.errors import NetsimError
from netsim.kernel import netns
from netsim.kernel.rtnl import Rtnl
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT

__all__ = ["BRIDGE_INDEX", "METADATA_ADDRESS", "NIC_INDEX", "PORT_INDEX_BASE", "BedVm", "Testbed", "TestbedError",
           "tcp_socket_in"]

BRIDGE_INDEX = 2
"""Index of ``br0`` in a node namespace (``lo`` is 1)."""
NIC_INDEX = 2
"""Index of ``eth0`` in a VM namespace."""
PORT_INDEX_BASE = 100
"""Node-side VM ports are ``PORT_INDEX_BASE + the VM's ordinal on its node``."""


class TestbedError(NetsimError):
    """The test bed cannot be built as asked (names the namespace or value, and the fix)."""

    __test__ = False


@dataclass(frozen=True)
class BedVm:
    """One VM of the bed: name, namespace, its node's namespace, MAC, node-side port, and the
    fixed address given by :meth:`Testbed.add_client` (None for a VM that claims one)."""

    name: str
    ns: str
    node_ns: str
    mac: str
    port: str
    address: str | None = None


def tcp_socket_in(ns_name: str) -> socket.socket:
    """A new TCP/IPv4 socket opened inside namespace ``ns_name``: the socket factory netsim
    hands the metadata server (:data:`netsim_imds.driver.SocketFactory`), which imports
    nothing from netsim (``ServerThread(config, socket_factory=tcp_socket_in)``)."""
    return netns.socket_in(ns_name, socket.AF_INET, socket.SOCK_STREAM)


def _quiet(sysctls: dict[str, str]) -> None:
    # No IPv6: its DAD, router solicitations and MLD would be noise on every bridge.
    netns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
    netns.write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
    for path, value in sysctls.items():
        netns.write_sysctl(path, value)


class Testbed:
    """Nodes and VMs in namespaces named ``prefix...``.

    ``prefix`` must start with ``nsim-`` (the project's namespaces) and be unique to the
    caller (e.g. with the pid: other sessions may run the same tests); ``mac_tag`` (0-255)
    goes into the MACs :meth:`build` gives, so two beds differ; ``client_sysctls`` are
    written in every VM (e.g. ``net/ipv4/tcp_tw_reuse``).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, prefix: str, nodes: int = 1, vms_per_node: int = 0, *, mac_tag: int = 0x4c,
                 client_sysctls: dict[str, str] | None = None) -> None:
        if not prefix.startswith("nsim-"):
            raise TestbedError(f"test bed prefix {prefix!r} must start with 'nsim-'")
        if not 0 <= vms_per_node <= 0xFFFF or not 0 < nodes <= 0xFF or not 0 <= mac_tag <= 0xFF:
            raise TestbedError("a test bed holds 1-255 nodes of 0-65535 VMs, and mac_tag is 0-255")
        self.prefix, self.n_nodes, self.per_node, self.mac_tag = prefix, nodes, vms_per_node, mac_tag
        self.created: list[str] = []
        """Every namespace made so far, in creation order."""
        self.nodes: list[str] = []
        """The node namespaces made so far."""
        self.vms: list[BedVm] = []
        """The VMs made by :meth:`build`, node by node."""
        self.clients: dict[str, BedVm] = {}
        """The VMs made by :meth:`add_client`, by name."""
        self._client_sysctls = dict(client_sysctls or {})
        self._first: Rtnl | None = None  # the first node's socket, kept for add_client

    @property
    def node_ns(self) -> str:
        """Namespace of the first node (the one :meth:`add_client` plugs into)."""
        return self.node_namespace(0)

    def node_namespace(self, i: int) -> str:
        """Namespace name of node ``i``."""
        return f"{self.prefix}n{i}"

    def _create(self, name: str, sysctls: dict[str, str]) -> Rtnl:
        if netns.inode_of(name) is not None:
            raise TestbedError(f"namespace {name!r} exists already (a crashed run?); remove it first")
        self.created.append(name)
        with netns.created(name):
            _quiet(sysctls)
            sock = Rtnl.here(name)
        sock.set_link(1, up=True)
        return sock

    def _new_node(self, i: int, metadata: bool) -> Rtnl:
        name = self.node_namespace(i)
        node = self._create(name, {})
        self.nodes.append(name)
        node.add_bridge("br0", index=BRIDGE_INDEX)
        if metadata:
            node.add_address(BRIDGE_INDEX, METADATA_ADDRESS, 16)
        node.flush()
        return node

    def _plug(self, node: Rtnl, vm: BedVm, ordinal: int) -> Rtnl:
        """Create the VM's namespace and its veth into ``node``'s bridge; return the VM's socket."""
        sock = self._create(vm.ns, self._client_sysctls)
        try:
            fd = netns.open_fd(vm.ns)
            try:
                node.add_veth(vm.port, PORT_INDEX_BASE + ordinal, "eth0", NIC_INDEX, fd, master=BRIDGE_INDEX,
                              peer_mac=vm.mac)
                node.flush()
            finally:
                os.close(fd)
            sock.set_link(NIC_INDEX, up=True)
            if vm.address:
                sock.add_address(NIC_INDEX, vm.address, 16)
            sock.flush()
        except BaseException:
            sock.close()
            raise
        return sock

    # -- the link-local shape: many nodes, VMs without addresses ------------------------------

    def build(self) -> "Testbed":
        """Create ``nodes`` nodes of ``vms_per_node`` VMs each; all links up. Undone on failure."""
        try:
            for i in range(self.n_nodes):
                node = self._new_node(i, metadata=False)
                try:
                    for j in range(self.per_node):
                        vm = BedVm(f"n{i}v{j}", f"{self.node_namespace(i)}v{j}", self.node_namespace(i),
                                   f"02:{self.mac_tag:02x}:00:{i:02x}:{j >> 8:02x}:{j & 0xFF:02x}", f"p-v{j}")
                        self._plug(node, vm, j).close()
                        self.vms.append(vm)
                finally:
                    node.close()
        except BaseException:
            self.close()
            raise
        return self

    # -- the server shape: one node with the metadata address, clients with addresses ---------

    def build_node(self) -> "Testbed":
        """Create the first node: ``lo`` up and ``br0`` carrying 169.254.169.254/16."""
        if self._first is None:
            self._first = self._new_node(0, metadata=True)
        return self

    def add_client(self, name: str, address: str, mac: str) -> BedVm:
        """Create VM namespace ``<prefix><name>`` with ``eth0`` = ``address``/16 on the first node."""
        self.build_node()
        assert self._first is not None
        vm = BedVm(name, f"{self.prefix}{name}", self.node_ns, mac, f"p-{name}"[:15], address)
        self._plug(self._first, vm, len(self.clients)).close()
        self.clients[name] = vm
        return vm

    def connect(self, client: str, timeout: float = 5.0, port: int = METADATA_PORT) -> socket.socket:
        """A TCP socket opened in ``client``'s namespace and connected to 169.254.169.254."""
        sock = netns.socket_in(self.clients[client].ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((METADATA_ADDRESS, port))
        except OSError:
            sock.close()
            raise
        return sock

    # -- looking and poking -------------------------------------------------------------------

    def socket_in_node(self, node: int, ifname: str = "br0", proto: int = 0x0806) -> socket.socket:
        """A raw AF_PACKET socket bound to ``ifname`` inside node ``node`` (for captures)."""
        # Protocol 0 until bound: binding a socket created with a protocol waits ~12 ms.
        sock = netns.socket_in(self.node_namespace(node), socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind((ifname, proto))
        return sock

    def socket_in_vm(self, vm: BedVm, proto: int = 0x0806) -> socket.socket:
        """A raw AF_PACKET socket bound to ``eth0`` inside ``vm`` (to send frames as another host)."""
        sock = netns.socket_in(vm.ns, socket.AF_PACKET, socket.SOCK_RAW, 0)
        sock.bind(("eth0", proto))
        return sock

    def addresses(self, vm: BedVm) -> list[str]:
        """IPv4 addresses currently on the VM's ``eth0``."""
        with Rtnl.in_namespace(vm.ns) as rt:
            return [a for index, a, _ in rt.addresses() if index == NIC_INDEX]

    def add_static(self, vm: BedVm, address: str) -> None:
        """Configure ``address``/16 on the VM's ``eth0`` without any claim (a host that just has it)."""
        with Rtnl.in_namespace(vm.ns) as rt:
            rt.add_address(NIC_INDEX, address, 16)
            rt.flush()

    def close(self) -> None:
        """Remove every namespace this bed created, and only those (idempotent)."""
        if self._first is not None:
            self._first.close()
            self._first = None
        while self.created:
            netns.remove(self.created.pop())
        self.vms.clear()
        self.nodes.clear()
        self.clients.clear()

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
