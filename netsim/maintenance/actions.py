"""What the maintenance planner asks the I/O layer to do, as frozen values.

Every action carries an idempotency :attr:`key` (``event_id/subject/step``), unique
over the life of a datacenter: the I/O layer records applied keys in the repository
(:mod:`netsim.maintenance.repository`) and skips a key it has already applied, so a
planner restored after a crash may hand the same action out again without it taking
effect twice.

Actions and events convert to and from JSON-ready dicts (:func:`action_to_dict`,
:func:`action_from_dict`) because the planner's saved state holds the actions it has
produced and not yet handed out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Union

from netsim_imds.events import DOWNTIME_KINDS, GONE_KINDS, Event, Kind

from netsim.maintenance.errors import MaintenanceError

EFFECT_KINDS = DOWNTIME_KINDS | GONE_KINDS | {Kind.STOP}
"""The kinds whose effect a host agent makes real (a notice has none)."""


def event_to_dict(event: Event) -> dict:
    """A JSON-ready dict of every field of ``event``."""
    out = dataclasses.asdict(event)
    out.update(resources=list(event.resources), kind=event.kind.value, status=event.status.value,
               source=event.source.value)
    return out


def event_from_dict(data: dict) -> Event:
    """The :class:`~netsim_imds.events.Event` written by :func:`event_to_dict`."""
    return Event(**{**data, "resources": tuple(data["resources"])})


@dataclass(frozen=True, slots=True)
class FileEvent:
    """Store ``event`` in the repository of ``node``: VMs of that node see it from now on."""

    node: str
    event: Event
    step: str = "file"

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/node/step``."""
        return f"{self.event.event_id}/{self.node}/{self.step}"


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    """Replace the copy of ``event`` stored on ``node`` (its status changed to ``event.status``)."""

    node: str
    event: Event
    step: str = "start"

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/node/step``."""
        return f"{self.event.event_id}/{self.node}/{self.step}"


@dataclass(frozen=True, slots=True)
class RemoveEvent:
    """Drop event ``event_id`` from the repository of ``node`` (done, canceled or moved away)."""

    node: str
    event_id: str
    step: str = "remove"

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/node/step``."""
        return f"{self.event_id}/{self.node}/{self.step}"


@dataclass(frozen=True, slots=True)
class EndEvent:
    """Keep ``event`` (now Completed or Canceled) in the datacenter's event history."""

    event: Event
    step: str = "end"

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/history/step``."""
        return f"{self.event.event_id}/history/{self.step}"


@dataclass(frozen=True, slots=True)
class ApplyEffect:
    """Make event ``event_id`` real for VM ``vm`` on ``node``; report it with ``effect_done``.

    ``kind`` is the event's :class:`~netsim_imds.events.Kind`: pause stops the VM for
    ``duration_s`` seconds (the event's impact), reboot keeps it down ``duration_s``
    seconds then boots it, redeploy moves it to ``target_node`` and boots it there after
    ``duration_s`` seconds, preempt and terminate remove it.
    """

    event_id: str
    vm: str
    node: str
    kind: Kind
    duration_s: float
    target_node: str | None = None
    step: str = "effect"

    def __post_init__(self) -> None:
        if self.kind not in EFFECT_KINDS:
            raise MaintenanceError(f"effect kind {self.kind!r} is not one of {sorted(EFFECT_KINDS)}")
        object.__setattr__(self, "kind", Kind(self.kind))

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/vm/step``."""
        return f"{self.event_id}/{self.vm}/{self.step}"


@dataclass(frozen=True, slots=True)
class Heal:
    """Service healing: restore VM ``vm`` of failed ``from_node`` on ``to_node`` and boot it.

    ``event_id`` is the Started Reboot event that announces it; report the VM with
    ``vm_back`` once it runs again. ``stay_off``: the VM was stopped (powered off until
    started again): its port moves, it is not booted (:mod:`netsim.maintenance.power`).
    """

    event_id: str
    vm: str
    from_node: str
    to_node: str
    step: str = "heal"
    stay_off: bool = False

    @property
    def key(self) -> str:
        """Idempotency key: ``event_id/vm/step``."""
        return f"{self.event_id}/{self.vm}/{self.step}"


Action = Union[FileEvent, UpdateEvent, RemoveEvent, EndEvent, ApplyEffect, Heal]
"""Anything :meth:`Planner.pop_actions <netsim.maintenance.planner.Planner.pop_actions>` returns."""

REPOSITORY_ACTIONS = (FileEvent, UpdateEvent, RemoveEvent, EndEvent)
"""Actions that only change the event repository (it applies them with their key in one transaction)."""

_CLASSES: dict[str, type] = {c.__name__: c for c in (FileEvent, UpdateEvent, RemoveEvent, EndEvent, ApplyEffect, Heal)}

ChangedNames = dict[str, "set[str] | None"]
"""Node -> the names (VMs, availability set) that see a change of its events (None: any)."""


def note_change(changed: ChangedNames, action: Action, stored: Callable[[str, str], "Event | None"]) -> None:
    """Add to ``changed`` what ``action`` changes on its node, before it is applied:
    ``stored(node, event_id)`` is the copy a RemoveEvent drops (the metadata server then
    wakes only the long polls of those names). An EndEvent names no node: it comes with
    the RemoveEvents of the nodes that showed it."""
    if not isinstance(action, (FileEvent, UpdateEvent, RemoveEvent)):
        return
    event = stored(action.node, action.event_id) if isinstance(action, RemoveEvent) else action.event
    known = changed.get(action.node, set())
    if event is None or known is None:
        changed[action.node] = None
        return
    known.update(event.resources)
    if event.avset:
        known.add(event.avset)
    changed[action.node] = known


def action_to_dict(action: Action) -> dict:
    """A JSON-ready dict of ``action``, tagged with its class name under ``"action"``."""
    out: dict = {"action": type(action).__name__}
    for f in dataclasses.fields(action):
        value = getattr(action, f.name)
        out[f.name] = event_to_dict(value) if isinstance(value, Event) else value
    return out


def action_from_dict(data: dict) -> Action:
    """The action written by :func:`action_to_dict`."""
    fields = dict(data)
    cls = _CLASSES.get(fields.pop("action", None))
    if cls is None:
        raise MaintenanceError(f"saved action {data!r} has no known 'action' tag; the state was written "
                               f"by another netsim version")
    if "event" in fields:
        fields["event"] = event_from_dict(fields["event"])
    return cls(**fields)
