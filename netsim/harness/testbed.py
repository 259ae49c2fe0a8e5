"""A minimal real topology for testing and benchmarking the metadata server (needs root).

One *node* namespace holds bridge ``br0`` carrying 169.254.169.254/16; each *client*
namespace has an ``eth0`` veth whose peer is a port of ``br0``, with a 169.254/16
address. Like pyroute2's shipped fixtures, this lives in the package so tests and
``bench/metadata.py`` build the same thing. Every namespace it creates is recorded
and removed by :meth:`Testbed.close`; nothing else is ever touched.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from netsim.kernel import netns
from netsim.kernel.rtnl import Rtnl

METADATA_ADDRESS = "169.254.169.254"
_BRIDGE_INDEX = 2
_NIC_INDEX = 2
_PORT_INDEX_BASE = 100


@dataclass(frozen=True)
class Client:
    """A client namespace: its name, address (169.254/16) and MAC."""

    ns: str
    address: str
    mac: str


class Testbed:
    """A node namespace with br0 = 169.254.169.254/16 and client namespaces on it.

    ``prefix`` starts every namespace name (make it unique per process, e.g. with the
    pid, since other sessions may run the same tests concurrently). ``client_sysctls``
    are written in each client (e.g. ``net/ipv4/tcp_tw_reuse``).
    """

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, prefix: str, *, client_sysctls: dict[str, str] | None = None) -> None:
        self.prefix = prefix
        self.node_ns = f"{prefix}n"
        self.clients: dict[str, Client] = {}
        self._created: list[str] = []
        self._client_sysctls = dict(client_sysctls or {})
        self._node: Rtnl | None = None

    def _create(self, name: str, sysctls: dict[str, str]) -> Rtnl:
        with netns.created(name):
            self._created.append(name)
            # No IPv6: no DAD/RS/MLD noise flooding the bridge (measured-anchors, pitfall 4).
            netns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
            netns.write_sysctl("net/ipv6/conf/default/disable_ipv6", "1")
            for path, value in sysctls.items():
                netns.write_sysctl(path, value)
            return Rtnl.here(name)

    def build_node(self) -> "Testbed":
        """Create the node namespace, lo up and br0 carrying 169.254.169.254/16."""
        node = self._create(self.node_ns, {})
        node.add_bridge("br0", index=_BRIDGE_INDEX)
        node.set_link(1, up=True)
        node.add_address(_BRIDGE_INDEX, METADATA_ADDRESS, 16)
        node.flush()
        self._node = node
        return self

    def add_client(self, name: str, address: str, mac: str) -> Client:
        """Create client namespace ``<prefix><name>`` with eth0 = ``address``/16 on br0."""
        if self._node is None:
            self.build_node()
        assert self._node is not None
        ns = f"{self.prefix}{name}"
        vm = self._create(ns, self._client_sysctls)
        fd = netns.open_fd(ns)
        try:
            index = _PORT_INDEX_BASE + len(self.clients)
            self._node.add_veth(f"p-{name}"[:15], index, "eth0", _NIC_INDEX, fd, master=_BRIDGE_INDEX, peer_mac=mac)
            self._node.flush()
        finally:
            os.close(fd)
        vm.set_link(1, up=True)
        vm.set_link(_NIC_INDEX, up=True)
        vm.add_address(_NIC_INDEX, address, 16)
        vm.flush()
        vm.close()
        client = Client(ns, address, mac)
        self.clients[name] = client
        return client

    def connect(self, client: str, timeout: float = 5.0, port: int = 80) -> socket.socket:
        """A TCP socket opened in ``client``'s namespace and connected to 169.254.169.254."""
        sock = netns.socket_in(self.clients[client].ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect((METADATA_ADDRESS, port))
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        """Remove every namespace this testbed created (and only those)."""
        if self._node is not None:
            self._node.close()
            self._node = None
        while self._created:
            netns.remove(self._created.pop())

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
