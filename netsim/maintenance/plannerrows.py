"""The repository's ``planner`` table: the planner's saved state, with its placement apart.

The state is saved after every input (:meth:`Controller.drain
<netsim.runtime.controller.Controller.drain>`); three quarters of it is the fleet's
placement (a thousand ``[vm, node, set]`` triples), which rarely changes. It is written in
a row of its own (``planner_parts``), only when it changed, in the same transaction as the
rest: encoding and writing it every time cost more than a millisecond of each control
request, all metadata requests waiting. :meth:`PlannerRows.load_planner` puts it back.

A mixin of :class:`~netsim.maintenance.repository.Repository`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from typing import TYPE_CHECKING

from netsim.maintenance.errors import RepositoryError

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

APART = "planner_parts:placement"
"""What the saved state holds instead of the fleet's placement, stored apart."""


class PlannerRows:
    """Save and load the planner's state (mixed into Repository)."""

    path: str
    sole_writer: bool
    _db: sqlite3.Connection
    _lock: threading.RLock
    _placement_saved: list | None  # the placement as stored apart (trusted only as the sole writer)

    if TYPE_CHECKING:  # the repository's own method
        def transaction(self) -> AbstractContextManager[None]: ...

    def save_planner(self, state: dict) -> None:
        """Store the planner's state (replacing the previous one)."""
        fleet = state.get("fleet")
        placement = fleet.get("placement") if isinstance(fleet, dict) else None
        with self.transaction():
            if isinstance(placement, list):
                if not (self.sole_writer and placement == self._placement_saved):
                    self._db.execute("INSERT INTO planner_parts VALUES ('placement', ?) ON CONFLICT (part) DO UPDATE "
                                     "SET state = excluded.state", (json.dumps(placement, separators=(",", ":")),))
                    self._placement_saved = placement  # a copy (Fleet.to_dict): nobody changes it
                state = {**state, "fleet": {**fleet, "placement": APART}}
            self._db.execute("INSERT INTO planner VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET state = excluded.state",
                             (json.dumps(state, separators=(",", ":")),))

    def load_planner(self) -> dict | None:
        """The planner state last saved, or None."""
        with self._lock:
            row = self._db.execute("SELECT state FROM planner WHERE id = 1").fetchone()
            if not row:
                return None
            state = json.loads(row[0])
            fleet = state.get("fleet") if isinstance(state, dict) else None
            if not isinstance(fleet, dict) or fleet.get("placement") != APART:
                return state  # saved whole (before the placement was kept apart, or no fleet)
            part = self._db.execute("SELECT state FROM planner_parts WHERE part = 'placement'").fetchone()
        if part is None:
            raise RepositoryError(f"the event repository {self.path} is corrupt (the planner's placement is missing)")
        fleet["placement"] = json.loads(part[0])
        return state
