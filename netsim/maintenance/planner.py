"""The maintenance planner: update-domain walks, one-off events and service healing, sans-IO.

A :class:`Planner` never reads a clock, sleeps or touches a socket. Every input takes
``now`` (epoch seconds: NotBefore is served as a date), :meth:`Planner.next_deadline`
says when :meth:`Planner.tick` is next due, event ids come from the ``random.Random``
passed in, and what must happen comes out of :meth:`Planner.pop_actions` as frozen
actions (:mod:`netsim.maintenance.actions`), each with an idempotency key.

The life of an event and of a walk are the tables of :mod:`netsim.maintenance.tables`.
Facts are from ``shared/reference/cloud-metadata-apis.md`` section 2: an event is
Scheduled with NotBefore = now + notice, Started at NotBefore or on the first
approval ("approving proceeds the event for all Resources"), and disappears when its
effect is over. Events are broadcast to the whole availability set (2.2), so each
event is filed on every node holding a VM it names *or* a VM of its set.

Durability: :meth:`Planner.to_dict` captures everything, including the random
generator and the actions not yet popped, as JSON-ready data. A driver saves it after
every input, then pops and applies the actions, recording each key as applied; after
a crash, :meth:`Planner.from_dict` gives back a planner that hands the unapplied
actions out again and continues exactly as the lost one would have.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable, Sequence

from netsim_imds.events import EVENT_TYPES, SOURCES, Event

from netsim.model import bounds
from netsim.maintenance.actions import Action, Heal
from netsim.maintenance.book import EventBook
from netsim.maintenance.errors import IllegalInput, MaintenanceError, UnknownWalk, WalkInProgress
from netsim.maintenance.fleet import Fleet
from netsim.maintenance.records import EventRecord, WalkRecord, WalkStatus
from netsim.maintenance.tables import (DEFAULT_DESCRIPTION, DEFAULT_DURATION_S, DEFAULT_HEARTBEAT_TIMEOUT_S,
                                       EMERGENCY, GONE_KINDS, MAINTENANCE, MIN_NOTICE_S, USER_DESCRIPTION,
                                       WALK_HINTS, WALK_TRANSITIONS, EventInput, Origin, Phase, WalkInput, WalkState)
from netsim.model.topology import Datacenter

STATE_VERSION = 1
"""Version of the :meth:`Planner.to_dict` format."""

WalkMember = tuple[str, str, int]
"""``(vm_name, node, update_domain)``: one VM of a walked availability set."""


def walk_members(dc: Datacenter, avset: str) -> list[WalkMember]:
    """The ``(vm, node, update_domain)`` list of availability set ``avset`` in topology ``dc``."""
    return [(v.name, v.node, v.update_domain) for v in dc.vms if v.availability_set == avset]


class Planner:
    """Plans and tracks every maintenance activity of one datacenter.

    ``rng`` mints event ids; ``heartbeat_timeout_s`` is how long a registered node may
    stay silent before it is declared failed; ``notices`` overrides entries of
    :data:`~netsim.maintenance.tables.MIN_NOTICE_S` (shortened timings for tests and demos).
    """

    def __init__(self, rng: random.Random, *, heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
                 notices: dict[str, float] | None = None) -> None:
        unknown = set(notices or ()) - set(EVENT_TYPES)
        if unknown:
            raise MaintenanceError(f"notices for unknown event types {sorted(unknown)}; use {EVENT_TYPES}")
        self._rng = rng
        self._timeout = bounds.check(heartbeat_timeout_s, bounds.HEARTBEAT_TIMEOUT_S, "heartbeat_timeout_s",
                                     MaintenanceError)
        self._notices: dict[str, float] = {**MIN_NOTICE_S, **{
            kind: bounds.check(s, bounds.NOTICE_S, f"notice of {kind}", MaintenanceError)
            for kind, s in (notices or {}).items()}}
        self._walks: dict[str, WalkRecord] = {}
        self._walk_seq = 0
        self._fleet = Fleet()
        self._book = EventBook(rng, self._fleet, self._event_started, self._event_finished)

    @classmethod
    def for_datacenter(cls, dc: Datacenter, rng: random.Random, now: float, **settings: Any) -> "Planner":
        """A planner that knows every VM of topology ``dc`` and watches every node from ``now``."""
        planner = cls(rng, **settings)
        for n in dc.nodes:
            planner.heartbeat(n.name, now)
        for v in dc.vms:
            planner.add_vm(v.name, v.node, v.availability_set or "")
        return planner

    # -- what the caller reads --------------------------------------------------------

    def pop_actions(self) -> list[Action]:
        """Return and forget the actions produced so far, in order."""
        return self._book.pop_actions()

    def next_deadline(self) -> float | None:
        """Absolute time at which :meth:`tick` is next due (a NotBefore or a heartbeat timeout)."""
        times = self._book.deadlines()
        if len(self._fleet.live()) > 1:  # a lone node has nowhere to be healed to (see tick)
            times += self._fleet.heartbeat_deadlines(self._timeout)
        return min(times) if times else None

    def events(self) -> tuple[Event, ...]:
        """Every live event, in the order they were filed."""
        return tuple(r.event for r in self._book)

    def event(self, event_id: str) -> Event | None:
        """The live event with this id, or None."""
        rec = self._book.get(event_id)
        return rec.event if rec else None

    def node_of(self, vm: str) -> str | None:
        """The node the planner believes holds ``vm`` (None if unknown or gone)."""
        return self._fleet.node_of(vm) if vm in self._fleet else None

    def failed_nodes(self) -> tuple[str, ...]:
        """Nodes declared failed and not heard from since."""
        return tuple(self._fleet.failed_nodes())

    def walks(self) -> tuple[WalkStatus, ...]:
        """Every walk, oldest first, as ``netsim maintenance status`` shows it."""
        return tuple(self.walk_status(w) for w in self._walks)

    def walk_status(self, walk_id: str) -> WalkStatus:
        """One walk's current UD, done UDs, pending UDs and state."""
        walk = self._walks.get(walk_id)
        if walk is None:
            raise UnknownWalk(walk_id)
        uds = [ud for ud, _ in walk.uds]
        rec = self._book.get(walk.event_id or "")
        current = uds[walk.index] if walk.active else None
        pending = uds[walk.index + 1:] if walk.active else uds[walk.index:]
        not_before = rec.event.not_before if rec and rec.phase is Phase.SCHEDULED else None
        return WalkStatus(walk.walk_id, walk.avset, walk.state.value, current, tuple(walk.done_uds), tuple(pending),
                          walk.event_id, not_before, walk.started_at, walk.finished_at)

    # -- inputs: placement and health --------------------------------------------------

    def add_vm(self, vm: str, node: str, avset: str = "") -> None:
        """Tell the planner that ``vm`` (of availability set ``avset``) runs on ``node``."""
        self._fleet.place(vm, node, avset)
        self._book.sync_all()

    def vm_removed(self, vm: str, now: float) -> None:
        """``vm`` was deleted outside maintenance: forget it and every effect waiting on it."""
        self._book.vm_gone(vm, now)

    def heartbeat(self, node: str, now: float) -> None:
        """``node``'s host agent is alive; a failed node that speaks again is healthy (and empty)."""
        self._fleet.heartbeat(node, now)

    def grace(self, now: float) -> None:
        """Count every watched node as heard from at ``now``.

        Call it after restoring a saved planner, so that the daemon's own downtime is not
        taken for the failure of every node.
        """
        self._fleet.grace(now)

    def node_failed(self, node: str, healthy_nodes: Sequence[str], now: float) -> dict[str, str]:
        """Service healing: restore every VM of ``node`` on ``healthy_nodes``, without notice.

        Azure, on an actual host failure, skips Scheduled: an event with EventType=Reboot,
        EventStatus=Started appears at once (reference section 2.3). One such event is
        filed per availability set of the failed node's VMs, and one :class:`Heal` action
        per VM; VMs go to the least-loaded healthy node (ties in the order given), so they
        spread round-robin. VMs being preempted or terminated are not restored. Returns
        ``{vm: new_node}``.
        """
        victims = self._fleet.vms_on(node)
        candidates = [n for n in dict.fromkeys(healthy_nodes) if n != node and not self._fleet.is_failed(n)]
        if victims and not candidates:
            raise MaintenanceError(f"node {node} failed but no healthy node is left to restore its VMs "
                                   f"{victims} on; bring a node back (heartbeat) and call node_failed again")
        self._fleet.mark_failed(node, now)
        for vm in victims:
            if any(r.event.event_type in GONE_KINDS for r in self._book.waiting_for(vm)):
                self._book.vm_gone(vm, now)  # being deleted anyway: nothing to restore
        victims = [vm for vm in victims if vm in self._fleet]
        moves = self._fleet.spread(victims, candidates)
        groups: dict[str, list[str]] = {}
        for vm in victims:
            self._fleet.place(vm, moves[vm])
            groups.setdefault(self._fleet.avset_of(vm), []).append(vm)
        for avset, vms in groups.items():
            event = Event(self._book.new_id(), "Reboot", tuple(vms), now, now, status="Started",
                          description=EMERGENCY, source="Platform", duration_s=-1, avset=avset)
            self._book.add(EventRecord(event, Origin.HEAL, Phase.STARTED, effect_s=0.0, pending=list(vms)))
            for vm in vms:
                self._book.emit(Heal(event.event_id, vm, node, moves[vm]))
        self._book.sync_all()  # copies of other events leave the dead node and follow their VMs
        return moves

    # -- inputs: walks -----------------------------------------------------------------

    def start_walk(self, avset: str, vms: Iterable[WalkMember], notice_s: float, downtime_s: float,
                   now: float) -> str:
        """Walk ``avset``'s update domains in ascending order, one at a time; returns the walk id.

        For the current UD one Reboot event names all its VMs, NotBefore = now +
        ``notice_s``; once Started each VM is rebooted for ``downtime_s`` seconds; when
        all are back (:meth:`vm_back`) the event goes and the next UD gets its own notice.
        """
        members = list(vms)
        if not avset:
            raise MaintenanceError("a walk needs an availability set name; single VMs use add_event")
        if not members:
            raise MaintenanceError(f"availability set {avset!r} has no VMs to walk; check its name")
        names = [m[0] for m in members]
        if len(set(names)) != len(names):
            raise MaintenanceError(f"walk of {avset!r}: a VM is listed twice in {names}; list each VM once")
        # Before any change: a nan or inf here would file an event SQLite refuses (or
        # serves as a 500), leaving a walk stuck in its notice.
        notice_s = bounds.check(notice_s, bounds.NOTICE_S, "notice", MaintenanceError)
        downtime_s = bounds.check(downtime_s, bounds.DOWNTIME_S, "downtime", MaintenanceError)
        if not all(isinstance(ud, int) and not isinstance(ud, bool) for _, _, ud in members):
            raise MaintenanceError(f"walk of {avset!r}: update domains must be integers, not {members}")
        for walk in self._walks.values():
            if walk.avset == avset and walk.active:
                raise WalkInProgress(avset, walk.walk_id)
        for vm, node, _ in members:
            self._fleet.place(vm, node, avset)
        uds: dict[int, list[str]] = {}
        for vm, _, ud in sorted(members, key=lambda m: m[2]):
            uds.setdefault(int(ud), []).append(vm)
        self._walk_seq += 1
        walk = WalkRecord(f"walk-{self._walk_seq}", avset, list(uds.items()), float(notice_s), float(downtime_s), now)
        self._walks[walk.walk_id] = walk
        self._book.sync_all()
        self._file_ud(walk, now)
        return walk.walk_id

    def cancel_walk(self, walk_id: str, now: float) -> None:
        """Stop a walk: a Scheduled event is withdrawn; VMs already rebooting finish their UD first."""
        walk = self._walks.get(walk_id)
        if walk is None:
            raise UnknownWalk(walk_id)
        self._walk(walk, WalkInput.CANCEL, now)

    # -- inputs: one-off events --------------------------------------------------------

    def add_event(self, vm: str, node: str, avset: str, event_type: str, now: float, notice_s: float | None = None,
                  duration_s: int | None = None, description: str | None = None, source: str = "Platform") -> str:
        """File one event of any Azure type for ``vm`` on ``node``; returns its id.

        Defaults: notice from :data:`MIN_NOTICE_S` (or the planner's ``notices``),
        DurationInSeconds from :data:`DEFAULT_DURATION_S`, a description per type. The
        effect of a Freeze lasts ``duration_s``; of a Reboot or Redeploy, ``duration_s``
        of downtime (none when -1).
        """
        if event_type not in EVENT_TYPES:
            raise MaintenanceError(f"event type {event_type!r} is not one of {EVENT_TYPES}")
        if source not in SOURCES:
            raise MaintenanceError(f"event source {source!r} is not one of {SOURCES}")
        # Checked before any change (nothing non-finite or out of range is ever filed).
        notice = self._notices[event_type] if notice_s is None else bounds.check(
            notice_s, bounds.NOTICE_S, "notice", MaintenanceError)
        duration = DEFAULT_DURATION_S[event_type] if duration_s is None else int(bounds.check(
            duration_s, bounds.DURATION_S, "duration", MaintenanceError))
        if not math.isfinite(now):
            raise MaintenanceError(f"now must be a finite time in seconds, not {now!r}")
        if description is None:
            description = (USER_DESCRIPTION if source == "User" and event_type in ("Reboot", "Redeploy")
                           else DEFAULT_DESCRIPTION[event_type])
        if event_type == "Redeploy" and not [n for n in self._fleet.healthy_nodes() if n != node]:
            raise MaintenanceError(f"Redeploy moves {vm} off {node}, but no other healthy node is known; "
                                   f"register nodes with heartbeat() or file a Reboot instead")
        self._fleet.place(vm, node, avset)
        effect = 0.0 if event_type in GONE_KINDS else float(max(duration, 0))
        event = Event(self._book.new_id(), event_type, (vm,), now + notice, now, description=description,
                      source=source, duration_s=duration, avset=avset)
        self._book.sync_all()  # the VM may be new to its set: earlier events of the set reach its node
        self._book.add(EventRecord(event, Origin.ONE_OFF, Phase.SCHEDULED, effect_s=effect))
        return event.event_id

    def cancel_event(self, event_id: str, now: float) -> None:
        """Withdraw a Scheduled one-off event (it disappears, as Azure's rare cancel)."""
        rec = self._book.get(event_id)
        if rec is None:
            raise MaintenanceError(f"no live event {event_id!r}; list events with netsim maintenance status")
        if rec.walk_id is not None:
            raise MaintenanceError(f"event {event_id} belongs to {rec.walk_id}; cancel the walk instead")
        self._book.dispatch(rec, EventInput.CANCEL, now)

    # -- inputs: progress --------------------------------------------------------------

    def approve(self, event_id: str, now: float) -> bool:
        """A VM approved the event: start it now for all its resources; False if no such event."""
        rec = self._book.get(event_id)
        if rec is None:
            return False
        self._book.dispatch(rec, EventInput.APPROVE, now)
        return True

    def tick(self, now: float) -> None:
        """Fire everything due at ``now``: heartbeat timeouts, then events reaching NotBefore."""
        self._check_heartbeats(now)
        while due := self._book.due(now):  # loops only when a walk files a UD with zero notice
            for rec in due:
                if rec.phase is Phase.SCHEDULED and self._book.get(rec.event_id) is rec:
                    self._book.dispatch(rec, EventInput.NOT_BEFORE, now)

    def effect_done(self, event_id: str, vm: str, now: float) -> bool:
        """The effect of ``event_id`` on ``vm`` is over; False if already reported (or gone).

        After a Redeploy the VM is on the target node; after Preempt or Terminate it no
        longer exists. The event disappears when its last VM is reported.
        """
        rec = self._book.get(event_id)
        if rec is None or (rec.phase is Phase.STARTED and vm not in rec.pending):
            return False
        kind, origin, target = rec.event.event_type, rec.origin, rec.targets.get(vm)
        self._book.dispatch(rec, EventInput.EFFECT_DONE, now, vm)
        if origin is not Origin.HEAL and kind == "Redeploy" and target and vm in self._fleet:
            self._fleet.place(vm, target)
            self._book.sync_all()
        elif origin is not Origin.HEAL and kind in GONE_KINDS:
            self._book.vm_gone(vm, now)
        return True

    def vm_back(self, vm: str, now: float) -> bool:
        """``vm`` booted again: completes every Started event waiting for it (not Preempt/Terminate).

        Returns False when nothing was waiting (a VM may boot for other reasons).
        """
        waiting = [r.event_id for r in self._book.waiting_for(vm) if r.event.event_type not in GONE_KINDS]
        return any([self.effect_done(event_id, vm, now) for event_id in waiting])

    # -- the walk table ----------------------------------------------------------------

    def _walk(self, walk: WalkRecord, inp: WalkInput, now: float) -> None:
        transition = WALK_TRANSITIONS.get((walk.state, inp))
        if transition is None:
            raise IllegalInput(f"walk {walk.walk_id}", walk.state, inp, WALK_HINTS[inp])
        nxt = getattr(self, transition.handler)(walk, now)
        if nxt not in transition.targets:  # a bug here, not the caller's
            raise AssertionError(f"{transition.handler} led {walk.state} -> {nxt}, not in the table")
        walk.state = nxt

    def _event_started(self, rec: EventRecord, now: float) -> None:
        if rec.walk_id is not None:
            self._walk(self._walks[rec.walk_id], WalkInput.EVENT_STARTED, now)

    def _event_finished(self, rec: EventRecord, now: float) -> None:
        walk = self._walks.get(rec.walk_id or "")
        if walk is not None and walk.event_id == rec.event_id and walk.state is WalkState.IMPACT:
            self._walk(walk, WalkInput.EVENT_DONE, now)

    # -- walk handlers: each returns the next state ------------------------------------

    def _walk_impact(self, walk: WalkRecord, now: float) -> WalkState:
        """The current UD's event started: its VMs are going down."""
        return WalkState.IMPACT

    def _walk_next(self, walk: WalkRecord, now: float) -> WalkState:
        """Every VM of the UD is back: file the next UD with a fresh notice, or finish."""
        walk.done_uds.append(walk.uds[walk.index][0])
        walk.index += 1
        walk.event_id = None
        if walk.stop_after:
            walk.finished_at = now
            return WalkState.CANCELED
        if self._file_ud(walk, now):
            return WalkState.NOTICE
        walk.finished_at = now
        return WalkState.DONE

    def _walk_cancel(self, walk: WalkRecord, now: float) -> WalkState:
        """Withdraw the Scheduled event of the current UD."""
        rec = self._book.get(walk.event_id or "")
        if rec is not None:
            self._book.dispatch(rec, EventInput.CANCEL, now)
        walk.event_id, walk.finished_at = None, now
        return WalkState.CANCELED

    def _walk_stop_after(self, walk: WalkRecord, now: float) -> WalkState:
        """VMs are rebooting: let this UD finish, then stop."""
        walk.stop_after = True
        return WalkState.IMPACT

    def _file_ud(self, walk: WalkRecord, now: float) -> bool:
        """File the event of the first UD from ``walk.index`` that still has VMs; False if none."""
        while walk.index < len(walk.uds):
            ud, names = walk.uds[walk.index]
            vms = tuple(vm for vm in names if vm in self._fleet)
            if vms:
                event = Event(self._book.new_id(), "Reboot", vms, now + walk.notice_s, now, description=MAINTENANCE,
                              source="Platform", duration_s=math.ceil(walk.downtime_s), avset=walk.avset)
                walk.event_id = event.event_id
                self._book.add(EventRecord(event, Origin.WALK, Phase.SCHEDULED, effect_s=walk.downtime_s,
                                           walk_id=walk.walk_id))
                return True
            walk.done_uds.append(ud)  # every VM of this UD is gone: nothing to reboot
            walk.index += 1
        return False

    # -- helpers -----------------------------------------------------------------------

    def _check_heartbeats(self, now: float) -> None:
        live, silent = self._fleet.live(), self._fleet.silent(now, self._timeout)
        if not silent or len(silent) == len(live):
            return  # every node silent at once: the watcher stalled, not the fleet
        healthy = [n for n in live if n not in silent]
        for node in silent:
            self.node_failed(node, healthy, now)

    # -- durability --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Everything, JSON-ready: events, walks, fleet, the RNG state and the unpopped actions."""
        version, internal, gauss = self._rng.getstate()
        return {"version": STATE_VERSION, "rng": [version, list(internal), gauss],
                "heartbeat_timeout_s": self._timeout, "notices": dict(self._notices), "walk_seq": self._walk_seq,
                "walks": [w.to_dict() for w in self._walks.values()], "fleet": self._fleet.to_dict(),
                **self._book.to_dict()}

    @classmethod
    def from_dict(cls, data: dict, rng: random.Random | None = None) -> "Planner":
        """The planner saved by :meth:`to_dict`; ``rng`` (optional) is reset to the saved state."""
        if data.get("version") != STATE_VERSION:
            raise MaintenanceError(f"saved planner state has version {data.get('version')!r}, this netsim reads "
                                   f"{STATE_VERSION}: finish the maintenance with the netsim that wrote it")
        rng = rng or random.Random()
        version, internal, gauss = data["rng"]
        rng.setstate((version, tuple(internal), gauss))
        planner = cls(rng, heartbeat_timeout_s=data["heartbeat_timeout_s"], notices=data["notices"])
        planner._walk_seq = data["walk_seq"]
        planner._walks = {w["walk_id"]: WalkRecord.from_dict(w) for w in data["walks"]}
        planner._fleet = Fleet.from_dict(data["fleet"])
        planner._book = EventBook(rng, planner._fleet, planner._event_started, planner._event_finished)
        planner._book.load(data)
        return planner
