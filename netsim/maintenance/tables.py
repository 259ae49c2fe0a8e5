"""The constants and state tables of the maintenance planner.

Facts from ``shared/reference/cloud-metadata-apis.md`` section 2: minimum notice per
event type (2.3), descriptions (2.2), and the life of an event: ``Scheduled`` until
NotBefore or an approval (2.4), then ``Started``, then gone; never ``Completed`` (2.2).
Service healing after an actual host failure skips ``Scheduled`` (2.3).

Both state machines (one event, one update-domain walk) are tables keyed by (state,
input); an input without a row raises :class:`~netsim.maintenance.errors.IllegalInput`.
:func:`transition_rows` renders them for docs and diagrams.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

MIN_NOTICE_S: Mapping[str, float] = MappingProxyType({
    "Freeze": 15 * 60.0,
    "Reboot": 15 * 60.0,
    "Redeploy": 10 * 60.0,
    "Preempt": 30.0,
    # "user-configurable, 5 to 15 minutes" on a scale set: we default to the upper bound.
    "Terminate": 15 * 60.0,
})
"""Azure's minimum notice per event type (section 2.3), the default NotBefore - now."""

DEFAULT_DURATION_S: Mapping[str, int] = MappingProxyType({
    "Freeze": 5,        # the documented live-migration sample: "DurationInSeconds": 5
    "Reboot": -1,       # -1: impact unknown (section 2.2)
    "Redeploy": -1,
    "Preempt": -1,
    "Terminate": -1,
})
"""DurationInSeconds of a one-off event when the caller gives none."""

MAINTENANCE = "Host server is undergoing maintenance."
EMERGENCY = "Host server is undergoing an emergency repair."

DEFAULT_DESCRIPTION: Mapping[str, str] = MappingProxyType({
    "Freeze": "Virtual machine is being paused because of a memory-preserving Live Migration operation.",
    "Reboot": MAINTENANCE,
    "Redeploy": MAINTENANCE,
    "Preempt": "Spot virtual machine is being evicted.",
    "Terminate": "Virtual machine is being deleted.",
})
"""Description of a Platform one-off event when the caller gives none."""

USER_DESCRIPTION = "Virtual machine is going to be restarted as requested by authorized user."
"""Description of a User-sourced one-off event when the caller gives none."""

DEFAULT_HEARTBEAT_TIMEOUT_S = 3.0
"""A node silent for this long is declared failed and its VMs are healed elsewhere."""

GONE_KINDS = frozenset({"Preempt", "Terminate"})
"""Event types whose effect removes the VM for good."""


class Origin(enum.Enum):
    """Why an event exists."""

    WALK = "walk"      # one update domain of a planned maintenance walk
    ONE_OFF = "one-off"
    HEAL = "heal"      # service healing after a host failure


class Phase(enum.Enum):
    """Where one event stands. FINISHED events are removed from every node."""

    SCHEDULED = "scheduled"
    STARTED = "started"
    FINISHED = "finished"


class EventInput(enum.Enum):
    """The inputs of one event."""

    NOT_BEFORE = "not-before"    # tick() reached NotBefore
    APPROVE = "approve"          # a VM posted StartRequests
    EFFECT_DONE = "effect-done"  # the effect on one VM is over (VM back, thawed, moved, gone)
    CANCEL = "cancel"


class WalkState(enum.Enum):
    """Where one update-domain walk stands."""

    NOTICE = "notice"        # the current UD's event is Scheduled
    IMPACT = "impact"        # the current UD's event is Started: its VMs are rebooting
    DONE = "done"            # every UD was walked
    CANCELED = "canceled"


class WalkInput(enum.Enum):
    """The inputs of one walk."""

    EVENT_STARTED = "event-started"
    EVENT_DONE = "event-done"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Transition:
    """One row of a table: the planner method that handles it and the states it may lead to."""

    handler: str
    targets: frozenset


def _t(handler: str, *targets: enum.Enum) -> Transition:
    return Transition(handler, frozenset(targets))


_P, _EI, _W, _WI = Phase, EventInput, WalkState, WalkInput

EVENT_TRANSITIONS: Mapping[tuple[Phase, EventInput], Transition] = MappingProxyType({
    (_P.SCHEDULED, _EI.NOT_BEFORE): _t("_ev_start", _P.STARTED, _P.FINISHED),
    (_P.SCHEDULED, _EI.APPROVE): _t("_ev_start", _P.STARTED, _P.FINISHED),
    (_P.STARTED, _EI.APPROVE): _t("_ev_same", _P.STARTED),  # approving twice is still fine (200)
    (_P.STARTED, _EI.EFFECT_DONE): _t("_ev_effect_done", _P.STARTED, _P.FINISHED),
    (_P.SCHEDULED, _EI.CANCEL): _t("_ev_cancel", _P.FINISHED),  # Azure's rare cancel: Scheduled -> gone
})
"""Every legal (phase, input) of one event. A heal event is born STARTED."""

WALK_TRANSITIONS: Mapping[tuple[WalkState, WalkInput], Transition] = MappingProxyType({
    (_W.NOTICE, _WI.EVENT_STARTED): _t("_walk_impact", _W.IMPACT),
    (_W.IMPACT, _WI.EVENT_DONE): _t("_walk_next", _W.NOTICE, _W.DONE, _W.CANCELED),
    (_W.NOTICE, _WI.CANCEL): _t("_walk_cancel", _W.CANCELED),
    (_W.IMPACT, _WI.CANCEL): _t("_walk_stop_after", _W.IMPACT),  # VMs are down: finish this UD first
})
"""Every legal (state, input) of one walk."""

EVENT_HINTS: Mapping[EventInput, str] = MappingProxyType({
    _EI.NOT_BEFORE: "only a Scheduled event starts at NotBefore",
    _EI.APPROVE: "the event is already over",
    _EI.EFFECT_DONE: "report an effect only after its ApplyEffect or Heal action was handed out",
    _EI.CANCEL: "a Started event cannot be canceled; wait until its VMs are back",
})

WALK_HINTS: Mapping[WalkInput, str] = MappingProxyType({
    _WI.EVENT_STARTED: "the walk has no Scheduled event",
    _WI.EVENT_DONE: "the walk has no Started event",
    _WI.CANCEL: "the walk is already over",
})


def transition_rows() -> list[tuple[str, str, str, str, list[str]]]:
    """(machine, state, input, handler, possible next states) for every row of both tables."""
    rows = [("event", s.name, i.name, t.handler, sorted(x.name for x in t.targets))
            for (s, i), t in EVENT_TRANSITIONS.items()]
    rows += [("walk", s.name, i.name, t.handler, sorted(x.name for x in t.targets))
             for (s, i), t in WALK_TRANSITIONS.items()]
    return rows
