"""Sans-IO HTTP/1.1 for the metadata server: the request parser and its events.

In the spirit of h11: a :class:`RequestParser` never touches a socket. The driver
:meth:`~RequestParser.feed`\\ s it bytes and pulls frozen :class:`Request` events out
with :meth:`~RequestParser.next_request`. Two kinds of failure are kept apart, each
carrying the status to answer with:

- :class:`ProtocolError` -- the *peer* broke HTTP (malformed request, over a limit);
  answer ``exc.status`` and close the connection.
- :class:`LocalProtocolError` -- *our* code misused the API (fed a failed parser,
  serialized an impossible response in :mod:`netsim_imds.response`); a bug, answered as
  500 if at all.

Only what a metadata service needs is supported: ``Content-Length`` bodies (chunked
requests get 501), keep-alive and pipelining, ``Connection: close`` and HTTP/1.0.
Responses are built and serialized by :mod:`netsim_imds.response`.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

from netsim_imds.errors import NetsimError
from netsim_imds.headcache import HeadCache
from netsim_imds.parserstate import TRANSITIONS, Input, State, transitions_as_mermaid
from netsim_imds.request import Headers, Request, make_request

__all__ = ["HttpError", "LocalProtocolError", "ProtocolError", "Headers", "Request", "RequestParser", "State",
           "Input", "TRANSITIONS", "transitions_as_mermaid", "MAX_REQUEST_LINE", "MAX_HEADER_BYTES",
           "MAX_HEADER_FIELDS", "MAX_BODY"]

MAX_REQUEST_LINE = 8 * 1024   # longer request line -> 414
MAX_HEADER_BYTES = 16 * 1024  # longer header block -> 431
MAX_HEADER_FIELDS = 100       # more fields -> 431
MAX_BODY = 64 * 1024          # longer Content-Length -> 413


class HttpError(NetsimError):
    """Base of the HTTP errors; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ProtocolError(HttpError):
    """The peer broke the protocol: answer ``status`` (4xx/5xx) and close the connection."""


class LocalProtocolError(HttpError):
    """Our own code misused this module (a bug); ``status`` is 500."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 500)


_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(r"(" + _TOKEN + r") ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")
# field-line (RFC 9112 5): token ":" OWS field-value OWS; the value holds visible
# characters, obs-text, SP and HTAB -- no other control character, so no bare CR.
# Possessive quantifiers (Python 3.11+) keep this free of backtracking: 2x faster.
_FIELD_TEXT = _TOKEN + r"):[ \t]*+((?:[^\x00-\x20\x7f]++(?:[ \t]++[^\x00-\x20\x7f]++)*+)?)[ \t]*+"
_FIELD_LINE = _FIELD_TEXT + r"\r?\n"
_FIELD = re.compile(r"(" + _FIELD_LINE)
_FIELD_ALONE = re.compile(r"(" + _FIELD_TEXT)  # one field line without its end (netsim_imds.headcache)
_FIELD_BLOCK = re.compile(r"(?:(?:" + _FIELD_LINE + r")*")
_HEAD_END = re.compile(rb"\r?\n\r?\n")


class RequestParser:
    """Parse the requests of one connection; feed bytes, pull :class:`Request` events.

    ``next_request()`` returns ``None`` until a whole request is buffered, raises
    :class:`ProtocolError` (with the status to answer) when the peer breaks HTTP, and
    returns ``None`` forever once the peer asked to close.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = State.HEAD
        self._head: _Head | None = None
        self._scanned = 0  # bytes of an incomplete head already searched for its end
        self._continue_due = False  # the current request's client waits for "100 Continue"

    @property
    def state(self) -> State:
        """The current :class:`State`."""
        return self._state

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed by a request (a request is in progress)."""
        return len(self._buf)

    @property
    def in_progress(self) -> bool:
        """Whether a request has started but is not complete (bytes of it, or a body, pending)."""
        return bool(self._buf) or self._state is State.BODY

    def take_continue(self) -> bool:
        """True once per request whose client sent ``Expect: 100-continue`` and still waits
        for its body to be invited: send ``100 Continue`` now (RFC 9110 15.2.1). A body that
        arrived anyway is simply read; a request refused from its head gets no 100."""
        due, self._continue_due = self._continue_due, False
        return due

    def _advance(self, event: Input) -> None:
        try:
            self._state = TRANSITIONS[(self._state, event)]
        except KeyError:
            raise LocalProtocolError(f"parser cannot take {event.value!r} in state {self._state.value!r}") from None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the peer (ignored once the peer asked to close)."""
        if self._state is State.ERROR:
            raise LocalProtocolError("feed() after a ProtocolError: close the connection instead")
        if self._state is State.CLOSED:
            return
        self._buf += data

    def next_request(self) -> Request | None:
        """The next complete request, or None if more bytes are needed (or the peer closed)."""
        if self._state is State.CLOSED:
            return None
        if self._state is State.ERROR:
            raise LocalProtocolError("next_request() after a ProtocolError: close the connection instead")
        try:
            if self._state is State.HEAD and not self._read_head():
                return None
            return self._read_body()
        except ProtocolError:
            self._advance(Input.PEER_ERROR)
            raise

    # -- head -----------------------------------------------------------------------

    def _read_head(self) -> bool:
        buf = self._buf
        if not buf:
            return False
        if buf[0] in (13, 10):  # CR, LF
            # RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request-line.
            del buf[:len(buf) - len(buf.lstrip(b"\r\n"))]
            self._scanned = 0
        # Resume the search where the last one stopped, so a byte-by-byte head costs O(n).
        start = self._scanned - 3 if self._scanned > 3 else 0
        end = buf.find(b"\r\n\r\n", start)
        if end >= 0 and buf.find(b"\n\n", start, end) < 0 and buf.find(b"\n\r\n", start, end + 2) < 0:
            stop = end + 4  # the usual CRLF CRLF, found without the regex (10x faster)
        else:
            m = _HEAD_END.search(buf, start)  # bare-LF line ends (RFC 9112 2.2 MAY accept)
            if m is None:
                self._scanned = len(buf)
                _check_partial_head(buf)
                return False
            end, stop = m.start(), m.end()
        raw = bytes(buf[:end])
        del buf[:stop]
        self._scanned = 0
        self._head = head = _HEADS.head(raw)
        if head.body_len:
            self._advance(Input.HEAD_WITH_BODY)
            self._continue_due = head.expect_continue
        return True

    # -- body -----------------------------------------------------------------------

    def _read_body(self) -> Request | None:
        head = self._head
        assert head is not None
        n = head.body_len
        if n:
            if len(self._buf) < n:
                return None
            body = bytes(self._buf[:n])
            del self._buf[:n]
        else:
            body = b""
        self._head = None
        self._continue_due = False
        keep_alive = head.keep_alive
        self._advance(Input.REQUEST_KEEP_ALIVE if keep_alive else Input.REQUEST_CLOSE)
        if not keep_alive:
            self._buf.clear()  # nothing after a request that closes the connection is read
        return make_request(head.method, head.target, head.path, head.query, head.headers, body,
                        keep_alive, head.version)


class _Head(NamedTuple):
    """A parsed request head (immutable, so one can serve many identical requests)."""

    method: str
    target: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Headers
    keep_alive: bool
    version: str
    body_len: int
    expect_continue: bool = False  # a 1.1 client waits for "100 Continue" before its body


def _parse_head(raw: bytes) -> _Head:
    """Parse a request head (without its final empty line); raise ProtocolError if bad."""
    text = raw.decode("latin-1")  # one decode; the regexes keep to ASCII where HTTP says so
    nl = text.find("\n")
    line, block = (text, "") if nl < 0 else (text[:nl], text[nl + 1:] + "\n")
    if line.endswith("\r"):
        line = line[:-1]
    if len(line) > MAX_REQUEST_LINE:
        raise ProtocolError("request line too long", 414)
    if len(block) > MAX_HEADER_BYTES + 1:
        raise ProtocolError("request header block too large", 431)
    if block.count("\n") > MAX_HEADER_FIELDS:
        raise ProtocolError(f"more than {MAX_HEADER_FIELDS} header fields", 431)
    method, target, version = _parse_request_line(line)
    if block and _FIELD_BLOCK.fullmatch(block) is None:
        _raise_field_error(block)
    items = _FIELD.findall(block)
    lower = [name.lower() for name, _ in items]
    headers = Headers._make(tuple(items), tuple(lower))
    if version == "1.1" and lower.count("host") != 1:
        # RFC 9112 3.2: MUST answer 400 to a 1.1 request without exactly one Host.
        raise ProtocolError("HTTP/1.1 request needs exactly one Host header", 400)
    keep_alive = _keep_alive(headers.get_all("connection") if "connection" in lower else None, version)
    body_len = 0
    if "content-length" in lower or "transfer-encoding" in lower:
        body_len = _body_length(headers, version)
    expect_continue = "expect" in lower and _expects_continue(headers, version)
    path, query = _split_target(target, method)
    return _Head(method, target, path, query, headers, keep_alive, version, body_len, expect_continue)


_HEADS: HeadCache[_Head] = HeadCache(_parse_head, _FIELD_ALONE, (MAX_HEADER_BYTES, MAX_HEADER_FIELDS))
"""Heads parsed before, by their bytes and by their prefix (:mod:`netsim_imds.headcache`)."""


def _expects_continue(headers: Headers, version: str) -> bool:
    """RFC 9110 10.1.1: ``100-continue`` is the only expectation; any other gets 417. A
    1.0 client cannot understand an interim response, so its ``100-continue`` is ignored."""
    tokens = _tokens(headers.get_all("expect"))
    if tokens != ["100-continue"]:
        raise ProtocolError(f"unsupported expectation {', '.join(tokens)[:40]!r}", 417)
    return version == "1.1"


def _check_partial_head(buf: bytearray) -> None:
    """Reject an incomplete head as soon as it is already over a limit."""
    nl = buf.find(b"\n")
    if nl < 0:
        if len(buf) > MAX_REQUEST_LINE + 1:
            raise ProtocolError("request line too long", 414)
        return
    if nl > MAX_REQUEST_LINE + 1:
        raise ProtocolError("request line too long", 414)
    if len(buf) - nl - 1 > MAX_HEADER_BYTES + 2:
        raise ProtocolError("request header block too large", 431)
    if buf.count(b"\n", nl + 1) > MAX_HEADER_FIELDS:
        raise ProtocolError(f"more than {MAX_HEADER_FIELDS} header fields", 431)


def _parse_request_line(line: str) -> tuple[str, str, str]:
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        parts = line.split(" ")
        if len(parts) == 3 and re.fullmatch(r"HTTP/[0-9](\.[0-9])?", parts[2]) and parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            raise ProtocolError("only HTTP/1.x is supported", 505)
        raise ProtocolError("malformed request line", 400)
    method, target, major, minor = m.groups()
    if major != "1":
        raise ProtocolError("only HTTP/1.x is supported", 505)
    # RFC 9110 2.5: a higher minor version is processed as the highest one we support.
    return method, target, "1.0" if minor == "0" else "1.1"


def _raise_field_error(block: str) -> None:
    """Say precisely which rule the header block broke (the fast path only knows it did)."""
    for line in block.split("\n"):
        if line[:1] in (" ", "\t"):
            # RFC 9112 5.2: a server MAY reject obsolete line folding with 400.
            raise ProtocolError("obsolete line folding is not accepted", 400)
        if line and _FIELD.fullmatch(line + "\n") is None:
            # Covers whitespace before the colon (RFC 9112 5.1: MUST reject with 400),
            # bare CR and other control characters.
            raise ProtocolError(f"malformed header field {line[:40]!r}", 400)
    raise ProtocolError("malformed header block", 400)


def _tokens(values: list[str] | None) -> list[str]:
    return [t.strip().lower() for v in values or () for t in v.split(",") if t.strip()]


def _keep_alive(connection: list[str] | None, version: str) -> bool:
    """RFC 9112 9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive"."""
    if connection is None:
        return version == "1.1"
    tokens = _tokens(connection)
    if "close" in tokens:
        return False
    return version == "1.1" or "keep-alive" in tokens


def _body_length(headers: Headers, version: str) -> int:
    """Request body length from the framing headers (RFC 9112 6.1-6.3)."""
    if "transfer-encoding" in headers:
        if version == "1.0":
            # RFC 9112 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing.
            raise ProtocolError("Transfer-Encoding is not valid in HTTP/1.0", 400)
        if "content-length" in headers:
            # RFC 9112 6.3: both present is a smuggling vector; reject rather than guess.
            raise ProtocolError("both Transfer-Encoding and Content-Length", 400)
        codings = _tokens(headers.get_all("transfer-encoding"))
        if not codings or codings[-1] != "chunked":
            # RFC 9112 6.3 item 4: chunked not final -> length unknown -> MUST answer 400.
            raise ProtocolError("Transfer-Encoding without final chunked coding", 400)
        raise ProtocolError("chunked request bodies are not supported", 501)
    # RFC 9110 8.6: a list of identical values (or repeated identical fields) is one length.
    found = {v.strip() for value in headers.get_all("content-length") for v in value.split(",")}
    if len(found) != 1:
        raise ProtocolError("conflicting Content-Length values", 400)
    value = found.pop()
    if not value.isdigit() or not value.isascii():
        raise ProtocolError("invalid Content-Length", 400)
    if len(value) > 12 or int(value) > MAX_BODY:
        raise ProtocolError(f"request body larger than {MAX_BODY} bytes", 413)
    return int(value)


def _split_target(target: str, method: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """Path and query pairs of an origin-form, absolute-form or asterisk-form target."""
    if target[0] == "/":
        path, sep, query = target.partition("?")
    elif target == "*" and method == "OPTIONS":
        return "*", ()
    elif target[:7].lower() == "http://" or target[:8].lower() == "https://":
        try:
            parts = urlsplit(target)  # absolute-form (RFC 9112 3.2.2): servers MUST accept it
        except ValueError:  # e.g. "http://[::1/x" (an unclosed IPv6 literal): the peer's error
            raise ProtocolError("malformed request target", 400) from None
        path, sep, query = parts.path or "/", "?" if parts.query else "", parts.query
    else:
        raise ProtocolError("malformed request target", 400)
    if "#" in target:
        raise ProtocolError("fragment in request target", 400)
    if not sep:
        return path, ()
    return path, tuple(parse_qsl(query, keep_blank_values=True))
