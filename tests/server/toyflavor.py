"""A toy flavor of the metadata service, defined outside ``netsim_imds``: the proof that the
next cloud is one folder (a module here) and no edit to the core.

- ``GET /toy/whoami``: the caller's VM name (text);
- ``GET /toy/wait?timeout=S``: a long poll, answered ``changed N`` (N: the node's new
  incarnation) as soon as the node's events change, or ``timeout`` after S seconds;
- ``GET /toy/ttl?hops=N``: ``ttl N``, sent with IP TTL = N (as AWS sends its token reply).

Served to a datacenter whose topology says ``cloud = "toy"`` with
``NETSIM_FLAVORS=toy=tests.server.toyflavor`` in the environment (the daemon inherits it).
Importing this module registers the flavor, and the event words of the flavor (Azure's,
renamed), which the daemon's planner needs for any cloud.
"""

from __future__ import annotations

import socket
from dataclasses import replace

from netsim_imds import flavors
from netsim_imds.azure.events import EVENTS as AZURE_EVENTS
from netsim_imds.events import EventView, register as register_events
from netsim_imds.flavors import Answer, Wait
from netsim_imds.identity import VmIdentity
from netsim_imds.request import Request
from netsim_imds.response import TEXT, Response

MAX_WAIT = 600.0


def text(status: int, body: str, **kw) -> Response:
    """A text/plain answer."""
    return Response(status, body.encode(), TEXT, **kw)


class ToyFlavor:
    """The toy metadata API of one node."""

    def handle(self, request: Request, caller: VmIdentity | None, view: EventView, now: float) -> Answer:
        """See the module's docstring."""
        if caller is None:
            return text(403, "not a VM of this node")
        if request.method != "GET":
            return text(405, "GET only", headers=(("Allow", "GET"),))
        query = dict(request.query)
        if request.path == "/toy/whoami":
            return text(200, caller.name)
        if request.path == "/toy/ttl":
            hops = query.get("hops", "")
            if not hops.isdigit() or not 1 <= int(hops) <= 255:
                return text(400, "hops must be 1 to 255")
            return text(200, f"ttl {hops}", socket_options=((socket.IPPROTO_IP, socket.IP_TTL, int(hops)),))
        if request.path == "/toy/wait":
            try:
                timeout = float(query.get("timeout", "10"))
            except ValueError:
                timeout = -1.0
            if not 0 <= timeout <= MAX_WAIT:
                return text(400, f"timeout must be 0 to {MAX_WAIT:g} seconds")
            return self._wait(view.document_incarnation, now + timeout)
        return text(404, "no such toy")

    def _wait(self, seen: int, deadline: float) -> Wait:
        def resume(view: EventView, now: float) -> Answer:
            incarnation = view.document_incarnation
            if incarnation != seen:
                return text(200, f"changed {incarnation}")
            if now >= deadline:
                return text(200, "timeout")
            return Wait(deadline, resume)  # woken for nothing that concerns it: wait on
        return Wait(deadline, resume)


flavors.register("toy", ToyFlavor)
register_events(replace(AZURE_EVENTS, cloud="toy"))
