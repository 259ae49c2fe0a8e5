"""AWS's words for the event model, and the documents of ``events/``, ``spot/`` and ``autoscaling/``.

Facts from ``shared/reference/cloud-metadata-apis.md`` sections 3.2 to 3.4:

===========  ===============================  ======  ========================================
Kind         ``--type`` (code)                notice  where the VM sees it
===========  ===============================  ======  ========================================
reboot       ``system-reboot``                1 day   events/maintenance/scheduled
reboot       ``instance-reboot``              1 day   events/maintenance/scheduled
pause        ``system-maintenance``           1 day   events/maintenance/scheduled
terminate    ``instance-retirement``          1 day   events/maintenance/scheduled
stop         ``instance-stop``                1 day   events/maintenance/scheduled
preempt      ``spot-interruption``            120 s   spot/instance-action (terminate), termination-time
stop         ``spot-interruption:stop``       120 s   spot/instance-action (stop), termination-time
stop         ``spot-interruption:hibernate``  0 s     spot/instance-action (hibernate: no lead, 3.3)
terminate    ``asg-termination``              120 s   autoscaling/target-lifecycle-state Terminated
notice       ``rebalance-recommendation``     0 s     events/recommendations/rebalance
===========  ===============================  ======  ========================================

``netsim event add --type spot-interruption --action stop`` files the code
``spot-interruption:stop``. The notices are ours (AWS schedules maintenance days ahead;
the spot notice is its two minutes). Scheduled events show ``State: active`` while live; ended ones move to
``events/maintenance/history`` as ``completed``/``canceled`` with ``[Completed] ``/
``[Canceled] `` before the description. Event ids are shown as ``instance-event-`` + 17
hex digits derived from the model's id (stable: the same event always shows the same id).
"""

from __future__ import annotations

import hashlib
import time
from types import MappingProxyType
from typing import Iterable

from netsim_imds.events import Event, EventMapping, Kind, KindRule, Status, register

DAY = 24 * 3600.0
SPOT = "spot-interruption"
ASG = "asg-termination"
SPOT_ACTIONS = ("terminate", "stop", "hibernate")
"""``--action`` of a spot interruption (reference 3.3)."""
SPOT_NOTICE_S = 120.0
"""The spot interruption notice: two minutes (reference 3.3)."""
NOT_BEFORE_DEADLINE_S = 7 * DAY
"""NotBeforeDeadline - NotBefore: how late the owner may reschedule (ours; AEMM uses 9 days)."""

EVENTS = register(EventMapping(
    cloud="aws",
    kinds=MappingProxyType({
        Kind.PAUSE: KindRule("system-maintenance", DAY, 5.0, "scheduled system maintenance", duration_s=5),
        Kind.REBOOT: KindRule("system-reboot", DAY, 30.0, "scheduled reboot"),
        Kind.PREEMPT: KindRule("spot-interruption", SPOT_NOTICE_S, 0.0, "Spot instance interruption"),
        Kind.TERMINATE: KindRule("instance-retirement", DAY, 0.0, "scheduled instance retirement"),
        Kind.STOP: KindRule("instance-stop", DAY, 0.0, "scheduled instance stop"),
        Kind.NOTICE: KindRule("rebalance-recommendation", 0.0, 0.0, "EC2 instance rebalance recommendation"),
    }),
    codes=MappingProxyType({rule.name: (kind, rule) for kind, rule in (
        (Kind.REBOOT, KindRule("instance-reboot", DAY, 30.0, "scheduled reboot")),
        (Kind.PREEMPT, KindRule(f"{SPOT}:terminate", SPOT_NOTICE_S, 0.0, "Spot instance interruption")),
        (Kind.STOP, KindRule(f"{SPOT}:stop", SPOT_NOTICE_S, 0.0, "Spot instance interruption")),
        (Kind.STOP, KindRule(f"{SPOT}:hibernate", 0.0, 0.0, "Spot instance interruption")),
        (Kind.TERMINATE, KindRule(ASG, SPOT_NOTICE_S, 0.0, "Auto Scaling instance termination")),
    )}),
    shown_id=lambda event: shown_id(event),
    maintenance_description="scheduled reboot",
    emergency_description="The instance is running on degraded hardware",
    shows_history=True,
))
"""The AWS flavor's :class:`~netsim_imds.events.EventMapping`."""

SCHEDULED_KINDS = frozenset({Kind.REBOOT, Kind.PAUSE, Kind.TERMINATE, Kind.STOP})
"""Kinds shown in ``events/maintenance/scheduled``, but for spot and Auto Scaling codes
(:func:`is_scheduled`), which have their own paths."""


def code(event: Event) -> str:
    """The event's code: ``system-reboot``, ``spot-interruption:stop``, ..."""
    return EVENTS.event_name(event)


def is_scheduled(event: Event) -> bool:
    """Whether ``event`` is a scheduled event (not a spot, Auto Scaling or rebalance notice)."""
    return event.kind in SCHEDULED_KINDS and not event.code.startswith((SPOT, ASG))

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def event_time(ts: float) -> str:
    """``21 Jan 2019 09:00:43 GMT`` (Go's ``2 Jan 2006 15:04:05 GMT``): scheduled events' times."""
    t = time.gmtime(ts)
    return f"{t.tm_mday} {_MONTHS[t.tm_mon - 1]} {t.tm_year} {t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"


def iso_time(ts: float) -> str:
    """``2017-09-18T08:22:00Z``: the times of spot, rebalance and credentials."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def shown_id(event: Event) -> str:
    """``instance-event-`` + 17 hex digits, derived from the model's id."""
    return "instance-event-" + hashlib.sha256(event.event_id.encode()).hexdigest()[:17]


def _scheduled(e: Event, state: str, prefix: str = "") -> dict:
    not_after = e.not_after if e.not_after is not None else e.not_before
    return {
        "NotBefore": event_time(e.not_before),
        "Code": code(e),
        "Description": prefix + e.description,
        "EventId": shown_id(e),
        "NotAfter": event_time(not_after),
        "NotBeforeDeadline": event_time(e.not_before + NOT_BEFORE_DEADLINE_S),
        "State": state,
    }


def scheduled(live: Iterable[Event], vm: str) -> list[dict]:
    """``events/maintenance/scheduled``: ``vm``'s live maintenance events, ``State: active``
    (an instance sees its own events only: the model's broadcast to an availability set is
    Azure's, EC2 has no such set)."""
    return [_scheduled(e, "active") for e in live if is_scheduled(e) and e.live and vm in e.resources]


def history(ended: Iterable[Event], vm: str) -> list[dict]:
    """``events/maintenance/history``: ``vm``'s ended maintenance events, completed or canceled."""
    out = []
    for e in ended:
        if not is_scheduled(e) or e.live or vm not in e.resources:
            continue
        word = "Canceled" if e.status is Status.CANCELED else "Completed"
        out.append(_scheduled(e, word.lower(), f"[{word}] "))
    return out


def spot_action(live: Iterable[Event], vm: str) -> tuple[str, Event] | None:
    """``(action, event)`` of the live spot interruption of ``vm`` (the earliest), or None:
    ``spot/`` answers 404 then."""
    spot = [e for e in live if vm in e.resources and e.live and code(e).startswith(SPOT)]
    if not spot:
        return None
    event = min(spot, key=lambda e: e.not_before)
    return (code(event).partition(":")[2] or "terminate"), event


def rebalance(events: Iterable[Event], vm: str, now: float) -> Event | None:
    """The latest rebalance recommendation of ``vm`` whose notice time has come (it stays
    once given, live or ended), or None: 404."""
    given = [e for e in events if e.kind is Kind.NOTICE and vm in e.resources and e.not_before <= now
             and e.status is not Status.CANCELED]
    return max(given, key=lambda e: e.not_before) if given else None


def lifecycle_state(live: Iterable[Event], vm: str) -> str:
    """``autoscaling/target-lifecycle-state``: ``Terminated`` once Auto Scaling's
    termination of ``vm`` is announced, ``InService`` before."""
    gone = any(e.code == ASG and vm in e.resources and e.live for e in live)
    return "Terminated" if gone else "InService"
