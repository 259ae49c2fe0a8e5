"""The cloud-neutral event model: one :class:`Event`, its kinds and lifecycle, and the
per-node view the metadata server reads.

Every cloud announces the same few things to a VM: it will be paused, rebooted, moved
(redeployed), evicted (preempted) or deleted (terminated), or merely told something
(a notice with no effect, such as AWS's rebalance recommendation). An :class:`Event`
says which (:class:`Kind`), who asked (:class:`Source`), where it stands in its life
(:class:`Status`: Scheduled -> Started -> Completed | Canceled) and when (not before,
not after, for how long). The planner, the repository and every flavor share it.

A flavor speaks its own language over this model through an :class:`EventMapping`
(names, default notices, default impacts, texts): Azure's is
:mod:`netsim_imds.azure.events`. :func:`mapping_for` finds a flavor's mapping by its
cloud name (the flavor registers it when imported).

Visibility follows Azure's broadcast, which AWS and GCE do not contradict (a VM sees
its own events): an event is seen by every VM it names and, when it carries an
availability set, by every VM of that set (``shared/reference/cloud-metadata-apis.md``
section 2.2). :meth:`Event.visible_to` is the one place that rule lives.

:class:`EventView` is what the metadata API needs from a node's events;
:class:`EventStore` is an in-memory one (tests, benchmarks); the host agent's durable
one is :class:`netsim.maintenance.repository.NodeEventView`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Iterable, Mapping, Protocol, runtime_checkable

from netsim_imds.errors import NetsimError


class EventError(NetsimError):
    """An event was built or handled wrongly (a caller's mistake, not the peer's)."""


class Kind(enum.StrEnum):
    """What an event does to the VMs it names, in no cloud's words."""

    PAUSE = "pause"          # processes and network stopped, memory kept (Azure Freeze, GCE live migration)
    REBOOT = "reboot"        # down, then booted again (memory lost)
    REDEPLOY = "redeploy"    # moved to another node, keeping its identity, and booted there
    PREEMPT = "preempt"      # evicted (spot): the VM is deleted
    TERMINATE = "terminate"  # deleted
    STOP = "stop"            # powered off, and off until started again (AWS instance-stop, spot stop)
    NOTICE = "notice"        # nothing happens to the VM (a recommendation, an information)


class Status(enum.StrEnum):
    """Where an event stands: Scheduled -> Started -> Completed, or Scheduled -> Canceled."""

    SCHEDULED = "Scheduled"
    STARTED = "Started"
    COMPLETED = "Completed"
    CANCELED = "Canceled"


class Source(enum.StrEnum):
    """Who asked for the event: the platform, or the VM's owner."""

    PLATFORM = "Platform"
    USER = "User"


LIVE = frozenset({Status.SCHEDULED, Status.STARTED})
"""Statuses of an event that is not over yet."""

GONE_KINDS = frozenset({Kind.PREEMPT, Kind.TERMINATE})
"""Kinds whose effect deletes the VM for good."""

DOWNTIME_KINDS = frozenset({Kind.PAUSE, Kind.REBOOT, Kind.REDEPLOY})
"""Kinds that take the VM out of service for a while and give it back."""


def _enum(cls: type[enum.StrEnum], value: object, what: str, event_id: str) -> enum.StrEnum:
    try:
        return cls(value)
    except ValueError:
        raise EventError(f"event {event_id}: {what} {value!r} is not one of "
                         f"{tuple(m.value for m in cls)}") from None


@dataclass(frozen=True)
class Event:
    """One event, as every flavor and the repository hold it (frozen)."""

    event_id: str
    """Unique over the datacenter's life (a UUID); flavors may show it their own way."""
    kind: Kind
    """What happens to the VMs (:class:`Kind`); a flavor names it (Azure: ``EventType``)."""
    resources: tuple[str, ...]
    """Names of the VMs the event affects."""
    not_before: float
    """Epoch seconds before which the event does not start."""
    created: float
    """Epoch seconds at which it was filed."""
    status: Status = Status.SCHEDULED
    """Where it stands in its life (:class:`Status`)."""
    description: str = ""
    """A human text (each flavor has its defaults)."""
    source: Source = Source.PLATFORM
    """Who asked for it (:class:`Source`)."""
    duration_s: int | None = None
    """The impact announced to the VM, in whole seconds: 0 for none, None when unknown
    (Azure shows -1). The effect itself lasts the event's *impact*, which is this when
    known and the flavor's default for the kind otherwise."""
    avset: str = ""
    """The availability set the event is broadcast to ("": only ``resources`` see it)."""
    not_after: float | None = None
    """Epoch seconds by which the event is over (end of its window; None: unknown)."""
    ended: float | None = None
    """Epoch seconds at which it became Completed or Canceled (None while live)."""
    code: str = ""
    """The flavor's name of the event when it has several for its kind (AWS: ``instance-reboot``)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", _enum(Kind, self.kind, "kind", self.event_id))
        object.__setattr__(self, "status", _enum(Status, self.status, "status", self.event_id))
        object.__setattr__(self, "source", _enum(Source, self.source, "source", self.event_id))
        if isinstance(self.resources, str) or not isinstance(self.resources, tuple):
            raise EventError(f"event {self.event_id}: resources must be a tuple of VM names")
        if self.duration_s is not None and (isinstance(self.duration_s, bool) or not isinstance(self.duration_s, int)
                                            or self.duration_s < 0):
            raise EventError(f"event {self.event_id}: duration_s {self.duration_s!r} must be a whole number of "
                             f"seconds >= 0, or None when unknown")

    @property
    def live(self) -> bool:
        """Whether the event is Scheduled or Started."""
        return self.status in LIVE

    def visible_to(self, vm: str, avset: str = "") -> bool:
        """Whether VM ``vm`` of availability set ``avset`` sees this event (the one rule)."""
        return vm in self.resources or (bool(avset) and avset == self.avset)


# -- a flavor's words for the model -------------------------------------------------------

@dataclass(frozen=True)
class KindRule:
    """How one flavor names and times one :class:`Kind`."""

    name: str
    """The flavor's name for the kind (Azure: ``Freeze`` for pause)."""
    notice_s: float
    """Default notice: NotBefore - now when the caller gives none."""
    impact_s: float
    """How long the effect lasts (the event stays Started) when no duration is given."""
    description: str
    """Default description of a Platform event."""
    duration_s: int | None = None
    """The duration announced when the caller gives none (None: unknown)."""
    user_description: str | None = None
    """Default description of a User event (None: ``description``)."""


@dataclass(frozen=True)
class EventMapping:
    """One flavor's words and defaults for the event model; register it with :func:`register`."""

    cloud: str
    """The flavor's cloud name (``[datacenter] cloud``)."""
    kinds: Mapping[Kind, KindRule]
    """The kinds the flavor can show, with their names and defaults; others stay unseen."""
    maintenance_description: str
    """Description of an event of a planned maintenance walk."""
    emergency_description: str
    """Description of the event that announces service healing after a host failure."""
    shows_history: bool = False
    """Whether the flavor shows Completed and Canceled events to VMs."""
    source_names: Mapping[Source, str] = field(default_factory=lambda: MappingProxyType({s: s.value for s in Source}))
    """The flavor's name for each source."""
    codes: Mapping[str, tuple[Kind, KindRule]] = field(default_factory=lambda: MappingProxyType({}))
    """Other names of kinds: ``{name: (kind, rule named name)}`` (AWS: ``instance-reboot``); events keep it as ``code``."""
    shown_id: Callable[[Event], str] | None = None
    """The id the flavor's VMs (and ``netsim events``) see for an event (None: its own)."""

    def rule(self, kind: Kind) -> KindRule:
        """The rule of ``kind``; EventError if the flavor cannot show it."""
        rule = self.kinds.get(kind)
        if rule is None:
            raise EventError(f"the {self.cloud} flavor has no event for kind {kind!r}; "
                             f"it knows {', '.join(self.kinds)}")
        return rule

    def names(self) -> tuple[str, ...]:
        """The flavor's event names, in kind order, then its other :attr:`codes`."""
        return tuple(r.name for r in self.kinds.values()) + tuple(self.codes)

    def name_of(self, kind: Kind) -> str:
        """The flavor's name of ``kind``."""
        return self.rule(kind).name

    def kind_of(self, name: str) -> Kind:
        """The kind the flavor calls ``name``; EventError listing the names otherwise."""
        for kind, rule in (*self.kinds.items(), *self.codes.values()):
            if rule.name == name:
                return kind
        raise EventError(f"event type {name!r} is not one of {self.names()} ({self.cloud})")

    def rule_for(self, kind: Kind, code: str = "") -> KindRule:
        """The rule of ``kind``, or of ``code``, another of its names; EventError if it is not one."""
        if not code:
            return self.rule(kind)
        entry = self.codes.get(code)
        if entry is None or entry[0] is not kind:
            raise EventError(f"event code {code!r} is not another name of kind {kind.value!r} ({self.cloud})")
        return entry[1]

    def event_name(self, event: Event) -> str:
        """The flavor's name of ``event``: its code, or its kind's name."""
        return event.code or self.name_of(event.kind)

    def show_id(self, event: Event) -> str:
        """``event``'s id as the flavor's VMs see it."""
        return self.shown_id(event) if self.shown_id is not None else event.event_id

    def source_of(self, name: str) -> Source:
        """The source the flavor calls ``name``; EventError listing the names otherwise."""
        for source, shown in self.source_names.items():
            if shown == name:
                return source
        raise EventError(f"event source {name!r} is not one of {tuple(self.source_names.values())} ({self.cloud})")

    def shows(self, event: Event) -> bool:
        """Whether a VM of this flavor may see ``event`` at all (its kind and status)."""
        return event.kind in self.kinds and (event.live or self.shows_history)


_MAPPINGS: dict[str, EventMapping] = {}


def register(mapping: EventMapping) -> EventMapping:
    """Make ``mapping`` the event mapping of its cloud (a flavor calls this on import)."""
    _MAPPINGS[mapping.cloud] = mapping
    return mapping


NEUTRAL_KINDS: Mapping[Kind, KindRule] = MappingProxyType({
    Kind.PAUSE: KindRule("pause", 15 * 60.0, 5.0, "The VM is paused.", duration_s=5),
    Kind.REBOOT: KindRule("reboot", 15 * 60.0, 30.0, "The VM is rebooted."),
    Kind.REDEPLOY: KindRule("redeploy", 10 * 60.0, 60.0, "The VM moves to another host."),
    Kind.PREEMPT: KindRule("preempt", 30.0, 0.0, "The VM is evicted."),
    Kind.TERMINATE: KindRule("terminate", 15 * 60.0, 0.0, "The VM is deleted."),
    Kind.NOTICE: KindRule("notice", 0.0, 0.0, "A notice."),
})
"""The model's own words and Azure-like timings, for a flavor that registers no mapping."""


def mapping_for(cloud: str) -> EventMapping:
    """The event mapping of ``cloud``.

    The flavor of that name is resolved (:func:`netsim_imds.flavors.resolve`, which imports
    it, and it registers its mapping); a flavor that registers none speaks the model's own
    words (:data:`NEUTRAL_KINDS`, history shown). EventError if there is no such flavor.
    """
    if cloud in _MAPPINGS:
        return _MAPPINGS[cloud]
    from netsim_imds import flavors  # imports this module: resolved late
    try:
        flavors.resolve(cloud)
    except NetsimError as exc:
        raise EventError(f"no event mapping for cloud {cloud!r}: {exc}") from None
    return _MAPPINGS.get(cloud) or register(EventMapping(cloud, NEUTRAL_KINDS, "Planned maintenance.",
                                                         "Emergency repair.", shows_history=True))


def flavor_names() -> tuple[str, ...]:
    """Every event name of every flavor that can be found (for a command line's choices),
    in the order of each flavor's kinds, the default flavor first."""
    from netsim_imds import flavors
    out: dict[str, None] = {}
    for cloud in [flavors.DEFAULT_FLAVOR, *flavors.names()]:
        try:
            out.update(dict.fromkeys(mapping_for(cloud).names()))
        except Exception:  # noqa: BLE001 - a flavor that cannot be imported here offers no names,
            continue       # and must not break a command line that lists them
    return tuple(out)


# -- the views ------------------------------------------------------------------------------

@runtime_checkable
class EventView(Protocol):
    """What the metadata API needs from a node's events."""

    @property
    def document_incarnation(self) -> int:
        """A number that increases whenever an event array served by this view changes."""
        ...

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The live events VM ``vm`` (of availability set ``avset``) sees, oldest first."""
        ...

    def approve(self, event_id: str) -> bool:
        """Ask that an event start now (a VM's approval); False if no such event exists."""
        ...


class EventStore:
    """In-memory events of one node; implements :class:`EventView` and keeps history.

    ``on_approve`` is called with the started event the first time a VM approves it
    (the host agent makes the event real from there). Not thread-safe: change it from
    the server's event loop (e.g. :meth:`netsim_imds.background.ServerThread.run`).
    """

    def __init__(self, events: Iterable[Event] = (),
                 on_approve: Callable[[Event], None] | None = None) -> None:
        self._events: dict[str, Event] = {}
        self._history: list[Event] = []
        self._incarnation = 1
        self.on_approve = on_approve
        for e in events:
            self.add(e)

    @property
    def document_incarnation(self) -> int:
        """Starts at 1 and increases on every add, start and end."""
        return self._incarnation

    def _changed(self) -> None:
        self._incarnation += 1

    def add(self, event: Event) -> None:
        """File a new live event; a second event with the same id is an error."""
        if event.event_id in self._events:
            raise EventError(f"event {event.event_id} already exists on this node")
        if not event.live:
            raise EventError(f"event {event.event_id} is {event.status}: file a Scheduled or Started one")
        self._events[event.event_id] = event
        self._changed()

    def get(self, event_id: str) -> Event | None:
        """The live event with this id, or None."""
        return self._events.get(event_id)

    def all(self) -> tuple[Event, ...]:
        """Every live event of the node, in the order they were added."""
        return tuple(self._events.values())

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The live events VM ``vm`` of availability set ``avset`` sees, in the order added."""
        return tuple(e for e in self._events.values() if e.visible_to(vm, avset))

    def history_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The Completed and Canceled events VM ``vm`` sees, in the order they ended."""
        return tuple(e for e in self._history if e.visible_to(vm, avset))

    def start(self, event_id: str) -> Event:
        """Mark an event Started (NotBefore is then served blank); returns it."""
        event = self._events.get(event_id)
        if event is None:
            raise EventError(f"no event {event_id} on this node")
        if event.status != Status.STARTED:
            event = replace(event, status=Status.STARTED)
            self._events[event_id] = event
            self._changed()
        return event

    def approve(self, event_id: str) -> bool:
        """A VM approved the event: start it now for all its resources (False if unknown)."""
        event = self._events.get(event_id)
        if event is None:
            return False
        if event.status == Status.STARTED:
            return True  # already approved or started: still a valid request (200)
        started = self.start(event_id)
        if self.on_approve is not None:
            self.on_approve(started)
        return True

    def start_due(self, now: float) -> list[Event]:
        """Start every Scheduled event whose NotBefore has passed; return those started."""
        due = [e.event_id for e in self._events.values() if e.status == Status.SCHEDULED and e.not_before <= now]
        return [self.start(i) for i in due]

    def end(self, event_id: str, now: float, status: Status = Status.COMPLETED) -> Event | None:
        """Move a live event to history as Completed (or Canceled); None if it was not live."""
        event = self._events.pop(event_id, None)
        if event is None:
            return None
        if status not in (Status.COMPLETED, Status.CANCELED):
            raise EventError(f"an event ends Completed or Canceled, not {status!r}")
        ended = replace(event, status=status, ended=now)
        self._history.append(ended)
        self._changed()
        return ended

    def remove(self, event_id: str) -> bool:
        """Drop a live event without history (it moved to another node); False if it was not there."""
        if self._events.pop(event_id, None) is None:
            return False
        self._changed()
        return True
