"""What an experiment observed, on its own timeline (seconds since it began).

The runner feeds the :class:`Recorder` the daemon's answers (``snapshot``, ``events``,
``fault_list``) as it polls; the recorder keeps, for every event, walk and fault, the first
moment each state was seen. Epoch times from the daemon become experiment seconds with
``wall0`` (the epoch at the experiment's second 0). Pure: no clock, no socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Recorder:
    """Events, walks and faults as they were seen, keyed by their id."""

    wall0: float
    events: dict[str, dict] = field(default_factory=dict)
    walks: dict[str, dict] = field(default_factory=dict)
    faults: dict[str, dict] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def rel(self, epoch: float | None) -> float | None:
        """An epoch time as experiment seconds."""
        return None if epoch is None else round(epoch - self.wall0, 3)

    def observe_events(self, now: float, answer: dict) -> None:
        """``events``'s answer (live events and history): the first time each state is seen."""
        for e in answer.get("events", []) + answer.get("history", []):
            rec = self.events.setdefault(e["event_id"], {
                "id": e["event_id"], "type": e.get("event_type", e.get("kind")), "kind": e.get("kind"),
                "vms": list(e.get("resources", [])), "not_before": self.rel(e.get("not_before")), "states": {}})
            rec["state"] = e["status"]
            rec["states"].setdefault(e["status"], round(now, 3))

    def observe_snapshot(self, now: float, snap: dict) -> None:
        """``snapshot``'s walks (state per walk, first time seen) and the daemon's errors."""
        for w in snap.get("walks", []):
            rec = self.walks.setdefault(w["walk_id"], {"id": w["walk_id"], "avset": w.get("avset"), "states": {}})
            rec["state"] = w["state"]
            rec["states"].setdefault(w["state"], round(now, 3))
        for err in snap.get("errors", []):
            if str(err) not in self.errors:
                self.errors.append(str(err))

    def observe_faults(self, now: float, answer: dict) -> None:
        """``fault_list``'s answer: each fault's options, its window, and when each state was
        seen; a fault that left the list was cleared then."""
        listed = set()
        for f in answer.get("faults", []):
            listed.add(f["id"])
            rec = self.faults.setdefault(f["id"], {"id": f["id"], "target": f.get("target"), "kind": f.get("kind"),
                                                   "states": {}, "cleared": None})
            rec["options"] = {k: v for k, v in f.items() if k not in ("id", "target", "kind", "state", "starts_at",
                                                                       "ends_at")}
            rec["starts_at"], rec["ends_at"] = self.rel(f.get("starts_at")), self.rel(f.get("ends_at"))
            rec["state"] = f.get("state")
            rec["states"].setdefault(f.get("state"), round(now, 3))
        for fid, rec in self.faults.items():
            if fid not in listed and rec["cleared"] is None:
                rec["cleared"] = round(now, 3)

    def fault_window(self, fid: str) -> tuple[float | None, float | None]:
        """When fault ``fid`` was in force (:func:`window`)."""
        return window(self.faults[fid])

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"events": list(self.events.values()), "walks": list(self.walks.values()),
                "faults": list(self.faults.values()), "daemon_errors": self.errors}


def window(fault: dict) -> tuple[float | None, float | None]:
    """When a recorded fault was in force: from its start (or when it was first seen
    active) to its end, its clearing, or None (still on); None, None if it never started."""
    start = fault.get("starts_at")
    if start is None:
        start = fault["states"].get("active")
    ends = [t for t in (fault.get("ends_at"), fault["states"].get("ended"), fault.get("cleared")) if t is not None]
    return start, (min(ends) if ends else None)
