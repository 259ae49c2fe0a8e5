"""Answers given again without the flavor (netsim_imds.answers): pure, then across real
namespaces (the root part fails instead of skipping under CI=true)."""

from __future__ import annotations

import json
import math
import os
import time

import pytest

from netsim_imds.answers import MAX_KEY, AnswerCache
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import EventStore
from netsim_imds.http import RequestParser
from netsim_imds.response import Response, serialize
from netsim.harness.testbed import Testbed, tcp_socket_in

from tests.server.support import azure_event, make_vm, require_root
from tests.server.test_netns import read_response

MAINTENANCE = b"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"
VERSIONS = b"GET /metadata/versions HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true\r\n\r\n"
D1, D2 = "Tue, 01 Dec 2026 12:00:00 GMT", "Tue, 01 Dec 2026 12:00:01 GMT"


def _request(raw: bytes = MAINTENANCE):
    p = RequestParser()
    p.feed(raw)
    return p.next_request()


def _cache_with(response: Response, caller, incarnation: int = 1) -> AnswerCache:
    cache = AnswerCache()
    cache.put(caller, MAINTENANCE, incarnation, _request(), response, D1, serialize(response, date=D1))
    return cache


def test_an_answer_stands_while_incarnation_time_and_caller_do() -> None:
    vm = make_vm()
    cache = _cache_with(Response(200, b"{}", cache_until=100.0), vm)
    assert cache.get(vm, MAINTENANCE, 1, 99.0, D1) == (serialize(Response(200, b"{}"), date=D1), True)
    assert cache.get(make_vm(), MAINTENANCE, 1, 99.0, D1) is None  # an equal but new identity
    assert cache.get(vm, MAINTENANCE + b"x", 1, 99.0, D1) is None
    assert cache.get(vm, MAINTENANCE, 2, 99.0, D1) is None  # the events changed: forgotten
    assert len(cache) == 0
    cache = _cache_with(Response(200, b"{}", cache_until=100.0), vm)
    assert cache.get(vm, MAINTENANCE, 1, 100.0, D1) is None  # its deadline came


def test_only_the_date_is_rendered_again_on_a_new_second() -> None:
    vm = make_vm()
    cache = _cache_with(Response(200, b"{}", cache_until=math.inf), vm)
    wire, keep_alive = cache.get(vm, MAINTENANCE, 1, 5.0, D2)
    assert keep_alive and wire == serialize(Response(200, b"{}"), date=D2)


def test_long_requests_are_not_kept() -> None:
    cache = AnswerCache()
    big = b"x" * (MAX_KEY + 1)
    cache.put(make_vm(), big, 1, _request(), Response(200, cache_until=math.inf), D1, b"")
    assert len(cache) == 0


# -- across real namespaces -----------------------------------------------------------------

@pytest.fixture
def served():
    require_root()
    bed = Testbed(f"nsim-answers-{os.getpid()}-")
    server = ServerThread(ServerConfig(), socket_factory=tcp_socket_in)
    store = EventStore()
    try:
        bed.build_node()
        bed.add_client("c1", "169.254.10.1", "02:00:00:00:10:01")
        server.start()
        server.add_node("n1", bed.node_ns, {"169.254.10.1": make_vm("vm1")}.get, store)
        yield bed, server, store
    finally:
        try:
            server.stop()
        finally:
            bed.close()


def _poll(sock, f, raw: bytes = MAINTENANCE):
    sock.sendall(raw)
    return read_response(f)


def _kept(server: ServerThread) -> int:
    return server.run(lambda: len(server.server._nodes["n1"].answers))


@pytest.mark.root
def test_a_kept_answer_follows_the_events_and_the_notice_window(served) -> None:
    bed, server, store = served
    with bed.connect("c1") as sock, sock.makefile("rb") as f:
        assert _poll(sock, f)[2] == b"{}"
        assert _kept(server) == 1 and _poll(sock, f)[2] == b"{}"
        # A change of the node's events is seen on the very next request.
        now = time.time()
        server.run(store.add, azure_event("e-now", "Reboot", ("vm1",), now + 60, now))
        assert json.loads(_poll(sock, f)[2])["EventID"] == "e-now"
        server.run(store.remove, "e-now")
        assert _poll(sock, f)[2] == b"{}"
        # An event that enters the 300 s notice window by time alone (no change to the
        # events): the kept "{}" must not outlive that moment.
        now = time.time()
        server.run(store.add, azure_event("e-later", "Reboot", ("vm1",), now + 300 + 1.5, now))
        assert _poll(sock, f)[2] == b"{}" and _poll(sock, f)[2] == b"{}"
        time.sleep(1.7)
        assert json.loads(_poll(sock, f)[2])["EventID"] == "e-later"


@pytest.mark.root
def test_a_kept_answer_gets_a_fresh_date_each_second(served) -> None:
    bed, server, _ = served
    with bed.connect("c1") as sock, sock.makefile("rb") as f:
        first = _poll(sock, f)[1]["date"]
        time.sleep(1.1)
        assert _poll(sock, f)[1]["date"] != first


@pytest.mark.root
def test_the_rate_limit_still_counts_identical_requests_sent_one_by_one(served) -> None:
    bed, _, _ = served
    with bed.connect("c1") as sock, sock.makefile("rb") as f:
        statuses = [_poll(sock, f, VERSIONS)[0] for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[-1] == 429
