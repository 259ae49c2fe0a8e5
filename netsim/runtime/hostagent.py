"""The host agent of one node: makes its VMs' maintenance real, reports it, heartbeats.

One :class:`HostAgent` per node lives in the daemon beside the controller
(:mod:`netsim.runtime.controller`). The controller plans; the agent of the node that holds
a VM (the runtime's one :class:`~netsim.runtime.placement.Placement`) runs the effect the
planner asked for, with the steps of :mod:`netsim.runtime.effects`, and reports it done:

- **Freeze** (pause): stop the VM, wait out the impact, thaw it (a GCE live migration with a
  target node moves it while frozen).
- **Reboot**: power off, wait out the impact, power on.
- **Redeploy**: power off and move the VM's port to the target node; the move changes the
  placement, and the rest (waiting out the impact, booting, reporting) is the work of the
  agent the placement names now: the VM is *handed over* (:meth:`HostAgent.arrive`).
- **Service healing** (:class:`~netsim.maintenance.Heal`) is the receiving node's work:
  the failed node's agent is silent, so the controller hands the VM to the agent of the
  node it is restored on, which takes it over (power off, move, power on).
- **Preempt**, **Terminate**: remove the VM (an Azure Spot VM whose eviction policy is
  Deallocate gets a Stop instead: the planner's ``Fleet.effect_kind``).
- **Stop** (AWS instance-stop, spot stop/hibernate): power off; the VM stays off until
  ``netsim vm start`` (:meth:`~netsim.runtime.controller.Controller.vm_start`).

The event stays Started for the whole impact (``duration_s``: the announced duration, or
the flavor's default for the kind) counted from when the effect *began* (the ledger keeps
that time), so an effect resumed after a SIGKILL of the daemon ends when it would have.
Each step is idempotent, so a resumed effect may run steps that were already done.

An agent heartbeats to the controller while its node is up. ``netsim node fail`` cuts the
node's links and silences the agent (:meth:`HostAgent.fail`); ``node recover`` restores
both (:meth:`HostAgent.recover`): this is the one place a node's links go down and up.
Silence is of the heartbeats only: the emulated node's kernel still answers, so an effect
already handed to a failing node finishes as it would have.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Protocol, Union

from netsim_imds.events import GONE_KINDS, Kind

from netsim.kernel.rtnl import Rtnl
from netsim.maintenance import ApplyEffect, Heal
from netsim.model import names
from netsim.model.plan import plan_of
from netsim.model.topology import Datacenter

log = logging.getLogger("netsim.runtime.hostagent")

HEARTBEAT_INTERVAL = 0.5
"""Seconds between two heartbeats of a live agent (the planner's timeout is 3 s)."""

EffectAction = Union[ApplyEffect, Heal]
"""An action a host agent makes real."""


class Upstream(Protocol):
    """What a host agent needs of its controller (:class:`~netsim.runtime.controller.Controller`)."""

    def heartbeat(self, node: str, now: float) -> None:
        """``node``'s agent is alive at ``now``."""

    def effect_done(self, action: EffectAction, error: str | None = None) -> None:
        """``action`` is over (``error``: it failed, and is reported done all the same)."""

    def agent_of(self, vm: str) -> "HostAgent | None":
        """The agent of the node that holds ``vm`` now (the placement), or None."""


class EffectSteps(Protocol):
    """The steps an agent runs (:class:`~netsim.runtime.effects.Effects`); each is idempotent."""

    placement: Mapping[str, str]

    def freeze(self, vm: str) -> int: ...
    def thaw(self, vm: str) -> int: ...
    def power_off(self, vm: str) -> None: ...
    def power_on(self, vm: str) -> None: ...
    def move(self, vm: str, to_node: str) -> None: ...
    def leaving(self, vm: str) -> None: ...
    def remove(self, vm: str) -> None: ...
    def node_recovered(self, node: str) -> None: ...


def uplink_is_up(dc_name: str, node: str) -> bool:
    """Whether ``node``'s uplink is up (``netsim node fail`` cut it otherwise)."""
    with Rtnl.in_namespace(names.node_ns(dc_name, node)) as sock:
        return bool(sock.link_state(names.UPLINK_INDEX)[1])


class HostAgent:
    """The host agent of node ``node``: runs its VMs' effects, reports them, heartbeats.

    ``effects`` are the datacenter's steps, ``upstream`` the controller; ``clock`` and
    ``sleep`` are injected so that a test can run an agent on an invented timeline.
    ``links`` sets the node's uplink and bridge up or down (the kernel's by default).
    """

    def __init__(self, node: str, effects: EffectSteps, upstream: Upstream, *, silent: bool = False,
                 links: Callable[[bool], None] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.node, self.effects, self.upstream = node, effects, upstream
        self.silent = silent
        """True while the node is failed: the agent sends no heartbeat."""
        self._links = links
        self.clock, self.sleep = clock, sleep
        self.tasks: set[asyncio.Task] = set()

    @classmethod
    def on_node(cls, dc: Datacenter, node: str, effects: EffectSteps, upstream: Upstream) -> "HostAgent":
        """The agent of ``dc``'s node ``node``, silent if the node's uplink is down (a node
        failed before the daemon started stays failed)."""
        agent = cls(node, effects, upstream, silent=not uplink_is_up(dc.name, node))
        agent._links = lambda up: node_links(dc, node, up)
        return agent

    def __repr__(self) -> str:
        return f"HostAgent({self.node!r}{', silent' if self.silent else ''}, {len(self.tasks)} effects)"

    # -- heartbeats and the node's links ----------------------------------------------

    def beat(self, now: float) -> None:
        """Heartbeat to the controller, unless the node is failed.

        The controller's loop calls every agent's ``beat`` each turn, with one clock for
        the whole daemon: a stalled loop must never look like some nodes falling silent.
        """
        if not self.silent:
            self.upstream.heartbeat(self.node, now)

    def fail(self) -> None:
        """Cut the node for real (uplink and bridge down) and fall silent."""
        if self._links is not None:
            self._links(False)
        self.silent = True
        log.info("node %s failed: links down, host agent silent", self.node)

    def recover(self, now: float) -> None:
        """Bring the node back (links up, home routes of its VMs now elsewhere restored)
        and heartbeat again at once."""
        if self._links is not None:
            self._links(True)
        self.effects.node_recovered(self.node)
        self.silent = False
        self.beat(now)
        log.info("node %s recovered: links up, host agent heartbeating", self.node)

    # -- effects ------------------------------------------------------------------------

    def run(self, action: EffectAction, began: float) -> None:
        """Make ``action`` real, begun at ``began`` (now, or in the ledger before a crash)."""
        self._spawn(action, self._apply(action, began))

    def arrive(self, action: EffectAction, began: float) -> None:
        """Take over a VM that another agent moved here in the middle of ``action``: wait
        out the rest of its impact, boot it and report the effect."""
        self._spawn(action, self._boot(action, began))

    def _spawn(self, action: EffectAction, work: Coroutine[object, object, bool]) -> None:
        task = asyncio.get_running_loop().create_task(self._report(action, work))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _report(self, action: EffectAction, work: Coroutine[object, object, bool]) -> None:
        """Run ``work``; report the action done unless it was handed to another agent."""
        try:
            mine = await work
        except Exception as exc:
            # Report it done all the same: a stuck event would stall every walk behind it.
            log.exception("effect %s failed on node %s", action.key, self.node)
            self.upstream.effect_done(action, f"{type(exc).__name__}: {exc}")
            return
        if mine:
            log.info("effect %s done by the agent of %s", action.key, self.node)
            self.upstream.effect_done(action)

    async def _wait_impact(self, action: EffectAction, began: float) -> None:
        duration = action.duration_s if isinstance(action, ApplyEffect) else 0.0
        await self.sleep(max(0.0, began + duration - self.clock()))

    async def _apply(self, action: EffectAction, began: float) -> bool:
        """The effect's steps on this node; False when the VM was handed to another agent."""
        vm, fx = action.vm, self.effects
        if isinstance(action, Heal):
            fx.power_off(vm)
            fx.move(vm, action.to_node)
            if action.stay_off:  # stopped: off on its new node until `netsim vm start`
                fx.power_off(vm)  # (the move plugged its port up and claimed again)
            else:
                fx.power_on(vm)
            return True
        kind = action.kind
        if kind in GONE_KINDS:
            if vm in fx.placement:
                fx.remove(vm)
            return True
        if kind is Kind.STOP:  # off until `netsim vm start` (AWS instance-stop, spot stop)
            fx.power_off(vm)
            return True
        if kind is Kind.PAUSE:
            if action.target_node:
                # Its old node ends its metadata connections while the VM can still hear the
                # close: a parked long poll then fails at the thaw and the client polls again
                # (on the new node), as GCE's clients retry, instead of waiting out its timeout.
                fx.leaving(vm)
            fx.freeze(vm)
            if action.target_node:  # GCE's live migration: frozen, moved to another node, thawed there
                fx.move(vm, action.target_node)
            await self._wait_impact(action, began)
            fx.thaw(vm)
            return True
        fx.power_off(vm)  # reboot, redeploy
        if kind is Kind.REDEPLOY and action.target_node:
            fx.move(vm, action.target_node)
        there = self.upstream.agent_of(vm)
        if there is not None and there is not self:
            log.info("%s handed from the agent of %s to the agent of %s", vm, self.node, there.node)
            there.arrive(action, began)
            return False
        return await self._boot(action, began)

    async def _boot(self, action: EffectAction, began: float) -> bool:
        await self._wait_impact(action, began)
        self.effects.power_on(action.vm)
        return True


def node_links(dc: Datacenter, node: str, up: bool) -> None:
    """Set ``node``'s uplink and bridge up or down (``netsim node fail`` / ``recover``).

    Taking a link down makes the kernel drop the routes through it: on the way up the
    node's default route to the fabric is added again, or a recovered node could not
    reach any other (the routes of its VMs are the effects' :meth:`node_recovered`)."""
    state = "up" if up else "down"
    with Rtnl.in_namespace(names.node_ns(dc.name, node)) as sock:
        sock.set_link(names.UPLINK_INDEX, up=up, what=f"setting the uplink of {node} {state}")
        sock.set_link(names.NIC_INDEX, up=up, what=f"setting the bridge of {node} {state}")
        if up:
            sock.add_route("default", gateway=plan_of(dc).node(node).fabric_side, exist_ok=True)
        sock.flush()
