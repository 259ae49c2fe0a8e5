"""One client connection of the metadata server (the asyncio protocol), bounded.

Bytes go to the sans-IO parser (:mod:`netsim_imds.http`), requests to the node's flavor
(:mod:`netsim_imds.flavors`); how much it is served at a time, and when it is read, follow the
fairness policy (:mod:`netsim_imds.fairness`) that :class:`~netsim_imds.driver.MetadataServer`
applies across connections.

A flavor may answer a :class:`~netsim_imds.flavors.Wait`: the request is *parked* (a timer
on the loop, no thread) and the requests pipelined behind it wait with it, since HTTP/1.1
answers in order. A parked connection is still read, so that a client that goes away
frees its slot at once (its request is dropped), up to :data:`PARKED_READ_LIMIT` bytes.
A response's socket options are applied by :mod:`netsim_imds.sockopts`. A request that
arrives alone on an idle connection may be answered from :mod:`netsim_imds.answers`
(the same bytes, the same caller, the node's events unchanged) without the parser or
the flavor.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, cast

from netsim_imds import sockopts
from netsim_imds.fairness import BYTES_PER_UNIT
from netsim_imds.faultio import FaultedRequests, FaultedResponse
from netsim_imds.flavors import Wait
from netsim_imds.http import HttpError, LocalProtocolError, ProtocolError, Request, RequestParser, State
from netsim_imds.identity import VmIdentity
from netsim_imds.parking import Parked, ParkedRequests
from netsim_imds.response import CONTINUE, Response, error_response, protocol_error_response, serialize

if TYPE_CHECKING:
    from netsim_imds.driver import MetadataServer, Node

PARKED_READ_LIMIT = 64 * 1024
"""Bytes a parked connection may pipeline behind its waiting request before it is not read."""

class Connection(FaultedRequests, ParkedRequests, asyncio.Protocol):
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
        self.parked: Parked | None = None
        self.options: sockopts.Applied | None = None  # socket options a response set (empty or None: none)
        self.chunk: bytes | None = None  # bytes received alone on an idle connection, being answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's TCPTransport is no asyncio.Transport.
        self.transport = transport = cast(asyncio.Transport, transport)
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
        if self.options is not None:
            self.options.close()
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
        if self.parked is not None:
            self.unpark()  # its client went away: drop the request, free the slot
        owner.release_memory()

    # -- backpressure: read only while nothing waits on this connection ---------------------

    def _update_reading(self, more: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        want = not (more or self.write_paused or self.memory_paused or self in self.owner.scheduler
                    or (self.parked is not None and self.parser.buffered > PARKED_READ_LIMIT))
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
        # Once known, the caller stands for the connection's life: the peer address cannot
        # change under a TCP connection. While it is unknown (the lookup found no VM), it is
        # looked up again on each request, so that a keep-alive connection whose first
        # lookup failed transiently is not answered 403 for its whole life (the resolver
        # never caches a refusal). The fairness key stays the one the connection was
        # admitted under ("peer ADDRESS"): its counters are released under it.
        caller = self.caller
        if caller is not None:
            return caller
        try:
            caller = self.caller = self.node.resolve(self.peer)
        except Exception as exc:  # the callback's bug must not take the server down
            self.owner.log_for(self.key, logging.ERROR, "node %s: resolving peer %s failed: %s",
                               self.node.name, self.peer, _one_line(exc))
            caller = None
        first, self.resolved = not self.resolved, True
        if caller is None:
            if first:  # once per connection: its later requests would only repeat it
                self.owner.log_for(self.key, logging.WARNING,
                                   "node %s: request from %s maps to no VM of this node: answering 403",
                                   self.node.name, self.peer)
        elif first:
            self.key = (self.node.name, caller.name)
        return caller

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or not self.admitted:
            return
        owner = self.owner
        parser = self.parser
        queued = owner.scheduler.queued
        # A request alone on an idle connection, nobody waiting: maybe answered before
        # (netsim_imds.answers). Anything else (a pipelined batch, a partial request,
        # a paused or parked connection, socket options) takes the parser's path.
        if (self.node.keeps_answers and self.caller is not None and not parser.buffered
                and parser.state is State.HEAD and not queued and self.reading and not self.write_paused
                and self.parked is None and not self.options
                and not owner.faults.faults):  # a fault may apply to these bytes (netsim_imds.faults)
            now = time.time()
            hit = self.node.answers.get(self.caller, data, self.node.events.document_incarnation, now,
                                        owner.clock.date(now))
            if hit is not None:
                transport.write(hit[0])
                if hit[1]:
                    self._set_deadline(now, True)
                else:
                    transport.close()
                return
            self.chunk = data  # the answer to these bytes may be kept (see _answer)
        try:
            parser.feed(data)
        except LocalProtocolError:  # fed after an error: the connection is being closed
            transport.close()
            return
        # All of it is kept: the parser drops bytes only once the peer asked to close, and
        # then the transport is closing and this returned above.
        owner.buffered += len(data)
        self.accounted += len(data)
        if self.write_paused or self in queued or self.parked is not None:
            pass  # its turn will come (or its waiting request's answer); reading is paused if need be
        elif queued:
            owner.ready(self)  # others wait: take a turn like them
        else:
            # Nobody waits (the usual keep-alive case): answer now, within one turn's budget.
            _, more = self.serve(owner.limits.turn_budget)
            self.chunk = None
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
                if not self._answer(request, now, date, out):
                    break  # parked: the requests behind it wait for its answer
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
        if transport.is_closing():
            close = True  # a fault reset or truncated it (netsim_imds.faultio)
        if left != self.accounted:
            self.owner.buffered += left - self.accounted
            self.accounted = left
        if close:
            transport.close()
            return used, False
        if self.parked is not None:
            return used, False  # its deadline is the wait's (expire() leaves it alone)
        self._set_deadline(now, bool(out))
        return used, more

    def _set_deadline(self, now: float, answered: bool) -> None:
        # Timeouts: a started request must complete within header_timeout of its first
        # byte (slowloris); an idle connection lives for idle_timeout.
        if self.parser.in_progress:
            if answered or not self.reading_request:  # a (new) request started
                self.reading_request = True
                self.deadline = now + self.owner.config.header_timeout
        elif answered:
            self.reading_request = False
            self.deadline = now + self.owner.config.idle_timeout

    def take_turn(self, quota: int) -> tuple[int, bool]:
        """:meth:`serve` as the scheduler calls it; a connection with requests left stays unread."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.write_paused or self.parked is not None:
            return 0, False
        used, more = self.serve(quota)
        self._update_reading(more)
        return used, more

    def _answer(self, request: Request, now: float, date: str, out: list[bytes]) -> bool:
        """Append the answer to ``request`` to ``out``; False: the request is parked."""
        try:
            node, chunk, caller = self.node, self.chunk, self._identity()
            faults = self.owner.faults
            if faults.faults:  # the one check the fault layer costs when no fault exists
                action = faults.decide(node.name, caller.name if caller is not None else None, request.path, now)
                if action is not None:
                    return self._apply_fault(request, caller, action, now, date, out)
            # Read before the flavor runs: a change meanwhile must not be cached as seen.
            incarnation = node.events.document_incarnation if chunk is not None else 0
            response = node.flavor.handle(request, caller, node.events, now)
            if response.__class__ is Response and not response.socket_options and not self.options:
                # The usual answer: no wait, no socket option (the keep-alive fast path).
                wire = serialize(response, keep_alive=request.keep_alive, date=date,
                                 head=request.method == "HEAD", http10=request.http_version == "1.0")
                out.append(wire)
                if (chunk is not None and response.cache_until > now and caller is not None
                        and not self.parser.in_progress):  # the request was all of the chunk
                    node.answers.put(caller, chunk, incarnation, request, response, date, wire)
                return True
        except Exception as exc:
            response = self._failed(request, exc)
        if isinstance(response, Wait):
            return self._park(request, response, now, date, out)
        self._emit(request, response, date, out)
        return True

    def _failed(self, request: Request, exc: Exception) -> Response:
        if isinstance(exc, HttpError):
            self.owner.log_for(self.key, logging.ERROR, "node %s: cannot answer %.80r from %s: %s",
                               self.node.name, request.target, self.key[1], _one_line(exc))
            return protocol_error_response(exc)
        self.owner.log_for(self.key, logging.ERROR, "node %s: error answering %s %.80r from %s: %s",
                           self.node.name, request.method, request.target, self.key[1], _one_line(exc))
        return error_response(500, "Internal server error")

    def _emit(self, request: Request, response: Response, date: str, out: list[bytes]) -> None:
        if response.__class__ is FaultedResponse:
            self._emit_faulted(request, cast(FaultedResponse, response), date, out)
            return
        if response.socket_options or self.options:
            self._socket_options(response, out)
        try:
            out.append(serialize(response, keep_alive=request.keep_alive, date=date,
                                 head=request.method == "HEAD", http10=request.http_version == "1.0"))
        except HttpError as exc:  # the flavor built an impossible response (a bug of ours)
            out.append(serialize(self._failed(request, exc), keep_alive=request.keep_alive, date=date))

    def _socket_options(self, response: Response, out: list[bytes]) -> None:
        """Set the options ``response`` carries before its bytes are written (the answers
        before it go out first, with the options they had); see :mod:`netsim_imds.sockopts`
        for when the connection's own values come back."""
        transport = self.transport
        assert transport is not None
        if response.socket_options:
            if out:
                transport.write(b"".join(out))
                out.clear()
            self.options = sockopts.apply(transport, response.socket_options, self.options)
        elif self.options and not out:
            sockopts.restore_if_sent(transport, self.options)  # emptied if it did: nothing to restore

    def expire(self, now: float) -> None:
        """Drop the connection if its deadline passed (408 if a request was in progress);
        a parked request's deadline is its wait's."""
        if self.transport is None or now < self.deadline or self.parked is not None:
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
