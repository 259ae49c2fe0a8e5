"""The RFC 3927 section 9 constants, held in one table.

``RFC_TIMERS`` carries the values of the RFC. ``Timers.scaled(factor)`` gives a "fast"
profile for tests and demos: every interval is divided by ``factor``, counts stay the
same, and the result says ``conformant=False`` so reports can tell the two apart
(RFC 3927 section 2.3 allows shorter timeouts only on links where they suit).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace


def _const(value: float | int, unit: str, meaning: str) -> float | int:
    """A dataclass field whose metadata documents one RFC constant."""
    return field(default=value, metadata={"unit": unit, "meaning": meaning})


@dataclass(frozen=True)
class Timers:
    """RFC 3927 section 9 constants, named as in the RFC (intervals in seconds).

    ``conformant`` is True for the RFC values and False for any scaled profile.
    """

    PROBE_WAIT: float = _const(1.0, "s", "initial random delay before the first probe")
    PROBE_NUM: int = _const(3, "count", "number of probe packets")
    PROBE_MIN: float = _const(1.0, "s", "minimum delay until repeated probe")
    PROBE_MAX: float = _const(2.0, "s", "maximum delay until repeated probe")
    ANNOUNCE_WAIT: float = _const(2.0, "s", "delay before announcing")
    ANNOUNCE_NUM: int = _const(2, "count", "number of announcement packets")
    ANNOUNCE_INTERVAL: float = _const(2.0, "s", "time between announcement packets")
    MAX_CONFLICTS: int = _const(10, "count", "max conflicts before rate limiting")
    RATE_LIMIT_INTERVAL: float = _const(60.0, "s", "delay between successive attempts")
    DEFEND_INTERVAL: float = _const(10.0, "s", "minimum interval between defensive ARPs")
    conformant: bool = True

    def __post_init__(self) -> None:
        if self.PROBE_NUM < 1 or self.ANNOUNCE_NUM < 1 or self.MAX_CONFLICTS < 1:
            raise ValueError("PROBE_NUM, ANNOUNCE_NUM and MAX_CONFLICTS must be at least 1")
        if not 0 <= self.PROBE_MIN <= self.PROBE_MAX:
            raise ValueError(f"need 0 <= PROBE_MIN <= PROBE_MAX, got {self.PROBE_MIN} and {self.PROBE_MAX}")
        if min(self.intervals().values()) < 0:
            raise ValueError("intervals must not be negative")

    def intervals(self) -> dict[str, float]:
        """The constants measured in seconds, by RFC name."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("unit") == "s"}

    def scaled(self, factor: float) -> "Timers":
        """A fast profile: every interval divided by ``factor``, counts unchanged.

        The result is marked ``conformant=False`` unless ``factor`` is 1.
        """
        if factor <= 0:
            raise ValueError(f"the scaling factor must be positive, got {factor}")
        if factor == 1:
            return self
        return replace(self, **{name: value / factor for name, value in self.intervals().items()},
                       conformant=False)

    @property
    def profile(self) -> str:
        """A short label for reports: ``rfc`` or ``fast xN``."""
        if self.conformant:
            return "rfc"
        return f"fast x{RFC_TIMERS.PROBE_WAIT / self.PROBE_WAIT:g}" if self.PROBE_WAIT else "fast"


def table() -> list[tuple[str, float | int, str, str]]:
    """(name, RFC value, unit, meaning) for every constant, in the RFC's order."""
    return [(f.name, f.default, f.metadata["unit"], f.metadata["meaning"])
            for f in fields(Timers) if "unit" in f.metadata]


RFC_TIMERS = Timers()
"""The values of RFC 3927 section 9."""
