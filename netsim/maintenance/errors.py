"""Errors of the maintenance package, rooted in :class:`netsim.errors.NetsimError`.

Only a caller's misuse raises (an unknown walk, a second walk of a busy set, a report
that makes no sense in the event's state). What the world does (a node falling silent,
a VM booting twice, a duplicate report after a restart) is an input the planner
absorbs.
"""

from __future__ import annotations

from netsim.errors import IllegalInput, NetsimError

__all__ = ["IllegalInput", "MaintenanceError", "RepositoryError", "UnknownWalk", "WalkInProgress"]


class MaintenanceError(NetsimError):
    """A maintenance request cannot be carried out; the message says what to do instead."""


class WalkInProgress(MaintenanceError):
    """The availability set is already being walked; ``walk_id`` names the walk."""

    def __init__(self, avset: str, walk_id: str) -> None:
        self.avset, self.walk_id = avset, walk_id
        super().__init__(
            f"availability set {avset!r} is already being walked by {walk_id}; wait for it to "
            f"finish (netsim maintenance status) or cancel it before starting another walk")


class UnknownWalk(MaintenanceError):
    """No walk has this id."""

    def __init__(self, walk_id: str) -> None:
        self.walk_id = walk_id
        super().__init__(f"no maintenance walk {walk_id!r}; list walks with netsim maintenance status")


class RepositoryError(MaintenanceError):
    """The event repository cannot be opened or used (names the file and the fix)."""
