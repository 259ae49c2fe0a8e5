"""AWS's flavor: sans-IO routing of the EC2 instance metadata service (IMDSv1 and IMDSv2).

:meth:`AwsFlavor.handle` takes the caller's identity (None when the peer maps to no VM),
the node's events and the time; it reads no clock and touches no socket. Facts from
``shared/reference/cloud-metadata-apis.md`` section 3.1 and
``shared/reference/instance-metadata-trees.md`` sections 2.1 and 2.5. Checks run in
this order: caller (403), throttling (429), then

- ``PUT``: ``/latest/api/token`` only (a dated root or a trailing slash: 403, empty
  body, as a real capture shows); ``X-Forwarded-For`` refused (403); the TTL header
  1..21600 (else 400); the token, its TTL echoed in ``X-aws-ec2-metadata-token-ttl-seconds``,
  sent with IP TTL = the VM's hop limit, so it dies on a hop too many;
- ``GET``/``HEAD``: a token that is malformed, expired or another VM's: 401; none, with
  ``http_tokens = "required"``: 401; then the tree (404 for an absent item);
- any other method: 405.

Data is ``text/plain`` (JSON too); errors are AWS's small XHTML pages; every answer says
``Server: EC2ws`` (clients sniff it).
"""

from __future__ import annotations

import functools
import json
import socket
from dataclasses import dataclass

from netsim_imds.aws import tree as aws_tree
from netsim_imds.aws.tokens import TokenIssuer, parse_ttl
from netsim_imds.events import EventView
from netsim_imds.identity import VmIdentity
from netsim_imds.ratelimit import RateLimiter
from netsim_imds.request import Request
from netsim_imds.response import Response, make_response

TEXT = "text/plain"
HTML = "text/html"
SERVER = ("Server", "EC2ws")
TOKEN_PATH = "/latest/api/token"
TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
TOKEN_HEADER = "X-aws-ec2-metadata-token"

_TITLES = {400: "400 - Bad Request", 401: "401 - Unauthorized", 403: "403 - Forbidden", 404: "404 - Not Found",
           405: "405 - Method Not Allowed", 429: "429 - Too Many Requests"}


@functools.lru_cache(maxsize=128)  # a handful of statuses and Retry-After values; answers are immutable
def error_page(status: int, *, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    """AWS's XHTML error page for ``status`` (the 404 bytes AWS sends, the others in its skeleton)."""
    title = _TITLES.get(status, f"{status} - Error")
    encoding = "iso-8859-1" if status == 404 else "UTF-8"
    body = (f'<?xml version="1.0" encoding="{encoding}"?>\n'
            '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"\n'
            '\t"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">\n'
            '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
            ' <head>\n'
            f'  <title>{title}</title>\n'
            ' </head>\n'
            ' <body>\n'
            f'  <h1>{title}</h1>\n'
            ' </body>\n'
            '</html>\n')
    return Response(status, body.encode(), HTML, (SERVER, *headers))


def text(body: str | bytes, *, headers: tuple[tuple[str, str], ...] = (), **kw) -> Response:
    """A 200 ``text/plain`` answer."""
    data = body.encode() if isinstance(body, str) else body
    return make_response(200, data, TEXT, (SERVER, *headers) if headers else _SERVER_ONLY, **kw)


_SERVER_ONLY = (SERVER,)
STATIC_PATHS = 64
"""Answers of the VM-only part of the tree kept per VM (a client asks a few paths)."""
STATIC_VMS = 1024
"""VMs whose answers a node keeps (a node holds a few dozen)."""
STATIC_PATH_MAX = 256
"""Longest path whose answer is kept."""


@dataclass(frozen=True)
class AwsConfig:
    """Tunables: ``rate_limit`` requests per second per VM (None: no limit) and its burst.

    AWS throttles per instance and publishes no figure (reference 3.1); ours allows a
    client's token PUT + GETs and a 5 s poller many times over.
    """

    rate_limit: float | None = 100.0
    rate_burst: float | None = 200.0


class AwsFlavor:
    """The EC2 instance metadata service of one node (a :class:`~netsim_imds.flavors.Flavor`)."""

    keeps_answers = False  # rate-limited: every request reaches the limiter (netsim_imds.flavors)

    def __init__(self, config: AwsConfig | None = None, *, secret: bytes | None = None) -> None:
        self.config = c = config or AwsConfig()
        self._limiter = RateLimiter(c.rate_limit, c.rate_burst) if c.rate_limit else None
        self.tokens = TokenIssuer(secret)
        # The answers of the VM-only part of the tree (everything but the meta-data
        # listing and aws_tree.DYNAMIC), by VM then path: routing, the walk and the
        # Response cost most of a GET's Python. Keyed by the identity's id and checked with
        # ``is`` (a claim or a move builds a new identity: a new entry), as tree.static_tree.
        self._static: dict[int, tuple[VmIdentity, dict[str, Response]]] = {}

    def handle(self, request: Request, caller: VmIdentity | None, view: EventView, now: float) -> Response:
        """Answer ``request`` from ``caller`` (None: not a VM of this node, 403) at ``now``."""
        if caller is None:
            return error_page(403)
        if self._limiter is not None and not self._limiter.allow(caller.name, now):
            wait = max(1, round(self._limiter.retry_after(caller.name, now) + 0.5))
            return error_page(429, headers=(("Retry-After", str(wait)),))
        if request.method == "PUT":
            return self._token(request, caller, now)
        if request.method not in ("GET", "HEAD"):
            return error_page(405, headers=(("Allow", "GET, HEAD, PUT"),))
        token = request.headers.get(TOKEN_HEADER)
        if token is not None and not self.tokens.valid(token, caller.vm_id, now):
            return error_page(401)
        if token is None and caller.http_tokens == "required":
            return error_page(401)
        return self._tree(request.path, caller, view, now)

    # -- IMDSv2 -------------------------------------------------------------------------

    def _token(self, request: Request, caller: VmIdentity, now: float) -> Response:
        path = request.path
        if path != TOKEN_PATH:
            segments = path.strip("/").split("/")
            if path.rstrip("/").endswith("/api/token"):
                # A dated root or a trailing slash: 403 with an empty body (a real capture).
                return Response(403, b"", TEXT, (SERVER,))
            return error_page(405, headers=(("Allow", "GET, HEAD"),)) if segments[0] else error_page(403)
        if "x-forwarded-for" in request.headers:
            return error_page(403)  # a proxy in between: AWS refuses it (status not documented)
        ttl = parse_ttl(request.headers.get(TTL_HEADER))
        if ttl is None:
            return error_page(400)
        return make_response(200, self.tokens.mint(caller.vm_id, ttl, now).encode(), TEXT, _token_headers(ttl),
                             _hop(caller.hop_limit))

    # -- the tree -----------------------------------------------------------------------

    def _tree(self, path: str, caller: VmIdentity, view: EventView, now: float) -> Response:
        """:meth:`_get`, its answers for the VM-only part of the tree kept (bounded: at most
        :data:`STATIC_PATHS` paths per VM and :data:`STATIC_VMS` VMs, each emptied when full)."""
        mine = self._static.get(id(caller))
        if mine is None or mine[0] is not caller:
            if len(self._static) >= STATIC_VMS:
                self._static.clear()
            mine = self._static[id(caller)] = (caller, {})  # the identity is held: its id is not reused
        answers = mine[1]
        if (hit := answers.get(path)) is not None:
            return hit
        segments = [s for s in path.split("/") if s]
        response = self._get(segments, caller, view, now)
        if len(path) <= STATIC_PATH_MAX and not (len(segments) > 1 and segments[1] == "meta-data"
                                                 and (len(segments) == 2 or segments[2] in aws_tree.DYNAMIC)):
            if len(answers) >= STATIC_PATHS:
                answers.clear()
            answers[path] = response
        return response

    def _get(self, segments: list[str], caller: VmIdentity, view: EventView, now: float) -> Response:
        if not segments:
            return text("\n".join((*aws_tree.VERSIONS, "latest")))
        version, rest = segments[0], segments[1:]
        if version != "latest" and version not in aws_tree.VERSIONS:
            return error_page(404)
        if not rest:
            return text("\n".join(("dynamic", "meta-data", *(("user-data",) if caller.user_data else ()))))
        category, rest = rest[0], rest[1:]
        if category == "user-data":
            return text(caller.user_data) if caller.user_data and not rest else error_page(404)
        if category == "dynamic":
            node: object = {"instance-identity": {"document": _doc(caller)}}
        elif category == "meta-data":
            if rest and rest[0] not in aws_tree.DYNAMIC:
                tree = aws_tree.static_tree(caller)  # most requests: no event and no clock needed
            else:
                live = view.events_for(caller.name, caller.availability_set)
                history_for = getattr(view, "history_for", None)
                ended = (lambda: history_for(caller.name, caller.availability_set)) if history_for else ()
                tree = aws_tree.meta_data(caller, live, ended, now)
            node = aws_tree.for_version(tree, version)
        elif category == "api" and rest == ["token"]:
            return error_page(405, headers=(("Allow", "PUT"),))
        else:
            return error_page(404)
        for segment in rest:
            node = aws_tree.resolve(node)
            if not isinstance(node, dict) or segment not in node:
                return error_page(404)
            node = node[segment]
        node = aws_tree.resolve(node)
        return text(aws_tree.listing(node) if isinstance(node, dict) else node)


@functools.lru_cache(maxsize=64)  # a client asks one TTL (botocore 21600, the CLI's own)
def _token_headers(ttl: int) -> tuple[tuple[str, str], ...]:
    return (SERVER, (TTL_HEADER, str(ttl)))


@functools.lru_cache(maxsize=256)  # hop limits are 1..64
def _hop(limit: int) -> tuple[tuple[int, int, int], ...]:
    # The token reply leaves with IP TTL = the hop limit: it dies on a hop too many.
    return ((socket.IPPROTO_IP, socket.IP_TTL, limit),)


def _doc(vm: VmIdentity) -> str:
    return json.dumps(aws_tree.identity_document(vm), indent=2)
