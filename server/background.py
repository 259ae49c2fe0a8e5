"""Run a :class:`~netsim_imds.driver.MetadataServer` on an event loop in a background thread.

For callers that are not asyncio programs themselves (tests, benchmarks, a synchronous
daemon): every method blocks until the loop has done the work.
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from typing import Any, Callable, Coroutine, Iterable, TypeVar

from netsim_imds.driver import MetadataServer, Resolver, ServerConfig, SocketFactory
from netsim_imds.events import EventView
from netsim_imds.flavors import Flavor

T = TypeVar("T")


class ServerThread:
    """A thread running an event loop that runs one :class:`MetadataServer`.

    Use as a context manager (``with ServerThread(config, socket_factory=f) as st:
    st.add_node(...)``); leaving it closes the server and stops the thread.
    """

    def __init__(self, config: ServerConfig | None = None, *, socket_factory: SocketFactory | None = None) -> None:
        self.server = MetadataServer(config, socket_factory=socket_factory)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="metadata-server", daemon=True)
        self._started = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> "ServerThread":
        """Start the loop thread (idempotent)."""
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def run(self, fn: Callable[..., T], *args: Any, timeout: float = 10.0) -> T:
        """Call ``fn(*args)`` on the server's loop thread and return its result.

        Use it to change what the server reads (for example an :class:`EventStore`)
        without racing the requests being answered.
        """
        async def call_fn() -> T:
            return fn(*args)
        return self.call(call_fn(), timeout)

    def add_node(self, node_name: str, ns_name: str, resolve: Resolver, events: EventView,
                 flavor: Flavor | None = None) -> None:
        """See :meth:`MetadataServer.add_node`."""
        self.call(self.server.add_node(node_name, ns_name, resolve, events, flavor))

    def notify(self, node_name: str, names: "Iterable[str] | None" = None) -> None:
        """See :meth:`MetadataServer.notify` (safe from any thread; does not wait)."""
        self.loop.call_soon_threadsafe(self.server.notify, node_name, None if names is None else frozenset(names))

    def remove_node(self, node_name: str) -> None:
        """See :meth:`MetadataServer.remove_node`."""
        self.call(self.server.remove_node(node_name))

    def stop(self) -> None:
        """Close the server, stop the loop and join the thread."""
        if not self._started:
            self.loop.close()
            return
        try:
            self.call(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()
            self._started = False

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
