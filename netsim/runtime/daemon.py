"""The datacenter daemon: metadata servers of every node, the link-local driver, the
controller and host agents (maintenance), and the control socket that the CLI and the
Python API talk to.

``netsim up`` starts it (``python -m netsim.runtime.daemon --name DC``) and journals its PID;
``netsim down`` ends it by that PID. Its log is ``daemon.log`` in the state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sqlite3
import sys

from netsim.model import names
from netsim.api.control import SOCKET_NAME
from netsim.runtime.controller import Controller, placement_from_kernel
from netsim.api.datacenter import DAEMON_ERROR_PREFIX, RunningDatacenter
from netsim.runtime.effects import Effects
from netsim.errors import NetsimError
from netsim.runtime.identity import NeighbourResolver
from netsim.maintenance.actions import event_to_dict
from netsim.maintenance.errors import RepositoryError
from netsim.maintenance.repository import Repository
from netsim.runtime.services import Services
from netsim.state import StateDir
from netsim_imds.driver import MetadataServer, ServerConfig

log = logging.getLogger("netsim.runtime.daemon")


class Daemon:
    """One datacenter's long-running services, on one asyncio loop."""

    def __init__(self, dc_name: str) -> None:
        self.state = StateDir(dc_name)
        self.dc = self.state.read_datacenter()
        check_repository(self.state.file("events.db"), dc_name)
        self.running = RunningDatacenter(self.dc, self.state)
        self.placement = placement_from_kernel(self.dc)
        self.server = MetadataServer(ServerConfig())
        self.resolvers: dict[str, NeighbourResolver] = {}
        self.linklocal = None
        self.services = Services(self.dc, self.state, self.running.record_process)
        self.controller: Controller | None = None
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
        self.controller = Controller(self.dc, self.state, effects)
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
        path = self.state.file(SOCKET_NAME)
        if os.path.exists(path):
            os.unlink(path)
        control = await asyncio.start_unix_server(self.serve_control, path=path)
        brain = asyncio.create_task(self.controller.run())
        log.info("daemon of %s ready: %d nodes served", self.dc.name, len(self.dc.nodes))
        await self.stopping.wait()
        brain.cancel()
        control.close()
        await self.server.close()
        for r in self.resolvers.values():
            r.close()
        if self.linklocal is not None:
            self.linklocal.stop()
        log.info("daemon of %s stopped", self.dc.name)

    def _address_changed(self, vm: str) -> None:
        """A VM's address changed: its node's caller identities must be read again."""
        resolver = self.resolvers.get(self.placement.get(vm, ""))
        if resolver is not None:
            resolver.invalidate()

    def link_local_of(self, vm: str) -> str:
        """The VM's current link-local address, as its claim (or the static plan) says."""
        if self.linklocal is not None:
            return self.linklocal.address_of(vm) or ""
        from netsim.model.addressing import static_link_local
        return static_link_local(self.dc.vm(vm).index)

    # -- control socket -----------------------------------------------------------------------

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                # One line of at most the reader's limit (64 KiB): a longer one is refused.
                req = json.loads(await reader.readline())
                answer = {"ok": True, **self.handle(req)}
            except KeyError as exc:
                answer = {"ok": False, "error": f"unknown name {exc}"}
            except (NetsimError, ValueError, TypeError, RecursionError) as exc:
                answer = {"ok": False, "error": str(exc)}
            except sqlite3.Error as exc:
                log.exception("control request failed in the event repository")
                answer = {"ok": False, "error": f"the event repository failed ({exc}); see daemon.log, and "
                                                f"'netsim daemon restart --reset-events' if it is corrupt"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    def handle(self, req: dict) -> dict:
        """Answer one control request."""
        c = self.controller
        assert c is not None
        if not isinstance(req, dict):
            raise ValueError('a control request is one JSON object per line: {"command": ..., ...}')
        command = req.get("command")
        if command == "ping":
            return {"pid": os.getpid(), "nodes": self.server.nodes}
        if command == "linklocal":
            return {"vms": self.linklocal.status() if self.linklocal else {}}
        if command == "link":
            if self.linklocal is None:
                raise ValueError("link-local claiming is off (linklocal = \"static\")")
            if not isinstance(req.get("up"), bool):
                raise ValueError(f"link: 'up' must be true or false, not {req.get('up')!r}")
            self.linklocal.link_event(c.known("vm", req.get("vm")), req["up"])
            return {}
        if command == "event_add":
            notice = req.get("in")
            duration = req.get("duration")
            # The controller checks every value (netsim.model.bounds): no float() here, which
            # would turn the strings "nan" and "inf" into numbers. -1 asks for the default.
            event_id = c.add_event(req.get("vm"), req.get("type", "Reboot"), notice,
                                   None if duration is None or (type(duration) is int and duration == -1) else duration,
                                   req.get("description") or None, req.get("source", "Platform"))
            return {"event": event_to_dict(c.planner.event(event_id))}
        if command == "events":
            events = [event_to_dict(e) for e in c.planner.events()]
            return {"events": events, "document_incarnation": {n.name: c.repo.incarnation(n.name)
                                                               for n in self.dc.nodes}}
        if command == "approve":
            if not c.approve(req["id"]):
                raise ValueError(f"no event {req['id']} is waiting for approval")
            return {"event": event_to_dict(c.planner.event(req["id"]))} if c.planner.event(req["id"]) else {}
        if command == "cancel":
            c.cancel_event(req["id"])
            return {}
        if command == "walk_start":
            walk_id = c.start_walk(req.get("avset"), req.get("notice", 900.0), req.get("downtime", 60.0))
            return {"walk": c.planner.walk_status(walk_id).to_dict()}
        if command == "snapshot":
            snap = c.snapshot()
            snap["claims"] = self.linklocal.status() if self.linklocal else {}
            return snap
        if command == "node_fail":
            c.node_fail(req["node"])
            return {}
        if command == "node_recover":
            c.node_recover(req["node"])
            return {}
        raise ValueError(f"unknown command {command!r}")


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
        asyncio.run(Daemon(args.name).run())
    except NetsimError as exc:
        print(f"{DAEMON_ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
