"""Serialized answers a node's server gives again without calling its flavor (sans-IO).

A poller sends the same bytes again and again (same request line, same headers) and,
until its node's events change, gets the same answer: parsing the request, routing it,
reading the events and serializing the answer cost most of the Python of a request.
The flavor says which answers may be given again, and until when
(:attr:`Response.cache_until <netsim_imds.response.Response.cache_until>`); this cache
keeps them by (caller, the request's exact bytes) and gives one back only while

- the view's ``document_incarnation`` is the one the answer was computed under (any
  change of the node's events raises it),
- the time is before its ``cache_until`` (the flavor's next deadline: e.g. an event
  that becomes visible by time), and
- the caller is the same identity object (a claim or a move builds a new one).

Only a whole request that arrived alone on an idle connection (nothing buffered before
it, nothing after it) is kept, so the same bytes always mean the same request. The Date
header is rendered again once per second. Bounded: at most :data:`MAX_ENTRIES` answers
per node, of requests at most :data:`MAX_KEY` bytes long; the cache is emptied when full.
"""

from __future__ import annotations

from netsim_imds.identity import VmIdentity
from netsim_imds.request import Request
from netsim_imds.response import Response, serialize

MAX_ENTRIES = 512
"""Answers kept per node (a poller has a few: one per URL it polls)."""
MAX_KEY = 1024
"""Longest request (bytes) whose answer is kept."""


class _Entry:
    __slots__ = ("caller", "incarnation", "until", "request", "response", "date", "wire")

    def __init__(self, caller: VmIdentity, incarnation: int, until: float, request: Request,
                 response: Response, date: str, wire: bytes) -> None:
        self.caller, self.incarnation, self.until = caller, incarnation, until
        self.request, self.response, self.date, self.wire = request, response, date, wire


class AnswerCache:
    """One node's answers, by (caller, request bytes)."""

    __slots__ = ("_entries",)

    def __init__(self) -> None:
        self._entries: dict[tuple[int, bytes], _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, caller: VmIdentity, data: bytes, incarnation: int, now: float,
            date: str) -> tuple[bytes, bool] | None:
        """``(bytes to write, keep_alive)`` answering ``data`` from ``caller`` now, or None
        (never kept, or no longer right: then it is forgotten)."""
        key = (id(caller), data)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.caller is not caller or entry.incarnation != incarnation or now >= entry.until:
            del self._entries[key]
            return None
        if entry.date != date:  # a new second: only the Date header changes
            request = entry.request
            entry.wire = serialize(entry.response, keep_alive=request.keep_alive, date=date,
                                   head=request.method == "HEAD", http10=request.http_version == "1.0")
            entry.date = date
        return entry.wire, entry.request.keep_alive

    def put(self, caller: VmIdentity, data: bytes, incarnation: int, request: Request, response: Response,
            date: str, wire: bytes) -> None:
        """Keep ``wire`` (``response`` to ``request``, serialized with ``date``) as the answer
        to ``data`` from ``caller``, until ``response.cache_until`` or the next change."""
        if len(data) > MAX_KEY:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[(id(caller), data)] = _Entry(caller, incarnation, response.cache_until, request, response,
                                                   date, wire)

    def clear(self) -> None:
        """Forget every answer (e.g. the node's events changed)."""
        self._entries.clear()
