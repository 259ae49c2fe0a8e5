"""The maintenance planner: update-domain walks, one-off events and service healing, sans-IO.

A :class:`Planner` never reads a clock, sleeps or touches a socket. Every input takes
``now`` (epoch seconds: NotBefore is served as a date), :meth:`Planner.next_deadline`
says when :meth:`Planner.tick` is next due, event ids come from the ``random.Random``
passed in, and what must happen comes out of :meth:`Planner.pop_actions` as frozen
actions (:mod:`netsim.maintenance.actions`), each with an idempotency key.

Events are the cloud-neutral model (:mod:`netsim_imds.events`): the planner speaks
kinds; the flavor's mapping gives notices, impacts and texts. The life of an event and
of a walk are the tables of :mod:`netsim.maintenance.tables` (walk handlers:
:class:`~netsim.maintenance.walks.WalkTable`). An event is Scheduled with NotBefore =
now + notice, Started at NotBefore or on the first approval (reference 2.4: "approving
proceeds the event for all Resources"), stays Started for its whole impact, then
leaves the nodes as Completed (or Canceled) history. Events are broadcast to the whole
availability set (2.2): each is filed on every node holding a VM it names or of its set.

Durability: :meth:`Planner.to_dict` captures everything (the random generator and the
actions not yet popped too) as JSON; saved after every input, it gives back, through
:meth:`Planner.from_dict`, a planner that hands the unapplied actions out again.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable, Mapping, Sequence

from netsim_imds.events import GONE_KINDS, Event, EventError, EventMapping, Kind, Source, Status, mapping_for

from netsim.model import bounds
from netsim.maintenance.actions import Action, Heal
from netsim.maintenance.book import EventBook
from netsim.maintenance.errors import MaintenanceError, UnknownWalk, WalkInProgress
from netsim.maintenance.fleet import Fleet
from netsim.maintenance.records import EventRecord, WalkRecord, WalkStatus
from netsim.maintenance.power import PowerInputs, power_policy
from netsim.maintenance.walks import WalkMember, WalkTable, walk_members  # noqa: F401 (walk_members: here too)
from netsim.maintenance.tables import DEFAULT_HEARTBEAT_TIMEOUT_S, EventInput, Origin, Phase, WalkInput
from netsim.model.topology import Datacenter

STATE_VERSION = 2
"""Version of the :meth:`Planner.to_dict` format."""


class Planner(WalkTable, PowerInputs):
    """Plans and tracks every maintenance activity of one datacenter.

    ``rng`` mints event ids; ``heartbeat_timeout_s`` is how long a registered node may
    stay silent before it is declared failed; ``cloud`` names the flavor whose
    :class:`~netsim_imds.events.EventMapping` gives each kind's default notice, impact
    and texts; ``notices`` and ``impacts`` override them per kind (shortened timings for
    tests and demos).
    """

    def __init__(self, rng: random.Random, *, heartbeat_timeout_s: float = DEFAULT_HEARTBEAT_TIMEOUT_S,
                 notices: dict[str, float] | None = None, impacts: dict[str, float] | None = None,
                 cloud: str = "azure") -> None:
        try:
            self.mapping: EventMapping = mapping_for(cloud)
        except EventError as exc:
            raise MaintenanceError(str(exc)) from None
        known = tuple(k.value for k in self.mapping.kinds)
        for what, table in (("notices", notices), ("impacts", impacts)):
            unknown = set(table or ()) - set(known)
            if unknown:
                raise MaintenanceError(f"{what} for unknown event kinds {sorted(unknown)}; use {known}")
        self._rng = rng
        self._timeout = bounds.check(heartbeat_timeout_s, bounds.HEARTBEAT_TIMEOUT_S, "heartbeat_timeout_s",
                                     MaintenanceError)
        rules = self.mapping.kinds
        self._notices: dict[Kind, float] = {**{k: r.notice_s for k, r in rules.items()}, **{
            Kind(kind): bounds.check(s, bounds.NOTICE_S, f"notice of {kind}", MaintenanceError)
            for kind, s in (notices or {}).items()}}
        self._impacts: dict[Kind, float] = {**{k: r.impact_s for k, r in rules.items()}, **{
            Kind(kind): bounds.check(s, bounds.DOWNTIME_S, f"impact of {kind}", MaintenanceError)
            for kind, s in (impacts or {}).items()}}
        self._walks: dict[str, WalkRecord] = {}
        self._walk_seq = 0
        self._fleet = Fleet()
        self._book = EventBook(rng, self._fleet, self._event_started, self._event_finished)

    @classmethod
    def for_datacenter(cls, dc: Datacenter, rng: random.Random, now: float,
                       placement: Mapping[str, str] | None = None, **settings: Any) -> "Planner":
        """A planner that knows every VM of topology ``dc`` and watches every node from ``now``;
        ``placement`` (the runtime's ``{vm: node}``; a VM missing from it is gone) says where
        each VM runs now, else VMs are where the topology built them."""
        planner = cls(rng, **settings)
        for n in dc.nodes:
            planner.heartbeat(n.name, now)
        for v in dc.vms:
            node = v.node if placement is None else placement.get(v.name)
            if node is not None:
                planner.add_vm(v.name, node, v.availability_set or "")
                planner._fleet.set_policy(v.name, **power_policy(dc, v))
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

    def saved_mark(self) -> tuple:
        """What changes the saved state even when no action comes: the events' deadlines and the
        nodes' failures (not the heartbeat times, which move every turn and :meth:`grace` resets)."""
        return min(self._book.deadlines(), default=None), tuple(self._fleet.failed_nodes()), len(self._fleet.live())

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
        taken for the failure of every node."""
        self._fleet.grace(now)

    def node_failed(self, node: str, healthy_nodes: Sequence[str], now: float) -> dict[str, str]:
        """Service healing: restore every VM of ``node`` on ``healthy_nodes``, without notice.

        Azure, on an actual host failure, skips Scheduled: an event with EventType=Reboot,
        EventStatus=Started appears at once (reference section 2.3). One such event is
        filed per availability set of the failed node's VMs, and one :class:`Heal` action
        per VM; VMs go to the least-loaded healthy node (ties in the order given), so they
        spread round-robin; a stopped VM is moved, not booted; VMs being preempted or
        terminated are not restored. Returns ``{vm: new_node}``.
        """
        victims = self._fleet.vms_on(node)
        candidates = [n for n in dict.fromkeys(healthy_nodes) if n != node and not self._fleet.is_failed(n)]
        if victims and not candidates:
            raise MaintenanceError(f"node {node} failed but no healthy node is left to restore its VMs "
                                   f"{victims} on; bring a node back (heartbeat) and call node_failed again")
        self._fleet.mark_failed(node, now)
        for vm in victims:
            if any(self._fleet.deletes(vm, r.event.kind) for r in self._book.waiting_for(vm)):
                self._book.vm_gone(vm, now)  # being deleted anyway: nothing to restore
        victims = [vm for vm in victims if vm in self._fleet]
        moves = self._fleet.spread(victims, candidates)
        groups: dict[str, list[str]] = {}
        for vm in victims:
            self._fleet.place(vm, moves[vm])
            groups.setdefault(self._fleet.avset_of(vm), []).append(vm)
        for avset, vms in groups.items():
            event = Event(self._book.new_id(), Kind.REBOOT, tuple(vms), now, now, status=Status.STARTED,
                          description=self.mapping.emergency_description, avset=avset)
            self._book.add(EventRecord(event, Origin.HEAL, Phase.STARTED, effect_s=0.0, pending=list(vms)))
            for vm in vms:
                self._book.emit(Heal(event.event_id, vm, node, moves[vm], stay_off=self._fleet.is_stopped(vm)))
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

    def add_event(self, vm: str, node: str, avset: str, kind: str, now: float, notice_s: float | None = None,
                  duration_s: int | None = None, description: str | None = None,
                  source: str = Source.PLATFORM, code: str = "") -> str:
        """File one event of ``kind`` (a :class:`~netsim_imds.events.Kind`) for ``vm`` on
        ``node``; returns its id.

        Defaults come from the flavor's mapping (or the planner's ``notices``/``impacts``):
        the notice, the announced duration and a description per kind. ``duration_s`` is
        the announced duration (None: unknown) and the impact: the event stays Started,
        the VM paused or down, that long; when it is unknown the impact is the kind's
        default. A preempt or terminate acts at once. ``code``: another name of the kind (its defaults).
        """
        kind = self._kind(kind)
        rule = self.mapping.rule_for(kind, code)  # EventError if code is not another name of kind
        if source not in tuple(Source):
            raise MaintenanceError(f"event source {source!r} is not one of {tuple(s.value for s in Source)}")
        source = Source(source)
        # Checked before any change (nothing non-finite or out of range is ever filed).
        notice = (rule.notice_s if code else self._notices[kind]) if notice_s is None else bounds.check(
            notice_s, bounds.NOTICE_S, "notice", MaintenanceError)
        if duration_s is None:
            duration = rule.duration_s
        else:
            duration = int(bounds.check(duration_s, bounds.DURATION_S, "duration", MaintenanceError))
            if duration < 0:  # one meaning of "unknown": None (a flavor may show it as -1)
                raise MaintenanceError("duration -1 is a display of 'unknown': pass None for an unknown duration")
        if not math.isfinite(now):
            raise MaintenanceError(f"now must be a finite time in seconds, not {now!r}")
        if description is None:
            description = (rule.user_description or rule.description) if source is Source.USER else rule.description
        if kind is Kind.REDEPLOY and not [n for n in self._fleet.healthy_nodes() if n != node]:
            raise MaintenanceError(f"a redeploy moves {vm} off {node}, but no other healthy node is known; "
                                   f"register nodes with heartbeat() or file a reboot instead")
        self._fleet.place(vm, node, avset)
        # Given, the duration is the impact; else the kind's default impact (which may differ
        # from what is announced: Azure announces an unknown reboot as -1).
        impact = rule.impact_s if code else self._impacts[kind]
        effect = 0.0 if kind in GONE_KINDS else float(impact if duration_s is None else duration)
        event = Event(self._book.new_id(), kind, (vm,), now + notice, now, description=description,
                      source=source, duration_s=duration, avset=avset, not_after=now + notice + effect, code=code)
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

        After a Redeploy the VM is on the target node; after a Terminate, or a Preempt that deletes
        it (:meth:`Fleet.deletes`), it no longer exists. The event disappears with its last VM.
        """
        rec = self._book.get(event_id)
        if rec is None or (rec.phase is Phase.STARTED and vm not in rec.pending):
            return False
        kind, origin, target = rec.event.kind, rec.origin, rec.targets.get(vm)
        self._book.dispatch(rec, EventInput.EFFECT_DONE, now, vm)
        if origin is not Origin.HEAL and kind in (Kind.REDEPLOY, Kind.PAUSE) and target and vm in self._fleet:
            self._fleet.place(vm, target)
            self._book.sync_all()
        elif origin is not Origin.HEAL and self._fleet.deletes(vm, kind):
            self._book.vm_gone(vm, now)
        return True

    def vm_back(self, vm: str, now: float) -> bool:
        """``vm`` booted again: completes every Started event waiting for it (not Preempt/Terminate).

        Returns False when nothing was waiting (a VM may boot for other reasons).
        """
        waiting = [r.event_id for r in self._book.waiting_for(vm) if not self._fleet.deletes(vm, r.event.kind)]
        return any([self.effect_done(event_id, vm, now) for event_id in waiting])

    # -- helpers -----------------------------------------------------------------------

    def _kind(self, kind: object) -> Kind:
        """``kind`` as a :class:`Kind` the flavor can show, or MaintenanceError naming them."""
        if not isinstance(kind, str) or kind not in self.mapping.kinds:  # "reboot" or Kind.REBOOT
            known = tuple(k.value for k in self.mapping.kinds)
            raise MaintenanceError(f"event kind {kind!r} is not one of {known} ({self.mapping.cloud})")
        return Kind(kind)

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
                "heartbeat_timeout_s": self._timeout, "cloud": self.mapping.cloud,
                "notices": {k.value: s for k, s in self._notices.items()},
                "impacts": {k.value: s for k, s in self._impacts.items()}, "walk_seq": self._walk_seq,
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
        planner = cls(rng, heartbeat_timeout_s=data["heartbeat_timeout_s"], notices=data["notices"],
                      impacts=data["impacts"], cloud=data["cloud"])
        planner._walk_seq = data["walk_seq"]
        planner._walks = {w["walk_id"]: WalkRecord.from_dict(w) for w in data["walks"]}
        planner._fleet = Fleet.from_dict(data["fleet"])
        planner._book = EventBook(rng, planner._fleet, planner._event_started, planner._event_finished)
        planner._book.load(data)
        return planner
