"""Responses of the metadata server and their serializer (sans-IO).

:func:`serialize` renders a :class:`Response` as ONE bytes object (status line,
Content-Type, Content-Length, Date, optional Connection) so the driver sends it in one
write: two writes meet Nagle + delayed ACK, 44 ms per request
(``shared/reference/measured-anchors.md`` section 2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from netsim_imds.http import HttpError, LocalProtocolError

REASONS = {
    100: "Continue", 200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    410: "Gone", 411: "Length Required", 413: "Content Too Large", 414: "URI Too Long",
    417: "Expectation Failed", 429: "Too Many Requests", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}

JSON = "application/json; charset=utf-8"
TEXT = "text/plain; charset=utf-8"


SocketOption = tuple[int, int, int]
"""``(level, option, value)`` as :meth:`socket.socket.setsockopt` takes them, e.g.
``(socket.IPPROTO_IP, socket.IP_TTL, 1)``."""


@dataclass(frozen=True)
class Response:
    """A response to serialize: status, body bytes, content type, extra header pairs.

    ``socket_options`` are set on the connection's socket before this answer is written
    (AWS sends its IMDSv2 token reply with IP TTL = the hop limit); the serializer
    ignores them, the driver (:mod:`netsim_imds.connection`) applies them.

    ``cache_until`` (epoch seconds; 0, the default: never) lets the driver answer the
    same request bytes from the same caller with this answer again, without calling the
    flavor, while the node view's ``document_incarnation`` stays the same and the time is
    before it (:mod:`netsim_imds.answers`). A flavor sets it only on answers that are a
    function of (request, caller, view's events, time < cache_until) and whose request has
    no effect to count (a rate-limited API must not set it: every request is counted).
    """

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    socket_options: tuple[SocketOption, ...] = ()
    cache_until: float = 0.0


def make_response(status: int, body: bytes, content_type: str, headers: tuple[tuple[str, str], ...] = (),
                  socket_options: tuple[SocketOption, ...] = (), cache_until: float = 0.0) -> Response:
    """A :class:`Response` built without the frozen dataclass's ``__init__`` (a flavor's hot path)."""
    # Same object as Response(...), without the per-field object.__setattr__ (as
    # netsim_imds.request.make_request does for requests).
    obj = object.__new__(Response)
    obj.__dict__.update(status=status, body=body, content_type=content_type, headers=headers,
                        socket_options=socket_options, cache_until=cache_until)
    return obj


def json_response(status: int, value: object, *, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """A compact JSON response."""
    return Response(status, json.dumps(value, separators=(",", ":")).encode(), JSON, headers)


def error_response(status: int, message: str, *, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """An IMDS-style error: ``{"error": "<message>"}``."""
    return json_response(status, {"error": message}, headers=headers)


def protocol_error_response(exc: HttpError) -> Response:
    """The response that answers a :class:`ProtocolError` (or a 500 for a local error)."""
    return error_response(exc.status, f"{REASONS.get(exc.status, 'Error')}: {exc}")


CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
"""The interim response that invites a client waiting on ``Expect: 100-continue`` to send its body."""

_STATUS_LINES = {code: f"HTTP/1.1 {code} {reason}\r\n".encode() for code, reason in REASONS.items()}
_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_HEADER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_SAFE = {JSON, TEXT}

# Flavors answer with a few header sets, again and again (AWS: ``Server: EC2ws`` on every
# answer, the token's TTL on every PUT): each set is checked and rendered once. Bounded:
# emptied when full (a Retry-After or an ETag per value is only a few entries).
_RENDERED: dict[tuple[tuple[str, str], ...], str] = {}
_RENDERED_MAX = 1024
_TYPES: set[str] = set(_SAFE)  # Content-Type values already checked
_TYPES_MAX = 256


def _check_header(name: str, value: str) -> None:
    if not _NAME.fullmatch(name) or _BAD_HEADER.search(value):
        raise LocalProtocolError(f"invalid response header {name!r}: {value!r}")


def _rendered(headers: tuple[tuple[str, str], ...]) -> str:
    """``headers`` as header lines, checked (raises LocalProtocolError for a bad one)."""
    text = _RENDERED.get(headers)
    if text is None:
        for name, value in headers:
            _check_header(name, value)
        text = "".join(f"{name}: {value}\r\n" for name, value in headers)
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        _RENDERED[headers] = text
    return text


def serialize(response: Response, *, keep_alive: bool = True, date: str | None = None,
              head: bool = False, http10: bool = False) -> bytes:
    """Render ``response`` as ONE bytes object: status line, headers and body.

    Adds ``Content-Type``, ``Content-Length``, ``Date`` when given and ``Connection:
    close`` when ``keep_alive`` is false (``Connection: keep-alive`` for a persistent
    HTTP/1.0 peer, ``http10``). ``head`` leaves the body out (answers to HEAD).
    """
    status = response.status
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 599:
            raise LocalProtocolError(f"invalid status code {status}")
        line = f"HTTP/1.1 {status} Unknown\r\n".encode()
    body = b"" if head else response.body
    content_type = response.content_type
    if content_type not in _TYPES:
        _check_header("Content-Type", content_type)
        if len(_TYPES) >= _TYPES_MAX:
            _TYPES.intersection_update(_SAFE)
        _TYPES.add(content_type)
    headers = response.headers
    if not headers and keep_alive and not http10 and date is not None:
        # The common case (a keep-alive answer to a poller), in one format and one encode.
        return line + (f"Content-Type: {content_type}\r\nContent-Length: {len(response.body)}\r\n"
                       f"Date: {date}\r\n\r\n").encode("latin-1") + body
    extra = _rendered(headers) if headers else ""
    if date is not None:
        extra = f"Date: {date}\r\n" + extra
    if not keep_alive:
        extra += "Connection: close\r\n"
    elif http10:
        extra += "Connection: keep-alive\r\n"
    return line + (f"Content-Type: {content_type}\r\nContent-Length: {len(response.body)}\r\n"
                   f"{extra}\r\n").encode("latin-1") + body
