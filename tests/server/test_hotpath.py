"""The per-request shortcuts of the metadata server give the answers the long way gives:
the token MAC, the parser's head cache, the serializer's header cache, AWS's kept static
answers, and the socket a connection holds for its options (that one across real
namespaces, needs root)."""

from __future__ import annotations

import calendar
import hmac
import os
import struct
import time

import pytest

from netsim.harness.testbed import Testbed, tcp_socket_in
from netsim_imds import headcache, http
from netsim_imds.aws.api import AwsConfig, AwsFlavor
from netsim_imds.aws.tokens import TokenIssuer
from netsim_imds.background import ServerThread
from netsim_imds.driver import ServerConfig
from netsim_imds.events import Event, EventStore, Kind
from netsim_imds.http import LocalProtocolError
from netsim_imds.response import Response, serialize

from tests.server.support import make_vm, parse_all, require_root
from tests.server.test_wait import read_response, request
from tests.server.toyflavor import ToyFlavor

T0 = float(calendar.timegm((2019, 1, 21, 9, 0, 43)))


@pytest.mark.parametrize("length", [0, 1, 32, 63, 64, 65, 200])
def test_the_token_mac_is_hmac_sha256_whatever_the_secrets_length(length) -> None:
    secret = bytes((7 * i) % 256 for i in range(length))
    issuer = TokenIssuer(secret)
    for vm_id, expiry in (("vm-1", 0), ("5d33a910-a7a0-4443-9f01-6a807801b29b", 1_700_000_000_000)):
        message = vm_id.encode() + struct.pack(">Q", expiry)
        assert issuer._mac(vm_id, expiry) == hmac.digest(secret, message, "sha256")[:24]
    token = issuer.mint("vm-1", 60, T0)
    again = TokenIssuer(secret)  # no recent cache there: the MAC is computed
    assert again.valid(token, "vm-1", T0) and not again.valid(token, "vm-2", T0)


def test_a_head_is_kept_only_once_it_is_seen_a_second_time() -> None:
    raw = f"GET /x HTTP/1.1\r\nHost: h\r\nX-Once: {time.time_ns()}-{os.getpid()}\r\n\r\n".encode()
    first = parse_all(raw)
    assert raw[:-4] not in http._HEADS._heads  # a value new on every request is not kept
    second = parse_all(raw)
    assert raw[:-4] in http._HEADS._heads and first == second
    assert parse_all(raw) == first  # from the cache: the same request


def test_a_flood_of_new_heads_keeps_the_tables_bounded_and_a_pollers_head_right() -> None:
    # A hostile VM sends every head twice (so that each is kept) with a new token, a new
    # prefix and a new path each time: the tables stay within their sizes, a poller's head
    # parses as the full parse does throughout. Bounded: 3 x SEEN_SIZE heads, twice each.
    cache = headcache.HeadCache(http._parse_head, http._FIELD_ALONE, (http.MAX_HEADER_BYTES, http.MAX_HEADER_FIELDS))
    poller = b"GET /metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: 169.254.169.254\r\nMetadata: true"
    for n in range(3 * headcache.SEEN_SIZE):
        raw = b"GET /p%d HTTP/1.1\r\nHost: h\r\nX-P%d: v\r\nX-aws-ec2-metadata-token: t%d" % (n, n, n)
        assert cache.head(raw) == cache.head(raw) == http._parse_head(raw)
        if n % 512 == 0:
            assert cache.head(poller) == http._parse_head(poller)
        assert len(cache._heads) <= headcache.SIZE and len(cache._prefixes) <= headcache.SIZE
        assert len(cache._seen) <= headcache.SEEN_SIZE


_PREFIXES = [b"GET /latest/meta-data/instance-id HTTP/1.1\r\nHost: 169.254.169.254", b"GET / HTTP/1.1",
             b"GET / HTTP/1.0", b"GET /a?b=c HTTP/1.1\r\nHost: h\r\nConnection: close",
             b"PUT /t HTTP/1.1\r\nHost: h\r\nContent-Length: 3", b"GET / HTTP/1.1\nHost: bare-lf",
             b"GET / HTTP/1.1\r\nHost: h\r", b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"a" * 16370,
             b"GET / HTTP/1.1\r\n" + b"\r\n".join(b"X%d: v" % i for i in range(99)) + b"\r\nHost: h"]
_LASTS = [b"X-aws-ec2-metadata-token: %d", b"X-T:   spaced %d  ", b"X-T: a\tb%d", b"X-T:%d", b"X-T: \x00%d",
          b"X-T : %d", b" folded %d", b"Host: second%d", b"Connection: close%d", b"Connection: close",
          b"Content-Length: 5%d", b"Transfer-Encoding: chunked%d", b"Expect: 100-continue", b"X-T: caf\xe9%d",
          b"X-T: a\rb%d", b"X-T: ok%d\r", b"x-t: v%d\nY: z", b"Bad Name: %d"]


def _outcome(parse, raw: bytes) -> object:
    try:
        return parse(raw)
    except http.ProtocolError as exc:
        return exc.status


@pytest.mark.parametrize("prefix", _PREFIXES)
def test_a_head_known_by_its_prefix_parses_as_the_whole_head_does(prefix) -> None:
    # Each head three times with a new last value: the prefix is learned, then extended.
    for n in range(4):
        for last in _LASTS:
            raw = prefix + b"\r\n" + (last % (time.time_ns() + n) if b"%d" in last else last)
            assert _outcome(http._HEADS.head, raw) == _outcome(http._parse_head, raw), raw


def test_response_headers_render_as_before_and_a_bad_one_fails_every_time() -> None:
    response = Response(200, b"ok", "text/plain", (("Server", "EC2ws"), ("X-Ttl", "60")))
    for _ in range(2):  # rendered, then from the cache
        assert serialize(response, keep_alive=True, date="D") == (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: D\r\n"
            b"Server: EC2ws\r\nX-Ttl: 60\r\n\r\nok")
    assert serialize(response, keep_alive=False, head=True) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nServer: EC2ws\r\nX-Ttl: 60\r\n"
        b"Connection: close\r\n\r\n")
    for bad in (Response(200, headers=(("Bad Name", "x"),)), Response(200, headers=(("X", "a\r\nInjected: 1"),)),
                Response(200, content_type="text/plain\r\nInjected: 1")):
        for _ in range(2):  # never kept as checked
            with pytest.raises(LocalProtocolError):
                serialize(bad, date="D")


def _get(api: AwsFlavor, path: str, vm, events: EventStore, now: float = T0) -> Response:
    (req,) = parse_all(f"GET {path} HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n".encode())
    return api.handle(req, vm, events, now)


def test_aws_keeps_a_vms_static_answers_but_never_its_events_or_another_identitys() -> None:
    api, events = AwsFlavor(AwsConfig(rate_limit=None)), EventStore()
    vm = make_vm("vm1", location="us-east-1", vm_size="m5.large")
    first = _get(api, "/latest/meta-data/instance-type", vm, events)
    assert first.body == b"m5.large" and _get(api, "/latest/meta-data/instance-type", vm, events) is first
    resized = make_vm("vm1", location="us-east-1", vm_size="m5.xlarge")  # a new identity (claim, move)
    assert _get(api, "/latest/meta-data/instance-type", resized, events).body == b"m5.xlarge"
    assert _get(api, "/latest/meta-data/instance-type", vm, events).body == b"m5.large"
    scheduled, spot = "/latest/meta-data/events/maintenance/scheduled", "/latest/meta-data/spot/instance-action"
    assert _get(api, scheduled, vm, events).body == b"[]" and _get(api, spot, vm, events).status == 404
    assert b"spot/" not in _get(api, "/latest/meta-data/", vm, events).body
    events.add(Event("e1", Kind.REBOOT, ("vm1",), T0 + 3600, T0))
    events.add(Event("s1", Kind.PREEMPT, ("vm1",), T0 + 120, T0))
    assert b"system-reboot" in _get(api, scheduled, vm, events).body  # the events are read again
    assert b"spot/" in _get(api, "/latest/meta-data/", vm, events).body  # and the listing
    assert _get(api, spot, vm, events).status == 200


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.root
def test_a_connection_holds_one_socket_for_its_options_and_closes_it_when_lost() -> None:
    require_root()
    bed = Testbed(f"nsim-hot-{os.getpid()}-")
    server = ServerThread(ServerConfig(flavor=ToyFlavor), socket_factory=tcp_socket_in)
    try:
        bed.add_client("c1", "169.254.10.1", "02:00:00:00:51:01")
        server.start()
        server.add_node("n1", bed.node_ns, {"169.254.10.1": make_vm("vm1")}.get, EventStore())
        before = _open_fds()
        with bed.connect("c1") as sock, sock.makefile("rb") as f:
            for _ in range(3):  # the option set and restored three times: one duplicate descriptor
                sock.sendall(request("/toy/ttl?hops=3"))
                assert read_response(f) == (200, b"ttl 3")
                sock.sendall(request("/toy/whoami"))
                assert read_response(f) == (200, b"vm1")
            # the client's socket, the server's end of the connection and one duplicate of it
            assert _open_fds() - before == 3
            (conn,) = server.run(lambda: list(server.server._nodes["n1"].connections))
            assert conn.options.sock.fileno() >= 0
        deadline = time.monotonic() + 5
        while _open_fds() != before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _open_fds() == before and conn.options.sock.fileno() == -1  # closed with the connection
    finally:
        server.stop()
        bed.close()
