"""Control commands of maintenance: events, walks, node failures and the snapshot.

Each handler is a thin call into the :class:`~netsim.runtime.controller.Controller`, which
owns the behaviour; the arguments are typed and checked at the boundary
(:mod:`netsim.runtime.commands`).
"""

from __future__ import annotations

from dataclasses import dataclass

from netsim.model import bounds
from netsim.runtime.commands import CommandError, Context, NoArguments, command, name, number, text



@dataclass(frozen=True)
class EventAdd:
    """``event_add``: file a one-off event for a VM."""

    vm: str = name("vm")
    type: str = text(default="Reboot", what="the event type")
    in_: float | None = number(bounds.NOTICE_S, "the notice (--in)", default=None, wire="in")
    """Seconds until NotBefore; None: the type's minimum notice."""
    duration: float | None = number(bounds.DURATION_S, "the duration (--duration)", default=None)
    """Seconds of impact; None or -1: unknown, the kind's default impact (the flavor's)."""
    description: str | None = text(default=None, optional=True, what="the event description")
    source: str = text(default="Platform", what="the event source")
    action: str | None = text(default=None, optional=True, what="the action (--action)")
    """A variant of the type (AWS spot interruption: terminate, stop or hibernate)."""


@command("event_add", EventAdd)
def event_add(ctx: Context, a: EventAdd) -> dict:
    """File a one-off event; answers the event as ``netsim events --json`` shows it."""
    c = ctx.controller
    event_id = c.add_event(a.vm, a.type, a.in_, None if a.duration == -1 else a.duration,
                           a.description or None, a.source, a.action)
    return {"event": c.describe(c.planner.event(event_id))}


@command("events")
def events(ctx: Context, a: NoArguments) -> dict:
    """Every live event, the ended ones (history: Completed or Canceled), and each node's
    DocumentIncarnation."""
    c = ctx.controller
    return {"events": [c.describe(e) for e in c.planner.events()],
            "history": [c.describe(e) for e in c.repo.history()],
            "document_incarnation": {n.name: c.repo.incarnation(n.name) for n in ctx.dc.nodes}}


@dataclass(frozen=True)
class EventId:
    """``approve`` and ``cancel``: one event."""

    id: str = text(what="an event id", hint="see netsim events", limit=200)


@command("approve", EventId)
def approve(ctx: Context, a: EventId) -> dict:
    """Approve (start) an event, as a VM's StartRequests would."""
    c = ctx.controller
    if not c.approve(a.id):
        raise CommandError(f"no event {a.id} is waiting for approval (see netsim events)")
    event = c.planner.event(c.model_id(a.id))
    return {"event": c.describe(event)} if event else {}


@command("cancel", EventId)
def cancel(ctx: Context, a: EventId) -> dict:
    """Cancel a Scheduled event."""
    ctx.controller.cancel_event(a.id)
    return {}


@dataclass(frozen=True)
class WalkStart:
    """``walk_start``: planned maintenance of an availability set."""

    avset: str = name("availability set")
    notice: float = number(bounds.NOTICE_S, "the notice (--notice)", default=900.0)
    downtime: float = number(bounds.DOWNTIME_S, "the downtime (--downtime)", default=60.0)


@command("walk_start", WalkStart)
def walk_start(ctx: Context, a: WalkStart) -> dict:
    """Start a walk, one update domain at a time; answers its status."""
    c = ctx.controller
    walk_id = c.start_walk(a.avset, a.notice, a.downtime)
    return {"walk": c.planner.walk_status(walk_id).to_dict()}


@dataclass(frozen=True)
class VmName:
    """``vm_start``: one VM."""

    vm: str = name("vm")


@command("vm_start", VmName)
def vm_start(ctx: Context, a: VmName) -> dict:
    """Power a stopped VM on again (after AWS's instance-stop or a spot stop)."""
    ctx.controller.vm_start(a.vm)
    return {}


@dataclass(frozen=True)
class NodeName:
    """``node_fail`` and ``node_recover``: one node."""

    node: str = name("node")


@command("node_fail", NodeName)
def node_fail(ctx: Context, a: NodeName) -> dict:
    """Cut a node for real (uplink and bridge down; its host agent falls silent)."""
    ctx.controller.node_fail(a.node)
    return {}


@command("node_recover", NodeName)
def node_recover(ctx: Context, a: NodeName) -> dict:
    """Bring a failed node back."""
    ctx.controller.node_recover(a.node)
    return {}


@command("snapshot")
def snapshot(ctx: Context, a: NoArguments) -> dict:
    """Walks, events, placement, failed nodes and claims: what watch and status show."""
    snap = ctx.controller.snapshot()
    snap["claims"] = ctx.linklocal.status() if ctx.linklocal else {}
    book = getattr(ctx, "faults", None)  # issue 13: the faults, for watch, status and the demo
    snap["faults"] = book.describe() if book is not None else []
    return snap
