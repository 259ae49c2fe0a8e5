"""The datacenter daemon: metadata servers of every node, the link-local driver, and the
control socket that the CLI and the Python API talk to.

``netsim up`` starts it (``python -m netsim.daemon --name DC``) and journals its PID;
``netsim down`` ends it by that PID. Its log is ``daemon.log`` in the state folder.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict

from netsim import names
from netsim.control import SOCKET_NAME
from netsim.identity import NeighbourResolver
from netsim.state import StateDir
from server.driver import MetadataServer, ServerConfig
from server.events import Event, EventError, EventStore

log = logging.getLogger("netsim.daemon")
STARTED_EVENT_LINGER = 5.0  # seconds a Started event with no duration stays visible


def event_json(e: Event) -> dict:
    """An event as the control API returns it."""
    return asdict(e)


class Daemon:
    """One datacenter's long-running services, on one asyncio loop."""

    def __init__(self, dc_name: str) -> None:
        self.state = StateDir(dc_name)
        self.dc = self.state.read_datacenter()
        self.events = EventStore()
        self.started_at: dict[str, float] = {}
        self.server = MetadataServer(ServerConfig())
        self.resolvers: dict[str, NeighbourResolver] = {}
        self.linklocal = None
        self.stopping = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        if self.dc.linklocal == "claim":
            from netsim.claims import LinkLocalService
            self.linklocal = LinkLocalService(self.dc)
            self.linklocal.start()
        for node in self.dc.nodes:
            resolver = NeighbourResolver(self.dc, node.name, self.link_local_of)
            self.resolvers[node.name] = resolver
            await self.server.add_node(node.name, names.node_ns(self.dc.name, node.name), resolver, self.events)
        path = self.state.file(SOCKET_NAME)
        if os.path.exists(path):
            os.unlink(path)
        control = await asyncio.start_unix_server(self.serve_control, path=path)
        ticker = asyncio.create_task(self.tick())
        log.info("daemon of %s ready: %d nodes served", self.dc.name, len(self.dc.nodes))
        await self.stopping.wait()
        ticker.cancel()
        control.close()
        await self.server.close()
        for r in self.resolvers.values():
            r.close()
        if self.linklocal is not None:
            self.linklocal.stop()
        log.info("daemon of %s stopped", self.dc.name)

    def link_local_of(self, vm: str) -> str:
        """The VM's current link-local address, as its claim (or the static plan) says."""
        if self.linklocal is not None:
            return self.linklocal.address_of(vm) or ""
        from netsim.topology.addressing import static_link_local
        return static_link_local(self.dc.vm(vm).index)

    async def tick(self) -> None:
        """Start events at NotBefore; drop Started ones when their impact is over."""
        while True:
            now = time.time()
            for e in self.events.start_due(now):
                self.started_at.setdefault(e.event_id, now)
                log.info("event %s (%s on %s) started", e.event_id, e.event_type, ",".join(e.resources))
            for e in self.events.all():
                if e.status == "Started":
                    began = self.started_at.setdefault(e.event_id, now)
                    if now - began >= max(e.duration_s, 0) + STARTED_EVENT_LINGER:
                        self.events.remove(e.event_id)
                        self.started_at.pop(e.event_id, None)
            await asyncio.sleep(0.05)

    # -- control socket -----------------------------------------------------------------------

    async def serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                req = json.loads(line)
                answer = {"ok": True, **self.handle(req)}
            except (EventError, KeyError, ValueError, TypeError) as exc:
                answer = {"ok": False, "error": str(exc) if not isinstance(exc, KeyError) else f"unknown {exc}"}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        finally:
            writer.close()

    def handle(self, req: dict) -> dict:
        """Answer one control request (sans-IO apart from reading the clock)."""
        command = req.get("command")
        if command == "ping":
            return {"pid": os.getpid(), "nodes": self.server.nodes}
        if command == "linklocal":
            return {"vms": self.linklocal.status() if self.linklocal else {}}
        if command == "link":
            if self.linklocal is None:
                raise ValueError("link-local claiming is off (linklocal = \"static\")")
            self.linklocal.link_event(req["vm"], bool(req["up"]))
            return {}
        if command == "event_add":
            return {"event": event_json(self.add_event(req))}
        if command == "events":
            return {"events": [event_json(e) for e in self.events.all()],
                    "document_incarnation": self.events.document_incarnation}
        if command == "approve":
            if not self.events.approve(req["id"]):
                raise ValueError(f"no event {req['id']}")
            return {"event": event_json(self.events.get(req["id"]))}
        raise ValueError(f"unknown command {command!r}")

    def add_event(self, req: dict) -> Event:
        """File a one-off event for a VM (``netsim event add``)."""
        vm = self.dc.vm(req["vm"])
        now = time.time()
        event = Event(
            event_id=str(uuid.uuid4()).upper(), event_type=req.get("type", "Reboot"), resources=(vm.name,),
            not_before=now + float(req.get("in", 900)), created=now,
            description=req.get("description") or "Host server is undergoing maintenance.",
            source=req.get("source", "Platform"), duration_s=int(req.get("duration", -1)),
            avset=vm.availability_set or "")
        self.events.add(event)
        log.info("event %s filed: %s of %s at NotBefore %+.0f s", event.event_id, event.event_type, vm.name,
                 event.not_before - now)
        return event


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m netsim.daemon --name DC``."""
    ap = argparse.ArgumentParser(prog="netsim-daemon")
    ap.add_argument("--name", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    asyncio.run(Daemon(args.name).run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
