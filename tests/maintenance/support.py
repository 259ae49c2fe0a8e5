"""Helpers shared by the maintenance tests (a module name no other test uses)."""

from __future__ import annotations

from collections import Counter
from typing import Iterable

from netsim.maintenance.actions import Action, ApplyEffect, FileEvent, Heal, RemoveEvent, UpdateEvent

WEB = [("vm1", "n1", 0), ("vm2", "n2", 0), ("vm3", "n1", 1), ("vm4", "n2", 1), ("vm5", "n3", 2)]
"""Availability set ``web``: three update domains over three nodes."""


class Ledger:
    """The I/O layer's exactly-once record, in memory: applies each key once, in order."""

    def __init__(self) -> None:
        self.applied: list[Action] = []
        self.keys: set[str] = set()

    def apply(self, actions: Iterable[Action]) -> list[Action]:
        """Apply the actions whose key is new; return those."""
        fresh = []
        for a in actions:
            if a.key not in self.keys:
                self.keys.add(a.key)
                self.applied.append(a)
                fresh.append(a)
        return fresh


def kinds(actions: Iterable[Action]) -> list[tuple]:
    """A readable summary: (class, node or vm, detail) per action."""
    out = []
    for a in actions:
        if isinstance(a, FileEvent):
            out.append(("file", a.node, a.event.status))
        elif isinstance(a, UpdateEvent):
            out.append(("update", a.node, a.event.status))
        elif isinstance(a, RemoveEvent):
            out.append(("remove", a.node))
        elif isinstance(a, ApplyEffect):
            out.append(("effect", a.vm, a.kind))
        elif isinstance(a, Heal):
            out.append(("heal", a.vm, a.from_node, a.to_node))
    return out


def effects(actions: Iterable[Action]) -> list[ApplyEffect]:
    """Only the ApplyEffect actions."""
    return [a for a in actions if isinstance(a, ApplyEffect)]


def shown(actions: Iterable[Action]) -> dict[str, dict[str, object]]:
    """Replay File/Update/Remove actions: ``{node: {event_id: event}}`` as the nodes would show."""
    nodes: dict[str, dict[str, object]] = {}
    for a in actions:
        if isinstance(a, (FileEvent, UpdateEvent)):
            nodes.setdefault(a.node, {})[a.event.event_id] = a.event
        elif isinstance(a, RemoveEvent):
            del nodes[a.node][a.event_id]
    return {n: evs for n, evs in nodes.items() if evs}


def no_duplicate_keys(actions: Iterable[Action]) -> bool:
    """Whether every key occurs once."""
    return all(c == 1 for c in Counter(a.key for a in actions).values())
