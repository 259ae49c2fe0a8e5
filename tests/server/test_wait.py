"""A flavor's Wait and socket options, served across real namespaces (needs root).

One node (br0 = 169.254.169.254/16) serves the toy flavor (:mod:`tests.server.toyflavor`)
to clients c1 (vm1) and c3 (vm3) on its bridge, and to ``far`` (vmf), one routed hop
behind c1 (c1 forwards; far is 198.18.200.2). Every socket is opened inside a client
namespace; no traffic starts in the host's namespace.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from netsim.kernel import netns
from netsim.kernel.rtnl import Rtnl
from netsim.harness.testbed import METADATA_ADDRESS, Testbed, tcp_socket_in
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import EventStore
from netsim_imds.fairness import Limits

from tests.server.support import azure_event, make_vm, require_root
from tests.server.toyflavor import ToyFlavor

PARKED_PER_VM = 2
ROUTER = "169.254.10.1"
FAR = "198.18.200.2"


def request(path: str, close: bool = False) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode()


def read_response(f) -> tuple[int, bytes]:
    """(status, body) of one response read from a socket file."""
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    length = 0
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return int(status_line.split()[1]), f.read(length)


class World:
    """The namespaces, the server thread serving the toy flavor, and the node's events."""

    def __init__(self) -> None:
        self.prefix = f"nsim-srvwait-{os.getpid()}-"
        # The clients forward: c1 is the router in front of far.
        self.bed = Testbed(self.prefix, client_sysctls={"net/ipv4/ip_forward": "1"})
        self.far_ns = f"{self.prefix}far"
        self.store = EventStore()
        self.server = ServerThread(ServerConfig(flavor=ToyFlavor, limits=Limits(parked_per_caller=PARKED_PER_VM)),
                                   socket_factory=tcp_socket_in)
        self.vms = {ROUTER: make_vm("vm1"), "169.254.10.3": make_vm("vm3"), FAR: make_vm("vmf")}

    def start(self) -> None:
        self.bed.add_client("c1", ROUTER, "02:00:00:00:50:01")
        self.bed.add_client("c3", "169.254.10.3", "02:00:00:00:50:03")
        self._far()
        self.server.start()
        self.server.add_node("n1", self.bed.node_ns, self.vms.get, self.store)

    def _far(self) -> None:
        """Namespace far, one routed hop behind c1: 198.18.200.2/24, gateway c1's 198.18.200.1."""
        with netns.created(self.far_ns):
            netns.write_sysctl("net/ipv6/conf/all/disable_ipv6", "1")
            far = Rtnl.here(self.far_ns)
        try:
            fd = netns.open_fd(self.far_ns)
            try:
                with Rtnl.in_namespace(self.bed.clients["c1"].ns) as router:
                    router.add_veth("hop0", 3, "eth0", 2, fd)
                    router.add_address(3, "198.18.200.1", 24)
                    router.flush()
            finally:
                os.close(fd)
            far.set_link(1, up=True)
            far.set_link(2, up=True)
            far.add_address(2, FAR, 24)
            far.add_route("169.254.0.0/16", gateway="198.18.200.1")
            far.flush()
        finally:
            far.close()
        with Rtnl.in_namespace(self.bed.node_ns) as node:
            node.add_route("198.18.200.0/24", gateway=ROUTER)
            node.flush()

    def connect(self, client: str, timeout: float = 5.0) -> socket.socket:
        if client != "far":
            return self.bed.connect(client, timeout)
        sock = netns.socket_in(self.far_ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect((METADATA_ADDRESS, 80))
        return sock

    def parked(self) -> int:
        return self.server.run(lambda: self.server.server.stats()["parked"])

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            netns.remove(self.far_ns)
            self.bed.close()


@pytest.fixture(scope="module")
def world():
    """The served node, its clients and far; everything removed afterwards."""
    require_root()
    w = World()
    try:
        w.start()
        yield w
    finally:
        w.stop()
    assert not netns.list_names(w.prefix)


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def test_a_flavor_outside_the_package_answers_a_vm(world) -> None:
    with world.connect("c3") as sock, sock.makefile("rb") as f:
        sock.sendall(request("/toy/whoami"))
        assert read_response(f) == (200, b"vm3")


def test_a_parked_request_returns_when_the_nodes_events_change(world) -> None:
    with world.connect("c1") as sock, sock.makefile("rb") as f:
        sock.sendall(request("/toy/wait?timeout=30"))
        assert wait_until(lambda: world.parked() == 1)
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)  # parked: no answer yet
        sock.settimeout(5)
        incarnation = world.server.run(lambda: world.store.document_incarnation)
        world.server.run(world.store.add, azure_event(f"e-wait-{time.time()}", "Reboot", ("vm1",),
                                                      time.time() + 900, time.time()))
        started = time.monotonic()
        world.server.notify("n1")
        assert read_response(f) == (200, f"changed {incarnation + 1}".encode())
        assert time.monotonic() - started < 1.0
        sock.sendall(request("/toy/whoami"))  # the connection goes on
        assert read_response(f) == (200, b"vm1")
    assert world.parked() == 0


def test_one_change_wakes_every_poll_and_each_answer_keeps_its_place(world) -> None:
    # A wake writes its answers in one burst, after every poll was woken
    # (netsim_imds.parking.writes_batched): each still comes before the answer of the request
    # pipelined behind it, and a closing connection's answer before its close.
    socks = [world.connect(c) for c in ("c1", "c1", "c3", "c3")]
    files = [s.makefile("rb") for s in socks]
    try:
        socks[0].sendall(request("/toy/wait?timeout=30") + request("/toy/whoami"))
        socks[1].sendall(request("/toy/wait?timeout=30", close=True))
        for sock in socks[2:]:
            sock.sendall(request("/toy/wait?timeout=30"))
        assert wait_until(lambda: world.parked() == 4)
        incarnation = world.server.run(lambda: world.store.document_incarnation)
        world.server.run(world.store.add, azure_event(f"e-burst-{time.time()}", "Reboot", ("vm1", "vm3"),
                                                      time.time() + 900, time.time()))
        world.server.notify("n1")
        for f in files:
            assert read_response(f) == (200, f"changed {incarnation + 1}".encode())
        assert read_response(files[0]) == (200, b"vm1")
        assert files[1].read(1) == b""  # Connection: close, after its answer
    finally:
        for f, sock in zip(files, socks):
            f.close()
            sock.close()
    assert wait_until(lambda: world.parked() == 0)


def test_a_parked_request_times_out_at_its_deadline_and_its_followers_wait_for_it(world) -> None:
    with world.connect("c1") as sock, sock.makefile("rb") as f:
        started = time.monotonic()
        sock.sendall(request("/toy/wait?timeout=0.5") + request("/toy/whoami"))  # pipelined
        assert read_response(f) == (200, b"timeout")
        waited = time.monotonic() - started
        assert read_response(f) == (200, b"vm1")
    assert 0.45 <= waited < 1.5
    world.server.notify("n1")  # a wake with nothing parked is harmless
    assert world.parked() == 0


def test_a_change_that_does_not_concern_it_leaves_it_parked(world) -> None:
    with world.connect("c3") as sock, sock.makefile("rb") as f:
        sock.sendall(request("/toy/wait?timeout=0.6"))
        assert wait_until(lambda: world.parked() == 1)
        world.server.notify("n1")  # woken, the view did not change: the flavor waits on
        time.sleep(0.1)
        assert world.parked() == 1
        assert read_response(f) == (200, b"timeout")


def test_a_closed_connection_drops_its_parked_request(world) -> None:
    socks = [world.connect("c1"), world.connect("c1"), world.connect("c3")]
    for sock in socks:
        sock.sendall(request("/toy/wait?timeout=60"))
    assert wait_until(lambda: world.parked() == 3)
    for sock in socks:
        sock.close()
    assert wait_until(lambda: world.parked() == 0), "parked requests of closed connections leak"


def test_parked_requests_are_bounded_per_vm_and_others_are_served(world) -> None:
    held = [world.connect("c1") for _ in range(PARKED_PER_VM)]
    try:
        for sock in held:
            sock.sendall(request("/toy/wait?timeout=60"))
        assert wait_until(lambda: world.parked() == PARKED_PER_VM)
        with world.connect("c1") as sock, sock.makefile("rb") as f:
            sock.sendall(request("/toy/wait?timeout=60"))
            status, body = read_response(f)
            assert status == 429 and b"At most 2 requests" in body
        with world.connect("c3") as sock, sock.makefile("rb") as f:  # another VM: its own share
            sock.sendall(request("/toy/wait?timeout=0.2"))
            assert read_response(f) == (200, b"timeout")
    finally:
        for sock in held:
            sock.close()
    assert wait_until(lambda: world.parked() == 0)


def test_a_reply_with_ip_ttl_1_dies_on_a_real_extra_hop_retransmissions_too(world) -> None:
    # Direct (no hop) the TTL-1 reply arrives; one routed hop away only TTL >= 2 does.
    with world.connect("c3") as sock, sock.makefile("rb") as f:
        sock.sendall(request("/toy/ttl?hops=1"))
        assert read_response(f) == (200, b"ttl 1")
    with world.connect("far") as sock, sock.makefile("rb") as f:
        sock.sendall(request("/toy/ttl?hops=2"))
        assert read_response(f) == (200, b"ttl 2")
    with world.connect("far", timeout=2.0) as sock:
        sock.sendall(request("/toy/ttl?hops=1"))
        # 2 s cover several retransmissions (RTO from 200 ms): each left with TTL 1 as well.
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_the_connections_ttl_comes_back_for_a_later_answer(world) -> None:
    ns = world.bed.clients["c3"].ns
    sniff = netns.socket_in(ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    sniff.bind(("eth0", 0x0800))
    sniff.settimeout(2.0)
    try:
        with world.connect("c3") as sock, sock.makefile("rb") as f:
            sock.sendall(request("/toy/ttl?hops=3"))
            assert read_response(f) == (200, b"ttl 3")
            sock.sendall(request("/toy/whoami"))
            assert read_response(f) == (200, b"vm3")
        ttls = []
        while len(ttls) < 2:
            frame = sniff.recv(2048)
            ip = frame[14:]
            ihl = (ip[0] & 0x0F) * 4
            total, ttl, proto = struct.unpack("!H", ip[2:4])[0], ip[8], ip[9]
            if proto != 6 or socket.inet_ntoa(ip[12:16]) != METADATA_ADDRESS:
                continue
            offset = (ip[ihl + 12] >> 4) * 4
            if total - ihl - offset > 0:  # a segment carrying an answer
                ttls.append(ttl)
    finally:
        sniff.close()
    assert ttls[0] == 3 and ttls[1] > 3
