"""One loop that runs the RFC 3927 claim of every VM.

Each VM gets one ``AF_PACKET``/``SOCK_RAW`` socket for ETH_P_ARP, opened *inside the
VM's namespace* and bound to its interface there (see :mod:`netsim.linklocal.linkio`).
One ``selectors`` loop waits on all sockets and on the earliest deadline of all
machines (a heap): no thread per VM, and no thread ever left inside a VM's namespace.
The machines decide; this module only moves frames, reads the clock and sets addresses.

Thread safety: :meth:`LinkLocalDriver.run` (or repeated :meth:`~LinkLocalDriver.step`)
runs in one thread; :meth:`~LinkLocalDriver.add`, :meth:`~LinkLocalDriver.remove`,
:meth:`~LinkLocalDriver.link_event` and the queries may be called from others: they
take a lock and wake the loop.
"""

from __future__ import annotations

import errno
import gc
import heapq
import itertools
import logging
import os
import random
import selectors
import socket
import threading
import time
from collections.abc import Callable

from netsim.kernel import safety
from netsim.errors import NetsimError
from netsim.linklocal import linkio
from netsim.linklocal.arp import decode_frame, encode_frame
from netsim.linklocal.constants import RFC_TIMERS, Timers
from netsim.linklocal.errors import LinkLocalError
from netsim.linklocal.machine import Action, Bind, Claim, ClaimState, SendArp, Unbind

log = logging.getLogger("netsim.linklocal")

PACKET_OUTGOING = 4   # sll_pkttype of a frame this host sent (our own echo)
_DRAIN_MAX = 256      # frames read from one socket per wake-up
_MAX_IDLE_WAIT = 0.2  # run() re-checks its stop event at least this often
_QUIET_ERRNOS = {errno.ENETDOWN, errno.ENXIO, errno.ENODEV, errno.ENOBUFS, errno.EAGAIN}  # a lost frame

Listener = Callable[[str, Action], None]
"""Called as ``listener(vm_name, action)`` after a Bind or Unbind has been applied."""


class _Vm:
    """One VM's socket, machine and bookkeeping (internal)."""

    __slots__ = ("name", "ns", "ifname", "ifindex", "sock", "claim", "scheduled", "filtered", "probes",
                 "announcements", "replies", "closed")

    def __init__(self, name: str, ns: str, ifname: str, sock: socket.socket, claim: Claim) -> None:
        self.name, self.ns, self.ifname, self.sock, self.claim = name, ns, ifname, sock, claim
        self.ifindex = linkio.interface_index(sock, ifname)  # None: looked up at the next Bind
        self.scheduled: float | None = None
        self.filtered: str | None = None  # the address the socket's BPF filter lets through
        self.probes = self.announcements = self.replies = 0
        self.closed = False


class LinkLocalDriver:
    """Run the claims of many VMs from one thread over raw ARP sockets in their namespaces.

    ``timers`` applies to every VM (RFC values by default); ``clock`` is a monotonic
    clock in seconds; ``rng`` gives the timing jitter of all machines; ``reserved``
    addresses are never chosen; ``listener`` hears every applied Bind/Unbind.
    """

    def __init__(self, *, timers: Timers = RFC_TIMERS, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None, reserved: frozenset[str] = frozenset(),
                 listener: Listener | None = None) -> None:
        self.timers = timers
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._reserved = frozenset(reserved)
        self._listener = listener
        self._vms: dict[str, _Vm] = {}
        self._heap: list[tuple[float, int, _Vm]] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()
        self._selector = selectors.DefaultSelector()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._selector.register(self._wake_fd, selectors.EVENT_READ, None)
        self.counters = {"frames_in": 0, "frames_out": 0, "binds": 0, "unbinds": 0,
                         "send_errors": 0, "netlink_errors": 0}
        """Totals since creation: frames read and sent, addresses set and removed, errors."""

    # -- membership ---------------------------------------------------------------------

    def add(self, vm_name: str, ns_name: str, ifname: str = "eth0", mac: bytes | str | None = None) -> None:
        """Start claiming an address for ``ifname`` of the VM living in namespace ``ns_name``.

        ``mac`` defaults to the interface's own MAC. Raises LinkLocalError if the name is
        taken or the interface cannot be opened, and RootNamespaceError if ``ns_name``
        is not a netsim namespace (no traffic ever starts in the host's namespace).
        """
        self._check_open()
        with self._lock:
            if vm_name in self._vms:
                raise LinkLocalError(f"VM {vm_name!r} is already driven; remove() it first")
        safety.require_project_namespace(ns_name)
        sock = linkio.open_arp_socket(ns_name, ifname)
        vm = None
        try:
            claim = Claim(mac if mac is not None else linkio.socket_mac(sock), rng=self._rng,
                          timers=self.timers, reserved=self._reserved)
            vm = _Vm(vm_name, ns_name, ifname, sock, claim)
            with self._lock:
                if vm_name in self._vms:  # added meanwhile from another thread
                    raise LinkLocalError(f"VM {vm_name!r} is already driven; remove() it first")
                self._vms[vm_name] = vm
                self._selector.register(sock, selectors.EVENT_READ, vm)
                claim.start(self._clock())
                self._apply(vm)
        except BaseException:
            if vm is None or self._vms.get(vm_name) is not vm:
                sock.close()
            raise
        self._wake()

    def remove(self, *vm_names: str) -> None:
        """Stop the VMs' claims, remove their addresses (if the namespaces still exist) and
        close their sockets. Several names at once close faster (see :meth:`close`)."""
        with self._lock:
            vms = [self._get(name) for name in vm_names]
            now = self._clock()
            for vm in vms:
                if vm.claim.state is not ClaimState.STOPPED:
                    vm.claim.stop(now)
                    self._apply(vm)
                self._detach(vm)
                del self._vms[vm.name]
        linkio.close_sockets([vm.sock for vm in vms])

    def link_event(self, vm_name: str, up: bool) -> None:
        """Tell the VM's claim its link went down (``up=False``) or came up (re-claims).

        An "up" for a claim that never saw the "down" re-claims all the same.
        """
        with self._lock:
            vm = self._get(vm_name)
            now = self._clock()
            if vm.claim.state is not ClaimState.LINK_DOWN:
                vm.claim.link_down(now)
            if up:
                vm.claim.link_up(now)
            self._apply(vm)
        self._wake()

    # -- queries ------------------------------------------------------------------------

    def status(self) -> dict[str, tuple[ClaimState, str | None]]:
        """``{vm_name: (state, bound address or None)}`` for every VM."""
        with self._lock:
            return {name: (vm.claim.state, vm.claim.address) for name, vm in self._vms.items()}

    def sent(self) -> dict[str, tuple[int, int, int]]:
        """``{vm_name: (probes, announcements, replies)}`` sent so far, defences included."""
        with self._lock:
            return {name: (vm.probes, vm.announcements, vm.replies) for name, vm in self._vms.items()}

    def conflicts(self) -> dict[str, int]:
        """``{vm_name: conflicts since its last bind}``."""
        with self._lock:
            return {name: vm.claim.conflicts for name, vm in self._vms.items()}

    def next_deadline(self) -> float | None:
        """The earliest deadline of all machines on the driver's clock, or None."""
        with self._lock:
            return self._earliest()

    def _get(self, vm_name: str) -> _Vm:
        try:
            return self._vms[vm_name]
        except KeyError:
            raise LinkLocalError(f"VM {vm_name!r} is not driven here; add() it first") from None

    # -- the loop -----------------------------------------------------------------------

    def run(self, stop_event: threading.Event) -> None:
        """Serve every VM until ``stop_event`` is set (checked at least every 0.2 s)."""
        while not stop_event.is_set():
            self.step(_MAX_IDLE_WAIT)

    def step(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds (None: until something happens) for frames or the
        next deadline, then handle what is due. Returns the number of inputs handled."""
        self._check_open()
        with self._lock:
            deadline = self._earliest()
        wait = timeout
        if deadline is not None:
            until = max(0.0, deadline - self._clock())
            wait = until if wait is None else min(wait, until)
        ready = self._selector.select(wait)
        handled = 0
        with self._lock:
            for key, _ in ready:
                if key.data is None:
                    self._drain_wake()
                elif not key.data.closed:
                    handled += self._drain(key.data)
            handled += self._run_timers()
        return handled

    def _earliest(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].scheduled != heap[0][0]:
            heapq.heappop(heap)  # stale: that machine's deadline moved since
        return heap[0][0] if heap else None

    # The clock is read afresh for every input: a machine computes its next deadline
    # from the `now` it is given, so a stale `now` (read before a long burst) would
    # shorten the gap between two probes below PROBE_MIN. For the same reason the
    # cyclic GC is held off between reading the clock and sending: a 40 ms gen-2
    # collection there cut a probe gap short in the 1,000-VM bench. Deferred, it runs
    # at the next allocation after the send, before the next clock read.

    def _run_timers(self) -> int:
        count = 0
        heap, clock = self._heap, self._clock
        gc_on = gc.isenabled()
        while heap and heap[0][0] <= clock():
            deadline, _, vm = heapq.heappop(heap)
            if vm.scheduled != deadline or vm.closed:
                continue
            vm.scheduled = None
            if gc_on:
                gc.disable()
            try:
                vm.claim.handle_timer(clock())
                self._apply(vm)
            finally:
                if gc_on:
                    gc.enable()
            count += 1
        return count

    def _drain(self, vm: _Vm) -> int:
        count = 0
        for _ in range(_DRAIN_MAX):
            try:
                data, addr = vm.sock.recvfrom(2048)
            except BlockingIOError:
                break
            except OSError as e:  # ENETDOWN once after the link went down, and the like
                log.debug("reading ARP for %s: %s", vm.name, e)
                break
            self.counters["frames_in"] += 1
            if addr[2] == PACKET_OUTGOING:
                continue  # our own transmission, looped back to the socket
            pkt = decode_frame(data)
            if pkt is None:
                continue
            vm.claim.handle_arp(pkt, self._clock())
            self._apply(vm)
            count += 1
        return count

    # -- actions ------------------------------------------------------------------------

    def _apply(self, vm: _Vm) -> None:
        candidate = vm.claim.candidate
        if candidate != vm.filtered and candidate is not None and not vm.closed:
            # Before anything is sent for a new candidate, let the kernel pass only the
            # frames that name it (see linkio.attach_filter).
            try:
                linkio.attach_filter(vm.sock, candidate)
                vm.filtered = candidate
            except OSError as e:  # no filter: every ARP frame comes up, which is only slower
                log.warning("ARP filter for %s: %s", vm.name, e)
        for action in vm.claim.pop_actions():
            if isinstance(action, SendArp):
                self._send(vm, action)
            elif isinstance(action, Bind):
                self._set_address(vm, action.address, add=True)
                self._notify(vm, action)
            elif isinstance(action, Unbind):
                self._set_address(vm, action.address, add=False)
                self._notify(vm, action)
        deadline = vm.claim.next_deadline()
        if deadline != vm.scheduled:
            vm.scheduled = deadline
            if deadline is not None:
                heapq.heappush(self._heap, (deadline, next(self._seq), vm))

    def _send(self, vm: _Vm, action: SendArp) -> None:
        pkt = action.packet
        try:
            vm.sock.send(encode_frame(pkt))
        except OSError as e:  # the world misbehaving (link down, device gone): a lost frame
            self.counters["send_errors"] += 1
            if e.errno not in _QUIET_ERRNOS:
                log.warning("sending ARP for %s in %s: %s", vm.name, vm.ns, e)
            return
        self.counters["frames_out"] += 1
        if pkt.is_probe:
            vm.probes += 1
        elif pkt.is_announcement:
            vm.announcements += 1
        else:
            vm.replies += 1

    def _set_address(self, vm: _Vm, address: str, *, add: bool) -> None:
        try:
            vm.ifindex = linkio.set_address(vm.ns, vm.ifname, vm.ifindex, address, add=add)
        except (NetsimError, OSError) as e:
            # A vanished namespace or link is the world changing under us, not a crash.
            self.counters["netlink_errors"] += 1
            log.warning("%s %s/16 on %s of %s (namespace %s): %s", "adding" if add else "removing",
                        address, vm.ifname, vm.name, vm.ns, e)
            return
        self.counters["binds" if add else "unbinds"] += 1
        log.info("%s: %s %s/16 on %s", vm.name, "bound" if add else "released", address, vm.ifname)

    def _notify(self, vm: _Vm, action: Action) -> None:
        if self._listener is not None:
            try:
                self._listener(vm.name, action)
            except Exception:  # a listener's bug must not stop every VM's claim
                log.exception("link-local listener failed on %s for %s", action, vm.name)

    # -- plumbing -----------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.eventfd_write(self._wake_fd, 1)
        except (BlockingIOError, OSError):
            pass  # already pending, or closed meanwhile

    def _drain_wake(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _check_open(self) -> None:
        if self._wake_fd < 0:
            raise LinkLocalError("this LinkLocalDriver is closed; create a new one")

    def _detach(self, vm: _Vm) -> None:
        vm.closed = True
        vm.scheduled = None
        try:
            self._selector.unregister(vm.sock)
        except (KeyError, ValueError):
            pass

    def close(self) -> None:
        """Close every socket without touching addresses (use remove() to release them).

        Idempotent. Closing a packet socket waits ~12 ms in the kernel, so they are
        closed from a small thread pool (see :func:`netsim.linklocal.linkio.close_sockets`).
        """
        with self._lock:
            if self._wake_fd < 0:
                return
            vms = list(self._vms.values())
            for vm in vms:
                self._detach(vm)
            self._vms.clear()
            self._heap.clear()
            self._selector.close()
            os.close(self._wake_fd)
            self._wake_fd = -1
        linkio.close_sockets([vm.sock for vm in vms])

    def __enter__(self) -> "LinkLocalDriver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._vms)
