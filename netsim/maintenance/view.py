"""The metadata server's window on the repository: one node's events, and the approvals inbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from netsim_imds.events import Event, Status

if TYPE_CHECKING:
    from netsim.maintenance.repository import Repository

ApproveHook = Callable[[Event], None]
"""Called with the event (still Scheduled) when a VM's approval lands in the inbox."""


class NodeEventView:
    """One node's events as the metadata server reads them (:class:`netsim_imds.events.EventView`).

    Reads come straight from the repository (cached per incarnation). Approving writes
    no status: it puts the approval in the repository's inbox, durably, and calls the
    hook, so the controller feeds it to the planner, the one writer of event status.
    Approving an event already Started, or already in the inbox, is still True.
    """

    def __init__(self, repo: Repository, node: str, on_approve: ApproveHook | None = None) -> None:
        self.repo, self.node = repo, node
        self._on_approve = on_approve

    @property
    def document_incarnation(self) -> int:
        """The node's incarnation: increases whenever what the node shows changes."""
        return self.repo.incarnation(self.node)

    def events_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The live events of this node that VM ``vm`` (of availability set ``avset``) sees, oldest first."""
        return tuple(e for e in self.repo.events(self.node) if e.visible_to(vm, avset))

    def history_for(self, vm: str, avset: str = "") -> tuple[Event, ...]:
        """The ended events VM ``vm`` sees (every node shows the same history), oldest end first."""
        return tuple(e for e in self.repo.history() if e.visible_to(vm, avset))

    def approve(self, event_id: str) -> bool:
        """Ask that ``event_id`` start now for all its resources; False if this node does not show it."""
        event = self.repo.event(self.node, event_id)
        if event is None:
            return False
        if event.status == Status.STARTED:
            return True  # already started: still a valid request (200)
        fresh = self.repo.request_approval(self.node, event_id)
        hook = self._on_approve or self.repo.on_approve
        if fresh and hook is not None:
            hook(event)
        return True
