"""The sans-IO HTTP parser and serializer: input whole, byte by byte, and with trailing bytes."""

from __future__ import annotations

import pytest

from netsim_imds.http import (MAX_BODY, MAX_HEADER_BYTES, MAX_HEADER_FIELDS, MAX_REQUEST_LINE, TRANSITIONS, HttpError,
                         LocalProtocolError, ProtocolError, Request, RequestParser, State, transitions_as_mermaid)
from netsim_imds.response import Response, error_response, protocol_error_response, serialize

GET = b"GET /metadata/v1/maintenance HTTP/1.1\r\nHost: 169.254.169.254\r\n\r\n"


def feed_in(raw: bytes, sizes: int | None) -> tuple[list[Request], int | None]:
    """Feed ``raw`` whole (sizes=None) or in ``sizes``-byte chunks; (requests, error status)."""
    p = RequestParser()
    out: list[Request] = []
    chunks = [raw] if sizes is None else [raw[i:i + sizes] for i in range(0, len(raw), sizes)]
    try:
        for chunk in chunks:
            p.feed(chunk)
            while (r := p.next_request()) is not None:
                out.append(r)
    except ProtocolError as exc:
        return out, exc.status
    return out, None


VALID = [
    GET,
    b"GET /a?x=1&y=2&x=3 HTTP/1.1\r\nHost: h\r\nMetadata: true\r\n\r\n",
    b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
    b"GET / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\nHost: h\n\n",                      # bare LF line ends
    b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",         # leading empty lines
    b"GET http://169.254.169.254/x?a=b HTTP/1.1\r\nHost: h\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Sp:   a  b \t\r\n\r\n",
]


@pytest.mark.parametrize("raw", VALID)
@pytest.mark.parametrize("sizes", [None, 1, 2, 7])
def test_whole_and_chunked_input_give_the_same_requests(raw: bytes, sizes: int | None) -> None:
    whole, err = feed_in(raw, None)
    assert err is None and len(whole) == 1
    assert feed_in(raw, sizes) == (whole, None)


def test_request_fields(parse) -> None:
    (r,) = parse(b"GET /metadata/instance?api-version=2021-02-01&format=text&x=1&x=2 HTTP/1.1\r\n"
                 b"Host: 169.254.169.254\r\nMetadata: true\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
    assert (r.method, r.path, r.http_version, r.keep_alive, r.body) == ("GET", "/metadata/instance", "1.1", True, b"")
    assert r.target.startswith("/metadata/instance?api-version")
    assert r.query == (("api-version", "2021-02-01"), ("format", "text"), ("x", "1"), ("x", "2"))
    assert r.headers.get("METADATA") == "true" and "metadata" in r.headers
    assert r.headers.get_all("x-a") == ["1", "2"] and r.headers.get("X-A") == "1"
    assert r.headers.get("nope") is None and len(r.headers) == 4
    assert list(r.headers)[0] == ("Host", "169.254.169.254")


def test_whitespace_around_values_is_stripped(parse) -> None:
    (r,) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nX-Sp:   a  b \t\r\nX-Empty:\r\n\r\n")
    assert r.headers.get("x-sp") == "a  b" and r.headers.get("x-empty") == ""


def test_pipelined_requests_and_trailing_partial_bytes() -> None:
    p = RequestParser()
    p.feed(GET + b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" + b"GET /third HTTP/1.1\r\nHo")
    first, second = p.next_request(), p.next_request()
    assert first.path == "/metadata/v1/maintenance" and (second.path, second.body) == ("/x", b"abc")
    assert p.next_request() is None and p.buffered > 0 and p.state is State.HEAD
    p.feed(b"st: h\r\n\r\n")
    assert p.next_request().path == "/third"
    assert p.next_request() is None and p.buffered == 0


def test_body_split_across_feeds() -> None:
    p = RequestParser()
    assert not p.in_progress
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n")
    assert p.next_request() is None and p.buffered == 0 and p.in_progress  # waiting for the body
    p = RequestParser()
    p.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n01234")
    assert p.next_request() is None and p.state is State.BODY
    p.feed(b"56789GET")
    r = p.next_request()
    assert r.body == b"0123456789" and p.state is State.HEAD and p.buffered == 3


def test_expect_100_continue_is_invited_once_and_only_while_the_body_is_awaited() -> None:
    head = b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\n"
    p = RequestParser()
    p.feed(head)
    assert p.next_request() is None and p.take_continue() and not p.take_continue()
    p.feed(b"body" + head + b"bo")
    assert p.next_request().body == b"body" and p.next_request() is None
    assert p.take_continue()  # the pipelined second request waits for its invitation too
    p.feed(b"dy")
    assert p.next_request().body == b"body" and not p.take_continue()
    p = RequestParser()
    p.feed(head + b"body")  # the body came anyway: nothing to invite
    assert p.next_request().body == b"body" and not p.take_continue()
    for other in (head.replace(b"1.1", b"1.0"), head.replace(b"4", b"0")):  # 1.0 client; no body
        p = RequestParser()
        p.feed(other)
        p.next_request()
        assert not p.take_continue()


def test_connection_close_ends_the_stream_and_ignores_what_follows() -> None:
    p = RequestParser()
    p.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n" + GET)
    r = p.next_request()
    assert r.keep_alive is False and p.state is State.CLOSED
    assert p.next_request() is None
    p.feed(GET)  # ignored: the connection is closing
    assert p.next_request() is None and p.buffered == 0


@pytest.mark.parametrize("raw, keep", [
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", False),
    (b"GET / HTTP/1.2\r\nHost: h\r\n\r\n", True),  # higher minor version = 1.1 (RFC 9110 2.5)
])
def test_keep_alive_rules(parse, raw: bytes, keep: bool) -> None:
    assert parse(raw)[0].keep_alive is keep


def test_content_length_list_of_equal_values_is_one_length(parse) -> None:
    (r,) = parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok")
    assert r.body == b"ok"


def test_absolute_form_and_asterisk(parse) -> None:
    (r,) = parse(b"GET HTTP://169.254.169.254/metadata/versions?a=1 HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (r.path, r.query) == ("/metadata/versions", (("a", "1"),))
    (r,) = parse(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")
    assert r.path == "*"


def test_identical_heads_parse_identically_every_time(parse) -> None:
    first = parse(GET)[0]
    assert parse(GET)[0] == first
    other = parse(GET.replace(b"Host:", b"Metadata: true\r\nHost:"))[0]
    assert other.headers.get("metadata") == "true" and first.headers.get("metadata") is None


def test_limits_are_exact(parse) -> None:
    line_ok = b"GET /" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1")) + b" HTTP/1.1\r\nHost: h\r\n\r\n"
    assert len(parse(line_ok)) == 1
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS - 1))
    assert len(parse(b"GET / HTTP/1.1\r\nHost: h\r\n" + fields + b"\r\n")[0].headers) == MAX_HEADER_FIELDS
    body = b"x" * MAX_BODY
    assert parse(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % MAX_BODY + body)[0].body == body


LONG_LINE = b"GET /" + b"a" * MAX_REQUEST_LINE + b" HTTP/1.1\r\nHost: h\r\n\r\n"
BIG_HEADERS = b"GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + b"v" * MAX_HEADER_BYTES + b"\r\n\r\n"
MANY_FIELDS = (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADER_FIELDS))
               + b"\r\n")

ERRORS = [
    (LONG_LINE, 414),
    (BIG_HEADERS, 431),
    (MANY_FIELDS, 431),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1), 413),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc", 400),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 4\r\n\r\nabcd", 400),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    (b"GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
    (b"GET /\r\n\r\n", 400),                                   # HTTP/0.9 style
    (b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET relative HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                           # no Host in 1.1
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),     # two Hosts
    (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),               # space before colon
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n", 400),   # obs-fold
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400),      # bare CR
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),    # NUL
    (b"GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\n: empty-name\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),  # TLS hello
    (b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nx", 417),
    (b"GET / HTTP/1.0\r\nExpect: 100-continue, x\r\n\r\n", 417),
]


@pytest.mark.parametrize("raw, status", ERRORS)
@pytest.mark.parametrize("sizes", [None, 1, 5])
def test_every_error_status_whole_and_chunked(raw: bytes, status: int, sizes: int | None) -> None:
    assert feed_in(raw, sizes) == ([], status)


@pytest.mark.parametrize("raw, status", [
    (b"GET /" + b"a" * (MAX_REQUEST_LINE + 10), 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * (MAX_HEADER_BYTES + 10), 431),
    (b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (MAX_HEADER_FIELDS + 1), 431),
])
def test_limits_apply_before_the_head_is_complete(raw: bytes, status: int) -> None:
    assert feed_in(raw, None) == ([], status)
    assert feed_in(raw, 1024) == ([], status)


def test_a_good_request_before_a_bad_one_is_still_delivered() -> None:
    p = RequestParser()
    p.feed(GET + b"BAD REQUEST\r\n\r\n")
    assert p.next_request().path == "/metadata/v1/maintenance"
    with pytest.raises(ProtocolError) as info:
        p.next_request()
    assert info.value.status == 400 and p.state is State.ERROR


def test_bad_heads_are_not_cached() -> None:
    for _ in range(2):
        assert feed_in(b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", None) == ([], 400)


def test_misuse_after_a_protocol_error_is_a_local_error() -> None:
    p = RequestParser()
    p.feed(b"NOT HTTP\r\n\r\n")
    with pytest.raises(ProtocolError):
        p.next_request()
    with pytest.raises(LocalProtocolError) as info:
        p.feed(GET)
    assert info.value.status == 500 and "ProtocolError" in str(info.value)
    with pytest.raises(LocalProtocolError):
        p.next_request()


def test_error_classes_are_distinct_and_carry_a_status() -> None:
    assert issubclass(ProtocolError, HttpError) and issubclass(LocalProtocolError, HttpError)
    assert not issubclass(LocalProtocolError, ProtocolError)
    assert ProtocolError("x", 431).status == 431


def test_transition_table_has_no_way_out_of_closed_or_error() -> None:
    assert {s for s, _ in TRANSITIONS} == {State.HEAD, State.BODY}
    assert set(TRANSITIONS.values()) == set(State)


def test_state_diagram_is_generated_from_the_table() -> None:
    diagram = transitions_as_mermaid()
    assert diagram.startswith("stateDiagram-v2") and "head --> body: head with body" in diagram
    assert diagram.count("-->") == len(TRANSITIONS) + 1


# -- serializer -------------------------------------------------------------------------

def test_serialize_is_one_bytes_object_with_length_and_type() -> None:
    out = serialize(Response(200, b"{}"), date="Thu, 01 Jan 1970 00:00:00 GMT")
    assert out == (b"HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: 2\r\n"
                   b"Date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n{}")


def test_serialize_close_head_http10_and_extra_headers() -> None:
    out = serialize(Response(405, b"abc", "text/plain", (("Allow", "GET"),)), keep_alive=False, head=True)
    head, _, body = out.partition(b"\r\n\r\n")
    assert body == b"" and b"Content-Length: 3" in head and b"Allow: GET" in head and b"Connection: close" in head
    assert b"Connection: keep-alive" in serialize(Response(200), http10=True)
    assert serialize(Response(299)).startswith(b"HTTP/1.1 299 Unknown\r\n")


@pytest.mark.parametrize("bad", [Response(99), Response(600), Response(200, headers=(("X", "a\r\nInjected: 1"),)),
                                 Response(200, headers=(("Bad Name", "v"),)), Response(200, content_type="a\nb")])
def test_serialize_refuses_impossible_responses(bad: Response) -> None:
    with pytest.raises(LocalProtocolError):
        serialize(bad)


def test_error_responses_are_imds_json() -> None:
    assert error_response(404, "Not found").body == b'{"error":"Not found"}'
    r = protocol_error_response(ProtocolError("request line too long", 414))
    assert r.status == 414 and b"URI Too Long" in r.body
