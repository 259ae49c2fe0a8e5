"""Azure's flavor: sans-IO routing of its metadata APIs, a :class:`Request` in, a :class:`Response` out.

:meth:`AzureFlavor.handle` takes the caller's identity (or None when the peer maps to
no VM), the node's events and the time; it reads no clock and touches no socket. Two
APIs are served (facts from ``shared/reference/cloud-metadata-apis.md``):

- the 2015 seed API under ``/metadata/v1/`` (section 1): no header, no version, paths
  matched without regard to case (third-party reports show ``/metadata/v1/instanceinfo``);
- Azure's current API (section 2): ``/metadata/versions``, ``/metadata/instance[/...]``,
  ``/metadata/scheduledevents``, ``/metadata/identity`` (:mod:`~netsim_imds.azure.msi`),
  ``/metadata/attested/document`` and ``/metadata/loadbalancer``
  (:mod:`~netsim_imds.azure.attested`), with Azure's header, version, query, format and
  rate rules. Checks run in this order: rate limit (429; identity has its own),
  ``X-Forwarded-For`` (400), ``Metadata: true`` (400), route (404), verb (405), duplicate
  query names (400), ``api-version`` (400), ``format`` (400).

Error bodies are ``{"error": "<message>"}`` (Swagger ``ErrorResponse``). Messages the
reference quotes are used verbatim; the others are ours, written in the same style.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from dataclasses import dataclass

from netsim_imds.azure import documents
from netsim_imds.azure import events as azure_events
from netsim_imds.events import EventView
from netsim_imds.request import Request
from netsim_imds.response import JSON, TEXT, Response, error_response, json_response
from netsim_imds.identity import VmIdentity
from netsim_imds.ratelimit import RateLimiter
from netsim_imds import signing
from netsim_imds.azure import attested, msi
from netsim_imds.azure.versions import (ATTESTED_SINCE, IDENTITY_VERSIONS, INSTANCE_VERSIONS, LOADBALANCER_SINCE,
                                       SCHEDULED_EVENTS_VERSIONS, newest_of)
from netsim_imds.signing import Keys

# Quoted by the reference (section 2.6 and the FAQ it cites).
MISSING_HEADER = "Bad request. Required metadata header not specified"
BAD_VERSION = ("Bad request. api-version is invalid or was not specified in the request. "
               "For more information refer to aka.ms/azureimds")
# Section 1.4 (the 2017 error table).
BAD_METHOD = "Only GET and POST requests are supported"
# Ours: the reference states the rule, not the message.
FORWARDED = "Bad request. Requests with an X-Forwarded-For header are not supported"
DUPLICATE_QUERY = "Bad request. Duplicate query parameter names are not supported"
BAD_FORMAT = "Bad request. format must be json or text"
LEAF_FORMAT = "Bad request. Leaf nodes require format=text"
NOT_FOUND = "Not found"
NOT_FOUND_IDENTITY = "Not Found"  # the identity category capitalizes it (MicrosoftDocs/azure-docs#15282)
TOO_MANY = "Too many requests. The limit is {} requests per second per VM"
FORBIDDEN = "Forbidden. The request does not come from a VM of this node"
BAD_START_REQUESTS = 'Bad request. Expected {"StartRequests": [{"EventId": "<id>"}, ...]}'
UNKNOWN_EVENT = "Bad request. No scheduled event {} is visible to this VM"
JSON_TOO_LARGE = "Bad request. A JSON body may have at most {} bytes"
JSON_TOO_DEEP = "Bad request. A JSON body may nest at most {} levels"

MAX_JSON_BODY = 16 * 1024
"""Largest JSON body parsed (bytes); a StartRequests list of 100 events is about 5 KB."""
MAX_JSON_DEPTH = 16
"""Deepest nesting of arrays and objects parsed (StartRequests needs 3 levels)."""

@dataclass(frozen=True)
class AzureConfig:
    """Tunables of the metadata API.

    ``notice_window``: seconds before NotBefore from which ``/metadata/v1/maintenance``
    shows an event (the 2015 README: "within 5 minutes"). ``rate_limit``: requests per
    second per VM on the current API (Azure: 5), None to disable; the 2015 API has no
    documented limit and is not limited. ``rate_burst``: bucket size (default = rate).
    The identity endpoint has its own limit instead (``identity_rate_limit``).
    """

    notice_window: float = 300.0
    rate_limit: float | None = 5.0
    rate_burst: float | None = None
    identity_rate_limit: float | None = 20.0
    """Requests per second per VM on ``/metadata/identity`` (its own category; Azure: 20)."""


class AzureFlavor:
    """Azure's metadata service of one node: routing, rules and the per-VM rate limiter
    (a :class:`~netsim_imds.flavors.Flavor`; it always answers at once)."""

    def __init__(self, config: AzureConfig | None = None, keys: Keys | None = None) -> None:
        """``keys``: the datacenter's signing keys (:func:`netsim_imds.signing.load_or_create`,
        handed over by the daemon); None makes throw-away ones on first use (tests)."""
        self.config = config or AzureConfig()
        c = self.config
        self._limiter = RateLimiter(c.rate_limit, c.rate_burst) if c.rate_limit else None
        self._identity_limiter = RateLimiter(c.identity_rate_limit) if c.identity_rate_limit else None
        self._keys = keys
        self.tokens = msi.TokenService(self.keys)

    def keys(self) -> Keys:
        """The signing keys (made in memory now if none were given)."""
        if self._keys is None:
            self._keys = signing.create("ephemeral", datetime.datetime.now(datetime.timezone.utc))[0]
        return self._keys

    def handle(self, request: Request, caller: VmIdentity | None, events: EventView, now: float) -> Response:
        """Answer ``request`` from ``caller`` (None: unattributable peer, 403) at time ``now``."""
        if caller is None:
            return error_response(403, FORBIDDEN)
        path = request.path
        if len(path) > 1 and path.endswith("/"):
            path = path[:-1]
        lower = path.lower()
        if lower.startswith("/metadata/v1/"):
            return self._seed(request, lower[len("/metadata/v1/"):], caller, events, now)
        if lower.startswith("/metadata/"):
            return self._current(request, path.split("/")[2:], caller, events, now)
        return error_response(404, NOT_FOUND)

    # -- 2015 API ----------------------------------------------------------------------

    def _seed(self, request: Request, leaf: str, caller: VmIdentity, events: EventView, now: float) -> Response:
        if leaf not in ("instanceinfo", "maintenance"):
            return error_response(404, NOT_FOUND)
        if request.method != "GET":
            return error_response(405, BAD_METHOD, headers=(("Allow", "GET"),))
        # The 2015 API has no rate limit, so its answers may be given again (netsim_imds.answers):
        # InstanceInfo until the caller changes, maintenance until the events change or the
        # next event enters the notice window.
        if leaf == "instanceinfo":
            return Response(200, documents.instance_info(caller), cache_until=math.inf)
        window = self.config.notice_window
        shown = events.events_for(caller.name, caller.availability_set)
        event = documents.pending_maintenance(caller, shown, now, window)
        until = documents.maintenance_changes_at(caller, shown, now, window)
        return Response(200, documents.maintenance(event), cache_until=until)

    # -- current API ---------------------------------------------------------------------

    def _current(self, request: Request, segments: list[str], caller: VmIdentity,
                 events: EventView, now: float) -> Response:
        category = segments[0].lower() if segments else ""
        identity = category == "identity"
        # The identity category has its own limit (20 per second) instead of the 5 of the others.
        limiter, limit = ((self._identity_limiter, self.config.identity_rate_limit) if identity
                          else (self._limiter, self.config.rate_limit))
        if limiter is not None and not limiter.allow(caller.name, now):
            wait = (("Retry-After", str(max(1, round(limiter.retry_after(caller.name, now) + 0.5)))),)
            if identity:
                return msi.identity_error(429, "too_many_requests", msi.TOO_MANY.format(f"{limit:g}"), wait)
            return error_response(429, TOO_MANY.format(f"{limit:g}"), headers=wait)
        headers = request.headers
        if "x-forwarded-for" in headers:
            return error_response(400, FORWARDED)
        if (headers.get("metadata") or "").strip().lower() != "true":
            if identity:
                return msi.identity_error(400, "invalid_request", msi.MISSING_HEADER)
            return error_response(400, MISSING_HEADER)
        allowed = {"instance": ("GET",), "scheduledevents": ("GET", "POST"), "versions": ("GET",),
                   "attested": ("GET",), "loadbalancer": ("GET",), "identity": ("GET",)}.get(category)
        sub = "/".join(s.lower() for s in segments[1:])
        if allowed is None or sub not in _SUBPATHS.get(category, (sub,)):
            return error_response(404, NOT_FOUND_IDENTITY if identity else NOT_FOUND)
        if request.method not in allowed:
            return error_response(405, BAD_METHOD, headers=(("Allow", ", ".join(allowed)),))
        names = [name for name, _ in request.query]
        if len(set(names)) != len(names):
            return error_response(400, DUPLICATE_QUERY)
        query = dict(request.query)
        if category == "versions":  # the one unversioned endpoint
            return json_response(200, {"apiVersions": list(INSTANCE_VERSIONS)})
        known = _VERSIONS[category]
        version = query.get("api-version", "")
        if version not in known:
            return json_response(400, {"error": BAD_VERSION, "newest-versions": newest_of(known)})
        fmt = query.get("format", "json")
        if fmt not in ("json", "text") or (category != "instance" and fmt != "json"):
            return error_response(400, BAD_FORMAT)
        if category == "instance":
            return _instance(caller, version, segments[1:], fmt)
        if identity:
            if sub == "info":
                return json_response(200, {"tenantId": caller.azure.tenant_id})
            return self.tokens.answer(caller, query, now)
        if category == "attested":
            nonce = query.get("nonce") or attested.default_nonce(now)
            if not attested.valid_nonce(nonce):
                return error_response(400, attested.BAD_NONCE)
            return json_response(200, attested.signed(caller, self.keys(), nonce, version, now))
        if category == "loadbalancer":
            doc = attested.load_balancer(caller)
            return error_response(404, attested.NO_LOAD_BALANCER) if doc is None else json_response(200, doc)
        if request.method == "POST":
            return _start_requests(request.body, caller, events)
        visible = events.events_for(caller.name, caller.availability_set)
        return json_response(200, documents.scheduled_events(visible, events.document_incarnation, version))


# The paths under each category (instance: any path into its document).
_SUBPATHS = {"scheduledevents": ("",), "versions": ("",), "attested": ("document",), "loadbalancer": ("",),
             "identity": ("oauth2/token", "info")}
_VERSIONS = {"instance": INSTANCE_VERSIONS, "scheduledevents": SCHEDULED_EVENTS_VERSIONS,
             "identity": IDENTITY_VERSIONS,
             "attested": tuple(v for v in INSTANCE_VERSIONS if v >= ATTESTED_SINCE),
             "loadbalancer": tuple(v for v in INSTANCE_VERSIONS if v >= LOADBALANCER_SINCE)}


def _instance(caller: VmIdentity, version: str, path: list[str], fmt: str) -> Response:
    """``/metadata/instance[/a/b/...]``: the document, or the element the path names."""
    node: object = documents.instance(caller, version)
    for segment in path:
        if isinstance(node, dict) and segment in node:
            node = node[segment]
        elif isinstance(node, list) and segment.isdigit() and int(segment) < len(node):
            node = node[int(segment)]
        else:
            return error_response(404, NOT_FOUND)
    if fmt == "text":
        return Response(200, documents.text_of(node).encode(), TEXT)
    if not isinstance(node, (dict, list)):
        return error_response(400, LEAF_FORMAT)
    return json_response(200, node)


def _start_requests(body: bytes, caller: VmIdentity, events: EventView) -> Response:
    """POST ``{"StartRequests": [{"EventId": ...}, ...]}``: approve each event.

    Any event the caller sees may be approved, even one it is not a resource of (the
    docs suggest electing one approver per availability set); approving proceeds the
    event for all its resources, and approving twice is still a 200.
    """
    if len(body) > MAX_JSON_BODY:
        return error_response(400, JSON_TOO_LARGE.format(MAX_JSON_BODY))
    if json_depth(body) > MAX_JSON_DEPTH:
        # Checked before parsing: json.loads recurses once per level (60,000 "[" used to
        # end in a RecursionError and a 500).
        return error_response(400, JSON_TOO_DEEP.format(MAX_JSON_DEPTH))
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return error_response(400, BAD_START_REQUESTS)
    items = doc.get("StartRequests") if isinstance(doc, dict) else None
    if (not isinstance(items, list) or not items
            or not all(isinstance(i, dict) and isinstance(i.get("EventId"), str) for i in items)):
        return error_response(400, BAD_START_REQUESTS)
    visible = {e.event_id for e in azure_events.shown(events.events_for(caller.name, caller.availability_set))}
    for item in items:
        if item["EventId"] not in visible:
            return error_response(400, UNKNOWN_EVENT.format(item["EventId"]))
    for item in items:
        events.approve(item["EventId"])
    return Response(200, b"", JSON)


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"?')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(body: bytes) -> int:
    """The deepest nesting of ``[``/``{`` in ``body``, ignoring brackets inside strings
    (an upper bound for invalid JSON, which the parser then refuses anyway)."""
    depth = deepest = 0
    for chunk in _JSON_STRING.split(body):
        for byte in chunk.translate(None, _NOT_BRACKETS):
            if byte in (0x5B, 0x7B):  # [ {
                depth += 1
                if depth > deepest:
                    deepest = depth
            elif byte in (0x5D, 0x7D):  # ] }
                depth -= 1
    return deepest
