"""The live events of a datacenter and their state table (pure; used by the planner).

An :class:`EventBook` runs :data:`~netsim.maintenance.tables.EVENT_TRANSITIONS` for
every live event, keeps each event filed on the nodes that must show it, and queues the
resulting actions. Walks, one-offs and healing (:mod:`netsim.maintenance.planner`)
create the events; the book tells its owner when one starts or finishes.

Placement of copies follows Azure's broadcast (reference section 2.2): an event is
shown on every node holding a VM it names *or* a VM of its availability set; when VMs
move (healing, Redeploy) or vanish, copies follow them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from typing import Callable, Iterator

from netsim_imds.events import DOWNTIME_KINDS, Kind, Status

from netsim.maintenance.actions import (EFFECT_KINDS, Action, ApplyEffect, EndEvent, FileEvent, RemoveEvent,
                                        UpdateEvent, action_from_dict, action_to_dict)
from netsim.maintenance.errors import IllegalInput
from netsim.maintenance.fleet import Fleet
from netsim.maintenance.records import EventRecord
from netsim.maintenance.tables import EVENT_HINTS, EVENT_TRANSITIONS, EventInput, Phase

Listener = Callable[[EventRecord, float], None]
"""Called with a record and ``now`` when an event starts or finishes."""


class EventBook:
    """Live events, their phases and copies; ``on_started``/``on_finished`` tell the owner."""

    def __init__(self, rng: random.Random, fleet: Fleet, on_started: Listener, on_finished: Listener) -> None:
        self._rng = rng
        self._fleet = fleet
        self._on_started, self._on_finished = on_started, on_finished
        self._records: dict[str, EventRecord] = {}
        self._actions: list[Action] = []

    # -- reading -----------------------------------------------------------------------

    def __iter__(self) -> Iterator[EventRecord]:
        return iter(list(self._records.values()))

    def __bool__(self) -> bool:
        return bool(self._records)

    def get(self, event_id: str) -> EventRecord | None:
        """The live record with this id, or None."""
        return self._records.get(event_id)

    def due(self, now: float) -> list[EventRecord]:
        """Scheduled events whose NotBefore has come, earliest first."""
        return sorted((r for r in self._records.values() if r.phase is Phase.SCHEDULED and r.event.not_before <= now),
                      key=lambda r: r.event.not_before)

    def deadlines(self) -> list[float]:
        """NotBefore of every Scheduled event."""
        return [r.event.not_before for r in self._records.values() if r.phase is Phase.SCHEDULED]

    def waiting_for(self, vm: str) -> list[EventRecord]:
        """Started events whose effect on ``vm`` is not reported done."""
        return [r for r in self._records.values() if r.phase is Phase.STARTED and vm in r.pending]

    # -- writing -----------------------------------------------------------------------

    def new_id(self) -> str:
        """A fresh event id (a version-4 UUID from the injected generator)."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def emit(self, action: Action) -> None:
        """Queue an action."""
        self._actions.append(action)

    def pop_actions(self) -> list[Action]:
        """Return and forget the queued actions, in order."""
        out, self._actions = self._actions, []
        return out

    def add(self, rec: EventRecord) -> None:
        """Make ``rec`` live and file it where it must be seen."""
        self._records[rec.event_id] = rec
        self.sync(rec)

    def dispatch(self, rec: EventRecord, inp: EventInput, now: float, arg: str | None = None) -> None:
        """Feed ``inp`` to event ``rec`` through the table; IllegalInput if it has no row."""
        transition = EVENT_TRANSITIONS.get((rec.phase, inp))
        if transition is None:
            raise IllegalInput(rec.phase, inp, EVENT_HINTS[inp], what=f"event {rec.event_id}")
        nxt = getattr(self, transition.handler)(rec, now, arg)
        if nxt not in transition.targets:  # a bug here, not the caller's
            raise AssertionError(f"{transition.handler} led {rec.phase} -> {nxt}, not in the table")
        rec.phase = nxt
        if nxt is Phase.FINISHED:
            for node in rec.nodes:
                self.emit(RemoveEvent(node, rec.event_id, rec.step("remove", node)))
            rec.nodes = []
            # The lifecycle's last state: kept as history (flavors that show it, such as
            # AWS's events/maintenance/history, read it from there).
            status = Status.CANCELED if inp is EventInput.CANCEL else Status.COMPLETED
            rec.event = replace(rec.event, status=status, ended=now)
            self.emit(EndEvent(rec.event))
            del self._records[rec.event_id]
            self._on_finished(rec, now)

    def vm_gone(self, vm: str, now: float) -> None:
        """``vm`` no longer exists: forget it and every effect still waiting on it."""
        self._fleet.remove(vm)
        for rec in self.waiting_for(vm):
            if rec.event_id in self._records and vm in rec.pending:
                self.dispatch(rec, EventInput.EFFECT_DONE, now, vm)
        self.sync_all()

    def sync(self, rec: EventRecord, members: dict[str, list[str]] | None = None) -> None:
        """File ``rec`` on every node that must show it; remove it from the others."""
        fleet = self._fleet
        if members is None:
            members = fleet.members()
        wanted = [fleet.node_of(vm) for vm in rec.event.resources if vm in fleet]
        wanted += members.get(rec.event.avset, []) if rec.event.avset else []
        wanted = [n for n in dict.fromkeys(wanted) if not fleet.is_failed(n)]
        for node in wanted:
            if node not in rec.nodes:
                self.emit(FileEvent(node, rec.event, rec.step("file", node)))
                rec.nodes.append(node)
        for node in [n for n in rec.nodes if n not in wanted]:
            self.emit(RemoveEvent(node, rec.event_id, rec.step("remove", node)))
            rec.nodes.remove(node)

    def sync_all(self) -> None:
        """:meth:`sync` every live event (after VMs moved, appeared or vanished)."""
        if self._records:
            members = self._fleet.members()
            for rec in list(self._records.values()):
                self.sync(rec, members)

    # -- handlers: each returns the next phase -----------------------------------------

    def _ev_start(self, rec: EventRecord, now: float, _: object) -> Phase:
        """Started: NotBefore is served blank; every VM still present gets its effect."""
        rec.event = replace(rec.event, status=Status.STARTED)
        for node in rec.nodes:
            self.emit(UpdateEvent(node, rec.event, rec.step("start", node)))
        kind = rec.event.kind
        # A notice has no effect: Started, then Completed at once. Nor has a pause, a reboot,
        # a move or a stop on a VM that is powered off: AWS does not start a stopped instance
        # for its maintenance (the host's work is done while it is off); a removal still is.
        skip_stopped = kind in DOWNTIME_KINDS or kind is Kind.STOP
        rec.pending = [vm for vm in rec.event.resources if vm in self._fleet
                       and not (skip_stopped and self._fleet.is_stopped(vm))] if kind in EFFECT_KINDS else []
        if kind is Kind.REDEPLOY:
            rec.targets = self._fleet.spread(rec.pending, self._fleet.healthy_nodes())
        elif kind is Kind.PAUSE:  # GCE's live migration: to another node (the fleet's policy)
            movers = [vm for vm in rec.pending if self._fleet.live_migrates(vm)]
            moves = self._fleet.spread(movers, self._fleet.healthy_nodes()) if movers else {}
            rec.targets = {vm: to for vm, to in moves.items() if to != self._fleet.node_of(vm)}  # a lone node stays
        for vm in rec.pending:
            self.emit(ApplyEffect(rec.event_id, vm, self._fleet.node_of(vm), self._fleet.effect_kind(vm, kind),
                                  rec.effect_s, rec.targets.get(vm)))
        self._on_started(rec, now)
        return Phase.STARTED if rec.pending else Phase.FINISHED

    def _ev_same(self, rec: EventRecord, now: float, _: object) -> Phase:
        """Nothing changes (approving a Started event)."""
        return rec.phase

    def _ev_effect_done(self, rec: EventRecord, now: float, vm: object) -> Phase:
        """One VM is done (a stop leaves it off until started: :mod:`netsim.maintenance.power`);
        the event goes when the last one is."""
        if vm in rec.pending:
            rec.pending.remove(vm)  # type: ignore[arg-type]
            if self._fleet.effect_kind(vm, rec.event.kind) is Kind.STOP:  # type: ignore[arg-type]
                self._fleet.set_stopped(vm, True)  # type: ignore[arg-type]
        return Phase.STARTED if rec.pending else Phase.FINISHED

    def _ev_cancel(self, rec: EventRecord, now: float, _: object) -> Phase:
        """Withdrawn before it started: Canceled (Azure's rare cancel: it disappears there)."""
        return Phase.FINISHED

    # -- durability --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Records and queued actions, JSON-ready."""
        return {"records": [r.to_dict() for r in self._records.values()],
                "actions": [action_to_dict(a) for a in self._actions]}

    def load(self, data: dict) -> None:
        """Replace records and queued actions with those written by :meth:`to_dict`."""
        self._records = {r["event"]["event_id"]: EventRecord.from_dict(r) for r in data["records"]}
        self._actions = [action_from_dict(a) for a in data["actions"]]
