"""One client connection of the metadata server (the asyncio protocol), bounded.

Bytes go to the sans-IO parser (:mod:`netsim_imds.http`), requests to the API
(:mod:`netsim_imds.api`); how much it is served at a time, and when it is read, follow the
fairness policy (:mod:`netsim_imds.fairness`) that :class:`~netsim_imds.driver.MetadataServer`
applies across connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from netsim_imds.fairness import BYTES_PER_UNIT
from netsim_imds.http import HttpError, LocalProtocolError, ProtocolError, Request, RequestParser
from netsim_imds.identity import VmIdentity
from netsim_imds.response import CONTINUE, error_response, protocol_error_response, serialize

if TYPE_CHECKING:
    from netsim_imds.driver import MetadataServer, Node


class Connection(asyncio.Protocol):
    """One client connection: feed bytes to the parser, answer its requests in one write.

    Bounded (issue 9): it is served at most a turn's budget of requests at a time; while
    it has requests left unanswered, or answers its client does not read, it is not read
    (the kernel's buffers push back on the client); the policy is :mod:`netsim_imds.fairness`.
    """

    def __init__(self, node: Node, owner: "MetadataServer") -> None:
        self.node, self.owner = node, owner
        self.parser = RequestParser()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.key: tuple[str, str] = (node.name, "")
        self.caller: VmIdentity | None = None
        self.resolved = False
        self.admitted = False
        self.deadline = 0.0
        self.reading_request = False
        self.accounted = 0  # bytes of the parser's buffer counted in owner.buffered
        self.write_paused = False
        self.memory_paused = False
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # No setsockopt here: asyncio's TCP transport already sets TCP_NODELAY (and the
        # listening socket has it too), which is what keeps one-write responses fast.
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        # Who is calling is known from the moment the connection exists (the node answered
        # the SYN, so it holds the peer's neighbour entry): resolve now, not on the first
        # request, so a burst of new clients is not answered behind each other's lookups.
        # Until the caller is known to be a VM, it is counted by its peer address.
        self.key = (self.node.name, "peer " + self.peer)
        self._identity()
        owner = self.owner
        if not owner.admission.admit(self.key):
            owner.log_for(self.key, logging.WARNING, "node %s: %s has %d connections open (limit %d, %d in all): "
                          "closing a new one", self.node.name, self.key[1], owner.admission.open_of(self.key),
                          owner.limits.connections_per_caller, owner.admission.open_total)
            transport.close()
            return
        self.admitted = True
        limits = owner.limits
        transport.set_write_buffer_limits(high=limits.write_buffer_high, low=limits.write_buffer_low)
        self.deadline = time.time() + owner.config.idle_timeout
        self.node.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.admitted:
            return
        self.admitted = False
        owner = self.owner
        self.node.connections.discard(self)
        owner.admission.release(self.key)
        owner.scheduler.discard(self.key, self)
        owner.memory_waiters.discard(self)
        owner.buffered -= self.accounted
        self.accounted = 0
        owner.release_memory()

    # -- backpressure: read only while nothing waits on this connection ---------------------

    def _update_reading(self, more: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        want = not (more or self.write_paused or self.memory_paused or self in self.owner.scheduler)
        if want != self.reading:
            self.reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def resume_for_memory(self) -> None:
        """The service's buffers are below their cap again: read this connection again."""
        self.memory_paused = False
        self._update_reading()

    def pause_writing(self) -> None:
        # Its answers are not read: stop reading and answering it until they are.
        self.write_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.parser.buffered:
            self.owner.ready(self)
        self._update_reading()

    def _identity(self) -> VmIdentity | None:
        # Resolved once per connection: the peer address cannot change under a TCP
        # connection, and the node already has the neighbour entry (it answered the SYN).
        if not self.resolved:
            self.resolved = True
            try:
                self.caller = self.node.resolve(self.peer)
            except Exception as exc:  # the callback's bug must not take the server down
                self.owner.log_for(self.key, logging.ERROR, "node %s: resolving peer %s failed: %s",
                                   self.node.name, self.peer, _one_line(exc))
                self.caller = None
            if self.caller is None:
                self.owner.log_for(self.key, logging.WARNING,
                                   "node %s: request from %s maps to no VM of this node: answering 403",
                                   self.node.name, self.peer)
            else:
                self.key = (self.node.name, self.caller.name)
        return self.caller

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or not self.admitted:
            return
        owner = self.owner
        try:
            self.parser.feed(data)
        except LocalProtocolError:  # fed after an error: the connection is being closed
            transport.close()
            return
        # All of it is kept: the parser drops bytes only once the peer asked to close, and
        # then the transport is closing and this returned above.
        owner.buffered += len(data)
        self.accounted += len(data)
        queued = owner.scheduler.queued
        if self.write_paused or self in queued:
            pass  # its turn will come; reading is already paused
        elif queued:
            owner.ready(self)  # others wait: take a turn like them
        else:
            # Nobody waits (the usual keep-alive case): answer now, within one turn's budget.
            _, more = self.serve(owner.limits.turn_budget)
            if more:
                owner.ready(self)
            elif self.reading and owner.buffered <= owner.limits.buffered_total:
                return  # the fast path: answered, nothing to pause
        if owner.buffered > owner.limits.buffered_total and self.transport is not None:
            self.memory_paused = True
            owner.memory_waiters.add(self)
        self._update_reading()

    def serve(self, quota: int) -> tuple[int, bool]:
        """Answer up to ``quota`` units of buffered requests: (units used, work left).

        A request costs one unit plus one per ``BYTES_PER_UNIT`` bytes of it
        (:func:`netsim_imds.fairness.request_cost`, counted here over the batch)."""
        transport = self.transport
        assert transport is not None  # callers check (take_turn, data_received)
        parser = self.parser
        out: list[bytes] = []
        close = more = False
        count = used = 0
        now = time.time()  # one clock read per batch: the API's "now", Date and deadlines
        date = self.owner.clock.date(now)
        start = parser.buffered
        try:
            while (request := parser.next_request()) is not None:
                count += 1
                out.append(self._answer(request, now, date))
                if not request.keep_alive:
                    close = True
                    break
                if not parser.in_progress:
                    break
                used = count + (start - parser.buffered) // BYTES_PER_UNIT
                if used >= quota:
                    more = True  # the rest waits for this caller's next turn, unparsed
                    break
        except ProtocolError as exc:
            out.append(serialize(protocol_error_response(exc), keep_alive=False, date=date))
            close = True
        except Exception as exc:  # a bug of ours: one line in the log, a clean close
            self.owner.log_for(self.key, logging.ERROR, "node %s: %s: parser failed: %s",
                               self.node.name, self.key[1], _one_line(exc))
            out.append(serialize(error_response(500, "Internal server error"), keep_alive=False, date=date))
            close = True
        left = parser.buffered
        used = max(1, count + (start - left) // BYTES_PER_UNIT)
        if not close and not more and parser.take_continue():
            out.append(CONTINUE)
        if out:
            # Pipelined requests are answered together: still one write.
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if left != self.accounted:
            self.owner.buffered += left - self.accounted
            self.accounted = left
        if close:
            transport.close()
            return used, False
        # Timeouts: a started request must complete within header_timeout of its first
        # byte (slowloris); an idle connection lives for idle_timeout.
        if parser.in_progress:
            if out or not self.reading_request:  # a (new) request started
                self.reading_request = True
                self.deadline = now + self.owner.config.header_timeout
        elif out:
            self.reading_request = False
            self.deadline = now + self.owner.config.idle_timeout
        return used, more

    def take_turn(self, quota: int) -> tuple[int, bool]:
        """:meth:`serve` as the scheduler calls it; a connection with requests left stays unread."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.write_paused:
            return 0, False
        used, more = self.serve(quota)
        self._update_reading(more)
        return used, more

    def _answer(self, request: Request, now: float, date: str) -> bytes:
        try:
            response = self.node.api.handle(request, self._identity(), self.node.events, now)
            return serialize(response, keep_alive=request.keep_alive, date=date,
                             head=request.method == "HEAD", http10=request.http_version == "1.0")
        except HttpError as exc:
            self.owner.log_for(self.key, logging.ERROR, "node %s: cannot answer %.80r from %s: %s",
                               self.node.name, request.target, self.key[1], _one_line(exc))
            return serialize(protocol_error_response(exc), keep_alive=request.keep_alive, date=date)
        except Exception as exc:
            self.owner.log_for(self.key, logging.ERROR, "node %s: error answering %s %.80r from %s: %s",
                               self.node.name, request.method, request.target, self.key[1], _one_line(exc))
            return serialize(error_response(500, "Internal server error"), keep_alive=request.keep_alive,
                             date=date)

    def expire(self, now: float) -> None:
        """Drop the connection if its deadline passed (408 if a request was in progress)."""
        if self.transport is None or now < self.deadline:
            return
        if self.reading_request:
            self.owner.log_for(self.key, logging.INFO, "node %s: %s too slow to send its request: dropped",
                               self.node.name, self.peer)
            response = error_response(408, "Request timeout")
            self.transport.write(serialize(response, keep_alive=False,
                                           date=self.owner.clock.date(time.time())))
        self.transport.close()


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (no traceback: the log's size is not the peer's to choose)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__
