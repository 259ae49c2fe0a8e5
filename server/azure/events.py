"""Azure's words for the event model: Scheduled Events' types, notices, impacts and texts.

Facts from ``shared/reference/cloud-metadata-apis.md`` section 2: the ``EventType``
names (2.2), the minimum notice per type (2.3), the descriptions (2.2) and the rule that
Scheduled Events show only ``Scheduled`` and ``Started`` events: a Completed or Canceled
one just disappears (2.2), so this flavor keeps no visible history.

Default impact (how long the effect lasts, and the event stays ``Started``, when
``netsim event add`` gives no ``--duration``; Azure announces ``DurationInSeconds: -1``
then, as it does for an unknown impact):

==========  ================  ==================================================
EventType   default impact    why
==========  ================  ==================================================
Freeze      5 s               the documented live-migration sample (2.2) announces 5
Reboot      30 s              a VM's guest OS restart; long enough for a 1 Hz poller
Redeploy    60 s              the move to another host plus a boot
Preempt     0 s               the VM is deleted at once (after its 30 s notice)
Terminate   0 s               the VM is deleted at once
==========  ================  ==================================================
"""

from __future__ import annotations

from types import MappingProxyType

from netsim_imds.events import Event, EventMapping, Kind, KindRule, register

MAINTENANCE = "Host server is undergoing maintenance."
EMERGENCY = "Host server is undergoing an emergency repair."
USER_REBOOT = "Virtual machine is going to be restarted as requested by authorized user."

EVENTS = register(EventMapping(
    cloud="azure",
    kinds=MappingProxyType({
        Kind.PAUSE: KindRule("Freeze", 15 * 60.0, 5.0, duration_s=5,
                             description="Virtual machine is being paused because of a memory-preserving "
                                         "Live Migration operation."),
        Kind.REBOOT: KindRule("Reboot", 15 * 60.0, 30.0, MAINTENANCE, user_description=USER_REBOOT),
        Kind.REDEPLOY: KindRule("Redeploy", 10 * 60.0, 60.0, MAINTENANCE, user_description=USER_REBOOT),
        Kind.PREEMPT: KindRule("Preempt", 30.0, 0.0, "Spot virtual machine is being evicted."),
        # "user-configurable, 5 to 15 minutes" on a scale set: we default to the upper bound.
        Kind.TERMINATE: KindRule("Terminate", 15 * 60.0, 0.0, "Virtual machine is being deleted."),
    }),
    maintenance_description=MAINTENANCE,
    emergency_description=EMERGENCY,
    shows_history=False,
))
"""The Azure flavor's :class:`~netsim_imds.events.EventMapping`."""

EVENT_TYPES = EVENTS.names()
"""``("Freeze", "Reboot", "Redeploy", "Preempt", "Terminate")``: what ``EventType`` can say."""

UNKNOWN_DURATION = -1
"""``DurationInSeconds`` of an event whose impact is unknown (reference 2.2)."""


def event_type(event: Event) -> str:
    """The ``EventType`` of ``event`` (``Freeze`` for a pause...)."""
    return EVENTS.name_of(event.kind)


def duration_in_seconds(event: Event) -> int:
    """``DurationInSeconds``: the announced duration, or -1 when it is unknown."""
    return UNKNOWN_DURATION if event.duration_s is None else int(event.duration_s)


def event_source(event: Event) -> str:
    """``EventSource``: ``Platform`` or ``User``."""
    return EVENTS.source_names[event.source]


def shown(events: "tuple[Event, ...] | list[Event]") -> list[Event]:
    """The events Scheduled Events may show: live ones of a kind Azure names."""
    return [e for e in events if EVENTS.shows(e)]
