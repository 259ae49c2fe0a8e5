"""The I/O of the metadata server: one asyncio process serving many node namespaces.

Design from ``shared/reference/measured-anchors.md`` section 2: a plain
``asyncio.Protocol`` (no streams), TCP_NODELAY, a big listen backlog and every
response (or every batch of pipelined responses) in ONE ``write``. The protocol logic
lives in :mod:`netsim_imds.http` and the node's flavor (:mod:`netsim_imds.flavors`), the
fairness policy in :mod:`netsim_imds.fairness`; this module and :mod:`netsim_imds.connection`
only move bytes, read the clock, enforce timeouts, park and wake waiting requests and apply
the policy.

For each node, :meth:`MetadataServer.add_node` has the caller's socket factory open the
listening socket *inside* the node's namespace (netsim hands ``netns.socket_in``: this
package imports nothing from netsim), bound to 169.254.169.254:80, so one process serves
every node's copy of that address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable, Iterable

from netsim_imds import flavors
from netsim_imds.address import METADATA_ADDRESS, METADATA_PORT
from netsim_imds.answers import AnswerCache
from netsim_imds.connection import Connection
from netsim_imds.errors import NetsimError
from netsim_imds.events import EventView
from netsim_imds.fairness import Admission, FairScheduler, Limits, LogLimiter
from netsim_imds.faults import FaultTable, HttpFault
from netsim_imds.flavors import Flavor, FlavorFactory
from netsim_imds.identity import VmIdentity
from netsim_imds.parking import ParkedIndex, writes_batched

log = logging.getLogger("netsim.server")

BACKLOG = 4096
SOCKET_BUFFER = 128 * 1024  # SO_RCVBUF/SO_SNDBUF of client sockets (the kernel doubles it)

Resolver = Callable[[str], "VmIdentity | None"]
"""Maps a peer IPv4 address to the VM behind it (None: not a VM of this node)."""

SocketFactory = Callable[[str], socket.socket]
"""``factory(namespace)``: a new, unbound TCP/IPv4 socket opened inside that network
namespace (netsim passes one built on ``netns.socket_in``); errors are NetsimErrors."""


class ServerError(NetsimError):
    """The metadata server could not start or change (names the node and the fix)."""


@dataclass(frozen=True)
class ServerConfig:
    """Driver tunables. ``header_timeout``: seconds a client has to send a whole request
    once it started one (slow clients are dropped with 408); ``idle_timeout``: seconds an
    idle keep-alive connection is kept; ``address``/``port``: where to listen; ``limits``:
    each caller's share and the service's bounds (:class:`~netsim_imds.fairness.Limits`);
    ``flavor``: the API served, a registered name (:func:`netsim_imds.flavors.resolve`) or a
    factory that makes one node's :class:`~netsim_imds.flavors.Flavor`."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    address: str = METADATA_ADDRESS
    port: int = METADATA_PORT
    limits: Limits = field(default_factory=Limits)
    flavor: "str | FlavorFactory" = flavors.DEFAULT_FLAVOR


class _Clock:
    """Wall-clock seconds and the Date header, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._date = ""

    def date(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second, self._date = second, formatdate(second, usegmt=True)
        return self._date


class Node:
    """Everything the server keeps for one node."""

    def __init__(self, name: str, ns_name: str, resolve: Resolver, events: EventView, flavor: Flavor) -> None:
        self.name, self.ns_name, self.resolve, self.events, self.flavor = name, ns_name, resolve, events, flavor
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[Connection] = set()
        self.parked = ParkedIndex()  # connections whose request waits (a flavor's Wait), by what it watches
        self.answers = AnswerCache()  # answers given again while the events stay (netsim_imds.answers)
        # False: the flavor never lets an answer be kept (netsim_imds.flavors), none is looked for.
        self.keeps_answers = bool(getattr(flavor, "keeps_answers", True))


class MetadataServer:
    """Serves the metadata APIs on 169.254.169.254:80 of many node namespaces, from one loop.

    Use from inside the event loop: ``await add_node(...)``, ``await remove_node(...)``,
    ``notify(node)``, ``await close()``. Each node gets its own flavor instance (and so,
    for Azure, its own per-VM rate limiter). ``socket_factory`` opens the listening
    sockets inside the nodes' namespaces (:data:`SocketFactory`).
    """

    def __init__(self, config: ServerConfig | None = None, *, socket_factory: SocketFactory | None = None) -> None:
        self.config = config or ServerConfig()
        self.socket_factory = socket_factory
        flavor = self.config.flavor
        self.new_flavor: FlavorFactory = flavors.resolve(flavor) if isinstance(flavor, str) else flavor
        self.limits = limits = self.config.limits
        self.clock = _Clock()
        self._nodes: dict[str, Node] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        # The fairness policy (netsim_imds.fairness), keyed by (node, VM name or "peer ADDRESS").
        self.admission: Admission[tuple[str, str]] = Admission(limits.connections_per_caller,
                                                               limits.connections_total)
        self.scheduler: FairScheduler[tuple[str, str], Connection] = FairScheduler(limits.turn_budget)
        self.logs: LogLimiter[tuple[str, str]] = LogLimiter(limits.log_lines, limits.log_interval,
                                                            limits.log_lines_total)
        self.buffered = 0  # bytes received and not yet answered, every connection
        self.memory_waiters: set[Connection] = set()
        self._turn: asyncio.Handle | None = None
        # Parked requests (a flavor's Wait), bounded per caller and in all.
        self.parking: Admission[tuple[str, str]] = Admission(limits.parked_per_caller, limits.parked_total)
        self._notified: dict[str, set[str] | None] = {}  # node -> names whose events changed (None: any)
        self._wake: asyncio.Handle | None = None
        self.faults = FaultTable()  # HTTP faults (netsim_imds.faults); empty: one check per request

    def set_faults(self, faults: "list[HttpFault] | tuple[HttpFault, ...]") -> None:
        """Apply these HTTP faults from now on (replacing the previous ones); the parked
        requests are woken so that a hang whose fault ended or was cleared is answered.
        Call it from the loop's thread."""
        self.faults.set(faults)
        for name in self._nodes:
            self.notify(name)

    # -- the fairness policy, applied --------------------------------------------------------

    def ready(self, conn: Connection) -> None:
        """Queue ``conn`` (it has requests left) for its caller's next turn."""
        self.scheduler.ready(conn.key, conn)
        if self._turn is None:
            self._turn = asyncio.get_running_loop().call_soon(self._run_turn)

    def _run_turn(self) -> None:
        # One turn per loop iteration: the selector (new bytes, the control socket, every
        # other task) runs between two turns, so a flood costs others one turn at most.
        self._turn = None
        self.scheduler.run_turn(Connection.take_turn)
        self.release_memory()
        if self.scheduler:
            self._turn = asyncio.get_running_loop().call_soon(self._run_turn)

    def release_memory(self) -> None:
        """Read again the connections paused for the service's memory, once it halved, or
        once no request is left to answer (then only reading can complete the requests
        that fill the buffers: waiting would be a deadlock)."""
        if self.memory_waiters and (self.buffered <= self.limits.buffered_total // 2 or not self.scheduler):
            waiters, self.memory_waiters = self.memory_waiters, set()
            for conn in waiters:
                conn.resume_for_memory()

    def log_for(self, key: tuple[str, str], level: int, msg: str, *args: object) -> None:
        """Log a line caused by caller ``key``, unless it already wrote its share of the log."""
        ok, suppressed = self.logs.allow(key, time.time())
        if ok:
            if suppressed:
                msg += f" ({suppressed} earlier lines of {key[1]} on node {key[0]} suppressed)"
            log.log(level, msg, *args)

    # -- parked requests ---------------------------------------------------------------------

    def notify(self, node_name: str, names: "Iterable[str] | None" = None) -> None:
        """Node ``node_name``'s events changed: call the flavor again for each of its parked
        requests (soon, on the loop; several calls before then wake them once). ``names``:
        the VMs and availability sets whose events changed, when the caller knows them; then
        only the requests whose Wait watches one of them (or everything) are woken. Call it
        from the loop's thread (:meth:`ServerThread.notify` from another); an unknown node
        is ignored (it may have just been removed)."""
        if node_name not in self._nodes:
            return
        known = self._notified.get(node_name, set())
        self._notified[node_name] = None if names is None or known is None else known | set(names)
        if self._wake is None:
            self._wake = asyncio.get_running_loop().call_soon(self._wake_notified)

    def _wake_notified(self) -> None:
        self._wake = None
        notified, self._notified = self._notified, {}
        with writes_batched():  # the woken answers go out back to back (netsim_imds.parking)
            for name, changed in notified.items():
                node = self._nodes.get(name)
                if node is not None:
                    node.answers.clear()  # stale now (their incarnation says so too): free them
                for conn in node.parked.concerned(changed) if node is not None else ():
                    conn.wake(expired=False)

    def drop_caller(self, node_name: str, vm: str) -> int:
        """VM ``vm`` leaves (or left) node ``node_name``: close its connections there, its
        parked long polls too, so that their slots are free at once; returns how many. Called
        before a live migration's freeze, the VM's clients see the close and poll again on
        the node that holds it next."""
        node = self._nodes.get(node_name)
        gone = [c for c in node.connections if c.key == (node_name, vm)] if node is not None else []
        for conn in gone:
            conn.unpark()
            if conn.transport is None:
                continue
            try:
                # The FIN leaves now (the loop closes the socket only at its next turn: a
                # live migration's freeze, right after this call, would cut the port first).
                with socket.socket(fileno=os.dup(conn.transport.get_extra_info("socket").fileno())) as dup:
                    dup.shutdown(socket.SHUT_RDWR)
            except (OSError, AttributeError):
                pass
            conn.transport.abort()
        if gone:
            log.info("node %s: %d connections of %s closed (it leaves the node)", node_name, len(gone), vm)
        return len(gone)

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes being served."""
        return list(self._nodes)

    def connection_count(self, node_name: str) -> int:
        """Open client connections of a node."""
        return len(self._nodes[node_name].connections)

    def stats(self) -> dict[str, int]:
        """What the bounds apply to, now: ``connections`` open (admitted), ``buffered`` bytes
        received and not yet answered, the largest ``write_buffer`` of one connection (answers
        not yet sent), ``waiting_callers`` with a turn due, ``paused_for_memory`` connections,
        ``parked`` requests (a flavor's Wait)."""
        conns = [c for node in self._nodes.values() for c in node.connections]
        writes = [c.transport.get_write_buffer_size() for c in conns if c.transport is not None]
        return {"connections": len(conns), "buffered": self.buffered, "write_buffer": max(writes, default=0),
                "waiting_callers": self.scheduler.waiting, "paused_for_memory": len(self.memory_waiters),
                "parked": sum(len(node.parked) for node in self._nodes.values())}

    async def add_node(self, node_name: str, ns_name: str, resolve: Resolver, events: EventView,
                       flavor: Flavor | None = None) -> None:
        """Listen on 169.254.169.254:80 inside namespace ``ns_name`` and serve node ``node_name``.

        ``resolve(peer_ip)`` maps each client to its VM (None: not a VM of this node); it is
        called on the event loop when a connection opens (and on each request while it finds
        no VM), so it must be quick (a cached neighbour table, not a netlink dump per
        call). ``events`` are the node's events;
        ``flavor`` replaces the one the server's flavor factory would make for this node.
        """
        if node_name in self._nodes:
            raise ServerError(f"node {node_name!r} is already served; remove_node() it first")
        sock = self._listen_socket(node_name, ns_name)
        node = Node(node_name, ns_name, resolve, events, flavor if flavor is not None else self.new_flavor())
        loop = asyncio.get_running_loop()
        try:
            node.server = await loop.create_server(lambda: Connection(node, self), sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise
        self._nodes[node_name] = node
        self._arm_sweeper()
        log.info("node %s: metadata server listening on %s:%d in namespace %s",
                 node_name, self.config.address, self.config.port, ns_name)

    def _listen_socket(self, node_name: str, ns_name: str) -> socket.socket:
        if self.socket_factory is None:
            raise ServerError(f"node {node_name!r}: no socket factory; pass MetadataServer(socket_factory=...) "
                              "that opens a socket in a namespace (netsim.harness.testbed.tcp_socket_in)")
        try:
            sock = self.socket_factory(ns_name)
        except NetsimError as exc:
            raise ServerError(f"node {node_name!r}: cannot open a socket in namespace {ns_name!r}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
            # Fixed kernel buffers for every accepted socket (inherited too; no autotuning up
            # to megabytes): what a client sends and does not get read, or is sent and does
            # not read, then stays within SOCKET_BUFFER bytes of the node's memory per connection.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            sock.bind((self.config.address, self.config.port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            hint = {errno.EADDRNOTAVAIL: f"add {self.config.address} to the node's bridge first",
                    errno.EADDRINUSE: "another server already listens there"}.get(exc.errno or 0, "")
            raise ServerError(f"node {node_name!r}: cannot listen on {self.config.address}:{self.config.port} "
                              f"in namespace {ns_name!r}: {exc.strerror}" + (f" ({hint})" if hint else "")) from exc
        return sock

    async def remove_node(self, node_name: str) -> None:
        """Stop serving a node: close its listener and its client connections."""
        node = self._nodes.pop(node_name, None)
        if node is None:
            raise ServerError(f"node {node_name!r} is not served")
        await self._close_node(node)

    async def _close_node(self, node: Node) -> None:
        if node.server is not None:
            node.server.close()
        for conn in list(node.parked):
            conn.unpark()
        for conn in list(node.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if node.server is not None:
            await node.server.wait_closed()

    async def close(self) -> None:
        """Stop serving every node."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        nodes, self._nodes = list(self._nodes.values()), {}
        for node in nodes:
            await self._close_node(node)

    def _arm_sweeper(self) -> None:
        if self._sweeper is not None:
            return
        c = self.config
        interval = max(0.05, min(1.0, c.header_timeout / 4, c.idle_timeout / 4))

        def sweep() -> None:
            now = time.time()
            for node in self._nodes.values():
                for conn in list(node.connections):
                    conn.expire(now)
            self.release_memory()  # closed connections may have freed it without a turn
            for (node_name, who), count in self.logs.expired(now):
                log.warning("node %s: %d log lines of %s suppressed (limit %d per %gs)", node_name, count, who,
                            self.limits.log_lines, self.limits.log_interval)
            self._sweeper = asyncio.get_running_loop().call_later(interval, sweep)

        self._sweeper = asyncio.get_running_loop().call_later(interval, sweep)
