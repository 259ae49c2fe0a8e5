"""HTTP faults of the metadata service, decided sans-IO (issue 13, item 1).

A fault makes the service misbehave on purpose, for any flavor: answer a status (with
``Retry-After`` for 429 and 503), delay by a time with jitter, hang (accept and never
answer while the fault lasts), reset the connection, truncate the body after N bytes, or
dribble the body at N bytes per second. It is scoped to every caller, one node or one VM,
optionally to one path prefix and a probability, and lasts from ``starts_at`` until
``ends_at`` (None: until cleared).

:class:`FaultTable` holds the faults a server knows and answers :meth:`FaultTable.decide`:
given the node, the caller, the path, the time and an injected :class:`random.Random`, the
:class:`Action` to take, or None (answer normally). It reads no clock and touches no
socket: the driver (:mod:`netsim_imds.faultio`) does the I/O. With no fault at all the
driver pays one attribute check per request (``table.faults`` is an empty tuple).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from netsim_imds.response import Response, error_response

RETRY_AFTER = frozenset({429, 503})
"""Statuses answered with a ``Retry-After`` header (RFC 9110 section 10.2.3)."""

RETRY_AFTER_MAX_S = 30
"""The longest ``Retry-After`` given: a client told to wait longer than a test lasts never
comes back (until-cleared faults say 1 s)."""

HANG_S = 24 * 3600.0
"""How long a hang of a fault with no end keeps a request at most (it is released when
the fault is cleared, :meth:`FaultTable.lasts`)."""


@dataclass(frozen=True)
class HttpFault:
    """One HTTP fault. ``vm``/``node``: the scope (None: any); ``status``: answer it
    instead; ``delay_s`` +- ``jitter_s``: wait first; ``hang``: never answer (while the
    fault lasts); ``reset``: reset the connection (TCP RST); ``truncate``: send this many
    bytes of the body, then close; ``rate``: send the body at this many bytes per second;
    ``path``: only paths starting with it ("" : every path); ``probability``: the share of
    matching requests it applies to; ``starts_at``/``ends_at``: epoch seconds (None: until
    cleared)."""

    id: str
    vm: str | None = None
    node: str | None = None
    status: int | None = None
    delay_s: float = 0.0
    jitter_s: float = 0.0
    hang: bool = False
    reset: bool = False
    truncate: int | None = None
    rate: float | None = None
    path: str = ""
    probability: float = 1.0
    starts_at: float = 0.0
    ends_at: float | None = None

    def active(self, now: float) -> bool:
        """Whether the fault applies at ``now``."""
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def matches(self, node: str, vm: str | None, path: str) -> bool:
        """Whether the fault's scope holds a request of ``vm`` on ``node`` for ``path``."""
        return ((self.node is None or self.node == node) and (self.vm is None or self.vm == vm)
                and path.startswith(self.path))


@dataclass(frozen=True)
class Action:
    """What to do with one request: ``fault`` (its id) decided it. ``delay_s`` first
    (jitter drawn already), then one of: ``hang`` until ``until``, ``reset``, answer
    ``response`` (a status fault), send the real answer truncated after ``truncate``
    bytes of body, or dribbled at ``rate`` bytes/s; none of them: the real answer."""

    fault: str
    delay_s: float = 0.0
    hang: bool = False
    until: float = 0.0
    reset: bool = False
    response: Response | None = None
    truncate: int | None = None
    rate: float | None = None


def status_response(fault: HttpFault, now: float) -> Response:
    """The answer of a status fault: ``{"error": ...}`` and, for 429/503, ``Retry-After``:
    the seconds left of the fault (1 to :data:`RETRY_AFTER_MAX_S`; 1 for a fault with no end)."""
    assert fault.status is not None
    headers: tuple[tuple[str, str], ...] = ()
    if fault.status in RETRY_AFTER:
        left = 1 if fault.ends_at is None else math.ceil(fault.ends_at - now)
        headers = (("Retry-After", str(max(1, min(RETRY_AFTER_MAX_S, left)))),)
    return error_response(fault.status, f"injected fault {fault.id}", headers=headers)


class FaultTable:
    """The HTTP faults a server applies, in the order they were added (the first that
    matches and whose probability draw passes decides). Replace them with :meth:`set`."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.faults: tuple[HttpFault, ...] = ()
        self.rng = rng or random.Random()

    def set(self, faults: "tuple[HttpFault, ...] | list[HttpFault]") -> None:
        """Replace every fault (the daemon hands the whole list on each change)."""
        self.faults = tuple(faults)

    def lasts(self, fault_id: str, now: float) -> bool:
        """Whether fault ``fault_id`` is still in the table and active at ``now`` (a hung
        request is released when this turns false)."""
        return any(f.id == fault_id and f.active(now) for f in self.faults)

    def decide(self, node: str, vm: str | None, path: str, now: float) -> Action | None:
        """The action for a request of ``vm`` (None: a caller that is no VM) on ``node``
        for ``path`` at ``now``, or None to answer normally."""
        for f in self.faults:
            if not (f.active(now) and f.matches(node, vm, path)):
                continue
            if f.probability < 1.0 and self.rng.random() >= f.probability:
                continue
            delay = f.delay_s
            if f.jitter_s:
                delay = max(0.0, delay + self.rng.uniform(-f.jitter_s, f.jitter_s))
            if f.hang:
                return Action(f.id, delay, hang=True, until=f.ends_at if f.ends_at is not None else now + HANG_S)
            return Action(f.id, delay, reset=f.reset,
                          response=status_response(f, now) if f.status is not None else None,
                          truncate=f.truncate, rate=f.rate)
        return None
