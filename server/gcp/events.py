"""GCE's words for the event model: maintenance-event values, notices, impacts, and the
rule of the 60-second warning.

Facts from ``shared/reference/cloud-metadata-apis.md`` section 4.2 and 4.4:
``instance/maintenance-event`` is ``NONE``, ``MIGRATE_ON_HOST_MAINTENANCE`` or
``TERMINATE_ON_HOST_MAINTENANCE``; it changes 60 s before the event and goes back to
``NONE`` after it; ``instance/preempted`` turns ``TRUE`` for a preempted VM, which is
stopped 30 s later; ``instance/upcoming-maintenance`` shows the window (snake_case keys)
from the moment it is scheduled.

==================================  =====  ===========  ================================
``--type``                          kind   notice       default impact
==================================  =====  ===========  ================================
``MIGRATE_ON_HOST_MAINTENANCE``     pause  60 s         0.3 s (a live migration's blackout;
                                                        moved to another node meanwhile)
``TERMINATE_ON_HOST_MAINTENANCE``   reboot 60 s         60 s (stopped, then restarted if
                                                        ``automatic-restart`` is TRUE)
``preemption``                      stop   30 s         none: the VM is stopped at NotBefore
==================================  =====  ===========  ================================

A maintenance walk (``netsim maintenance start``) and service healing file reboots, which
this flavor shows as ``TERMINATE_ON_HOST_MAINTENANCE``. The planner applies each VM's
scheduling from the topology (:func:`netsim.model.gcedata.host_maintenance_policy`): a
pause of a VM whose ``on_host_maintenance`` is MIGRATE moves it to another node; a reboot
of a VM without ``automatic_restart`` leaves it stopped until ``netsim vm start``.

**The warning rule** (section 4.2: "the 60-s warning is given only if the key has been
queried at least once since the last maintenance event; otherwise the event starts
immediately without warning"), modelled by :class:`WarningRule`: when an event's
warning window opens (NotBefore - 60 s, or when the event is filed if that is later), the
VM is *warned* only if it read ``maintenance-event`` before then and after the end of the
last event it was shown. A warned VM sees the
value from NotBefore - 60 s; an unwarned one only once the event has Started. netsim does
not move the event's start (the planner owns it): the warning is what is withheld.
"""

from __future__ import annotations

from types import MappingProxyType

from netsim_imds.events import Event, EventMapping, Kind, KindRule, Status, register

WARNING_S = 60.0
"""Seconds before NotBefore from which ``maintenance-event`` shows the event (warned VMs)."""
NONE = "NONE"
MIGRATE = "MIGRATE_ON_HOST_MAINTENANCE"
TERMINATE = "TERMINATE_ON_HOST_MAINTENANCE"
PREEMPTION = "preemption"
MAINTENANCE = "Host maintenance."

EVENTS = register(EventMapping(
    cloud="gcp",
    kinds=MappingProxyType({
        Kind.PAUSE: KindRule(MIGRATE, WARNING_S, 0.3, "Live migration of the VM to another host.", duration_s=0),
        Kind.REBOOT: KindRule(TERMINATE, WARNING_S, 60.0, "The VM is stopped for host maintenance and restarted."),
        # A preempted VM is stopped, not deleted (it can be started again: `netsim vm start`).
        Kind.STOP: KindRule(PREEMPTION, 30.0, 0.0, "The VM is preempted."),
    }),
    maintenance_description=MAINTENANCE,
    emergency_description="Host error: the VM is restarted on another host.",
    shows_history=False,
))
"""The GCE flavor's :class:`~netsim_imds.events.EventMapping`."""

VALUES = {Kind.PAUSE: MIGRATE, Kind.REBOOT: TERMINATE}
"""The ``maintenance-event`` value of each kind that has one."""


def own(events: "tuple[Event, ...]", vm: str) -> list[Event]:
    """The live events that name ``vm`` itself (GCE's keys speak of this instance only,
    not of its availability set), of a kind this flavor knows."""
    return [e for e in events if vm in e.resources and EVENTS.shows(e)]


class WarningRule:
    """Per-VM memory of the warning rule (module docstring): when each VM last read
    ``maintenance-event``, when its last shown event ended, and which events it was warned of.

    Sans-IO: every method takes ``now``. One per node's flavor; bounded by the node's VMs
    (at most ``MAX_VMS`` remembered; the oldest are forgotten, and then count as not warned).
    """

    MAX_VMS = 4096

    def __init__(self) -> None:
        self._read_after_end: dict[str, float] = {}  # vm -> first read since its last event ended
        self._shown: dict[str, dict[str, bool]] = {}  # vm -> {event id: warned}

    def read(self, vm: str, now: float) -> None:
        """VM ``vm`` read ``maintenance-event`` (or a tree that holds it) at ``now``."""
        if vm not in self._read_after_end:
            if len(self._read_after_end) >= self.MAX_VMS:
                self._read_after_end.pop(next(iter(self._read_after_end)))
            self._read_after_end[vm] = now

    def value(self, vm: str, events: "list[Event]", now: float) -> str:
        """``maintenance-event`` of ``vm`` at ``now``, given its own live events."""
        shown = self._shown.setdefault(vm, {})
        live = {e.event_id for e in events}
        if any(i not in live for i in shown):  # an event it was shown is over: the rule re-arms
            for i in [i for i in shown if i not in live]:
                del shown[i]
            self._read_after_end.pop(vm, None)
        out = NONE
        for e in events:
            value = VALUES.get(e.kind)
            if value is None:
                continue
            if e.status == Status.STARTED:
                shown.setdefault(e.event_id, False)
                return value
            opens = e.not_before - WARNING_S
            if now >= opens:
                if e.event_id not in shown:
                    first = self._read_after_end.get(vm)
                    # Read before the warning was due: when the window opened, or when
                    # the event was filed if its notice is shorter than the window.
                    shown[e.event_id] = first is not None and first <= max(opens, e.created)
                if shown[e.event_id] and out == NONE:
                    out = value
        return out

    def next_change(self, events: "list[Event]", now: float) -> float | None:
        """The next time the value may change with no change of the events (a window opening)."""
        times = [e.not_before - WARNING_S for e in events
                 if e.kind in VALUES and e.status == Status.SCHEDULED and e.not_before - WARNING_S > now]
        return min(times, default=None)


def preempted(events: "list[Event]") -> bool:
    """``instance/preempted``: TRUE from the moment a preemption is filed."""
    return any(e.kind in (Kind.STOP, Kind.PREEMPT) for e in events)


def upcoming(events: "list[Event]") -> dict[str, object]:
    """``instance/upcoming-maintenance``: the window of the VM's next maintenance in
    Google's snake_case shape, ``{}`` when none is scheduled (reference 4.4)."""
    from netsim_imds.gcp.tree import rfc3339  # late: tree imports this module
    for e in events:
        if e.kind not in VALUES:
            continue
        end = e.not_after if e.not_after is not None else e.not_before
        return {
            "can_reschedule": "false",
            "latest_window_start_time": rfc3339(e.not_before),
            "maintenance_reasons": ["PLANNED_UPDATE"],
            "maintenance_status": "ONGOING" if e.status == Status.STARTED else "PENDING",
            "type": "SCHEDULED",
            "window_end_time": rfc3339(end),
            "window_start_time": rfc3339(e.not_before),
        }
    return {}
