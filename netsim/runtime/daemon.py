"""The datacenter daemon: metadata servers of every node, the link-local driver, the
controller and host agents (maintenance), and the control socket that the CLI and the
Python API talk to.

``netsim up`` starts it (``python -m netsim.runtime.daemon --name DC``) and journals its PID;
``netsim down`` ends it by that PID. Its log is ``daemon.log`` in the state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import socket
import sqlite3
import sys

from netsim.kernel import netns
from netsim.model import names
from netsim.api.control import SOCKET_NAME
from netsim.runtime.controller import Controller
from netsim.runtime.placement import Placement
from netsim.api.datacenter import DAEMON_ERROR_PREFIX, RunningDatacenter
from netsim.runtime.effects import Effects
from netsim.runtime.faults import FaultBook
from netsim.runtime.hostagent import HostAgent
from netsim.errors import NetsimError
from netsim.runtime import commands
from netsim.runtime.identity import NeighbourResolver
from netsim.runtime.loop import loop_factory
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.repository import Repository
from netsim.runtime.services import Services
from netsim.state import StateDir
from netsim_imds import flavors, signing
from netsim_imds.driver import MetadataServer, ServerConfig

log = logging.getLogger("netsim.runtime.daemon")


class Daemon:
    """One datacenter's long-running services, on one asyncio loop."""

    def __init__(self, dc_name: str) -> None:
        self.state = StateDir(dc_name)
        self.dc = self.state.read_datacenter()
        check_repository(self.state.file("events.db"), dc_name)
        self.running = RunningDatacenter(self.dc, self.state)
        # The one placement (where each VM runs now): the effects change it; the planner's
        # inputs, the claims and caller identity read it.
        self.placement = Placement.from_kernel(self.dc)
        self.placement.listeners.append(self._vm_moved)
        # The flavor the topology names ([datacenter] cloud); the server opens its sockets in
        # the nodes' namespaces through netsim's guard (it imports nothing from netsim).
        # Its signing keys (made once in the state folder, with the JWKS and CA published there)
        # go to a flavor whose factory takes keys= (Azure's tokens and attested data).
        keys = signing.load_or_create(self.state.path, dc_name)
        self.server = MetadataServer(ServerConfig(flavor=signing.bind(flavors.resolve(self.dc.cloud), keys)),
                                     socket_factory=listen_socket_in)
        self.resolvers: dict[str, NeighbourResolver] = {}
        self.linklocal = None
        self.services = Services(self.dc, self.state, self.running.record_process)
        self.controller: Controller | None = None
        self.faults: FaultBook | None = None  # issue 13: netsim.runtime.fault_commands
        self.stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.dc.linklocal == "claim":
            from netsim.runtime.claims import LinkLocalService
            self.linklocal = LinkLocalService(self.dc, node_of=self.placement.get, vms=list(self.placement))
            self.linklocal.on_change = self._address_changed
            self.linklocal.start()
        effects = Effects(self.dc, self.placement, self.linklocal, self.services)
        effects.on_leaving = lambda vm, node: self.server.drop_caller(node, vm)
        self.controller = Controller(self.dc, self.state.file("events.db"), self.placement)
        for node in self.dc.nodes:  # one host agent per node: runs its VMs' effects, heartbeats
            self.controller.attach(HostAgent.on_node(self.dc, node.name, effects, self.controller))
        # Its repository is the file's one writer (the CLI goes through the control socket):
        # the metadata server's reads trust the cache instead of asking SQLite per request.
        self.controller.repo.sole_writer = True
        # Parked requests (a flavor's Wait) wake when their node's events change.
        self.controller.on_events_changed = self._events_changed
        booted = self.state.file("booted")
        if not os.path.exists(booted):
            # The first boot of every VM. A restarted daemon finds the services running,
            # or a VM down in the middle of an effect that will boot it.
            for vm in self.placement:
                self.services.start(vm)
            open(booted, "w").close()
        for node in self.dc.nodes:
            resolver = NeighbourResolver(self.dc, node.name, self.link_local_of)
            self.resolvers[node.name] = resolver
            await self.server.add_node(node.name, names.node_ns(self.dc.name, node.name), resolver,
                                       self.controller.view(node.name))
        # The faults stored beside the events, in force again (with the time they have left).
        self.faults = FaultBook(self.dc, self.controller.repo, self.server, self.placement, self.known)
        self.placement.listeners.append(self.faults.vm_moved)
        try:
            self.faults.apply()
        except NetsimError as exc:  # the datacenter still serves; the next change tries again
            log.error("putting the stored faults in force failed: %s", exc)
        path = self.state.file(SOCKET_NAME)
        if os.path.exists(path):
            os.unlink(path)
        control = await asyncio.start_unix_server(self.serve_control, path=path)
        brain = asyncio.create_task(self.controller.run())
        # Everything built so far (topology, trees, servers, imported modules) lives as long
        # as the daemon: frozen out of the collector, a full collection no longer walks it
        # (measured: 47 -> 15 ms per full collection with 1,000 VMs, pauses every request).
        gc.collect()
        gc.freeze()
        log.info("daemon of %s ready: %d nodes served", self.dc.name, len(self.dc.nodes))
        await self.stopping.wait()
        brain.cancel()
        self.faults.close()
        control.close()
        await self.server.close()
        for r in self.resolvers.values():
            r.close()
        if self.linklocal is not None:
            self.linklocal.stop()
        log.info("daemon of %s stopped", self.dc.name)

    def _events_changed(self, changed: dict[str, "set[str] | None"]) -> None:
        """The controller committed changes to these nodes' events (seen by these names)."""
        for node, names in changed.items():
            self.server.notify(node, names)

    def _vm_moved(self, vm: str, old: str | None, new: str | None) -> None:
        """A VM left ``old`` for ``new``: both nodes' caller identities must be read again,
        and ``old`` forgets the VM's connections (a long poll parked there is re-established
        on ``new`` by the client, as after GCE's live migration)."""
        for node in (old, new):
            resolver = self.resolvers.get(node or "")
            if resolver is not None:
                resolver.invalidate()
        if old is not None and old != new:
            self.server.drop_caller(old, vm)

    def _address_changed(self, vm: str) -> None:
        """A VM's address changed: its node's caller identities must be read again."""
        resolver = self.resolvers.get(self.placement.get(vm, ""))
        if resolver is not None:
            resolver.invalidate()

    def link_local_of(self, vm: str) -> str:
        """The VM's current link-local address, as its claim (or the static plan) says."""
        if self.linklocal is not None:
            return self.linklocal.address_of(vm) or ""
        return self.dc.address_plan.vm(vm).static_link_local or ""

    # -- control socket -----------------------------------------------------------------------

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one request line of the control protocol (:mod:`netsim.runtime.commands`)."""
        try:
            try:
                # One line of at most the reader's limit (64 KiB): a longer one is refused.
                try:
                    line = await reader.readline()
                except ValueError:
                    raise commands.CommandError("a control request is one line of at most 64 KiB") from None
                answer = {"ok": True, **commands.dispatch(self, commands.decode(line))}
            except NetsimError as exc:
                answer = commands.refusal(exc)
            except sqlite3.Error as exc:
                log.exception("control request failed in the event repository")
                answer = {"ok": False, "error": f"the event repository failed ({exc}); see daemon.log, and "
                                                f"'netsim daemon restart --reset-events' if it is corrupt"}
            except Exception as exc:  # a bug, not the client's doing: keep serving, say where to look
                log.exception("control request failed")
                answer = {"ok": False, "error": f"the daemon failed on this request ({type(exc).__name__}: "
                                                f"{str(exc)[:120]}); see daemon.log"}
            writer.write(commands.encode(answer))
            await writer.drain()
        finally:
            writer.close()

    def known(self, kind: str, value: object) -> str:
        """``value`` if the topology has a ``kind`` of that name (the controller checks)."""
        assert self.controller is not None
        return self.controller.known(kind, value)


def listen_socket_in(ns_name: str) -> socket.socket:
    """The metadata server's socket factory: a TCP socket opened in namespace ``ns_name``."""
    return netns.socket_in(ns_name, socket.AF_INET, socket.SOCK_STREAM)


def check_repository(path: str, dc_name: str) -> None:
    """Open the event repository once before anything starts, so that a corrupt file
    stops the daemon with one line that says how to start again."""
    fix = (f"to start again with no events, keeping the old file aside, run "
           f"'netsim daemon start --reset-events --name {dc_name}'")
    try:
        with Repository(path) as repo:
            # What the controller reads at start: a page that SQLite's check passes can
            # still hold a torn JSON document (a file truncated by hand or by a full disk).
            repo.load_planner()
            repo.all_events()
            repo.begun_effects()
    except RepositoryError as exc:
        raise RepositoryError(f"{exc}; {fix}") from None
    except (ValueError, TypeError, KeyError, sqlite3.Error) as exc:
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:120]
        raise RepositoryError(f"the event repository {path} is corrupt ({reason}); {fix}") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m netsim.runtime.daemon --name DC``; an error that stops it is one
    line of its log (the CLI shows that line)."""
    ap = argparse.ArgumentParser(prog="netsim-daemon")
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    try:
        # uvloop when installed (NETSIM_LOOP=asyncio forces the stdlib loop): netsim.runtime.loop
        factory, loop_name = loop_factory()
        log.info("daemon of %s: event loop %s", args.name, loop_name)
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(Daemon(args.name).run())
    except NetsimError as exc:
        print(f"{DAEMON_ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
