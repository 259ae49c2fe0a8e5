"""The planner's bookkeeping: one record per live event, one per walk, one per node.

These are plain mutable data with exact JSON round trips (``to_dict``/``from_dict``);
the planner (:mod:`netsim.maintenance.planner`) owns every change. :class:`WalkStatus`
is the frozen answer to ``netsim maintenance status``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netsim_imds.events import Event

from netsim.maintenance.actions import event_from_dict, event_to_dict
from netsim.maintenance.tables import Origin, Phase, WalkState


@dataclass
class EventRecord:
    """One live event: the Event, why it exists, where copies are filed, who is still affected.

    ``pending`` lists the VMs whose effect has not been reported done (set when the event
    starts); ``nodes`` the nodes whose repository holds a copy; ``steps`` counts repeated
    steps per node so that every action key stays unique; ``targets`` the node each VM of
    a Redeploy moves to.
    """

    event: Event
    origin: Origin
    phase: Phase
    effect_s: float
    walk_id: str | None = None
    pending: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    steps: dict[str, int] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)

    @property
    def event_id(self) -> str:
        """The event's id."""
        return self.event.event_id

    def step(self, base: str, subject: str) -> str:
        """``base`` the first time for ``subject``, then ``base-2``, ``base-3``...: unique keys."""
        n = self.steps.get(f"{base}@{subject}", 0) + 1
        self.steps[f"{base}@{subject}"] = n
        return base if n == 1 else f"{base}-{n}"

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"event": event_to_dict(self.event), "origin": self.origin.value, "phase": self.phase.value,
                "effect_s": self.effect_s, "walk_id": self.walk_id, "pending": list(self.pending),
                "nodes": list(self.nodes), "steps": dict(self.steps), "targets": dict(self.targets)}

    @classmethod
    def from_dict(cls, data: dict) -> "EventRecord":
        """The record written by :meth:`to_dict`."""
        return cls(event=event_from_dict(data["event"]), origin=Origin(data["origin"]), phase=Phase(data["phase"]),
                   effect_s=data["effect_s"], walk_id=data["walk_id"], pending=list(data["pending"]),
                   nodes=list(data["nodes"]), steps=dict(data["steps"]), targets=dict(data["targets"]))


@dataclass
class WalkRecord:
    """One planned-maintenance walk of an availability set, update domain by update domain.

    ``uds`` is ``[(ud, [vm, ...]), ...]`` in ascending UD order; ``index`` points at the
    current one; ``event_id`` is the current UD's event.
    """

    walk_id: str
    avset: str
    uds: list[tuple[int, list[str]]]
    notice_s: float
    downtime_s: float
    started_at: float
    state: WalkState = WalkState.NOTICE
    index: int = 0
    event_id: str | None = None
    done_uds: list[int] = field(default_factory=list)
    stop_after: bool = False
    finished_at: float | None = None

    @property
    def active(self) -> bool:
        """True until the walk is done or canceled."""
        return self.state in (WalkState.NOTICE, WalkState.IMPACT)

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"walk_id": self.walk_id, "avset": self.avset, "uds": [[ud, list(vms)] for ud, vms in self.uds],
                "notice_s": self.notice_s, "downtime_s": self.downtime_s, "started_at": self.started_at,
                "state": self.state.value, "index": self.index, "event_id": self.event_id,
                "done_uds": list(self.done_uds), "stop_after": self.stop_after, "finished_at": self.finished_at}

    @classmethod
    def from_dict(cls, data: dict) -> "WalkRecord":
        """The record written by :meth:`to_dict`."""
        return cls(walk_id=data["walk_id"], avset=data["avset"], uds=[(ud, list(vms)) for ud, vms in data["uds"]],
                   notice_s=data["notice_s"], downtime_s=data["downtime_s"], started_at=data["started_at"],
                   state=WalkState(data["state"]), index=data["index"], event_id=data["event_id"],
                   done_uds=list(data["done_uds"]), stop_after=data["stop_after"], finished_at=data["finished_at"])


@dataclass
class NodeHealth:
    """What the planner knows of a node's liveness: its last heartbeat and whether it failed."""

    last: float
    failed: bool = False

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return {"last": self.last, "failed": self.failed}

    @classmethod
    def from_dict(cls, data: dict) -> "NodeHealth":
        """The record written by :meth:`to_dict`."""
        return cls(last=data["last"], failed=data["failed"])


@dataclass(frozen=True)
class WalkStatus:
    """One walk as ``netsim maintenance status`` shows it.

    ``state`` is notice (the current UD's event is Scheduled), impact (its VMs are
    rebooting), done or canceled; ``current_ud`` is None once the walk is over.
    """

    walk_id: str
    avset: str
    state: str
    current_ud: int | None
    done_uds: tuple[int, ...]
    pending_uds: tuple[int, ...]
    event_id: str | None
    not_before: float | None
    started_at: float
    finished_at: float | None

    def to_dict(self) -> dict:
        """A JSON-ready dict (for the control socket and ``--json`` output)."""
        return {"walk_id": self.walk_id, "avset": self.avset, "state": self.state, "current_ud": self.current_ud,
                "done_uds": list(self.done_uds), "pending_uds": list(self.pending_uds), "event_id": self.event_id,
                "not_before": self.not_before, "started_at": self.started_at, "finished_at": self.finished_at}
