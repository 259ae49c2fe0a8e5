"""The I/O of the metadata server: one asyncio process serving many node namespaces.

Design from ``shared/reference/measured-anchors.md`` section 2: a plain
``asyncio.Protocol`` (no streams), TCP_NODELAY, a big listen backlog and every
response (or every batch of pipelined responses) in ONE ``write``. The protocol logic
lives in :mod:`server.http` and :mod:`server.api`; this module only moves bytes, reads
the clock and enforces timeouts.

For each node, :meth:`MetadataServer.add_node` opens the listening socket *inside* the
node's namespace (``netns.socket_in``), bound to 169.254.169.254:80, so one process
serves every node's copy of that address.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Callable

from netsim import netns
from netsim.errors import NetsimError
from server.api import ApiConfig, MetadataApi
from server.events import EventView
from server.http import HttpError, LocalProtocolError, ProtocolError, Request, RequestParser
from server.response import CONTINUE, error_response, protocol_error_response, serialize
from server.identity import VmIdentity

log = logging.getLogger("netsim.server")

METADATA_ADDRESS = "169.254.169.254"
METADATA_PORT = 80
BACKLOG = 4096

Resolver = Callable[[str], "VmIdentity | None"]
"""Maps a peer IPv4 address to the VM behind it (None: not a VM of this node)."""


class ServerError(NetsimError):
    """The metadata server could not start or change (names the node and the fix)."""


@dataclass(frozen=True)
class ServerConfig:
    """Driver tunables. ``header_timeout``: seconds a client has to send a whole request
    once it started one (slow clients are dropped with 408); ``idle_timeout``: seconds an
    idle keep-alive connection is kept; ``address``/``port``: where to listen."""

    header_timeout: float = 10.0
    idle_timeout: float = 60.0
    address: str = METADATA_ADDRESS
    port: int = METADATA_PORT
    api: ApiConfig = field(default_factory=ApiConfig)


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


class _Node:
    """Everything the server keeps for one node."""

    def __init__(self, name: str, ns_name: str, resolve: Resolver, events: EventView, api: MetadataApi) -> None:
        self.name, self.ns_name, self.resolve, self.events, self.api = name, ns_name, resolve, events, api
        self.server: asyncio.AbstractServer | None = None
        self.connections: set[_Connection] = set()


class _Connection(asyncio.Protocol):
    """One client connection: feed bytes to the parser, answer each request in one write."""

    def __init__(self, node: _Node, owner: "MetadataServer") -> None:
        self.node, self.owner = node, owner
        self.parser = RequestParser()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.caller: VmIdentity | None = None
        self.resolved = False
        self.deadline = 0.0
        self.reading_request = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # No setsockopt here: asyncio's TCP transport already sets TCP_NODELAY (and the
        # listening socket has it too), which is what keeps one-write responses fast.
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if peer else ""
        self.deadline = time.time() + self.owner.config.idle_timeout
        self.node.connections.add(self)
        # Who is calling is known from the moment the connection exists (the node answered
        # the SYN, so it holds the peer's neighbour entry): resolve now, not on the first
        # request, so a burst of new clients is not answered behind each other's lookups.
        self._identity()

    def connection_lost(self, exc: Exception | None) -> None:
        self.node.connections.discard(self)
        self.transport = None

    def pause_writing(self) -> None:
        # A client that pipelines without reading: stop reading until it catches up.
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    def _identity(self) -> VmIdentity | None:
        # Resolved once per connection: the peer address cannot change under a TCP
        # connection, and the node already has the neighbour entry (it answered the SYN).
        if not self.resolved:
            self.resolved = True
            try:
                self.caller = self.node.resolve(self.peer)
            except Exception:  # the callback's bug must not take the server down
                log.exception("node %s: resolving peer %s failed", self.node.name, self.peer)
                self.caller = None
            if self.caller is None:
                log.warning("node %s: request from %s maps to no VM of this node: answering 403",
                            self.node.name, self.peer)
        return self.caller

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        parser = self.parser
        out: list[bytes] = []
        close = False
        now = time.time()  # one clock read per batch: the API's "now", Date and deadlines
        date = self.owner.clock.date(now)
        try:
            parser.feed(data)
            request = parser.next_request()
            while request is not None:
                out.append(self._answer(request, now, date))
                if not request.keep_alive:
                    close = True
                    break
                request = parser.next_request() if parser.in_progress else None
        except ProtocolError as exc:
            out.append(serialize(protocol_error_response(exc), keep_alive=False, date=date))
            close = True
        except LocalProtocolError:
            log.exception("node %s: parser misuse", self.node.name)
            close = True
        if not close and parser.take_continue():
            out.append(CONTINUE)
        if out:
            # Pipelined requests are answered together: still one write.
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        if close:
            transport.close()
            return
        # Timeouts: a started request must complete within header_timeout of its first
        # byte (slowloris); an idle connection lives for idle_timeout.
        if parser.in_progress:
            if out or not self.reading_request:  # a (new) request started
                self.reading_request = True
                self.deadline = now + self.owner.config.header_timeout
        elif out:
            self.reading_request = False
            self.deadline = now + self.owner.config.idle_timeout

    def _answer(self, request: Request, now: float, date: str) -> bytes:
        try:
            response = self.node.api.handle(request, self._identity(), self.node.events, now)
            return serialize(response, keep_alive=request.keep_alive, date=date,
                             head=request.method == "HEAD", http10=request.http_version == "1.0")
        except HttpError as exc:
            log.exception("node %s: cannot answer %s %s", self.node.name, request.method, request.target)
            return serialize(protocol_error_response(exc), keep_alive=request.keep_alive, date=date)
        except Exception:
            log.exception("node %s: error answering %s %s", self.node.name, request.method, request.target)
            return serialize(error_response(500, "Internal server error"), keep_alive=request.keep_alive,
                             date=date)

    def expire(self, now: float) -> None:
        """Drop the connection if its deadline passed (408 if a request was in progress)."""
        if self.transport is None or now < self.deadline:
            return
        if self.reading_request:
            log.info("node %s: %s too slow to send its request: dropped", self.node.name, self.peer)
            response = error_response(408, "Request timeout")
            self.transport.write(serialize(response, keep_alive=False,
                                           date=self.owner.clock.date(time.time())))
        self.transport.close()


class MetadataServer:
    """Serves the metadata APIs on 169.254.169.254:80 of many node namespaces, from one loop.

    Use from inside the event loop: ``await add_node(...)``, ``await remove_node(...)``,
    ``await close()``. Each node gets its own :class:`MetadataApi` (and so its own
    per-VM rate limiter).
    """

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.config = config or ServerConfig()
        self.clock = _Clock()
        self._nodes: dict[str, _Node] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes being served."""
        return list(self._nodes)

    def connection_count(self, node_name: str) -> int:
        """Open client connections of a node."""
        return len(self._nodes[node_name].connections)

    async def add_node(self, node_name: str, ns_name: str, resolve: Resolver, events: EventView,
                       api: ApiConfig | None = None) -> None:
        """Listen on 169.254.169.254:80 inside namespace ``ns_name`` and serve node ``node_name``.

        ``resolve(peer_ip)`` maps each client to its VM (None: answer 403); it is called
        once per connection on the event loop, so it must be quick (a cached neighbour
        table, not a netlink dump per call). ``events`` are the node's scheduled events;
        ``api`` overrides the server's API settings.
        """
        if node_name in self._nodes:
            raise ServerError(f"node {node_name!r} is already served; remove_node() it first")
        sock = self._listen_socket(node_name, ns_name)
        node = _Node(node_name, ns_name, resolve, events, MetadataApi(api or self.config.api))
        loop = asyncio.get_running_loop()
        try:
            node.server = await loop.create_server(lambda: _Connection(node, self), sock=sock, backlog=BACKLOG)
        except BaseException:
            sock.close()
            raise
        self._nodes[node_name] = node
        self._arm_sweeper()
        log.info("node %s: metadata server listening on %s:%d in namespace %s",
                 node_name, self.config.address, self.config.port, ns_name)

    def _listen_socket(self, node_name: str, ns_name: str) -> socket.socket:
        try:
            sock = netns.socket_in(ns_name, socket.AF_INET, socket.SOCK_STREAM)
        except NetsimError as exc:
            raise ServerError(f"node {node_name!r}: cannot open a socket in namespace {ns_name!r}: {exc}") from exc
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets
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

    async def _close_node(self, node: _Node) -> None:
        if node.server is not None:
            node.server.close()
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
            self._sweeper = asyncio.get_running_loop().call_later(interval, sweep)

        self._sweeper = asyncio.get_running_loop().call_later(interval, sweep)
