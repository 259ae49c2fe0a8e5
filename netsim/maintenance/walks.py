"""The update-domain walk's table and handlers, as a part of :class:`~netsim.maintenance.planner.Planner`.

:data:`~netsim.maintenance.tables.WALK_TRANSITIONS` names, for each (state, input), the
handler below that makes the change and returns the next state.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from netsim_imds.events import Event, EventMapping, Kind

from netsim.maintenance.errors import IllegalInput
from netsim.maintenance.records import EventRecord, WalkRecord
from netsim.maintenance.tables import WALK_HINTS, WALK_TRANSITIONS, EventInput, Origin, Phase, WalkInput, WalkState

if TYPE_CHECKING:
    from netsim.maintenance.book import EventBook
    from netsim.maintenance.fleet import Fleet
    from netsim.model.topology import Datacenter

WalkMember = tuple[str, str, int]
"""``(vm_name, node, update_domain)``: one VM of a walked availability set."""


def walk_members(dc: "Datacenter", avset: str) -> list[WalkMember]:
    """The ``(vm, node, update_domain)`` list of availability set ``avset`` in topology ``dc``."""
    return [(v.name, v.node, v.update_domain) for v in dc.vms if v.availability_set == avset]


class WalkTable:
    """The walk machine of the planner (a mixin: it uses the planner's walks, book and fleet)."""

    _walks: dict[str, WalkRecord]
    _book: "EventBook"
    _fleet: "Fleet"
    mapping: EventMapping

    # -- the walk table ----------------------------------------------------------------

    def _walk(self, walk: WalkRecord, inp: WalkInput, now: float) -> None:
        transition = WALK_TRANSITIONS.get((walk.state, inp))
        if transition is None:
            raise IllegalInput(walk.state, inp, WALK_HINTS[inp], what=f"walk {walk.walk_id}")
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
                event = Event(self._book.new_id(), Kind.REBOOT, vms, now + walk.notice_s, now,
                              description=self.mapping.maintenance_description,
                              duration_s=math.ceil(walk.downtime_s), avset=walk.avset,
                              not_after=now + walk.notice_s + walk.downtime_s)
                walk.event_id = event.event_id
                self._book.add(EventRecord(event, Origin.WALK, Phase.SCHEDULED, effect_s=walk.downtime_s,
                                           walk_id=walk.walk_id))
                return True
            walk.done_uds.append(ud)  # every VM of this UD is gone: nothing to reboot
            walk.index += 1
        return False
