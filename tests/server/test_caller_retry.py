"""A caller the first lookup could not name is looked up again on its next request
(real namespaces; needs root, fails instead of skipping under CI=true)."""

from __future__ import annotations

import json
import os

import pytest

from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import EventStore
from netsim.harness.testbed import Testbed, tcp_socket_in

from tests.server.support import make_vm, require_root
from tests.server.test_netns import read_response

pytestmark = pytest.mark.root

INFO = b"GET /metadata/v1/InstanceInfo HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


class Flaky:
    """A resolver whose first ``misses`` lookups find no VM (the kernel between two states)."""

    def __init__(self, misses: int) -> None:
        self.misses, self.calls = misses, 0
        self.vm = make_vm("vm1")

    def __call__(self, peer: str):
        self.calls += 1
        return None if self.calls <= self.misses else self.vm


@pytest.fixture
def served():
    require_root()
    bed = Testbed(f"nsim-retry-{os.getpid()}-")
    server = ServerThread(ServerConfig(), socket_factory=tcp_socket_in)
    resolver = Flaky(misses=2)
    try:
        bed.build_node()
        bed.add_client("c1", "169.254.10.1", "02:00:00:00:10:01")
        server.start()
        server.add_node("n1", bed.node_ns, resolver, EventStore())
        yield bed, resolver
    finally:
        try:
            server.stop()
        finally:
            bed.close()


def test_a_keep_alive_connection_refused_at_first_is_served_once_its_caller_is_known(served) -> None:
    bed, resolver = served
    with bed.connect("c1") as sock, sock.makefile("rb") as f:
        answers = []
        for _ in range(4):
            sock.sendall(INFO)
            answers.append(read_response(f))
    # Looked up when the connection opened (miss), on the first request (miss), then found.
    assert [status for status, _, _ in answers] == [403, 200, 200, 200]
    assert json.loads(answers[1][2])["ID"] == "vm1"
    assert resolver.calls == 3  # once known, never asked again for this connection
