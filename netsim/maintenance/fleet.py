"""What the planner knows of the fleet: where each VM runs and which nodes are alive (pure).

A :class:`Fleet` holds the placement (VM -> node, availability set), the VMs that are
powered off until someone starts them (stopped: AWS's instance-stop, a spot stop), and the
heartbeats of watched nodes, and chooses target nodes: least-loaded first, ties in the order the
candidates are given, which spreads VMs round-robin over equally loaded nodes.
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator, Sequence

from netsim_imds.events import GONE_KINDS, Kind

from netsim.maintenance.records import NodeHealth


class Fleet:
    """Placement of VMs on nodes and the liveness of watched nodes."""

    def __init__(self) -> None:
        self._placement: dict[str, tuple[str, str]] = {}  # vm -> (node, availability set or "")
        self._nodes: dict[str, NodeHealth] = {}           # nodes whose heartbeats are watched
        self._stopped: set[str] = set()                    # VMs powered off until started again
        # GCE's scheduling (netsim/model/gcedata.py): a pause is a live migration to another
        # node for these VMs; a host-maintenance reboot leaves these off (automatic_restart false).
        self._live_migrates: set[str] = set()
        self._keeps_off: set[str] = set()
        # Azure's Spot eviction (netsim/model/vmdata.py): a preempt stops (deallocates) these.
        self._deallocates: set[str] = set()
        # The placement as to_dict gives it, kept until the placement changes: the planner is
        # saved after every input (and copied before it), the placement rarely changes.
        self._listed: list[list[str]] | None = None

    # -- placement ---------------------------------------------------------------------

    def place(self, vm: str, node: str, avset: str | None = None) -> None:
        """``vm`` runs on ``node``; ``avset`` None keeps the VM's known availability set."""
        if avset is None:
            avset = self._placement.get(vm, ("", ""))[1]
        if self._placement.get(vm) != (node, avset):
            self._placement[vm] = (node, avset)
            self._listed = None

    def remove(self, vm: str) -> None:
        """Forget ``vm`` (it was deleted)."""
        self._placement.pop(vm, None)
        self._listed = None
        self._stopped.discard(vm)
        self._live_migrates.discard(vm)
        self._keeps_off.discard(vm)
        self._deallocates.discard(vm)

    def set_policy(self, vm: str, live_migrates: bool, restarts: bool, deallocates: bool = False) -> None:
        """``vm``'s host-maintenance policy: a pause moves it to another node
        (``live_migrates``); a reboot powers it on again (``restarts``) or leaves it stopped;
        a preempt deletes it or, with ``deallocates`` (an Azure Spot VM's eviction policy
        Deallocate), stops it."""
        for held, on in ((self._live_migrates, live_migrates), (self._keeps_off, not restarts),
                         (self._deallocates, deallocates)):
            held.add(vm) if on else held.discard(vm)

    def live_migrates(self, vm: str) -> bool:
        """Whether a pause of ``vm`` moves it to another node (GCE's live migration)."""
        return vm in self._live_migrates

    def effect_kind(self, vm: str, kind: Kind) -> Kind:
        """The effect an event of ``kind`` has on ``vm``: a reboot of a VM that does not
        restart (GCE's ``automatic_restart = false``) is a stop (off until ``netsim vm start``),
        and so is a preempt of a VM that eviction deallocates (Azure's Spot ``Deallocate``)."""
        if (kind is Kind.REBOOT and vm in self._keeps_off) or (kind is Kind.PREEMPT and vm in self._deallocates):
            return Kind.STOP
        return kind

    def deletes(self, vm: str, kind: Kind) -> bool:
        """Whether an event of ``kind`` deletes ``vm`` (its :meth:`effect_kind` is a removal)."""
        return self.effect_kind(vm, kind) in GONE_KINDS

    def set_stopped(self, vm: str, stopped: bool) -> None:
        """``vm`` is powered off until started again (True), or running (False)."""
        if stopped and vm in self._placement:
            self._stopped.add(vm)
        else:
            self._stopped.discard(vm)

    def is_stopped(self, vm: str) -> bool:
        """Whether ``vm`` is powered off until someone starts it."""
        return vm in self._stopped

    def stopped(self) -> list[str]:
        """The stopped VMs, sorted."""
        return sorted(self._stopped)

    def __contains__(self, vm: object) -> bool:
        return vm in self._placement

    def node_of(self, vm: str) -> str:
        """The node holding ``vm`` (KeyError if unknown)."""
        return self._placement[vm][0]

    def avset_of(self, vm: str) -> str:
        """The availability set of ``vm`` ("" for none; KeyError if unknown)."""
        return self._placement[vm][1]

    def vms_on(self, node: str) -> list[str]:
        """The VMs on ``node``, in the order they were first placed."""
        return [vm for vm, (n, _) in self._placement.items() if n == node]

    def members(self) -> dict[str, list[str]]:
        """``{availability set: [node, ...]}``: the nodes holding VMs of each set."""
        out: dict[str, dict[str, None]] = {}  # ordered sets: a list's `in` made this quadratic
        for node, avset in self._placement.values():
            if avset:
                out.setdefault(avset, {})[node] = None
        return {avset: list(nodes) for avset, nodes in out.items()}

    def spread(self, vms: Sequence[str], candidates: Sequence[str]) -> dict[str, str]:
        """``{vm: target}``: each VM to the least-loaded candidate other than its own node.

        Ties go to the earlier candidate; a VM with no other candidate stays on its node.
        """
        load = Counter(n for n, _ in self._placement.values())
        out: dict[str, str] = {}
        for vm in vms:
            own = self.node_of(vm)
            choices = [c for c in candidates if c != own]
            if not choices:
                out[vm] = own
                continue
            best = min(range(len(choices)), key=lambda i: (load[choices[i]], i))
            out[vm] = choices[best]
            load[choices[best]] += 1
            load[own] -= 1
        return out

    # -- health ------------------------------------------------------------------------

    def heartbeat(self, node: str, now: float) -> None:
        """``node`` is alive at ``now``; a failed node that speaks again is healthy (and empty)."""
        health = self._nodes.get(node)
        if health is None:
            self._nodes[node] = NodeHealth(now)
        elif health.failed:
            health.failed, health.last = False, now
        else:
            health.last = max(health.last, now)

    def grace(self, now: float) -> None:
        """Count every live watched node as heard from at ``now``."""
        for health in self._nodes.values():
            if not health.failed:
                health.last = max(health.last, now)

    def mark_failed(self, node: str, now: float) -> None:
        """``node`` is down until it sends a heartbeat again."""
        self._nodes.setdefault(node, NodeHealth(now)).failed = True

    def is_failed(self, node: str) -> bool:
        """Whether ``node`` was declared failed and has not spoken since."""
        health = self._nodes.get(node)
        return health is not None and health.failed

    def failed_nodes(self) -> list[str]:
        """Failed nodes, in the order they were first watched."""
        return [n for n, h in self._nodes.items() if h.failed]

    def live(self) -> list[str]:
        """Watched nodes not declared failed."""
        return [n for n, h in self._nodes.items() if not h.failed]

    def healthy_nodes(self) -> list[str]:
        """Live watched nodes, then unwatched nodes holding a VM (first-seen order)."""
        nodes = self.live() + [n for n, _ in self._placement.values() if n not in self._nodes]
        return list(dict.fromkeys(nodes))

    def silent(self, now: float, timeout: float) -> list[str]:
        """Live nodes whose last heartbeat is ``timeout`` seconds old or older."""
        return [n for n in self.live() if now - self._nodes[n].last >= timeout]

    def heartbeat_deadlines(self, timeout: float) -> Iterator[float]:
        """When each live node times out, if it stays silent."""
        return (self._nodes[n].last + timeout for n in self.live())

    # -- durability --------------------------------------------------------------------

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        if self._listed is None:
            self._listed = [[vm, node, avset] for vm, (node, avset) in self._placement.items()]
        return {"placement": list(self._listed),
                "nodes": [[n, h.to_dict()] for n, h in self._nodes.items()], "stopped": self.stopped(),
                "live_migrates": sorted(self._live_migrates), "keeps_off": sorted(self._keeps_off),
                "deallocates": sorted(self._deallocates)}

    @classmethod
    def from_dict(cls, data: dict) -> "Fleet":
        """The fleet written by :meth:`to_dict`."""
        fleet = cls()
        fleet._placement = {vm: (node, avset) for vm, node, avset in data["placement"]}
        fleet._nodes = {n: NodeHealth.from_dict(h) for n, h in data["nodes"]}
        fleet._stopped = set(data.get("stopped", ()))  # absent from states saved before it existed
        fleet._live_migrates, fleet._keeps_off = set(data.get("live_migrates", ())), set(data.get("keeps_off", ()))
        fleet._deallocates = set(data.get("deallocates", ()))
        return fleet
