"""The I/O of HTTP faults (:mod:`netsim_imds.faults`): a mixin of the connection.

:meth:`FaultedRequests._apply_fault` carries out an :class:`~netsim_imds.faults.Action`:
a delay or a hang parks the request like a flavor's :class:`~netsim_imds.flavors.Wait`
(a timer, no thread, within the parked-request bounds of :mod:`netsim_imds.fairness`; a
hang is released when its fault ends or is cleared: :meth:`MetadataServer.set_faults
<netsim_imds.driver.MetadataServer.set_faults>` wakes the parked requests); a reset
sends a TCP RST (SO_LINGER 0, then abort); a truncated answer sends its head and the
first N bytes of its body, then closes; a dribbled one sends its body a slice at a time
on the loop's timers, the connection parked meanwhile so that the requests pipelined
behind it wait their turn (HTTP/1.1 answers in order).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from netsim_imds.faults import Action, HANG_S
from netsim_imds.flavors import Answer, Wait
from netsim_imds.http import Request
from netsim_imds.identity import VmIdentity
from netsim_imds.response import Response, serialize

if TYPE_CHECKING:
    from netsim_imds.driver import MetadataServer, Node
    from netsim_imds.http import RequestParser
    from netsim_imds.parking import Parked

DRIBBLE_TICK_S = 0.05
"""How often a dribbled body gets its next slice (slices of rate x tick bytes, at least 1)."""


@dataclass(frozen=True)
class FaultedResponse(Response):
    """A real answer to be sent broken: ``truncate`` bytes of its body then a close, or
    its body at ``rate`` bytes/s."""

    truncate: int | None = None
    rate: float | None = None


class FaultedRequests:
    """Carry out the fault actions of a connection (mixed into Connection)."""

    node: Node
    owner: MetadataServer
    transport: asyncio.Transport | None
    parser: RequestParser
    parked: Parked | None

    # _park and unpark come from ParkedRequests (netsim_imds.parking), after this class in
    # Connection's bases: no stub of them here, or it would shadow them.
    if TYPE_CHECKING:
        def _park(self, request: Request, wait: Wait, now: float, date: str, out: list[bytes]) -> bool: ...

        def unpark(self) -> None: ...

    def _set_deadline(self, now: float, answered: bool) -> None:
        raise NotImplementedError

    def _update_reading(self, more: bool = False) -> None:
        raise NotImplementedError

    def _emit(self, request: Request, response: Response, date: str, out: list[bytes]) -> None:
        raise NotImplementedError

    def _apply_fault(self, request: Request, caller: VmIdentity | None, action: Action, now: float, date: str,
                     out: list[bytes]) -> bool:
        """Answer ``request`` as ``action`` says; False: it waits (parked) or the
        connection is closing, so nothing behind it is answered now."""
        if action.reset:
            self._reset(out)
            return False
        if action.hang:
            faults, fault_id, until = self.owner.faults, action.fault, action.until

            def hung(view, t: float) -> Answer:
                # Released when the fault ends or is cleared: then answered as if nothing happened.
                if t < until and faults.lasts(fault_id, t):
                    return wait
                return self._outcome(request, caller, Action(fault_id), view, t)
            wait = Wait(until, hung)
            return self._park(request, wait, now, date, out)
        if action.delay_s > 0:
            deadline = now + action.delay_s

            def delayed(view, t: float) -> Answer:
                return wait if t < deadline else self._outcome(request, caller, action, view, t)
            wait = Wait(deadline, delayed)
            return self._park(request, wait, now, date, out)
        answer = self._outcome(request, caller, action, self.node.events, now)
        if isinstance(answer, Wait):
            return self._park(request, answer, now, date, out)
        self._emit(request, answer, date, out)
        return self.parked is None and self.transport is not None and not self.transport.is_closing()

    def _outcome(self, request: Request, caller: VmIdentity | None, action: Action, view, now: float) -> Answer:
        """The answer after the delay: the fault's status, or the flavor's answer (broken
        if the action says so)."""
        if action.response is not None:
            return action.response
        answer = self.node.flavor.handle(request, caller, view, now)
        if isinstance(answer, Wait) or (action.truncate is None and action.rate is None):
            return answer
        return FaultedResponse(answer.status, answer.body, answer.content_type, answer.headers,
                               answer.socket_options, 0.0, action.truncate, action.rate)

    def _reset(self, out: list[bytes]) -> None:
        transport = self.transport
        assert transport is not None
        if out:
            transport.write(b"".join(out))
            out.clear()
        sock = transport.get_extra_info("socket")
        try:
            # SO_LINGER on, 0 seconds: close() sends RST instead of FIN (socket(7)).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except (OSError, AttributeError):
            pass  # closed anyway, with a FIN
        transport.abort()

    def _emit_faulted(self, request: Request, response: FaultedResponse, date: str, out: list[bytes]) -> None:
        """Write a truncated or dribbled answer (with what ``out`` holds before it)."""
        transport = self.transport
        assert transport is not None
        wire = serialize(response, keep_alive=request.keep_alive, date=date, head=request.method == "HEAD",
                         http10=request.http_version == "1.0")
        split = wire.index(b"\r\n\r\n") + 4
        head, body = wire[:split], wire[split:]
        if response.truncate is not None and response.truncate < len(body):
            transport.write(b"".join(out) + head + body[:response.truncate])
            out.clear()
            transport.close()  # the client holds a Content-Length it never gets
            return
        if response.rate is None or not body:
            out.append(wire)
            return
        rate = response.rate
        size = max(1, int(rate * DRIBBLE_TICK_S))
        now = time.time()
        # Parked for the dribble's length, so that nothing behind it is answered meanwhile
        # and the parked-request bounds hold; a change of the node's events keeps it parked.
        until = now + HANG_S

        def dribbling(view, t: float) -> Answer:
            return wait
        wait = Wait(until, dribbling)
        refused: list[bytes] = []
        if self._park(request, wait, now, date, refused):
            out.extend(refused)  # too many requests of this caller wait: its 429 instead
            return
        transport.write(b"".join(out) + head)
        out.clear()
        self._dribble_step(request, body, 0, size, size / rate)

    def _dribble_step(self, request: Request, body: bytes, sent: int, size: int, tick: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing() or self.parked is None:
            return  # the client went away (or the node was removed)
        transport.write(body[sent:sent + size])
        sent += size
        if sent < len(body):
            asyncio.get_running_loop().call_later(tick, self._dribble_step, request, body, sent, size, tick)
            return
        self.unpark()
        if not request.keep_alive:
            transport.close()
            return
        self._set_deadline(time.time(), True)
        if self.parser.buffered:
            self.owner.ready(self)  # type: ignore[arg-type]  # the requests pipelined behind it
        self._update_reading()
