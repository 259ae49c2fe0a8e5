"""The controller, inside the daemon: the maintenance planner's I/O driver.

It feeds the sans-IO :class:`~netsim.maintenance.Planner` (ticks at its deadlines,
approvals VMs left in the repository's inbox, effects the host agents report done,
the agents' heartbeats) and makes its actions real exactly once: repository changes go
into SQLite with their key in one transaction; effects are begun in the ledger (with the
action, to resume after a crash) and handed to the :class:`~netsim.runtime.hostagent.HostAgent`
of the node that holds the VM, which makes them real (:mod:`netsim.runtime.effects`) and
reports them; a report is recorded (the ledger's ``done``) in the same transaction as the
planner state that learnt it. The planner alone writes an event's status. After SIGKILL,
a new daemon reloads the planner, re-attaches to the namespaces, drains the approvals that
arrived meanwhile and hands the effects a crash cut to the agents that hold their VMs now.

Where each VM runs is the runtime's :class:`~netsim.runtime.placement.Placement` (the one
the effects change): every planner input that names a node reads it, never the topology,
and so does the choice of the agent an effect goes to.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from netsim_imds.events import Event, EventError, mapping_for

from netsim.maintenance import Heal, MaintenanceError, Planner, Repository, walk_members
from netsim.maintenance.actions import ChangedNames, action_from_dict, event_to_dict
from netsim.model import bounds
from netsim.model.topology import Datacenter
from netsim.runtime.hostagent import HEARTBEAT_INTERVAL, EffectAction, HostAgent

log = logging.getLogger("netsim.runtime.controller")


def topology_names(dc: Datacenter) -> dict[str, dict[str, None]]:
    """The names :meth:`Controller.known` checks, by kind, in the topology's order."""
    return {"vm": dict.fromkeys(v.name for v in dc.vms), "node": dict.fromkeys(n.name for n in dc.nodes),
            "availability set": dict.fromkeys(a.name for a in dc.availability_sets)}


class Controller:
    """Runs maintenance for one datacenter on the daemon's event loop.

    ``repo_path`` is the event repository (SQLite), ``placement`` the one placement;
    the host agents are attached with :meth:`attach`, one per node, before :meth:`run`.
    ``clock`` is injected so that a test can drive the controller on an invented timeline.
    """

    def __init__(self, dc: Datacenter, repo_path: str, placement: Mapping[str, str], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.dc, self.placement, self.clock = dc, placement, clock
        self.mapping = mapping_for(dc.cloud)  # the flavor's words: names, notices, impacts
        # The topology's names in order, for known() (twice per control request; 1,000 VMs).
        self.names = topology_names(dc)
        self.repo = Repository(repo_path, on_approve=self._approved_by_vm)
        self.agents: dict[str, HostAgent] = {}
        now = clock()
        saved = self.repo.load_planner()
        if saved:
            self.planner = Planner.from_dict(saved, random.Random())
            self.planner.grace(now)
        else:
            self.planner = Planner.for_datacenter(dc, random.Random(), now, placement=placement,
                                                  cloud=self.mapping.cloud)
        self._reconcile_placement()
        self.wake = asyncio.Event()
        self.errors: list[str] = []
        self.on_events_changed: Callable[[ChangedNames], None] | None = None
        """Called after a commit with the nodes whose events changed, each with the names that
        see the change (the daemon wakes the metadata server's parked requests of those)."""
        self._saved_mark: tuple | None = None  # the planner's saved_mark() at the last save
        self._fed: list[str] = []  # approvals fed to the planner, cleared from the inbox at the next save
        self._reports: list[EffectAction] = []  # effects the agents reported, not yet stored
        self._finished: list[str] = []  # keys of reports fed to the planner, marked done at the next save

    def _reconcile_placement(self) -> None:
        """Tell the planner where the kernel has each VM (a crash may have cut a move)."""
        for vm, node in self.placement.items():
            if self.planner.node_of(vm) != node:
                self.planner.add_vm(vm, node, self.dc.vm(vm).availability_set or "")

    # -- the host agents --------------------------------------------------------------------

    def attach(self, agent: HostAgent) -> None:
        """Make ``agent`` the host agent of its node."""
        self.agents[agent.node] = agent

    def agent_of(self, vm: str) -> HostAgent | None:
        """The agent of the node that holds ``vm`` now (the placement), or None."""
        node = self.placement.get(vm)
        return None if node is None else self.agents.get(node)

    def _agent_for(self, action: EffectAction) -> HostAgent:
        # Healing is the receiving node's work: the failed node's agent is silent. Any other
        # effect goes to the node holding the VM now (after a cut Redeploy: the target).
        if isinstance(action, Heal):
            return self.agents[action.to_node]
        return self.agent_of(action.vm) or self.agents[action.node]

    def heartbeat(self, node: str, now: float) -> None:
        """``node``'s agent is alive (stored with the next save: not worth a write of its own)."""
        self.planner.heartbeat(node, now)

    def effect_done(self, action: EffectAction, error: str | None = None) -> None:
        """An agent made ``action`` real (``error``: it failed and is reported done all the
        same, since a stuck event would stall every walk behind it)."""
        if error is not None:
            self.errors.append(f"{action.key}: {error}")
        self._reports.append(action)
        try:
            self.feed_reports()
        except Exception:  # kept: the loop feeds it again at its next turn
            log.exception("storing the report of effect %s failed; it is fed again", action.key)
        self.wake.set()

    def feed_reports(self) -> None:
        """Feed the agents' reports to the planner, then store what they caused and mark
        their effects done, in one transaction; a refused one is fed again next turn."""
        if not self._reports:
            return
        reports, self._reports = self._reports, []
        with self.input_guard():
            now = self.clock()
            for action in reports:
                try:
                    if isinstance(action, Heal):
                        self.planner.vm_back(action.vm, now)
                    else:
                        self.planner.effect_done(action.event_id, action.vm, now)
                except MaintenanceError as exc:  # the planner is unchanged: just mark it done
                    log.warning("report of effect %s refused by the planner: %s", action.key, exc)
                    self.errors.append(f"{action.key}: {exc}")
            self._finished = [a.key for a in reports]
            try:
                self.drain()
            except BaseException:
                self._finished, self._reports = [], reports + self._reports
                raise
        for action in reports:
            log.info("effect %s done", action.key)

    # -- checking control inputs (they come from a socket: anything may arrive) ----------

    def known(self, kind: str, name: object) -> str:
        """``name`` if the topology has a ``kind`` (vm, node, availability set) of that name;
        else :class:`~netsim.model.bounds.InvalidValue` listing the names it has."""
        if isinstance(name, str) and name in self.names[kind]:
            return name
        choices = list(self.names[kind])
        shown = ", ".join(choices[:8]) + (", ..." if len(choices) > 8 else "")
        raise bounds.InvalidValue(f"no {kind} {name!r} in datacenter {self.dc.name!r} ({kind}s: {shown})")

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
        out["event_type"] = self.mapping.event_name(event) if event.kind in self.mapping.kinds else event.kind.value
        out["shown_id"] = self.mapping.show_id(event)  # the id the VMs see (AWS: instance-event-...)
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
            now = self.clock()
            for event_id in ids:
                self.planner.approve(event_id, now)  # False for an event already over: dropped
            self._fed.extend(ids)
            try:
                self.drain()
            except BaseException:
                self._fed = []  # refused: the planner is put back, the approvals stay in the inbox
                raise

    def model_id(self, event_id: str) -> str:
        """The event's own id, given it or the id the flavor's VMs see (AWS: ``instance-event-...``)."""
        if not isinstance(event_id, str):
            raise bounds.InvalidValue(f"an event id is a string (see netsim events), not {event_id!r}")
        return next((e.event_id for e in self.planner.events() if self.mapping.show_id(e) == event_id), event_id)

    def approve(self, event_id: str) -> bool:
        """Approve an event as a VM would (``netsim event approve``)."""
        event_id = self.model_id(event_id)
        with self.input_guard():
            ok = self.planner.approve(event_id, self.clock())
            self.drain()
        return ok

    def add_event(self, vm: str, event_type: str, notice_s: float | None, duration_s: float | None,
                  description: str | None = None, source: str = "Platform", action: str | None = None) -> str:
        """File a one-off event for a VM; ``event_type`` and ``source`` are the flavor's
        names (Azure: Freeze, Reboot, Redeploy, Preempt, Terminate; Platform or User).

        The flavor's default notice unless ``notice_s`` is given (0 to 7 days);
        ``duration_s`` is 0 to 7 days, or None (or -1) for unknown: the impact is then the
        flavor's default for the kind (:mod:`netsim.model.bounds`); anything else is
        refused before the planner changes. ``action`` picks a variant of the type (AWS: a spot
        interruption's terminate, stop or hibernate): the flavor's name ``TYPE:ACTION``."""
        v = self.dc.vm(self.known("vm", vm))
        if action is not None:
            event_type = f"{event_type}:{action}"  # checked below as any type name
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
        node = self.placement.get(vm)
        if node is None:
            raise bounds.InvalidValue(f"VM {vm} no longer exists (it was preempted or terminated)")
        with self.input_guard():
            event_id = self.planner.add_event(vm, node, v.availability_set or "", kind, self.clock(),
                                              notice_s=notice_s, duration_s=duration_s, description=description,
                                              source=src, code=event_type if event_type in self.mapping.codes else "")
            self.drain()
        return event_id

    def cancel_event(self, event_id: str) -> None:
        """Cancel a Scheduled event: it disappears, as Azure's rare cancellations do."""
        event_id = self.model_id(event_id)
        with self.input_guard():
            self.planner.cancel_event(event_id, self.clock())
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
            walk_id = self.planner.start_walk(avset, members, notice_s, downtime_s, self.clock())
            self.drain()
        return walk_id

    def vm_start(self, vm: str) -> None:
        """Power a stopped VM on again (``netsim vm start``; AWS's instance-stop and spot
        stop leave it off, and maintenance leaves it so: :mod:`netsim.maintenance.power`);
        a running VM is left as it is."""
        agent = self.agent_of(self.known("vm", vm))
        if agent is None:
            raise bounds.InvalidValue(f"VM {vm} no longer exists (it was preempted or terminated)")
        agent.effects.power_on(vm)
        if vm in self.planner.stopped_vms():  # maintenance reaches it again from now on
            with self.input_guard():
                self.planner.vm_started(vm)
                self.drain(force=True)

    def node_fail(self, node: str) -> None:
        """Cut a node for real: its agent takes its links down and falls silent; the planner
        heals its VMs once the heartbeats are missed."""
        self.agents[self.known("node", node)].fail()
        self.wake.set()

    def node_recover(self, node: str) -> None:
        """Bring a failed node back: its agent sets its links up and heartbeats again."""
        self.agents[self.known("node", node)].recover(self.clock())
        self.drain()

    @property
    def failed(self) -> set[str]:
        """The nodes whose agent is silent (``netsim node fail``)."""
        return {node for node, agent in self.agents.items() if agent.silent}

    # -- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Resume interrupted effects, then turn (:meth:`step`) until cancelled."""
        self.resume()
        while True:
            timeout = self.step()
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def step(self) -> float:
        """One turn: the inbox, reports not stored yet, every live agent's heartbeat, a tick
        and the drain; returns the seconds to wait before the next turn."""
        self.feed_approvals()  # those that arrived while no daemon ran, or were refused
        self.feed_reports()  # those a refused write kept
        now = self.clock()
        for agent in self.agents.values():
            agent.beat(now)
        self.planner.tick(now)
        self.drain()
        deadline = self.planner.next_deadline()
        return HEARTBEAT_INTERVAL if deadline is None else max(0.0, min(HEARTBEAT_INTERVAL, deadline - now))

    def drain(self, force: bool = False) -> None:
        """Apply the planner's actions exactly once: in ONE transaction, every repository
        change, every effect begun (with its action, to resume it), every reported effect
        done, and the planner's state after them; effects are handed to the agents once
        that has committed. A crash before the commit loses the input that produced the
        actions, never half of them. ``force``: save the planner even when no action came
        (an input that changed its state only)."""
        actions = self.planner.pop_actions()
        if (not force and not actions and not self._fed and not self._finished
                and self.planner.saved_mark() == self._saved_mark):
            return  # nothing changed since the last save (heartbeats are not worth a write)
        now = self.clock()
        changed: ChangedNames = {}
        with self.repo.transaction():
            # One statement per kind, not per action: a walk's event goes to 100 nodes.
            effects = self.repo.apply_all(actions, now, changed)
            if self._fed:
                self.repo.clear_approvals(self._fed)
            for key in self._finished:
                self.repo.finish(key, now)
            self.repo.save_planner(self.planner.to_dict())
        self._fed, self._finished = [], []
        self._saved_mark = self.planner.saved_mark()
        if changed and self.on_events_changed is not None:
            self.on_events_changed(changed)
        for action in effects:
            self._hand(action, now)

    def resume(self) -> None:
        """Hand the effects a crash interrupted to the agents holding their VMs now (each
        step is idempotent; the impact still counts from when the effect began)."""
        for key, began, data in self.repo.begun_effects():
            if data is None:
                log.warning("effect %s was begun without its action; marking it done", key)
                self.repo.finish(key)
                continue
            log.info("resuming effect %s begun %.1f s ago", key, self.clock() - began)
            self._hand(action_from_dict(data), began)

    def _hand(self, action: EffectAction, began: float) -> None:
        agent = self._agent_for(action)
        log.info("effect %s handed to the agent of %s", action.key, agent.node)
        agent.run(action, began)

    # -- reading ----------------------------------------------------------------------------

    def snapshot(self) -> dict:
        """What ``netsim watch`` and ``maintenance status`` show."""
        return {
            "now": self.clock(),
            "walks": [w.to_dict() for w in self.planner.walks()],
            "events": [self.describe(e) for e in self.planner.events()],
            "placement": dict(self.placement),
            "failed_nodes": sorted(self.failed),
            "planner_failed_nodes": list(self.planner.failed_nodes()),
            "stopped_vms": self.planner.stopped_vms(),
            "effects_running": sum(len(a.tasks) for a in self.agents.values()),
            "errors": self.errors[-10:],
        }
