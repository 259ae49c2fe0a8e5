"""Bounded fuzzing of the parser: it raises nothing but ProtocolError, whatever the bytes,
and gives the same outcome whether the bytes come whole or in arbitrary pieces."""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from netsim_imds.azure.api import AzureConfig, AzureFlavor
from netsim_imds.events import EventStore
from netsim_imds.http import ProtocolError, Request, RequestParser
from netsim_imds.response import Response, serialize

from tests.server.support import azure_event, make_vm

SEEDS = [
    b"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n",
    b"GET /metadata/instance?api-version=2021-02-01&format=text HTTP/1.1\r\nHost: h\r\nMetadata: true\r\n\r\n",
    b"POST /metadata/scheduledevents?api-version=2020-07-01 HTTP/1.1\r\nHost: h\r\nMetadata: true\r\n"
    b"Content-Length: 39\r\n\r\n{\"StartRequests\": [{\"EventId\": \"e1\"}]}",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\nTransfer-Encoding: chunked\n\n",
    # Absolute-form targets (RFC 9112 3.2.2): urlsplit raises on some ("http://[::1/x").
    b"GET http://[::1]:80/metadata/v1/maintenance?a=b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET https://169.254.169.254/metadata/instance?api-version=2021-02-01 HTTP/1.1\r\nHost: h\r\n"
    b"Metadata: true\r\n\r\n",
]


# Keep Hypothesis's files (it caches constants at collection) out of the repository;
# restored when this module's tests are done.
set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "nsim-srvtest-hypothesis"))


@pytest.fixture(autouse=True, scope="module")
def _restore_hypothesis_home():
    """Give Hypothesis its default storage folder back after this module."""
    yield
    set_hypothesis_home_dir(None)


def outcome(chunks: list[bytes]) -> tuple[list[Request], int | None]:
    """(requests, error status) of feeding ``chunks``; any other exception fails the test."""
    p = RequestParser()
    out: list[Request] = []
    try:
        for chunk in chunks:
            p.feed(chunk)
            while (r := p.next_request()) is not None:
                assert isinstance(r, Request)
                out.append(r)
    except ProtocolError as exc:
        assert 400 <= exc.status <= 505
        return out, exc.status
    return out, None


@st.composite
def mutated(draw) -> bytes:
    """A seed request (or several, pipelined) with random byte edits."""
    data = bytearray(b"".join(draw(st.lists(st.sampled_from(SEEDS), min_size=1, max_size=3))))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data)))
        edit = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.one_of(st.binary(max_size=4), st.sampled_from([b"\r", b"\n", b"\r\n", b" ", b":", b"\x00",
                                                                     b"\t", b"Content-Length: 3\r\n", b"\xff"])))
        if edit == "insert":
            data[pos:pos] = piece
        elif edit == "delete":
            del data[pos:pos + len(piece) + 1]
        else:
            data[pos:pos + len(piece)] = piece
    return bytes(data)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=300), mutated()), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_parser_raises_only_its_own_error_and_ignores_chunking(data: bytes, cuts: list[int]) -> None:
    whole = outcome([data])
    assert outcome(split(data, cuts)) == whole


@settings(max_examples=50, deadline=None, database=None)
@given(data=mutated())
def test_parser_byte_by_byte_matches_whole(data: bytes) -> None:
    assert outcome([data[i:i + 1] for i in range(len(data))]) == outcome([data])


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated(), bracket=st.sampled_from([b"", b"[", b"{", b'{"StartRequests":']),
       depth=st.integers(0, 3000), ipv6=st.sampled_from([b"", b"http://[::1/x", b"http://[", b"https://[::1]x/"]))
def test_every_parsed_request_gets_an_answer_and_nothing_raises(data: bytes, bracket: bytes, depth: int,
                                                                ipv6: bytes) -> None:
    """Whatever parses, the API answers it (a Response that serializes), never an exception."""
    if ipv6:
        data = data.replace(b"/metadata", ipv6 + b"/metadata", 1)
    body = bracket * depth
    if body and b"POST" in data:
        data = data.replace(b"Content-Length: 39", b"Content-Length: %d" % len(body), 1).replace(
            b'{"StartRequests": [{"EventId": "e1"}]}', body, 1)
    requests, _ = outcome([data])
    api = AzureFlavor(AzureConfig(rate_limit=None))
    events = EventStore()
    events.add(azure_event("e1", "Reboot", ("vm1",), 1000.0, 0.0, avset="web", duration_s=5))
    for request in requests:
        response = api.handle(request, make_vm(), events, 100.0)
        assert isinstance(response, Response) and 200 <= response.status < 600
        assert response.status != 500
        assert serialize(response, keep_alive=True, date="d").startswith(b"HTTP/1.1 ")
