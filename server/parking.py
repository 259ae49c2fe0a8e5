"""Parked requests of a connection: a flavor's :class:`~netsim_imds.flavors.Wait`, on a timer.

A flavor may answer a Wait: the request is *parked* (a timer on the loop, no thread) and
the requests pipelined behind it wait with it, since HTTP/1.1 answers in order. It is
woken when its node's events change (:meth:`~netsim_imds.driver.MetadataServer.notify`) or
at its deadline; a notify that names what changed wakes only the requests whose Wait
watches one of those names (:class:`ParkedIndex`). :class:`ParkedRequests` is the part of
:class:`~netsim_imds.connection.Connection` that does this (a mixin: it uses the
connection's owner, key, transport, parser and answer methods).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from netsim_imds.flavors import Wait
from netsim_imds.http import Request
from netsim_imds.response import Response, error_response

if TYPE_CHECKING:
    from netsim_imds.driver import MetadataServer, Node
    from netsim_imds.http import RequestParser

TOO_MANY_WAITING = "Too many waiting requests. At most {} requests of a VM may wait at once"


class _Deferred(threading.local):
    """The answers of woken requests not written yet, inside :func:`writes_batched` (else
    None); per thread, since servers may run on loops of several threads of one process."""

    pending: "list[tuple[asyncio.Transport, bytes]] | None" = None


_deferred = _Deferred()


@contextmanager
def writes_batched() -> Iterator[None]:
    """Wake many parked requests inside, and their answers are written at the end, back to
    back. Why: a write to a client that sleeps costs a wake-up of it on another CPU (an
    inter-processor interrupt, dear in a virtual machine); written in a burst, the clients'
    readers are still busy with the first answers when the next ones land, and the writes
    are cheap. Every answer is still written in the callback that woke it (before any
    other callback, so before any answer of a request pipelined behind it)."""
    if _deferred.pending is not None:  # nested: the outer one writes
        yield
        return
    pending: list[tuple[asyncio.Transport, bytes]] = []
    _deferred.pending = pending
    try:
        yield
    finally:
        _deferred.pending = None
        for transport, data in pending:
            if not transport.is_closing():
                transport.write(data)


class Parked:
    """A request that waits: the flavor's :class:`Wait`, and the timer of its deadline."""

    __slots__ = ("request", "wait", "timer")

    def __init__(self, request: Request, wait: Wait, timer: asyncio.TimerHandle) -> None:
        self.request, self.wait, self.timer = request, wait, timer


class ParkedIndex:
    """A node's parked connections, indexed by the names their Wait watches
    (:attr:`~netsim_imds.flavors.Wait.watch`), so that a change of some VMs' events costs
    a call of the flavor per request that may see it, not per request parked on the node.

    Iterating gives every parked connection; ``len`` counts them.
    """

    __slots__ = ("_watch", "_anything", "_by_name")

    def __init__(self) -> None:
        self._watch: dict[ParkedRequests, frozenset[str] | None] = {}
        self._anything: set[ParkedRequests] = set()  # Waits that watch the whole node
        self._by_name: dict[str, set[ParkedRequests]] = {}

    def add(self, conn: "ParkedRequests", watch: "frozenset[str] | None") -> None:
        """``conn`` is parked on a Wait that watches ``watch`` (None: everything)."""
        if conn in self._watch:
            if self._watch[conn] == watch:
                return
            self.discard(conn)
        self._watch[conn] = watch
        if watch is None:
            self._anything.add(conn)
        else:
            for name in watch:
                self._by_name.setdefault(name, set()).add(conn)

    def discard(self, conn: "ParkedRequests") -> None:
        """``conn`` is no longer parked (unknown connections are ignored)."""
        if conn not in self._watch:
            return
        watch = self._watch.pop(conn)
        if watch is None:
            self._anything.discard(conn)
            return
        for name in watch:
            held = self._by_name.get(name)
            if held is not None:
                held.discard(conn)
                if not held:
                    del self._by_name[name]

    def concerned(self, names: "Iterable[str] | None") -> "list[ParkedRequests]":
        """The parked connections a change of ``names``' events may concern (None: all)."""
        if names is None:
            return list(self._watch)
        out = set(self._anything)
        changed = names if isinstance(names, (set, frozenset)) else set(names)
        # A walk's event names every VM of an update domain, on each of its nodes: walk
        # whichever side is shorter (the node's watched names, or the changed ones).
        if len(changed) > len(self._by_name):
            for name, held in self._by_name.items():
                if name in changed:
                    out.update(held)
        else:
            for name in changed:
                out.update(self._by_name.get(name, ()))
        return list(out)

    def __len__(self) -> int:
        return len(self._watch)

    def __iter__(self) -> "Iterator[ParkedRequests]":
        return iter(list(self._watch))

    def __contains__(self, conn: object) -> bool:
        return conn in self._watch


class ParkedRequests:
    """Park, wake and forget a connection's waiting request (mixed into Connection)."""

    node: Node
    owner: MetadataServer
    key: tuple[str, str]
    transport: asyncio.Transport | None
    parser: RequestParser
    parked: Parked | None

    if TYPE_CHECKING:  # the connection's own methods (declared only for the type checker,
        # so that this mixin shadows nothing of another mixin's in the connection's MRO)
        def _emit(self, request: Request, response: Response, date: str, out: list[bytes]) -> None: ...

        def _failed(self, request: Request, exc: Exception) -> Response: ...

        def _set_deadline(self, now: float, answered: bool) -> None: ...

        def _update_reading(self, more: bool = False) -> None: ...

    def _park(self, request: Request, wait: Wait, now: float, date: str, out: list[bytes]) -> bool:
        owner = self.owner
        if not owner.parking.admit(self.key):
            limit = owner.limits.parked_per_caller
            owner.log_for(self.key, logging.WARNING, "node %s: %s has %d requests waiting (limit %d): answering 429",
                          self.node.name, self.key[1], owner.parking.open_of(self.key), limit)
            self._emit(request, error_response(429, TOO_MANY_WAITING.format(limit), headers=(("Retry-After", "1"),)),
                       date, out)
            return True
        timer = asyncio.get_running_loop().call_later(max(0.0, wait.deadline - now), self.wake, True)
        self.parked = Parked(request, wait, timer)
        self.node.parked.add(self, wait.watch)
        return False

    def unpark(self) -> None:
        """Forget the parked request (answered, or its connection is gone) and free its slot."""
        parked = self.parked
        if parked is None:
            return
        self.parked = None
        parked.timer.cancel()
        self.node.parked.discard(self)
        self.owner.parking.release(self.key)

    def wake(self, expired: bool) -> None:
        """Call the flavor again for the parked request: its node's events changed, or
        (``expired``) its deadline came. An answer is written, and the requests pipelined
        behind it are served in this caller's turns; another Wait parks it again."""
        parked, transport = self.parked, self.transport
        if parked is None or transport is None or transport.is_closing():
            self.unpark()
            return
        request, wait = parked.request, parked.wait
        now = time.time()
        if expired:
            now = max(now, wait.deadline)  # the loop's timer may fire a hair early
        try:
            answer = wait.resume(self.node.events, now)
        except Exception as exc:
            answer = self._failed(request, exc)
        if isinstance(answer, Wait):
            if answer.deadline > now:
                parked.wait = answer
                self.node.parked.add(self, answer.watch)  # a no-op unless it watches other names
                if answer.deadline != wait.deadline:
                    parked.timer.cancel()
                    parked.timer = asyncio.get_running_loop().call_later(answer.deadline - now, self.wake, True)
                return
            answer = self._failed(request, RuntimeError("the flavor went on waiting past its deadline"))
        self.unpark()
        out: list[bytes] = []
        self._emit(request, answer, self.owner.clock.date(now), out)
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            # Deferred only when nothing else is written or set on the socket before the
            # burst: not a connection that closes, is parked again, or has socket options.
            pending = _deferred.pending
            if pending is not None and request.keep_alive and self.parked is None and not getattr(self, "options", ()):
                pending.append((transport, data))
            else:
                transport.write(data)
        if self.parked is not None:
            return  # parked again by its answer (a fault's dribble, netsim_imds.faultio)
        if not request.keep_alive:
            transport.close()
            return
        self._set_deadline(now, True)
        if self.parser.buffered:
            self.owner.ready(self)  # the requests pipelined behind it, in this caller's turn
        self._update_reading()
