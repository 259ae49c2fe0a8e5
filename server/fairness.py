"""Sans-IO fairness and bounds of the metadata service: who is served next, how much,
who may connect, and how much a caller may write to the log.

One process serves every node from one event loop, so a VM that floods its node's
server would otherwise take the loop from everybody (issue 9: 50 pipelining
connections of one VM left honest pollers on every node 3 answers of 12). The policy
here keeps each *caller* (a VM, or before its identity is known a peer address) to a
bounded share:

- :class:`Admission`: at most ``connections_per_caller`` open connections per caller and
  ``connections_total`` in the whole service;
- :class:`FairScheduler`: callers with work waiting take turns (round robin); in a turn a
  caller gets ``turn_budget`` units of work (a request costs one unit plus one per
  :data:`BYTES_PER_UNIT` bytes of it), so a caller with 15 KB heads gets as much time as
  one with 60-byte heads, not 250 times more;
- :class:`LogLimiter`: at most ``lines`` log lines per caller per ``interval`` seconds
  (and a service-wide cap), with a count of what was suppressed.

Nothing here reads a clock or touches a socket: time is the ``now`` argument and the
work itself is a callback, so tests run on invented timelines. The driver
(:mod:`netsim_imds.driver`) applies the policy.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

BYTES_PER_UNIT = 2048
"""A request of ``n`` bytes costs ``1 + n // BYTES_PER_UNIT`` units of a caller's turn."""


@dataclass(frozen=True)
class Limits:
    """The service's bounds (per caller: a VM, or a peer address not yet known as a VM).

    ``connections_per_caller`` / ``connections_total``: open connections allowed (more
    are closed at once). ``turn_budget``: units of work a caller gets per turn of the
    loop (see :func:`request_cost`). ``write_buffer_high`` / ``write_buffer_low``: bytes
    of answers a connection may have unsent before the server stops reading and
    answering it, and the level at which it resumes (backpressure). ``buffered_total``:
    bytes received and not yet answered, summed over the service; above it, connections
    that send more are paused until the total halves. ``log_lines`` per ``log_interval``
    seconds per caller, ``log_lines_total`` for the whole service. ``parked_per_caller`` /
    ``parked_total``: requests that may wait at once (a flavor's
    :class:`~netsim_imds.flavors.Wait`, e.g. a long poll); one more is answered 429.
    """

    connections_per_caller: int = 64
    connections_total: int = 8192
    turn_budget: int = 16
    write_buffer_high: int = 64 * 1024
    write_buffer_low: int = 16 * 1024
    buffered_total: int = 32 * 1024 * 1024
    log_lines: int = 5
    log_lines_total: int = 100
    log_interval: float = 10.0
    parked_per_caller: int = 16
    parked_total: int = 65536

    def __post_init__(self) -> None:
        for name in ("connections_per_caller", "connections_total", "turn_budget", "write_buffer_high",
                     "buffered_total", "log_lines", "log_lines_total", "parked_per_caller", "parked_total"):
            if getattr(self, name) < 1:
                raise ValueError(f"Limits.{name} must be at least 1")
        if not 0 <= self.write_buffer_low <= self.write_buffer_high:
            raise ValueError("Limits.write_buffer_low must be between 0 and write_buffer_high")
        if not self.log_interval > 0:
            raise ValueError("Limits.log_interval must be a positive number of seconds")


def request_cost(nbytes: int) -> int:
    """Units of a turn that answering one request of ``nbytes`` bytes costs."""
    return 1 + nbytes // BYTES_PER_UNIT


class Admission(Generic[K]):
    """Counts open connections per caller and in total; :meth:`admit` says whether one more may open."""

    def __init__(self, per_caller: int, total: int) -> None:
        self.per_caller, self.total = per_caller, total
        self._open: dict[K, int] = {}
        self._count = 0

    def admit(self, key: K) -> bool:
        """Count a new connection of ``key`` if under both limits; False: close it."""
        n = self._open.get(key, 0)
        if n >= self.per_caller or self._count >= self.total:
            return False
        self._open[key] = n + 1
        self._count += 1
        return True

    def release(self, key: K) -> None:
        """An admitted connection of ``key`` closed."""
        n = self._open.get(key, 0)
        if n <= 0:
            return
        self._count -= 1
        if n == 1:
            del self._open[key]
        else:
            self._open[key] = n - 1

    def open_of(self, key: K) -> int:
        """Open connections of ``key``."""
        return self._open.get(key, 0)

    @property
    def open_total(self) -> int:
        """Open connections of every caller."""
        return self._count


Serve = Callable[[T, int], "tuple[int, bool]"]
"""``serve(item, quota) -> (units used, more work left)``: the work, done by the driver."""


class FairScheduler(Generic[K, T]):
    """Round robin over callers with work waiting; each caller has a queue of items (its
    connections with requests still unanswered) and a budget of units per turn.

    :meth:`ready` queues an item; :meth:`run_turn` gives each caller that was waiting when
    the turn began one turn, serving its items in order until its budget is spent. An
    item with work left goes to the back of its caller's queue, a caller with items left
    to the back of the round, so nobody is served twice before everybody was served once.
    """

    def __init__(self, budget: int) -> None:
        if budget < 1:
            raise ValueError("budget must be at least 1 unit")
        self.budget = budget
        self._queues: OrderedDict[K, deque[T]] = OrderedDict()
        self.queued: set[T] = set()
        """The items with work waiting (read it, do not change it: a set, so that the
        driver's hot path asks ``item in s.queued`` without a method call)."""

    def __bool__(self) -> bool:
        return bool(self.queued)

    def __contains__(self, item: object) -> bool:
        return item in self.queued

    @property
    def waiting(self) -> int:
        """Callers with work waiting for a turn."""
        return len(self._queues)

    def ready(self, key: K, item: T) -> None:
        """``item`` of caller ``key`` has work waiting (no-op if already queued)."""
        if item in self.queued:
            return
        self.queued.add(item)
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = queue = deque()
        queue.append(item)

    def discard(self, key: K, item: T) -> None:
        """Forget ``item`` (its connection closed)."""
        if item not in self.queued:
            return
        self.queued.discard(item)
        queue = self._queues.get(key)
        if queue is not None:
            try:
                queue.remove(item)
            except ValueError:
                pass
            if not queue:
                del self._queues[key]

    def run_turn(self, serve: Serve) -> int:
        """Give every caller waiting now one turn; returns the units spent in total."""
        spent = 0
        for key in list(self._queues):
            queue = self._queues.get(key)
            if queue is None:
                continue
            budget = self.budget
            # Each item of the caller at most once per turn, even if budget is left.
            for _ in range(len(queue)):
                if budget <= 0 or not queue:
                    break
                item = queue.popleft()
                self.queued.discard(item)
                used, more = serve(item, budget)
                used = max(0, used)
                budget -= used
                spent += used
                if more and item not in self.queued:
                    self.queued.add(item)
                    queue.append(item)
            if queue:
                self._queues.move_to_end(key)
            else:
                self._queues.pop(key, None)
        return spent


class LogLimiter(Generic[K]):
    """At most ``lines`` log lines per caller per ``interval`` seconds, ``total`` for all.

    :meth:`allow` says whether a line may be written now and how many of that caller's
    lines were suppressed since its last line (write that count with the line);
    :meth:`expired` hands out the counts of callers that went quiet, so none is lost.
    """

    _ALL = object()

    def __init__(self, lines: int = 5, interval: float = 10.0, total: int = 100, max_keys: int = 4096) -> None:
        self.lines, self.interval, self.total, self.max_keys = lines, interval, total, max_keys
        self._windows: OrderedDict[object, list] = OrderedDict()  # key -> [start, written, suppressed]

    def _window(self, key: object, now: float) -> list:
        w = self._windows.get(key)
        if w is None:
            if len(self._windows) >= self.max_keys:
                self._windows.popitem(last=False)  # forget the oldest caller (its count is lost)
            w = self._windows[key] = [now, 0, 0]
        elif now >= w[0] + self.interval or now < w[0]:
            w[0], w[1] = now, 0
        return w

    def allow(self, key: K, now: float) -> tuple[bool, int]:
        """(write the line?, lines of ``key`` suppressed before it)."""
        w = self._window(key, now)
        everyone = self._window(self._ALL, now)
        if w[1] >= self.lines or everyone[1] >= self.total:
            w[2] += 1
            return False, 0
        w[1] += 1
        everyone[1] += 1
        suppressed, w[2] = w[2], 0
        return True, suppressed

    def expired(self, now: float) -> list[tuple[K, int]]:
        """Callers whose window ended with lines suppressed: ``(key, count)``, each once."""
        out = []
        for key, w in list(self._windows.items()):
            if key is self._ALL or now < w[0] + self.interval:
                continue
            if w[2]:
                out.append((key, w[2]))
            del self._windows[key]
        return out  # type: ignore[return-value]
