"""GCE's flavor: sans-IO routing of the Compute Engine metadata server, long polls as Waits.

Facts from ``shared/reference/cloud-metadata-apis.md`` section 4 and
``instance-metadata-trees.md`` section 3. Checks run in this order: the caller (403 for
a peer that is no VM of the node), ``X-Forwarded-For`` (403, as the reference emulator
does), the bare root ``/`` (200 without the header: google-auth's ``ping()``), the
``Metadata-Flavor: Google`` header (403), the verb (405), the query (400 for an unknown
parameter or a bad value, as GCE does), the path (404; a directory without its trailing
``/`` is 301 to it, query kept), then the answer. Every answer carries
``Metadata-Flavor: Google`` and an ``ETag`` (a hash of its body).

**Long polls**: ``wait_for_change=true`` on any key or directory returns at once when
``last_etag`` is given and differs from the current ETag, and otherwise parks as a
:class:`~netsim_imds.flavors.Wait` until the answer's ETag changes (the node's events
changed, or a warning window opened) or ``timeout_sec`` runs out (then the unchanged
value). The driver bounds parked requests per VM (429 beyond) and frees the slot of a
client that goes away.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass

from netsim_imds.events import EventView
from netsim_imds.flavors import Answer, Wait
from netsim_imds.gcp import events as gcp_events
from netsim_imds.gcp import tree
from netsim_imds.identity import VmIdentity
from netsim_imds.request import Request
from netsim_imds.response import Response

JSON = "application/json"  # exactly: google-auth decodes a body only for this Content-Type
TEXT = "application/text"  # what GCE sends for text (google/grr capture)
HTML = "text/html; charset=UTF-8"
PREFIX = "/computeMetadata/v1/"
COMMON = (("Metadata-Flavor", "Google"), ("Server", "Metadata Server for VM"),
          ("X-XSS-Protection", "0"), ("X-Frame-Options", "SAMEORIGIN"))
PARAMS = frozenset({"recursive", "alt", "wait_for_change", "last_etag", "timeout_sec",
                    "audience", "format", "licenses", "scopes"})
_BOOL = {"true": True, "false": False}

_PAGE = ("<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {code} ({title})!!1</title>\n"
         "  <p><b>{code}.</b> <ins>That\u2019s an error.</ins>\n  <p>{text}  <ins>That\u2019s all we know.</ins>\n")
NOT_FOUND = "The requested URL <code>{}</code> was not found on this server."
FORBIDDEN = ("Your client does not have permission to get URL <code>{}</code> from this server. "
             "Missing Metadata-Flavor:Google header.")
FORWARDED = ("Your client does not have permission to get URL <code>{}</code> from this server. "
             "X-Forwarded-For is not allowed.")
NOT_A_VM = "Your client does not have permission to get URL <code>{}</code> from this server. It is no VM of this node."


@dataclass(frozen=True)
class GcpConfig:
    """Tunables: ``max_wait``: the longest ``timeout_sec`` accepted (s); ``default_wait``:
    how long a ``wait_for_change`` without ``timeout_sec`` waits (s)."""

    max_wait: float = 3600.0
    default_wait: float = 300.0


def answer(status: int, body: str | bytes, content_type: str = TEXT, headers: tuple = ()) -> Response:
    """A GCE answer: the common headers and the ETag of the body."""
    data = body.encode() if isinstance(body, str) else body
    return Response(status, data, content_type, (*COMMON, ("ETag", tree.etag(data)), *headers))


def page(code: int, title: str, text: str) -> Response:
    """One of Google's HTML error pages."""
    return answer(code, _PAGE.format(code=code, title=title, text=text), HTML)


def bad_request(message: str) -> Response:
    """400 for an unsupported query (GCE answers 400 to bad or unknown parameters)."""
    return answer(400, message + "\n")


_MAINTENANCE_EVENT = ["instance", "maintenance-event"]


@functools.lru_cache(maxsize=64)
def _leaf(value: str, as_json: bool) -> Response:
    """The answer of a string leaf (one of a few values: every woken poll of a walk shares it)."""
    return answer(200, json.dumps(value), JSON) if as_json else answer(200, tree.leaf_text(value))


class GcpFlavor:
    """The Compute Engine metadata server of one node (a :class:`~netsim_imds.flavors.Flavor`)."""

    metadata_hostnames = ("metadata.google.internal", "metadata")
    """Names that resolve to the metadata address inside this flavor's VMs (netsim writes
    them to each VM's own ``/etc/hosts``, never the host's)."""

    def __init__(self, config: GcpConfig | None = None) -> None:
        self.config = config or GcpConfig()
        self.warnings = gcp_events.WarningRule()

    def handle(self, request: Request, caller: VmIdentity | None, view: EventView, now: float) -> Answer:
        """Answer ``request`` from ``caller`` (module docstring for the order of checks)."""
        path = request.path
        if caller is None:
            return page(403, "Forbidden", NOT_A_VM.format(path))
        if "x-forwarded-for" in request.headers:
            return page(403, "Forbidden", FORWARDED.format(path))
        if path == "/" and request.method == "GET":
            return answer(200, "computeMetadata/\n")
        if (request.headers.get("metadata-flavor") or "") != "Google":
            return page(403, "Forbidden", FORBIDDEN.format(path))
        if request.method != "GET":
            return answer(405, "Method not allowed\n", headers=(("Allow", "GET"),))
        query, problem = self._query(request)
        if problem:
            return bad_request(problem)
        if path in ("/computeMetadata", "/computeMetadata/v1"):
            return self._redirect(request, path + "/")
        if path == "/computeMetadata/":
            return answer(200, "v1/\n")
        if not path.startswith(PREFIX):
            return page(404, "Not Found", NOT_FOUND.format(path))
        segments = [s for s in path[len(PREFIX):].split("/")]
        mine = self._own(caller, view)
        first = self._render(request, caller, view, segments, query, now, mine)
        if first.status == 200 and "service-accounts" not in segments:
            # The same answer until the VM's events change (the driver's cache checks the
            # node's incarnation) or a warning window opens; tokens change with the clock.
            first = dataclasses.replace(first, cache_until=self._wake_at(mine, now, math.inf))
        if not query["wait_for_change"] or first.status != 200:
            return first
        seen = dict(first.headers)["ETag"]
        last = query["last_etag"]
        if last is not None and last != seen:
            return first
        deadline = now + query["timeout_sec"]
        before = [tuple(mine), self._wake_at(mine, now, deadline)]
        watch = frozenset((caller.name,))  # GCE's keys speak of this instance alone (events.own)

        def resume(view: EventView, now: float) -> Answer:
            mine = self._own(caller, view)
            own = tuple(mine)
            if own == before[0] and now < before[1]:
                # A change on the node that does not concern this VM (most wakes of a
                # broadcast): the answer is the same, so it is not rendered again.
                return Wait(before[1], resume, watch)
            current = self._render(request, caller, view, segments, query, now, mine)
            if not isinstance(current, Response) or current.status != 200 or dict(current.headers)["ETag"] != seen:
                return current
            if now >= deadline:
                return current
            before[:] = [own, self._wake_at(mine, now, deadline)]
            return Wait(before[1], resume, watch)

        return Wait(before[1], resume, watch)

    # -- the parts ------------------------------------------------------------------------

    def _query(self, request: Request) -> tuple[dict, str]:
        """The query, checked: (values, "") or ({}, the problem)."""
        raw: dict[str, str] = {}
        for name, value in request.query:
            if name not in PARAMS:
                return {}, f"Unsupported query parameter: {name}"
            if name in raw:
                return {}, f"Duplicate query parameter: {name}"
            raw[name] = value
        out: dict[str, object] = {"audience": raw.get("audience"), "format": raw.get("format", "standard"),
                                  "last_etag": raw.get("last_etag")}
        for name in ("recursive", "wait_for_change"):
            value = _BOOL.get(raw.get(name, "false").lower())
            if value is None:
                return {}, f"Invalid value for {name}: {raw[name]!r} (true or false)"
            out[name] = value
        alt = raw.get("alt")
        if alt not in (None, "json", "text"):
            return {}, f"Invalid value for alt: {alt!r} (json or text)"
        out["alt"] = alt
        if out["format"] not in ("standard", "full"):
            return {}, f"Invalid value for format: {out['format']!r} (standard or full)"
        timeout = raw.get("timeout_sec")
        if timeout is None:
            out["timeout_sec"] = self.config.default_wait
        elif not timeout.isdigit() or not 1 <= int(timeout) <= self.config.max_wait:
            return {}, (f"Invalid value for timeout_sec: {timeout!r} "
                        f"(a whole number of seconds, 1 to {self.config.max_wait:g})")
        else:
            out["timeout_sec"] = float(timeout)
        return out, ""

    def _redirect(self, request: Request, to: str) -> Response:
        host = request.headers.get("host") or "metadata.google.internal"
        rest = request.target[len(request.path):]
        return answer(301, to, HTML, headers=(("Location", f"http://{host}{to}{rest}"),))

    def _own(self, caller: VmIdentity, view: EventView) -> list:
        return gcp_events.own(view.events_for(caller.name, caller.availability_set), caller.name)

    def _wake_at(self, own: list, now: float, deadline: float) -> float:
        """The deadline, or earlier when a warning window of the VM's ``own`` events opens before it."""
        opens = self.warnings.next_change(own, now)
        return deadline if opens is None else min(deadline, opens)

    def _render(self, request: Request, caller: VmIdentity, view: EventView, segments: list[str],
                query: dict, now: float, own: list | None = None) -> Response:
        """The answer to a GET of ``PREFIX + "/".join(segments)`` for ``caller`` at ``now``
        (``own``: its own events, when the caller computed them already)."""
        own = self._own(caller, view) if own is None else own
        value = self.warnings.value(caller.name, own, now)
        if segments == _MAINTENANCE_EVENT:  # the key every long poll watches: no tree to build for it
            self.warnings.read(caller.name, now)
            return _leaf(value, query["alt"] == "json")
        root = tree.Dir({"instance": tree.instance_tree(caller, own, value), "project": tree.project_tree(caller)})
        node: object = root
        trail = segments[:-1] if segments and segments[-1] == "" else segments
        for i, seg in enumerate(trail):
            if not isinstance(node, tree.Dir) or seg not in node:
                return page(404, "Not Found", NOT_FOUND.format(request.path))
            node = node[seg]
        if trail == ["instance", "maintenance-event"] or (query["recursive"] and trail in ([], ["instance"])):
            self.warnings.read(caller.name, now)  # the warning rule counts reads of the key
        is_dir = isinstance(node, tree.Dir)
        if is_dir and segments and segments[-1] != "":
            return self._redirect(request, request.path + "/")
        if not is_dir and segments and segments[-1] == "":
            return page(404, "Not Found", NOT_FOUND.format(request.path))
        account = len(trail) == 4 and trail[:2] == ["instance", "service-accounts"]
        if account and trail[-1] == "token":
            return answer(200, json.dumps(tree.access_token(caller, now)), JSON)
        if account and trail[-1] == "identity":
            audience = query["audience"]
            if not audience:
                return bad_request("non-empty audience parameter required")
            return answer(200, tree.identity_token(caller, audience, query["format"] == "full", now))
        alt = query["alt"]
        if is_dir:
            if query["recursive"]:
                if alt == "text":
                    return answer(200, tree.recursive_text(node))
                return answer(200, json.dumps(tree.to_json(node), separators=(",", ":")), JSON)
            if alt == "json":
                return answer(200, json.dumps([k + "/" if isinstance(v, tree.Dir) else k for k, v in node.items()]),
                              JSON)
            return answer(200, tree.listing(node))
        if alt == "json":
            return answer(200, json.dumps(node), JSON)
        if trail == ["instance", "tags"]:
            return answer(200, tree.tags_text(node))
        if isinstance(node, dict):  # upcoming-maintenance: a JSON object
            return answer(200, json.dumps(node), JSON)
        return answer(200, tree.leaf_text(node))
