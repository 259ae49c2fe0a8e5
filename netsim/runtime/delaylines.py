"""The daemon's delay lines (issue 13): link faults netem would make, on a kernel without it.

:class:`DelayLines` keeps one :class:`netsim.kernel.delayline.Tap` per node with a shaped
VM port (the frames toward its VMs, redirected to netsim) and one
:class:`netsim.runtime.linkemu.DelayModel` per port (when each frame goes), found by the
VM's MAC. One thread of its own serves them all: it waits on every tap and on the next
frame due, reads what arrived, writes what is due. Not on the daemon's asyncio loop: the metadata service's answers are what the lines
delay, and a loop busy answering would add its own latency to every frame.

Changes (:meth:`set`, :meth:`remove`) come from the daemon's thread and are in force when
they return (the redirect is in the kernel or gone); the serving thread only closes the
sockets of the lines taken away, so it never waits on a socket closed under it.
"""

from __future__ import annotations

import logging
import os
import random
import selectors
import threading
import time
from dataclasses import dataclass

from netsim.kernel.delayline import Tap, corrupt_vnet, destination
from netsim.kernel.qdisc import NETEM_LIMIT, Shape
from netsim.runtime.linkemu import Counters, DelayModel, Impairment, corrupt

log = logging.getLogger("netsim.runtime.delaylines")


def impairment_of(shape: Shape) -> Impairment:
    """What a line does for the qdisc ``shape`` a link fault asks for."""
    return Impairment(latency_s=shape.latency_ms / 1000, jitter_s=shape.jitter_ms / 1000, duplicate=shape.duplicate,
                      reorder=shape.reorder, corrupt=shape.corrupt, rate=shape.rate, limit=NETEM_LIMIT)


def _corrupt_frame(frame: bytes, rng: random.Random) -> bytes | None:
    return corrupt_vnet(frame, rng, corrupt)


@dataclass
class _Line:
    vm: str
    port_index: int
    port: str
    model: DelayModel


@dataclass
class _Node:
    tap: Tap
    lines: dict[bytes, _Line]  # by the VM's MAC


Port = tuple[str, int, str, str, Shape]
"""A line to make: (VM, its port's index, the port's name, the VM's MAC, the shape)."""


class DelayLines:
    """The lines of one daemon, one tap per node namespace; ``seed`` makes their draws repeatable."""

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = random.Random(seed)
        self._nodes: dict[str, _Node] = {}  # by namespace
        self._where: dict[str, tuple[str, bytes]] = {}  # VM -> (namespace, MAC)
        self._retired: list[Tap] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = False
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0
        """CPU time the serving thread used (seconds)."""

    def __contains__(self, vm: str) -> bool:
        return vm in self._where

    def set(self, namespace: str, ports: list[Port]) -> None:
        """Make these ports of ``namespace`` lines doing their shapes (one batch in the kernel)."""
        moved = [vm for vm, *_ in ports if vm in self._where and self._where[vm][0] != namespace]
        self.remove(moved)  # to another node: the old node's line goes
        with self._lock:
            node = self._nodes.get(namespace)
        if node is None:
            node = _Node(Tap(namespace), {})
            with self._lock:
                self._nodes[namespace] = node
        new = []
        with self._lock:
            for vm, index, port, mac, shape in ports:
                key = bytes.fromhex(mac.replace(":", ""))
                line = node.lines.get(key)
                if line is not None:
                    line.model.impairment = impairment_of(shape)  # frames held keep their time
                    continue
                model = DelayModel(impairment_of(shape), random.Random(self._rng.getrandbits(64)))
                node.lines[key] = _Line(vm, index, port, model)
                self._where[vm] = (namespace, key)
                new.append((index, port, key))
        node.tap.plug(new)
        self._start()
        self._wake()

    def remove(self, vms: list[str]) -> None:
        """These VMs' ports forward straight to the VMs again (a VM without a line: nothing
        to do); a node left without a line loses its tap."""
        by_node: dict[str, list[_Line]] = {}
        with self._lock:
            for vm in vms:
                if vm in self._where:
                    namespace, key = self._where.pop(vm)
                    by_node.setdefault(namespace, []).append(self._nodes[namespace].lines.pop(key))
            emptied = [ns for ns in by_node if not self._nodes[ns].lines]
            taps = {ns: self._nodes[ns].tap for ns in by_node}
            for ns in emptied:
                del self._nodes[ns]
        for ns, lines in by_node.items():
            taps[ns].unplug([(line.port_index, line.port) for line in lines], tap_too=ns in emptied)
        with self._lock:
            self._retired += [taps[ns] for ns in emptied]
        if emptied:
            self._wake()

    def counters(self) -> dict[str, Counters]:
        """What each line did, by VM."""
        with self._lock:
            return {line.vm: line.model.counters for node in self._nodes.values() for line in node.lines.values()}

    def close(self) -> None:
        """Take every line away (the ports forward straight again) and stop the thread."""
        if self._stop:
            return
        self.remove(list(self._where))
        self._stop = True
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._close_retired(None)
        os.close(self._wake_r)
        os.close(self._wake_w)

    # -- the serving thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="delay-lines", daemon=True)
                self._thread.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except BlockingIOError:
            pass  # a wake is pending already

    def _close_retired(self, sel: selectors.BaseSelector | None) -> None:
        with self._lock:
            retired, self._retired = self._retired, []
        for tap in retired:
            if sel is not None and tap.rx.fileno() in sel.get_map():
                sel.unregister(tap.rx)
            tap.close()

    def _serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ)
        clock = time.monotonic
        try:
            while not self._stop:
                self._close_retired(sel)
                with self._lock:
                    nodes = list(self._nodes.values())
                    lines = [line for node in nodes for line in node.lines.values()]
                for node in nodes:
                    if node.tap.rx.fileno() not in sel.get_map():
                        sel.register(node.tap.rx, selectors.EVENT_READ, node)
                moments = [t for t in (line.model.next_at() for line in lines) if t is not None]
                timeout = None if not moments else max(0.0, min(moments) - clock())
                for key, _ in sel.select(timeout):
                    if key.data is None:
                        self._drain_wake()
                        continue
                    node = key.data
                    now = clock()
                    for frame in node.tap.read():
                        line = node.lines.get(destination(frame))
                        if line is not None:  # else its line was just removed
                            line.model.push(frame, now, corrupter=_corrupt_frame)
                now = clock()
                for node in nodes:
                    for line in list(node.lines.values()):
                        for frame in line.model.due(now):
                            node.tap.write(frame, line.port)
                self.cpu_s = time.thread_time()
        except Exception:  # the world misbehaving must not end the daemon: log it
            log.exception("the delay lines stopped")
        finally:
            sel.close()

    def _drain_wake(self) -> None:
        while True:
            try:
                if not os.read(self._wake_r, 512):
                    return
            except BlockingIOError:
                return
