"""One loop that runs the RFC 3927 claim of every VM.

Each VM gets one ``AF_PACKET``/``SOCK_RAW`` socket for ETH_P_ARP, opened *inside the
VM's namespace* (the calling thread enters it for the ``socket()`` call only, see
:func:`netsim.netns.socket_in`) and bound to its interface by name, which resolves in
that namespace. One ``selectors`` loop waits on all sockets and on the earliest
deadline of all machines (a heap): no thread per VM, no thread ever left inside a
VM's namespace. The machines decide; this module only moves frames, reads the clock and
sets addresses over rtnetlink.

Thread safety: :meth:`LinkLocalDriver.run` (or repeated :meth:`~LinkLocalDriver.step`)
runs in one thread; :meth:`~LinkLocalDriver.add`, :meth:`~LinkLocalDriver.remove`,
:meth:`~LinkLocalDriver.link_event` and :meth:`~LinkLocalDriver.status` may be called
from others: they take a lock and wake the loop.
"""

from __future__ import annotations

import errno
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

from netsim import netns, safety
from netsim.errors import NetsimError
from netsim.linklocal.arp import ETH_P_ARP, decode_frame, encode_frame
from netsim.linklocal.constants import RFC_TIMERS, Timers
from netsim.linklocal.errors import LinkLocalError
from netsim.linklocal.machine import Action, Bind, Claim, ClaimState, SendArp, Unbind
from netsim.rtnl import Rtnl

log = logging.getLogger("netsim.linklocal")

PACKET_OUTGOING = 4          # sll_pkttype of a frame this host sent (our own echo)
_SOL_PACKET = 263
_PACKET_IGNORE_OUTGOING = 23  # Linux >= 4.20: the kernel drops our own echo for us
_DRAIN_MAX = 256              # frames read from one socket per wake-up
_MAX_IDLE_WAIT = 0.2          # run() re-checks its stop event at least this often
_QUIET_ERRNOS = {errno.ENETDOWN, errno.ENXIO, errno.ENODEV, errno.ENOBUFS, errno.EAGAIN}

Listener = Callable[[str, Action], None]
"""Called as ``listener(vm_name, action)`` after a Bind or Unbind has been applied."""


class _Vm:
    """One VM's socket, machine and bookkeeping (internal)."""

    __slots__ = ("name", "ns", "ifname", "sock", "claim", "scheduled", "probes", "announcements",
                 "replies", "closed")

    def __init__(self, name: str, ns: str, ifname: str, sock: socket.socket, claim: Claim) -> None:
        self.name, self.ns, self.ifname, self.sock, self.claim = name, ns, ifname, sock, claim
        self.scheduled: float | None = None
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

        ``mac`` defaults to the interface's own MAC (read from the bound socket). Raises
        LinkLocalError if the name is taken or the interface cannot be opened, and
        RootNamespaceError if ``ns_name`` is not a netsim namespace.
        """
        with self._lock:
            if vm_name in self._vms:
                raise LinkLocalError(f"VM {vm_name!r} is already driven; remove() it first")
        safety.require_project_namespace(ns_name)
        sock = self._open(ns_name, ifname)
        try:
            hw_mac = sock.getsockname()[4]
            claim = Claim(mac if mac is not None else hw_mac, rng=self._rng, timers=self.timers,
                          reserved=self._reserved)
        except BaseException:
            sock.close()
            raise
        vm = _Vm(vm_name, ns_name, ifname, sock, claim)
        with self._lock:
            self._vms[vm_name] = vm
            self._selector.register(sock, selectors.EVENT_READ, vm)
            claim.start(self._clock())
            self._apply(vm)
        self._wake()

    @staticmethod
    def _open(ns_name: str, ifname: str) -> socket.socket:
        try:
            sock = netns.socket_in(ns_name, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        except OSError as e:
            hint = " (raise RLIMIT_NOFILE: one socket per VM)" if e.errno == errno.EMFILE else ""
            raise LinkLocalError(f"cannot open an ARP socket in namespace {ns_name!r}: {e.strerror}{hint}") from e
        try:
            sock.bind((ifname, ETH_P_ARP))
            sock.setblocking(False)
            try:
                sock.setsockopt(_SOL_PACKET, _PACKET_IGNORE_OUTGOING, 1)
            except OSError:
                pass  # older kernel: PACKET_OUTGOING frames are skipped in _drain instead
        except OSError as e:
            sock.close()
            raise LinkLocalError(f"cannot bind an ARP socket to {ifname!r} in namespace {ns_name!r}: "
                                 f"{e.strerror}; does the interface exist there?") from e
        return sock

    def remove(self, vm_name: str) -> None:
        """Stop the VM's claim, remove its address (if the namespace still exists) and close its socket."""
        with self._lock:
            vm = self._get(vm_name)
            if vm.claim.state is not ClaimState.STOPPED:
                vm.claim.stop(self._clock())
                self._apply(vm)
            self._close_vm(vm)
            del self._vms[vm_name]

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
        with self._lock:
            deadline = self._earliest()
        wait = timeout
        if deadline is not None:
            until = max(0.0, deadline - self._clock())
            wait = until if wait is None else min(wait, until)
        ready = self._selector.select(wait)
        handled = 0
        with self._lock:
            now = self._clock()
            for key, _ in ready:
                if key.data is None:
                    self._drain_wake()
                elif not key.data.closed:
                    handled += self._drain(key.data, now)
            handled += self._run_timers(now)
        return handled

    def _earliest(self) -> float | None:
        heap = self._heap
        while heap and heap[0][2].scheduled != heap[0][0]:
            heapq.heappop(heap)  # stale: that machine's deadline moved since
        return heap[0][0] if heap else None

    def _run_timers(self, now: float) -> int:
        count = 0
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, vm = heapq.heappop(heap)
            if vm.scheduled != deadline or vm.closed:
                continue
            vm.scheduled = None
            vm.claim.handle_timer(now)
            self._apply(vm)
            count += 1
        return count

    def _drain(self, vm: _Vm, now: float) -> int:
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
            vm.claim.handle_arp(pkt, now)
            self._apply(vm)
            count += 1
        return count

    # -- actions ------------------------------------------------------------------------

    def _apply(self, vm: _Vm) -> None:
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
        verb = "adding" if add else "removing"
        try:
            with Rtnl.in_namespace(vm.ns) as rt:
                index = rt.links().get(vm.ifname)
                if index is None:
                    raise LinkLocalError(f"no link {vm.ifname!r}")
                if add:
                    rt.add_address(index, address, 16, exist_ok=True)
                else:
                    rt.del_address(index, address, 16)
                rt.flush()
        except (NetsimError, OSError) as e:
            # A vanished namespace or link is the world changing under us, not a crash.
            self.counters["netlink_errors"] += 1
            log.warning("%s %s/16 on %s of %s (namespace %s): %s", verb, address, vm.ifname, vm.name, vm.ns, e)
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
        except BlockingIOError:
            pass

    def _drain_wake(self) -> None:
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _close_vm(self, vm: _Vm) -> None:
        vm.closed = True
        vm.scheduled = None
        try:
            self._selector.unregister(vm.sock)
        except (KeyError, ValueError):
            pass
        vm.sock.close()

    def close(self) -> None:
        """Close every socket without touching addresses (use remove() to release them)."""
        with self._lock:
            for vm in self._vms.values():
                self._close_vm(vm)
            self._vms.clear()
            self._heap.clear()
            self._selector.close()
            os.close(self._wake_fd)

    def __enter__(self) -> "LinkLocalDriver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._vms)
