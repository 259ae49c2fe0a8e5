"""The allowed range of every number a user or a client can hand to netsim, and the one
check that every boundary uses: the CLI, the daemon's control socket, the topology
loader, the planner and the event repository.

A number that is not finite (``nan``, ``inf``, ``1e308`` once added to a clock) or out
of range is refused with one line that names the field and the allowed values, before
anything is changed or stored. Python's ``json`` reads ``NaN`` and ``Infinity``, and
``bool`` is an ``int``: both are refused here too.

Ranges (facts from ``shared/reference/cloud-metadata-apis.md`` section 2.3): the longest
notice Azure gives is about 7 days (a predicted hardware failure), so a notice, a
DurationInSeconds and a walk's downtime are at most 7 days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from netsim.errors import NetsimError

WEEK_S = 7 * 24 * 3600
"""Seven days in seconds: Azure's longest notice (reference section 2.3)."""


class InvalidValue(NetsimError):
    """A number or name is not finite, of the wrong type or out of range; the message
    names the field and the allowed values."""


@dataclass(frozen=True)
class Bound:
    """The allowed values of one number: ``lo <= x <= hi`` (``lo < x`` when
    ``lo_open``), an integer when ``integer``, plus the ``extra`` values (e.g. -1 for
    "unknown"). ``unit`` is shown in messages."""

    lo: float
    hi: float
    integer: bool = False
    unit: str = ""
    lo_open: bool = False
    extra: tuple[int, ...] = ()

    def describe(self) -> str:
        """The allowed values in words, e.g. ``an integer from 0 to 20, or -1``."""
        kind = "an integer" if self.integer else "a number"
        unit = f" {self.unit}" if self.unit else ""
        lo = f"{_fmt(self.lo)} (excluded)" if self.lo_open else _fmt(self.lo)
        extra = "".join(f", or {e}" for e in self.extra)
        return f"{kind} from {lo} to {_fmt(self.hi)}{unit}{extra}"


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def problem(value: object, bound: Bound, what: str) -> str | None:
    """Why ``value`` is not allowed for field ``what``, or None if it is."""
    allowed = f"{what} must be {bound.describe()}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{allowed}, not {value!r}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{allowed}, not {value!r}"
    if value in bound.extra:
        return None
    if bound.integer and not float(value).is_integer():
        return f"{allowed}, not {value!r}"
    low_ok = value > bound.lo if bound.lo_open else value >= bound.lo
    if not low_ok or value > bound.hi:
        shown = value if not isinstance(value, int) or abs(value) < 10**15 else f"{str(value)[:12]}..."
        return f"{allowed}, not {shown}" + (" (it cannot be negative)" if value < 0 <= bound.lo else "")
    return None


def check(value: object, bound: Bound, what: str, error: type[NetsimError] = InvalidValue) -> float:
    """``value`` as a float (an int for integer bounds) if allowed; else raise ``error``."""
    if (why := problem(value, bound, what)) is not None:
        raise error(why)
    return int(value) if bound.integer else float(value)  # type: ignore[arg-type]


def parse_number(text: str, bound: Bound, what: str) -> float:
    """The number written as ``text`` (a command-line argument), checked against ``bound``."""
    try:
        value: float = int(text) if bound.integer else float(text)
    except ValueError:
        raise InvalidValue(f"{what} must be {bound.describe()}, not {text!r}") from None
    return check(value, bound, what)


# -- the ranges ---------------------------------------------------------------------------

NOTICE_S = Bound(0, WEEK_S, unit="seconds")
"""Notice of an event (NotBefore - now) or of each update domain of a walk."""

EPOCH_S = Bound(0, 253402300799, unit="seconds since 1970 (up to the year 9999)")
"""A moment (NotBefore, creation time) as epoch seconds: it must be servable as a date."""

DURATION_S = Bound(0, WEEK_S, integer=True, unit="seconds", extra=(-1,))
"""DurationInSeconds of an event: -1 is "unknown" (reference section 2.2)."""

DOWNTIME_S = Bound(0, WEEK_S, unit="seconds")
"""How long each VM of a walked update domain stays down."""

HEARTBEAT_TIMEOUT_S = Bound(0, 3600, lo_open=True, unit="seconds")
"""How long a node may stay silent before it is declared failed."""

CAPTURE_S = Bound(0, 24 * 3600, lo_open=True, unit="seconds")
"""Length of a ``netsim capture``."""

WATCH_INTERVAL_S = Bound(0.05, 3600, unit="seconds")
"""Time between two frames of ``netsim watch``."""

FRAME_COUNT = Bound(0, 10**6, integer=True)
"""Frames of ``netsim watch`` (0: until Ctrl-C)."""

PROBE_TIMEOUT_S = Bound(0, 60, lo_open=True, unit="seconds")
"""Timeout of each probe of ``netsim reach``."""

DEMO_PHASE_S = Bound(0, 3600, unit="seconds")
"""Notice and downtime of the demo's walk."""

DEMO_RATE = Bound(0, 10000, lo_open=True, unit="requests per second")
"""The demo's client request rate."""

UPDATE_DOMAINS = Bound(1, 20, integer=True)
"""Update domains of an availability set (Azure's limit is 20)."""

FAULT_DOMAINS = Bound(1, 3, integer=True)
"""Fault domains of an availability set (Azure's limit is 3)."""

UPDATE_DOMAIN = Bound(0, UPDATE_DOMAINS.hi - 1, integer=True)
"""A VM's update domain (also within its set's count)."""

FAULT_DOMAIN = Bound(0, FAULT_DOMAINS.hi - 1, integer=True)
"""A VM's fault domain (also within its set's count)."""

CONTAINERS_PER_VM = Bound(0, 16, integer=True, unit="containers")
"""Containers inside one VM: each is a namespace, a veth and an address of the VM's
container subnet (:data:`netsim.model.addressing.CONTAINERS`)."""

# -- faults (issue 13): what `netsim fault add` and the control socket accept -----------------

FAULT_STATUS = Bound(400, 599, integer=True)
"""The status an HTTP fault answers (a client or server error)."""

FAULT_DELAY_MS = Bound(0, 600_000, unit="ms")
"""An HTTP fault's delay or jitter (up to 10 minutes)."""

FAULT_LATENCY_MS = Bound(0, 10_000, unit="ms")
"""A link fault's latency or jitter (netem counts it in 32-bit ticks: keep it to seconds)."""

FAULT_BYTES = Bound(0, 2**31 - 1, integer=True, unit="bytes")
"""Bytes of body an HTTP fault sends before it cuts the answer (--truncate)."""

FAULT_RATE = Bound(1, 10**9, integer=True, unit="bytes per second")
"""An HTTP fault's dribble or a link fault's rate."""

FAULT_PERCENT = Bound(0, 100, lo_open=True, unit="percent")
"""A link fault's loss, duplicate, reorder or corrupt share."""

FAULT_PROBABILITY = Bound(0, 1, lo_open=True)
"""The share of matching requests an HTTP fault applies to."""

FAULT_START_S = Bound(0, WEEK_S, unit="seconds")
"""Seconds until a fault starts (--in)."""

FAULT_DURATION_S = Bound(0, WEEK_S, lo_open=True, unit="seconds")
"""How long a fault lasts (--duration; absent: until cleared)."""
