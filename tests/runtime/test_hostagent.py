"""The host agent: runs its node's effects in order, hands a moved VM to the agent of its
new node, reports every effect (a failed one too), heartbeats unless its node is failed
(pure: fake steps on an invented timeline), and cuts its node's links for real."""

from __future__ import annotations

import asyncio

import pytest
from netsim_imds.events import Kind

from netsim.maintenance import ApplyEffect, Heal
from netsim.runtime.effects import Effects
from netsim.runtime.hostagent import HostAgent, uplink_is_up
from netsim.runtime.services import Services

T = 1_800_000_000.0


class Steps:
    """Fake effects of one agent: each step is logged with the agent's node."""

    def __init__(self, node: str, log: list, placement: dict, fail_on: str | None = None) -> None:
        self.node, self.log, self.placement, self.fail_on = node, log, placement, fail_on

    def _do(self, step: str, vm: str, *more: str) -> None:
        if step == self.fail_on:
            raise OSError(f"{step} failed (simulated)")
        self.log.append((self.node, step, vm, *more))

    def freeze(self, vm): self._do("freeze", vm)
    def thaw(self, vm): self._do("thaw", vm)
    def power_off(self, vm): self._do("power_off", vm)
    def power_on(self, vm): self._do("power_on", vm)
    def remove(self, vm): self._do("remove", vm); self.placement.pop(vm)
    def node_recovered(self, node): self._do("node_recovered", node)

    def move(self, vm, to_node):
        self._do("move", vm, to_node)
        self.placement[vm] = to_node


class Upstream:
    """A fake controller: heartbeats and reports are recorded; agents found by placement."""

    def __init__(self, placement: dict) -> None:
        self.placement, self.agents = placement, {}
        self.beats: list[tuple[str, float]] = []
        self.done: list[tuple[str, str | None]] = []

    def heartbeat(self, node, now): self.beats.append((node, now))
    def effect_done(self, action, error=None): self.done.append((action.key, error))
    def agent_of(self, vm): return self.agents.get(self.placement.get(vm))


def fleet(fail_on: str | None = None, placement: dict | None = None):
    """Agents of n1 and n2 on a fixed clock (T); their sleeps are recorded, not slept."""
    log, slept = [], []
    placement = {"vm1": "n1", "vm2": "n2"} if placement is None else placement
    up = Upstream(placement)

    async def sleep(s):
        slept.append(s)
        await asyncio.sleep(0)
    for node in ("n1", "n2"):
        up.agents[node] = HostAgent(node, Steps(node, log, placement, fail_on), up, clock=lambda: T, sleep=sleep)
    return up, log, slept


def run(up: Upstream, node: str, action, began: float) -> None:
    """Hand ``action`` to ``node``'s agent and run the loop until every agent is idle."""
    async def go():
        up.agents[node].run(action, began)
        while any(a.tasks for a in up.agents.values()):
            await asyncio.sleep(0)
    asyncio.run(go())


def test_a_redeploy_is_handed_to_the_agent_of_the_new_node_which_boots_and_reports_it():
    up, log, slept = fleet()
    action = ApplyEffect("E1", "vm1", "n1", Kind.REDEPLOY, 5.0, target_node="n2")
    run(up, "n1", action, T - 1)
    assert log == [("n1", "power_off", "vm1"), ("n1", "move", "vm1", "n2"), ("n2", "power_on", "vm1")]
    assert slept == [4.0]  # the rest of the impact, counted from when the effect began
    assert up.done == [(action.key, None)]


def test_a_reboot_and_a_freeze_stay_on_their_node_for_the_whole_impact():
    up, log, slept = fleet()
    run(up, "n2", ApplyEffect("E1", "vm2", "n2", Kind.REBOOT, 30.0), T)
    run(up, "n1", ApplyEffect("E2", "vm1", "n1", Kind.PAUSE, 9.0), T - 10)  # resumed late: thaws at once
    assert log == [("n2", "power_off", "vm2"), ("n2", "power_on", "vm2"),
                   ("n1", "freeze", "vm1"), ("n1", "thaw", "vm1")]
    assert slept == [30.0, 0.0] and [error for _, error in up.done] == [None, None]


def test_healing_is_the_receiving_agents_work_and_a_gone_vm_is_removed_once():
    up, log, _ = fleet()
    heal = Heal("E1", "vm1", "n1", "n2")
    run(up, "n2", heal, T)
    assert log == [("n2", "power_off", "vm1"), ("n2", "move", "vm1", "n2"), ("n2", "power_on", "vm1")]
    terminate = ApplyEffect("E2", "vm2", "n2", Kind.TERMINATE, 0.0)
    run(up, "n2", terminate, T)
    run(up, "n2", terminate, T)  # resumed after a crash: the VM is gone already
    assert log[3:] == [("n2", "remove", "vm2")]
    assert up.done == [(heal.key, None), (terminate.key, None), (terminate.key, None)]


def test_a_failed_step_is_reported_with_its_error():
    up, log, _ = fleet(fail_on="power_on")
    action = ApplyEffect("E1", "vm1", "n1", Kind.REDEPLOY, 0.0, target_node="n2")
    run(up, "n1", action, T)
    assert log == [("n1", "power_off", "vm1"), ("n1", "move", "vm1", "n2")]
    assert up.done == [(action.key, "OSError: power_on failed (simulated)")]  # by n2's agent, once


def test_a_failed_nodes_agent_is_silent_until_it_recovers():
    up, log, _ = fleet()
    links: list[bool] = []
    agent = up.agents["n1"]
    agent._links = links.append  # instead of the kernel's uplink and bridge
    agent.beat(T)
    agent.fail()
    agent.beat(T + 1)
    agent.recover(T + 2)
    agent.beat(T + 3)
    assert links == [False, True] and log == [("n1", "node_recovered", "n1")]
    assert up.beats == [("n1", T), ("n1", T + 2), ("n1", T + 3)]


@pytest.mark.root
def test_node_fail_cuts_the_nodes_links_for_real_and_recover_restores_them(datacenter_factory, assert_reachable,
                                                                          assert_unreachable):
    dc = datacenter_factory(linklocal="static")
    placement = {v.name: v.node for v in dc.topology.vms}
    effects = Effects(dc.topology, placement, None, Services(dc.topology, dc.state, dc.record_process))
    up = Upstream(placement)
    node = dc.topology.vm("web1").node
    other = next(v.name for v in dc.topology.vms if v.node != node)
    agent = HostAgent.on_node(dc.topology, node, effects, up)
    assert not agent.silent and uplink_is_up(dc.name, node)
    assert_reachable(other, "web1")
    agent.fail()
    try:
        assert not uplink_is_up(dc.name, node) and HostAgent.on_node(dc.topology, node, effects, up).silent
        assert_unreachable(other, "web1")
        agent.beat(1.0)
        assert up.beats == []
    finally:
        agent.recover(2.0)
    assert uplink_is_up(dc.name, node) and up.beats == [(node, 2.0)]
    assert_reachable(other, "web1", timeout=5)
