"""The controller and the host agents, inside the daemon: the planner's I/O driver.

It feeds the sans-IO :class:`~netsim.maintenance.Planner` (ticks at its deadlines,
approvals VMs left in the repository's inbox, VMs back after boot, heartbeats of the
nodes' host agents) and makes its actions real exactly once: repository changes go into
SQLite with their key in one transaction; effects are begun in the ledger (with the
action, to resume after a crash), made real on the VMs (:mod:`netsim.runtime.effects`)
and finished. The planner alone writes an event's status. After SIGKILL, a new daemon
reloads the planner, re-attaches to the namespaces, drains the approvals that arrived
meanwhile and finishes the effects a crash cut.

Where each VM runs is the runtime's :class:`~netsim.runtime.placement.Placement` (the one
the effects change): every planner input that names a node reads it, never the topology.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from netsim_imds.events import GONE_KINDS, Event, EventError, Kind, mapping_for

from netsim.model import bounds, names
from netsim.runtime.effects import Effects
from netsim.maintenance import ApplyEffect, Heal, Planner, Repository, walk_members
from netsim.maintenance.actions import REPOSITORY_ACTIONS
from netsim.maintenance.actions import action_from_dict, action_to_dict, event_to_dict
from netsim.kernel.rtnl import Rtnl
from netsim.state import StateDir
from netsim.model.topology import Datacenter

log = logging.getLogger("netsim.runtime.controller")
HEARTBEAT_INTERVAL = 0.5


def failed_from_kernel(dc: Datacenter) -> set[str]:
    """Nodes whose uplink is down: ``netsim node fail`` cut them."""
    failed = set()
    for node in dc.nodes:
        with Rtnl.in_namespace(names.node_ns(dc.name, node.name)) as sock:
            if not sock.link_state(names.UPLINK_INDEX)[1]:
                failed.add(node.name)
    return failed


class Controller:
    """Runs maintenance for one datacenter on the daemon's event loop."""

    def __init__(self, dc: Datacenter, state: StateDir, effects: Effects) -> None:
        self.dc, self.state, self.effects = dc, state, effects
        self.placement = effects.placement  # the one placement (the effects change it)
        self.mapping = mapping_for(dc.cloud)  # the flavor's words: names, notices, impacts
        self.repo = Repository(state.file("events.db"), on_approve=self._approved_by_vm)
        self.failed = failed_from_kernel(dc)
        now = time.time()
        saved = self.repo.load_planner()
        if saved:
            self.planner = Planner.from_dict(saved, random.Random())
            self.planner.grace(now)
        else:
            self.planner = Planner.for_datacenter(dc, random.Random(), now, placement=self.placement,
                                                  cloud=self.mapping.cloud)
        self._reconcile_placement()
        self.wake = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.errors: list[str] = []
        self._saved_deadline: float | None = -1.0
        self._fed: list[str] = []  # approvals fed to the planner, cleared from the inbox at the next save

    def _reconcile_placement(self) -> None:
        """Tell the planner where the kernel has each VM (a crash may have cut a move)."""
        for vm, node in self.placement.items():
            if self.planner.node_of(vm) != node:
                self.planner.add_vm(vm, node, self.dc.vm(vm).availability_set or "")
        self.on_events_changed: Callable[[set[str]], None] | None = None
        """Called after a commit with the nodes whose events changed (the daemon wakes the
        metadata server's parked requests of those nodes)."""

    # -- checking control inputs (they come from a socket: anything may arrive) ----------

    def known(self, kind: str, name: object) -> str:
        """``name`` if the topology has a ``kind`` (vm, node, availability set) of that name;
        else :class:`~netsim.model.bounds.InvalidValue` listing the names it has."""
        choices = {"vm": [v.name for v in self.dc.vms], "node": [n.name for n in self.dc.nodes],
                   "availability set": [a.name for a in self.dc.availability_sets]}[kind]
        if not isinstance(name, str) or name not in choices:
            shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
            raise bounds.InvalidValue(f"no {kind} {name!r} in datacenter {self.dc.name!r} ({kind}s: {shown})")
        return name

    @contextmanager
    def input_guard(self) -> Iterator[None]:
        """Feed one control input: if it is refused (by the planner, or by the repository
        while its actions are stored), the planner is put back as it was before, so that
        the planner never holds what SQLite lacks (the repository rolled back already)."""
        before = self.planner.to_dict()
        try:
            yield
        except BaseException:
            self.planner = Planner.from_dict(before, random.Random())
            raise

    def view(self, node: str):
        """The event view the node's metadata server reads (straight from the repository)."""
        return self.repo.view(node)

    def describe(self, event: Event) -> dict:
        """``event`` for the control socket: every field, and the flavor's names for its
        kind (``event_type``) and source, which ``netsim events`` shows."""
        out = event_to_dict(event)
        out["event_type"] = self.mapping.name_of(event.kind) if event.kind in self.mapping.kinds else event.kind.value
        out["source"] = self.mapping.source_names.get(event.source, event.source.value)
        return out

    # -- inputs ---------------------------------------------------------------------------

    def _approved_by_vm(self, event: Event) -> None:
        """A VM approved an event (POST StartRequests): the view put it in the inbox; feed
        it to the planner now, which writes Started (and clears the inbox) in one commit."""
        self.feed_approvals()

    def feed_approvals(self) -> None:
        """Drain the approvals inbox into the planner, then store what they caused."""
        ids = self.repo.approvals()
        if not ids:
            return
        with self.input_guard():
            now = time.time()
            for event_id in ids:
                self.planner.approve(event_id, now)  # False for an event already over: dropped
            self._fed.extend(ids)
            try:
                self.drain()
            except BaseException:
                self._fed = []  # refused: the planner is put back, the approvals stay in the inbox
                raise

    def approve(self, event_id: str) -> bool:
        """Approve an event as a VM would (``netsim event approve``)."""
        if not isinstance(event_id, str):
            raise bounds.InvalidValue(f"an event id is a string (see netsim events), not {event_id!r}")
        with self.input_guard():
            ok = self.planner.approve(event_id, time.time())
            self.drain()
        return ok

    def add_event(self, vm: str, event_type: str, notice_s: float | None, duration_s: float | None,
                  description: str | None = None, source: str = "Platform") -> str:
        """File a one-off event for a VM; ``event_type`` and ``source`` are the flavor's
        names (Azure: Freeze, Reboot, Redeploy, Preempt, Terminate; Platform or User).

        The flavor's default notice unless ``notice_s`` is given (0 to 7 days);
        ``duration_s`` is 0 to 7 days, or None (or -1) for unknown: the impact is then the
        flavor's default for the kind (:mod:`netsim.model.bounds`); anything else is
        refused before the planner changes."""
        v = self.dc.vm(self.known("vm", vm))
        if notice_s is not None:
            notice_s = bounds.check(notice_s, bounds.NOTICE_S, "the notice (--in)")
        if duration_s is not None:
            duration_s = bounds.check(duration_s, bounds.DURATION_S, "the duration (--duration)")
            duration_s = None if duration_s == -1 else duration_s  # -1 is how Azure spells unknown
        for what, text in (("type", event_type), ("source", source), ("description", description or "")):
            if not isinstance(text, str) or len(text) > 1000:
                raise bounds.InvalidValue(f"the event {what} must be a string of at most 1000 characters")
        try:
            kind, src = self.mapping.kind_of(event_type), self.mapping.source_of(source)
        except EventError as exc:
            raise bounds.InvalidValue(str(exc)) from None
        node = self.placement.node_of(vm)
        if node is None:
            raise bounds.InvalidValue(f"VM {vm} no longer exists (it was preempted or terminated)")
        with self.input_guard():
            event_id = self.planner.add_event(vm, node, v.availability_set or "", kind, time.time(),
                                              notice_s=notice_s, duration_s=duration_s, description=description,
                                              source=src)
            self.drain()
        return event_id

    def cancel_event(self, event_id: str) -> None:
        """Cancel a Scheduled event: it disappears, as Azure's rare cancellations do."""
        if not isinstance(event_id, str):
            raise bounds.InvalidValue(f"an event id is a string (see netsim events), not {event_id!r}")
        with self.input_guard():
            self.planner.cancel_event(event_id, time.time())
            self.drain()

    def start_walk(self, avset: str, notice_s: float, downtime_s: float) -> str:
        """Start planned maintenance of an availability set, one update domain at a time;
        ``notice_s`` and ``downtime_s`` are 0 to 7 days (:mod:`netsim.model.bounds`)."""
        self.known("availability set", avset)
        notice_s = bounds.check(notice_s, bounds.NOTICE_S, "the notice (--notice)")
        downtime_s = bounds.check(downtime_s, bounds.DOWNTIME_S, "the downtime (--downtime)")
        # Where each VM is now, not where the topology built it: a VM that a Redeploy or
        # healing moved must stay known on its new node, or a later failure of that node
        # would not heal it.
        members = [(vm, self.placement[vm], ud) for vm, _, ud in walk_members(self.dc, avset)
                   if vm in self.placement]
        with self.input_guard():
            walk_id = self.planner.start_walk(avset, members, notice_s, downtime_s, time.time())
            self.drain()
        return walk_id

    def node_fail(self, node: str) -> None:
        """Cut a node for real: its uplink and bridge go down and its host agent falls silent."""
        self.known("node", node)
        self._node_links(node, up=False)
        self.failed.add(node)
        self.wake.set()

    def node_recover(self, node: str) -> None:
        """Bring a failed node back; its host agent heartbeats again."""
        self.known("node", node)
        self._node_links(node, up=True)
        self.effects.node_recovered(node)
        self.failed.discard(node)
        self.planner.heartbeat(node, time.time())
        self.drain()

    def _node_links(self, node: str, up: bool) -> None:
        with Rtnl.in_namespace(names.node_ns(self.dc.name, node)) as sock:
            sock.set_link(names.UPLINK_INDEX, up=up, what=f"setting the uplink of {node} {'up' if up else 'down'}")
            sock.set_link(names.NIC_INDEX, up=up, what=f"setting the bridge of {node} {'up' if up else 'down'}")
            sock.flush()

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Resume interrupted effects, then tick at deadlines and heartbeat until cancelled."""
        self.resume()
        while True:
            self.feed_approvals()  # those that arrived while no daemon ran, or were refused
            now = time.time()
            for node in self.dc.nodes:
                if node.name not in self.failed:
                    self.planner.heartbeat(node.name, now)
            self.planner.tick(now)
            self.drain()
            deadline = self.planner.next_deadline()
            timeout = HEARTBEAT_INTERVAL if deadline is None else max(0.0, min(HEARTBEAT_INTERVAL, deadline - now))
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def drain(self) -> None:
        """Apply the planner's actions exactly once: in ONE transaction, every repository
        change, every effect begun (with its action, to resume it) and the planner's state
        after them; effects run once that has committed. A crash before the commit loses
        the input that produced the actions, never half of them."""
        actions = self.planner.pop_actions()
        if not actions and not self._fed and self.planner.next_deadline() == self._saved_deadline:
            return  # nothing changed since the last save (heartbeats are not worth a write)
        now = time.time()
        effects = []
        with self.repo.transaction():
            for action in actions:
                if self.repo.applied(action.key):
                    continue
                if isinstance(action, REPOSITORY_ACTIONS):
                    self.repo.apply(action)
                elif self.repo.begin(action.key, now, action_to_dict(action)):
                    effects.append(action)
            if self._fed:
                self.repo.clear_approvals(self._fed)
            self.repo.save_planner(self.planner.to_dict())
        self._fed = []
        self._saved_deadline = self.planner.next_deadline()
        # An EndEvent names no node: it comes with the RemoveEvents of the nodes that showed it.
        changed = {a.node for a in actions if isinstance(a, REPOSITORY_ACTIONS) and hasattr(a, "node")}
        if changed and self.on_events_changed is not None:
            self.on_events_changed(changed)
        for action in effects:
            self._spawn(action, now)

    def resume(self) -> None:
        """Finish the effects a crash interrupted (each step is idempotent)."""
        for key, began, data in self.repo.begun_effects():
            if data is None:
                log.warning("effect %s was begun without its action; marking it done", key)
                self.repo.finish(key)
                continue
            log.info("resuming effect %s begun %.1f s ago", key, time.time() - began)
            self._spawn(action_from_dict(data), began)

    def _spawn(self, action, began: float) -> None:
        task = asyncio.get_running_loop().create_task(self._effect(action, began))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _effect(self, action, began: float) -> None:
        vm = action.vm
        fx = self.effects
        try:
            if isinstance(action, Heal):
                fx.power_off(vm)
                fx.move(vm, action.to_node)
                fx.power_on(vm)
                self._finish(action, lambda now: self.planner.vm_back(vm, now))
                return
            assert isinstance(action, ApplyEffect)
            kind = action.kind
            if kind in GONE_KINDS:
                if vm in fx.placement:
                    fx.remove(vm)
                self._finish(action, lambda now: self.planner.effect_done(action.event_id, vm, now))
                return
            # The event stays Started for the whole impact (action.duration_s: the announced
            # duration, or the flavor's default for the kind), so a VM polling at 1 Hz sees it.
            if kind is Kind.PAUSE:
                fx.freeze(vm)
                await asyncio.sleep(max(0.0, began + action.duration_s - time.time()))
                fx.thaw(vm)
            else:  # reboot, redeploy
                fx.power_off(vm)
                if kind is Kind.REDEPLOY and action.target_node:
                    fx.move(vm, action.target_node)
                await asyncio.sleep(max(0.0, began + action.duration_s - time.time()))
                fx.power_on(vm)
            self._finish(action, lambda now: self.planner.effect_done(action.event_id, vm, now))
        except Exception as exc:
            # Report it done all the same: a stuck event would stall every walk behind it.
            log.exception("effect %s failed", action.key)
            self.errors.append(f"{action.key}: {exc}")
            report = self.planner.vm_back if isinstance(action, Heal) else None
            self._finish(action, (lambda now: report(vm, now)) if report else
                         (lambda now: self.planner.effect_done(action.event_id, vm, now)))

    def _finish(self, action, report) -> None:
        self.repo.finish(action.key)
        report(time.time())
        log.info("effect %s done", action.key)
        self.drain()
        self.wake.set()

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """What ``netsim watch`` and ``maintenance status`` show."""
        return {
            "now": time.time(),
            "walks": [w.to_dict() for w in self.planner.walks()],
            "events": [self.describe(e) for e in self.planner.events()],
            "placement": dict(self.placement),
            "failed_nodes": sorted(self.failed),
            "planner_failed_nodes": list(self.planner.failed_nodes()),
            "effects_running": len(self.tasks),
            "errors": self.errors[-10:],
        }
