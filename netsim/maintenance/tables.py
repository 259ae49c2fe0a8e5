"""The state tables of the maintenance planner.

The life of an event (``shared/reference/cloud-metadata-apis.md`` section 2, and the
cloud-neutral lifecycle of :mod:`netsim_imds.events`): ``Scheduled`` until NotBefore or
an approval (2.4), then ``Started`` for the whole impact, then ``Completed``; or
``Canceled`` while Scheduled. Finished events leave the nodes and are kept as history.
Service healing after an actual host failure skips ``Scheduled`` (2.3). Notices,
impacts and texts per kind are each flavor's (:class:`netsim_imds.events.EventMapping`).

Both state machines (one event, one update-domain walk) are tables keyed by (state,
input); an input without a row raises :class:`~netsim.maintenance.errors.IllegalInput`.
:func:`transition_rows` renders them for docs and diagrams.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

DEFAULT_HEARTBEAT_TIMEOUT_S = 3.0
"""A node silent for this long is declared failed and its VMs are healed elsewhere."""


class Origin(enum.Enum):
    """Why an event exists."""

    WALK = "walk"      # one update domain of a planned maintenance walk
    ONE_OFF = "one-off"
    HEAL = "heal"      # service healing after a host failure


class Phase(enum.Enum):
    """Where one event stands. FINISHED events leave every node (Completed or Canceled)."""

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
    (_P.SCHEDULED, _EI.CANCEL): _t("_ev_cancel", _P.FINISHED),  # Azure's rare cancel: Scheduled -> Canceled
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
