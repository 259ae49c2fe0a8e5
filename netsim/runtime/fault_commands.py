"""Control commands of faults (issue 13): ``fault_add``, ``fault_list``, ``fault_clear``.

Each handler is a thin call into the daemon's :class:`~netsim.runtime.faults.FaultBook`;
every number is checked here against :mod:`netsim.model.bounds`, the combination of
options by :func:`netsim.runtime.faultspec.classify` (the CLI runs the same check first).
The wire interface is written down in the README's "Faults" section.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from netsim.model import bounds
from netsim.runtime.commands import CommandError, Context, NoArguments, command, flag, number, text
from netsim.runtime.faultspec import OPTIONS


@dataclass(frozen=True)
class FaultAdd:
    """``fault_add``: one fault on a target (a VM, ``node:NAME`` or ``all``)."""

    target: str = text(what="the fault target", hint="a VM, node:NAME or all", limit=200)
    http: int | None = number(bounds.FAULT_STATUS, "the status (--http)", default=None)
    delay: float | None = number(bounds.FAULT_DELAY_MS, "the delay (--delay)", default=None)
    jitter: float | None = number(bounds.FAULT_DELAY_MS, "the jitter (--jitter)", default=None)
    hang: bool = flag(default=False)
    reset: bool = flag(default=False)
    truncate: int | None = number(bounds.FAULT_BYTES, "the truncation (--truncate)", default=None)
    rate: int | None = number(bounds.FAULT_RATE, "the rate (--rate)", default=None)
    latency: float | None = number(bounds.FAULT_LATENCY_MS, "the latency (--latency)", default=None)
    loss: float | None = number(bounds.FAULT_PERCENT, "the loss (--loss)", default=None)
    duplicate: float | None = number(bounds.FAULT_PERCENT, "the duplicate share (--duplicate)", default=None)
    reorder: float | None = number(bounds.FAULT_PERCENT, "the reorder share (--reorder)", default=None)
    corrupt: float | None = number(bounds.FAULT_PERCENT, "the corrupt share (--corrupt)", default=None)
    partition: bool = flag(default=False)
    path: str | None = text(default=None, optional=True, what="the path prefix (--path)", limit=1000)
    probability: float | None = number(bounds.FAULT_PROBABILITY, "the probability (--probability)", default=None)
    in_: float | None = number(bounds.FAULT_START_S, "the start (--in)", default=None, wire="in")
    """Seconds until the fault starts (None: now)."""
    duration: float | None = number(bounds.FAULT_DURATION_S, "the duration (--duration)", default=None)
    """Seconds it lasts (None: until cleared)."""


def _book(ctx: Context):
    book = getattr(ctx, "faults", None)
    if book is None:
        raise CommandError("the daemon is still starting: try again in a moment")
    return book


@command("fault_add", FaultAdd)
def fault_add(ctx: Context, a: FaultAdd) -> dict:
    """Add a fault; answers its id and the fault as ``fault_list`` shows it."""
    book = _book(ctx)
    options = {k: getattr(a, k) for k in OPTIONS}
    fault = book.add(a.target, options, a.in_, a.duration)
    return {"id": fault.id, "fault": fault.to_dict(book.clock())}


@command("fault_list")
def fault_list(ctx: Context, a: NoArguments) -> dict:
    """Every fault: pending, active or ended (until cleared)."""
    return {"faults": _book(ctx).describe()}


@dataclass(frozen=True)
class FaultClear:
    """``fault_clear``: one fault (``id``) or every one (``all``)."""

    id: str | None = text(default=None, optional=True, what="a fault id", hint="see netsim fault list", limit=200)
    all: bool = flag(default=False)


@command("fault_clear", FaultClear)
def fault_clear(ctx: Context, a: FaultClear) -> dict:
    """Remove a fault, or all of them; answers the ids removed."""
    if (a.id is None) == (not a.all):
        raise CommandError("fault_clear takes an 'id' or 'all': true (one of them)")
    return {"cleared": _book(ctx).clear(a.id, a.all)}


assert [f.name for f in dataclasses.fields(FaultAdd)][1:len(OPTIONS) + 1] == list(OPTIONS)
