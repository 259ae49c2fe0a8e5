"""Scheduled (maintenance) events and the per-node store the metadata server reads.

An :class:`Event` is frozen data. The API layer only needs the small :class:`EventView`
protocol; :class:`EventStore` is its in-memory implementation, which a later issue
replaces with the host agent's durable SQLite repository behind the same protocol.

Visibility follows Azure: an event is *broadcast* to every VM of its availability set,
and ``Resources`` says which VMs it affects (``shared/reference/cloud-metadata-apis.md``
section 2.2); a VM outside any availability set sees only the events naming it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Protocol, runtime_checkable

from netsim.errors import NetsimError

EVENT_TYPES = ("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")
STATUSES = ("Scheduled", "Started")
SOURCES = ("Platform", "User")


class EventError(NetsimError):
    """An event was built or handled wrongly (a caller's mistake, not the peer's)."""


@dataclass(frozen=True)
class Event:
    """One scheduled event.

    ``not_before`` and ``created`` are epoch seconds; ``duration_s`` is -1 when the
    impact is unknown and 0 when there is none; ``avset`` is the availability set the
    event is broadcast to ("" = only the ``resources`` see it).
    """

    event_id: str
    event_type: str
    resources: tuple[str, ...]
    not_before: float
    created: float
    status: str = "Scheduled"
    description: str = ""
    source: str = "Platform"
    duration_s: int = -1
    avset: str = ""

    def __post_init__(self) -> None:
        if self.event_type not in EVENT_TYPES:
            raise EventError(f"event {self.event_id}: type {self.event_type!r} is not one of {EVENT_TYPES}")
        if self.status not in STATUSES:
            raise EventError(f"event {self.event_id}: status {self.status!r} is not one of {STATUSES}")
        if self.source not in SOURCES:
            raise EventError(f"event {self.event_id}: source {self.source!r} is not one of {SOURCES}")
        if isinstance(self.resources, str) or not isinstance(self.resources, tuple):
            raise EventError(f"event {self.event_id}: resources must be a tuple of VM names")

    def visible_to(self, vm: str, avset: str = "") -> bool:
        """Whether VM ``vm`` of availability set ``avset`` sees this event."""
        return vm in self.resources or (bool(avset) and avset == self.avset)


@runtime_checkable
class EventView(Protocol):
    """What the metadata API needs from a node's events."""

    @property
    def document_incarnation(self) -> int:
        """A number that increases whenever an event array served by this view changes."""
        ...

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The events VM ``vm`` (of availability set ``avset``) sees, oldest first."""
        ...

    def approve(self, event_id: str) -> bool:
        """Approve (start early) an event; False if no such event exists."""
        ...


class EventStore:
    """In-memory events of one node; implements :class:`EventView`.

    ``on_approve`` is called with the started event the first time a VM approves it
    (the host agent makes the event real from there). Not thread-safe: change it from
    the server's event loop (e.g. :meth:`netsim_imds.background.ServerThread.run`).
    """

    def __init__(self, events: Iterable[Event] = (),
                 on_approve: Callable[[Event], None] | None = None) -> None:
        self._events: dict[str, Event] = {}
        self._incarnation = 1
        self.on_approve = on_approve
        for e in events:
            self.add(e)

    @property
    def document_incarnation(self) -> int:
        """Starts at 1 and increases on every add, start and remove."""
        return self._incarnation

    def _changed(self) -> None:
        self._incarnation += 1

    def add(self, event: Event) -> None:
        """File a new event; a second event with the same id is an error."""
        if event.event_id in self._events:
            raise EventError(f"event {event.event_id} already exists on this node")
        self._events[event.event_id] = event
        self._changed()

    def get(self, event_id: str) -> Event | None:
        """The event with this id, or None."""
        return self._events.get(event_id)

    def all(self) -> tuple[Event, ...]:
        """Every event of the node, in the order they were added."""
        return tuple(self._events.values())

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The events VM ``vm`` of availability set ``avset`` sees, in the order added."""
        return tuple(e for e in self._events.values() if vm in e.resources or (avset and e.avset == avset))

    def start(self, event_id: str) -> Event:
        """Mark an event Started (NotBefore is then served blank); returns it."""
        event = self._events.get(event_id)
        if event is None:
            raise EventError(f"no event {event_id} on this node")
        if event.status != "Started":
            event = replace(event, status="Started")
            self._events[event_id] = event
            self._changed()
        return event

    def approve(self, event_id: str) -> bool:
        """A VM approved the event: start it now for all its resources (False if unknown)."""
        event = self._events.get(event_id)
        if event is None:
            return False
        if event.status == "Started":
            return True  # already approved or started: still a valid request (200)
        started = self.start(event_id)
        if self.on_approve is not None:
            self.on_approve(started)
        return True

    def start_due(self, now: float) -> list[Event]:
        """Start every Scheduled event whose NotBefore has passed; return those started."""
        due = [e.event_id for e in self._events.values() if e.status == "Scheduled" and e.not_before <= now]
        return [self.start(i) for i in due]

    def remove(self, event_id: str) -> bool:
        """Drop an event (done or canceled); False if it was not there."""
        if self._events.pop(event_id, None) is None:
            return False
        self._changed()
        return True
