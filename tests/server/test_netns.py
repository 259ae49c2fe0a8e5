"""The metadata server across real namespaces (needs root; fails instead of skipping under CI=true).

Two node namespaces, each with br0 = 169.254.169.254/16, are served by ONE server
process. Node n1 has clients c1 (vm1), c2 (maps to no VM) and c3 (vm3); node n2 has a
client whose address is the same as n1's c1 but is another VM. Every socket and client
program runs inside a client namespace; no traffic starts in the host's namespace.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid

import pytest

from netsim.kernel import netns
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig, ServerError
from netsim_imds.events import Event, EventStore
from netsim.harness.testbed import METADATA_ADDRESS, Testbed, tcp_socket_in

from tests.server.support import azure_event, make_vm, require_root

HEADER_TIMEOUT = 0.5
V1 = b"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class World:
    """The namespaces, the server thread and what the server reads."""

    def __init__(self) -> None:
        prefix = f"nsim-srvtest-{os.getpid()}-"
        self.bed1 = Testbed(prefix)
        self.bed2 = Testbed(prefix + "2")
        self.server = ServerThread(ServerConfig(header_timeout=HEADER_TIMEOUT), socket_factory=tcp_socket_in)
        self.vm1 = make_vm("vm1", vm_id=str(uuid.uuid4()))
        self.vm3 = make_vm("vm3", vm_id=str(uuid.uuid4()))
        self.vmb = make_vm("vmb", vm_id=str(uuid.uuid4()), node="n2", availability_set="db")
        self.approved: list[Event] = []
        self.store1 = EventStore(on_approve=self.approved.append)
        self.store2 = EventStore()

    def start(self) -> None:
        self.bed1.build_node()
        self.bed1.add_client("c1", "169.254.10.1", "02:00:00:00:10:01")
        self.bed1.add_client("c2", "169.254.10.2", "02:00:00:00:10:02")
        self.bed1.add_client("c3", "169.254.10.3", "02:00:00:00:10:03")
        self.bed2.build_node()
        self.bed2.add_client("c1", "169.254.10.1", "02:00:00:00:20:01")
        n1 = {"169.254.10.1": self.vm1, "169.254.10.3": self.vm3}
        n2 = {"169.254.10.1": self.vmb}
        self.server.start()
        self.server.add_node("n1", self.bed1.node_ns, n1.get, self.store1)
        self.server.add_node("n2", self.bed2.node_ns, n2.get, self.store2)

    def stop(self) -> None:
        try:
            self.server.stop()
        finally:
            self.bed1.close()
            self.bed2.close()


@pytest.fixture(scope="module")
def world():
    """Two served nodes with their clients; everything removed afterwards."""
    require_root()
    w = World()
    try:
        w.start()
        yield w
    finally:
        w.stop()
    assert not netns.list_names(w.bed1.prefix)


def read_response(f) -> tuple[int, dict[str, str], bytes]:
    """One HTTP response from a socket file: (status, lower-cased headers, body)."""
    status_line = f.readline()
    if not status_line:
        raise EOFError("connection closed before a response")
    status = int(status_line.split()[1])
    headers = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, f.read(int(headers.get("content-length", "0")))


def exchange(bed: Testbed, client: str, raw: bytes, count: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
    """Send ``raw`` from ``client`` on one connection; read ``count`` responses."""
    with bed.connect(client) as sock, sock.makefile("rb") as f:
        sock.sendall(raw)
        return [read_response(f) for _ in range(count)]


def get(path: str, headers: str = "Metadata: true\r\n", method: str = "GET", body: bytes = b"") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n{headers}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def test_each_vm_gets_its_own_identity_on_its_own_node(world) -> None:
    ((status, headers, body),) = exchange(world.bed1, "c1", get("/metadata/v1/InstanceInfo", ""))
    assert status == 200 and json.loads(body) == {"ID": "vm1", "UD": "1", "FD": "0"}
    assert headers["content-type"].startswith("application/json") and "date" in headers
    # Same client address, other node (other L2): another VM.
    ((status, _, body),) = exchange(world.bed2, "c1", get("/metadata/v1/InstanceInfo", ""))
    assert status == 200 and json.loads(body)["ID"] == "vmb"


def test_unmapped_client_gets_403_and_is_logged(world, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="netsim.server"):
        ((status, _, body),) = exchange(world.bed1, "c2", get("/metadata/v1/maintenance", ""))
    assert status == 403 and "error" in json.loads(body)
    assert any("169.254.10.2" in r.getMessage() and "no VM" in r.getMessage() for r in caplog.records)


def test_curl_reads_the_instance_document(world) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url = f"http://{METADATA_ADDRESS}/metadata/instance?api-version=2021-02-01"
    out = subprocess.run(["nsenter", f"--net={netns.path_of(world.bed1.clients['c1'].ns)}", "curl", "-s",
                          "--noproxy", "*", "-m", "5", "-H", "Metadata: true", url],
                         capture_output=True, timeout=15, check=True)
    doc = json.loads(out.stdout)
    assert doc["compute"]["vmId"] == world.vm1.vm_id and doc["compute"]["name"] == "vm1"


def test_scheduled_event_seen_and_approved_over_http(world) -> None:
    event = azure_event("e-net-1", "Freeze", ("vm1",), time.time() + 900, time.time(), avset="web", duration_s=5)
    world.server.run(world.store1.add, event)
    se = "/metadata/scheduledevents?api-version=2020-07-01"
    ((status, _, body),) = exchange(world.bed1, "c1", get(se))
    doc = json.loads(body)
    assert status == 200 and [e["EventStatus"] for e in doc["Events"]] == ["Scheduled"]
    approve = json.dumps({"StartRequests": [{"EventId": "e-net-1"}]}).encode()
    ((status, _, _),) = exchange(world.bed1, "c1", get(se, method="POST", body=approve))
    assert status == 200
    assert world.server.run(world.store1.get, "e-net-1").status == "Started"
    assert [e.event_id for e in world.approved] == ["e-net-1"]
    # The 2015 API of the VM shows the started event too.
    ((_, _, body),) = exchange(world.bed1, "c1", get("/metadata/v1/maintenance", ""))
    assert json.loads(body)["EventID"] == "e-net-1"
    world.server.run(world.store1.remove, "e-net-1")


def test_expect_100_continue_over_the_wire(world) -> None:
    """A client that waits for "100 Continue" before its body is invited, then answered;
    an expectation the server cannot meet gets 417 and the server keeps serving."""
    event = azure_event("e-net-2", "Reboot", ("vm1",), time.time() + 900, time.time(), avset="web", duration_s=5)
    world.server.run(world.store1.add, event)
    body = json.dumps({"StartRequests": [{"EventId": "e-net-2"}]}).encode()
    head = get("/metadata/scheduledevents?api-version=2020-07-01", "Metadata: true\r\nExpect: 100-continue\r\n",
               method="POST", body=body)[:-len(body)]
    with world.bed1.connect("c1") as sock, sock.makefile("rb") as f:
        sock.sendall(head)
        assert f.readline() == b"HTTP/1.1 100 Continue\r\n" and f.readline() == b"\r\n"
        sock.sendall(body)
        assert read_response(f)[0] == 200
    assert world.server.run(world.store1.get, "e-net-2").status == "Started"
    world.server.run(world.store1.remove, "e-net-2")
    ((status, headers, _),) = exchange(world.bed1, "c1", head.replace(b"100-continue", b"200-ok") + body)
    assert status == 417 and headers["connection"] == "close"
    assert [s for s, _, _ in exchange(world.bed1, "c1", V1)] == [200]


def test_keep_alive_pipelining_and_connection_close(world) -> None:
    with world.bed1.connect("c1") as sock, sock.makefile("rb") as f:
        sock.sendall(V1 * 3)  # three pipelined requests in one segment
        assert [read_response(f)[0] for _ in range(3)] == [200, 200, 200]
        sock.sendall(get("/metadata/v1/InstanceInfo", "Connection: close\r\n"))
        status, headers, _ = read_response(f)
        assert status == 200 and headers["connection"] == "close"
        assert f.read() == b""  # the server closed the connection


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: v\r\n" * 101 + b"\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 70000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
])
def test_bad_requests_get_4xx_then_close_and_the_server_keeps_serving(world, raw, status) -> None:
    with world.bed1.connect("c1") as sock, sock.makefile("rb") as f:
        sock.sendall(raw)
        got, headers, _ = read_response(f)
        assert (got, headers["connection"]) == (status, "close")
        assert f.read() == b""
    assert exchange(world.bed1, "c1", V1)[0][0] == 200


def test_slow_client_is_dropped_while_another_is_served(world) -> None:
    with world.bed1.connect("c1") as slow:
        started = time.monotonic()
        slow.sendall(b"GET /metadata/v1/mainten")  # ... and nothing more
        with world.bed1.connect("c3") as fast, fast.makefile("rb") as f:
            for _ in range(20):
                t = time.monotonic()
                fast.sendall(V1)
                assert read_response(f)[0] == 200
                assert time.monotonic() - t < HEADER_TIMEOUT
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
        waited = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in data
    assert HEADER_TIMEOUT * 0.9 <= waited < HEADER_TIMEOUT + 2


def test_rate_limit_over_the_wire(world) -> None:
    responses = exchange(world.bed1, "c3", get("/metadata/versions") * 7, count=7)
    statuses = [s for s, _, _ in responses]
    assert statuses[:5] == [200] * 5 and statuses[-1] == 429
    assert "retry-after" in responses[-1][1]


def test_many_concurrent_keep_alive_clients(world) -> None:
    clients, requests = 50, 20
    ns = world.bed1.clients["c1"].ns

    async def one_client() -> list[int]:
        loop = asyncio.get_running_loop()
        sock = netns.socket_in(ns, socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, (METADATA_ADDRESS, 80))
        reader, writer = await asyncio.open_connection(sock=sock)
        statuses = []
        try:
            for _ in range(requests):
                writer.write(V1)
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = await reader.readexactly(length)
                statuses.append(int(head.split()[1]) if body == b"{}" else -1)
        finally:
            writer.close()
            await writer.wait_closed()
        return statuses

    async def main() -> list[list[int]]:
        return await asyncio.wait_for(asyncio.gather(*(one_client() for _ in range(clients))), 30)

    results = asyncio.run(main())
    assert [s for r in results for s in r] == [200] * (clients * requests)


def test_add_node_errors_name_the_node_and_the_fix(world) -> None:
    empty = EventStore()
    with pytest.raises(ServerError, match="already served"):
        world.server.add_node("n1", world.bed1.node_ns, dict().get, empty)
    with pytest.raises(ServerError, match="does not exist"):
        world.server.add_node("gone", "nsim-srvtest-no-such-namespace", dict().get, empty)
    with pytest.raises(ServerError, match="add 169.254.169.254 to the node's bridge"):
        world.server.add_node("n3", world.bed1.clients["c2"].ns, dict().get, empty)
    with pytest.raises(ServerError, match="another server already listens"):
        world.server.add_node("n3", world.bed2.node_ns, dict().get, empty)
    assert sorted(world.server.server.nodes) == ["n1", "n2"]


def test_remove_node_stops_serving_that_node_only(world) -> None:
    world.server.remove_node("n2")
    try:
        with pytest.raises(ConnectionRefusedError):
            exchange(world.bed2, "c1", V1)
        assert exchange(world.bed1, "c1", V1)[0][0] == 200
    finally:
        world.server.add_node("n2", world.bed2.node_ns, {"169.254.10.1": world.vmb}.get, world.store2)
    assert exchange(world.bed2, "c1", V1)[0][0] == 200


def test_without_root_these_tests_skip_or_fail_under_ci(monkeypatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs root"):
        require_root()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_root()


def test_a_body_that_never_comes_is_dropped_too(world) -> None:
    with world.bed1.connect("c3") as sock:
        started = time.monotonic()
        sock.sendall(get("/metadata/scheduledevents?api-version=2020-07-01").replace(b"Length: 0", b"Length: 10"))
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < HEADER_TIMEOUT + 2
